//! The `Jwt` policy: JWT bearer-token validation with inline keys or a JWKS URL.

use std::sync::Arc;

use meshgate_config as config;
use meshgate_core::filter::{Filter, PolicyEnv};

/// Compiles the policy. (Being written: refuses until implemented.)
pub fn compile(_c: &config::JwtPolicy, _env: &PolicyEnv<'_>) -> Result<Arc<dyn Filter>, String> {
    Err("not implemented yet".into())
}
