//! The `Cors` policy: CORS: preflights answered at the gateway, response headers on actual requests.

use std::sync::Arc;

use meshgate_config as config;
use meshgate_core::filter::{Filter, PolicyEnv};

/// Compiles the policy. (Being written: refuses until implemented.)
pub fn compile(_c: &config::CorsPolicy, _env: &PolicyEnv<'_>) -> Result<Arc<dyn Filter>, String> {
    Err("not implemented yet".into())
}
