//! How named policies become filters. The policies themselves live in
//! `meshgate-policy`, above this crate: the gateway is handed a `PolicyCompiler`
//! when it starts. A policy whose settings (and the consumers) did not change keeps
//! its compiled filter across reloads, so its state (rate-limit buckets, JWKS
//! cache, Redis connection) survives.

use std::collections::HashMap;
use std::sync::Arc;

use meshgate_config as config;
use meshgate_observe::Metrics;

use super::Filter;

/// What a policy may use while compiling.
pub struct PolicyEnv<'a> {
    pub config: &'a config::Config,
    pub metrics: &'a Arc<Metrics>,
}

/// Turns one `policies:` entry into a filter.
pub trait PolicyCompiler: Send + Sync {
    fn compile(
        &self,
        policy: &config::Policy,
        env: &PolicyEnv<'_>,
    ) -> Result<Arc<dyn Filter>, String>;
}

/// For gateways started without the policy crate: any policy is a compile error.
#[derive(Debug, Default)]
pub struct NoPolicies;

impl PolicyCompiler for NoPolicies {
    fn compile(
        &self,
        policy: &config::Policy,
        _: &PolicyEnv<'_>,
    ) -> Result<Arc<dyn Filter>, String> {
        Err(format!(
            "policy {:?}: this gateway was started without a policy compiler",
            policy.name
        ))
    }
}

/// Compiled policies by name.
pub type PolicySet = HashMap<String, Arc<dyn Filter>>;

/// Every policy of `env.config`; unchanged ones are taken from `previous`.
pub fn compile_policies(
    compiler: &dyn PolicyCompiler,
    env: &PolicyEnv<'_>,
    previous: Option<(&config::Config, &PolicySet)>,
) -> Result<PolicySet, String> {
    env.config
        .policies
        .iter()
        .map(|p| {
            let reused = previous.and_then(|(old_config, old)| {
                let unchanged = old_config.consumers == env.config.consumers
                    && old_config.policies.iter().any(|o| o == p);
                unchanged.then(|| old.get(&p.name).cloned()).flatten()
            });
            let filter = match reused {
                Some(f) => f,
                None => compiler
                    .compile(p, env)
                    .map_err(|e| format!("policies {:?}: {e}", p.name))?,
            };
            Ok((p.name.clone(), filter))
        })
        .collect()
}
