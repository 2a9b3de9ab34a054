//! The `RateLimit` policy: token buckets keyed by consumer, client IP, header or
//! route; local, or shared through Redis.

use std::sync::Arc;

use meshgate_config as config;
use meshgate_core::filter::{Filter, PolicyEnv};

/// Compiles the policy named `name`. (Being written: refuses until implemented.)
pub fn compile(
    _name: &str,
    _c: &config::RateLimitPolicy,
    _env: &PolicyEnv<'_>,
) -> Result<Arc<dyn Filter>, String> {
    Err("not implemented yet".into())
}
