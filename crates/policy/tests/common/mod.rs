//! The core test harness (one copy, shared by path), starting gateways with every
//! policy kind available.
#![allow(dead_code)]

#[path = "../../../core/tests/common/mod.rs"]
mod harness;
pub mod jwt;

pub use harness::*;

/// Starts a gateway from `yaml` with meshgate-policy's compiler.
pub async fn start(yaml: &str) -> Harness {
    harness::start_with(yaml, meshgate_policy::Policies::compiler()).await
}
