//! The snapshot: all runtime state derived from one config (route tables, upstream
//! services), built aside and swapped whole. Unchanged services keep their upstream
//! (and so their connection pools and load state) across a rebuild.

use std::collections::HashMap;
use std::sync::Arc;

use meshgate_config::Config;

use crate::route::{RouteTable, compile_tables};
use crate::upstream::Upstream;

#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    /// One per `config.listeners` entry, same order.
    pub tables: Vec<RouteTable>,
    pub upstreams: HashMap<String, Arc<Upstream>>,
}

/// A config that validated but could not be turned into runtime state.
#[derive(Debug, thiserror::Error)]
#[error("cannot compile config: {0}")]
pub struct CompileError(pub String);

impl Snapshot {
    /// Compiles `config`, reusing upstreams of `previous` whose service settings are unchanged.
    pub fn compile(config: Config, previous: Option<&Snapshot>) -> Result<Self, CompileError> {
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
                    Upstream::build(svc)
                        .map_err(|e| CompileError(format!("services {:?}: {e}", svc.name)))?,
                ),
            };
            upstreams.insert(svc.name.clone(), upstream);
        }
        let tables = compile_tables(&config, &upstreams).map_err(CompileError)?;
        Ok(Snapshot {
            config: Arc::new(config),
            tables,
            upstreams,
        })
    }
}
