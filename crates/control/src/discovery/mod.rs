//! Endpoint discovery: which endpoints each service gets in snapshots, from the
//! service registry (and DNS). Placeholder: discovers nothing yet, so snapshots carry
//! the static endpoints of the config.

use std::sync::Arc;

use tokio::sync::watch;

use crate::snapshot::Discovered;
use crate::store::Store;

/// Follows `store` (config and registry) and publishes the endpoints discovered
/// for the current config's services. Runs until the receivers are dropped.
pub fn start(store: Arc<dyn Store>) -> watch::Receiver<Arc<Discovered>> {
    let _ = store;
    watch::channel(Arc::new(Discovered::new())).1
}
