//! The `BasicAuth` policy: HTTP Basic authentication against consumers' argon2/bcrypt password hashes.

use std::sync::Arc;

use meshgate_config as config;
use meshgate_core::filter::{Filter, PolicyEnv};

/// Compiles the policy. (Being written: refuses until implemented.)
pub fn compile(
    _c: &config::BasicAuthPolicy,
    _env: &PolicyEnv<'_>,
) -> Result<Arc<dyn Filter>, String> {
    Err("not implemented yet".into())
}
