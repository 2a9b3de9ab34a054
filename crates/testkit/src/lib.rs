//! Test support for meshgate, also used by `meshgate demo`: real HTTP backends on
//! `127.0.0.1:0` with scriptable behaviour, and small helpers for tests.

mod backend;
pub mod certs;
pub mod dnsmasq;
pub mod etcd;
pub mod jwt;
pub mod oidc;
pub mod otlp;
mod util;

pub use backend::{Backend, Behaviour};
pub use util::{free_port, free_ports, rss_kib, wait_for_port};
