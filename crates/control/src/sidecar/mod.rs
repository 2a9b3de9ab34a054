//! Sidecars' slice of the control plane. A sidecar is a meshgate gateway whose
//! config is generated from the `mesh` section of the stored document and the
//! registry ([`generate`]): an inbound listener terminating mTLS in front of its
//! app, an outbound listener routing the app's calls to the other mesh services'
//! sidecars. The generated config uses default ports ([`ports`]), so every
//! instance of a service receives the same snapshot; each sidecar moves the ports
//! to its own ([`localize`]) before applying it. [`stream`] follows the store and
//! feeds a sidecar's config stream, latest wins.

pub mod generate;
pub mod ports;
pub mod stream;

pub use generate::{GenerateError, sidecar_config};
pub use ports::{LocalizeError, Ports, localize};
pub use stream::snapshots;
