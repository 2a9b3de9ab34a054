//! meshgate-core: the request path. Listeners and the hyper server (`server`), the
//! snapshot of compiled config (`snapshot`), routing (`route`), filters (`filter`),
//! upstream services and load balancing (`upstream`, `balance`), forwarding with
//! retries and timeouts (`proxy`), error responses (`rescue`) and the access log.

pub use meshgate_observe::access_log;
pub mod balance;
pub mod body;
pub mod compress;
mod error_page;
pub mod filter;
pub mod identity;
pub mod l4;
pub mod mesh_authz;
pub mod proxy;
pub mod reload;
pub mod request_id;
pub mod rescue;
pub mod route;
pub mod server;
pub mod snapshot;
pub mod upstream;
pub mod workers;

pub use reload::{ReloadError, ReloadStatus, Reloader};
pub use server::{Gateway, StartError};
pub use snapshot::Snapshot;
