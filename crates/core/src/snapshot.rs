//! The snapshot: all runtime state derived from one config (route tables, upstream
//! services), built aside and swapped whole. Unchanged services keep their upstream
//! (and so their connection pools and load state) across a rebuild.

use std::collections::HashMap;
use std::sync::Arc;

use meshgate_config::Config;
use meshgate_observe::Metrics;

use crate::filter::{FilterChain, PolicyCompiler, PolicyEnv, PolicySet, compile_policies};
use crate::route::{RouteTable, compile_tables};
use crate::upstream::Upstream;

#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    /// One per `config.listeners` entry, same order, by listener name.
    pub tables: Vec<(Arc<str>, RouteTable)>,
    pub upstreams: HashMap<String, Arc<Upstream>>,
    /// Policies of listeners that have any, run before routing.
    pub listener_policies: Vec<(Arc<str>, FilterChain)>,
    /// Every compiled policy by name (kept for reuse by the next snapshot).
    pub policies: PolicySet,
    /// The top-level `errorResponses`.
    pub error_pages: crate::rescue::ErrorPages,
    /// The admin token, when `admin.liveExplain` lets requests ask for their trace.
    pub explain_token: Option<Box<[u8]>>,
    /// TLS state (certificates by SNI) of the `HTTPS` listeners.
    pub listener_tls: crate::server::tls::ListenerTlsSet,
    /// Mesh mTLS state of the listeners with `mesh`.
    pub listener_mesh: crate::server::mesh::MeshListenerSet,
    /// `meshAuthorization` rules and east-west edges (`mesh_authz`).
    pub mesh_authz: crate::mesh_authz::MeshAuthz,
}

/// A config that validated but could not be turned into runtime state.
#[derive(Debug, thiserror::Error)]
#[error("cannot compile config: {0}")]
pub struct CompileError(pub String);

impl Snapshot {
    /// The policy chain of listener `name`, if it has policies.
    pub fn listener_policies(&self, name: &str) -> Option<&FilterChain> {
        self.listener_policies
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, c)| c)
    }

    /// The route table of listener `name` (a short scan: listeners are few).
    pub fn table(&self, name: &str) -> Option<&RouteTable> {
        self.tables
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, t)| t)
    }

    /// Compiles `config`, reusing upstreams of `previous` whose service settings are unchanged.
    pub fn compile(
        config: Config,
        previous: Option<&Snapshot>,
        metrics: &Arc<Metrics>,
        compiler: &dyn PolicyCompiler,
    ) -> Result<Self, CompileError> {
        Self::compile_with_identity(config, previous, metrics, compiler, None)
    }

    /// Like `compile`, with the workload identity that `mesh` listeners and
    /// services speak mTLS with; without one, a config using `mesh` is refused.
    pub fn compile_with_identity(
        config: Config,
        previous: Option<&Snapshot>,
        metrics: &Arc<Metrics>,
        compiler: &dyn PolicyCompiler,
        identity: Option<&Arc<crate::identity::WorkloadIdentity>>,
    ) -> Result<Self, CompileError> {
        let mut upstreams = HashMap::with_capacity(config.services.len());
        for svc in &config.services {
            let reused = previous.and_then(|p| {
                let old = p.config.services.iter().find(|s| s.name == svc.name)?;
                (old == svc)
                    .then(|| p.upstreams.get(&svc.name).cloned())
                    .flatten()
            });
            let upstream = match reused {
                Some(u) => u,
                None => Arc::new(
                    Upstream::build_with_identity(svc, metrics, identity)
                        .map_err(|e| CompileError(format!("services {:?}: {e}", svc.name)))?,
                ),
            };
            upstreams.insert(svc.name.clone(), upstream);
        }
        let env = PolicyEnv {
            config: &config,
            metrics,
        };
        let policies =
            compile_policies(compiler, &env, previous.map(|p| (&*p.config, &p.policies)))
                .map_err(CompileError)?;
        let tables =
            compile_tables(&config, &upstreams, &policies, metrics).map_err(CompileError)?;
        let listener_tls =
            crate::server::tls::ListenerTlsSet::compile(&config, previous.map(|p| &p.listener_tls))
                .map_err(CompileError)?;
        let listener_mesh = crate::server::mesh::MeshListenerSet::compile(
            &config,
            identity,
            previous.map(|p| &p.listener_mesh),
        )
        .map_err(CompileError)?;
        let listener_policies = config
            .listeners
            .iter()
            .filter(|l| !l.policies.is_empty())
            .map(|l| {
                let request = crate::route::policy_chain(&l.policies, &policies)
                    .map_err(|e| CompileError(format!("listeners {:?}: {e}", l.name)))?;
                Ok((
                    Arc::from(l.name.as_str()),
                    FilterChain {
                        request,
                        response: Vec::new(),
                    },
                ))
            })
            .collect::<Result<_, CompileError>>()?;
        Ok(Snapshot {
            tables,
            listener_tls,
            listener_mesh,
            mesh_authz: crate::mesh_authz::MeshAuthz::compile(
                &config,
                previous.map(|p| &p.mesh_authz),
                &metrics.mesh,
            )
            .map_err(CompileError)?,
            upstreams,
            listener_policies,
            policies,
            error_pages: crate::rescue::ErrorPages::compile(&config.error_responses)
                .map_err(CompileError)?,
            explain_token: if config.admin.live_explain {
                config
                    .admin
                    .resolved_token()
                    .map_err(CompileError)?
                    .map(|t| t.into_bytes().into_boxed_slice())
            } else {
                None
            },
            config: Arc::new(config),
        })
    }
}
