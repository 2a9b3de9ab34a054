//! meshgate's control plane: holds the configuration (in a [`store`]), serves it to
//! proxies as versioned [`snapshot`]s over gRPC ([`server`]), tracks which version
//! each proxy runs, keeps a service registry, and lets operators plan, apply and
//! roll back.

pub mod client;
pub mod config;
pub mod discovery;
pub mod plan;
pub mod proto;
pub mod registrar;
pub mod server;
pub mod sidecar;
pub mod snapshot;
pub mod store;
