//! The `Oidc` policy: OpenID Connect login (authorization code + PKCE) with an encrypted session cookie.

use std::sync::Arc;

use meshgate_config as config;
use meshgate_core::filter::{Filter, PolicyEnv};

/// Compiles the policy. (Being written: refuses until implemented.)
pub fn compile(_c: &config::OidcPolicy, _env: &PolicyEnv<'_>) -> Result<Arc<dyn Filter>, String> {
    Err("not implemented yet".into())
}
