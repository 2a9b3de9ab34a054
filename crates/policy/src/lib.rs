//! meshgate-policy: the named policies of `policies:`, each a `Filter` of
//! meshgate-core. `Policies` is the `PolicyCompiler` a gateway is started with.
//!
//! One module per policy kind; shared pieces: `identity` (who the caller is, told
//! upstream without forgery), `http_client` (JWKS, OIDC and ext_authz calls),
//! `credentials` (API key and password material).

pub mod api_key;
pub mod authorize;
pub mod basic_auth;
pub mod client_cert;
pub mod cors;
pub mod credentials;
pub mod ext_authz;
pub mod http_client;
pub mod identity;
pub mod ip_access;
pub mod jwt;
pub mod oidc;
pub mod rate_limit;
pub mod request_limits;

use std::sync::Arc;

use meshgate_config as config;
use meshgate_core::filter::{Filter, PolicyCompiler, PolicyEnv};

/// Compiles every policy kind meshgate knows.
#[derive(Debug, Default, Clone, Copy)]
pub struct Policies;

impl Policies {
    /// The compiler, ready to hand to `Gateway::start_with_policies`.
    pub fn compiler() -> Arc<dyn PolicyCompiler> {
        Arc::new(Policies)
    }
}

impl PolicyCompiler for Policies {
    fn compile(&self, p: &config::Policy, env: &PolicyEnv<'_>) -> Result<Arc<dyn Filter>, String> {
        let missing = || format!("{} is required for type {:?}", p.kind.field(), p.kind);
        use config::PolicyType as T;
        Ok(match p.kind {
            T::ApiKey => Arc::new(api_key::ApiKey::compile(
                p.api_key.as_ref().ok_or_else(missing)?,
                env,
            )?),
            T::IpAccess => Arc::new(ip_access::IpAccess::compile(
                p.ip_access.as_ref().ok_or_else(missing)?,
            )?),
            T::RequestLimits => Arc::new(request_limits::RequestLimits(
                p.request_limits.clone().ok_or_else(missing)?,
            )),
            T::BasicAuth => basic_auth::compile(p.basic_auth.as_ref().ok_or_else(missing)?, env)?,
            T::Jwt => jwt::compile(p.jwt.as_ref().ok_or_else(missing)?, env)?,
            T::Oidc => oidc::compile(p.oidc.as_ref().ok_or_else(missing)?, env)?,
            T::ExtAuthz => ext_authz::compile(p.ext_authz.as_ref().ok_or_else(missing)?, env)?,
            T::Authorize => authorize::compile(p.authorize.as_ref().ok_or_else(missing)?, env)?,
            T::RateLimit => {
                rate_limit::compile(&p.name, p.rate_limit.as_ref().ok_or_else(missing)?, env)?
            }
            T::Cors => cors::compile(p.cors.as_ref().ok_or_else(missing)?, env)?,
            T::ClientCert => {
                client_cert::compile(p.client_cert.as_ref().ok_or_else(missing)?, env)?
            }
        })
    }
}
