//! Settings of `TCP` and `TLS` (SNI passthrough) listeners: where their connections
//! go and how long they may sit idle.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// Where an L4 listener sends connections. For `TCP`, every connection goes to
/// `service`. For `TLS`, the ClientHello's server name (SNI) picks a `routes` entry
/// (exact hostname, then the longest matching wildcard); connections matching none
/// go to `service`, or are closed when it is absent. TLS is never terminated.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct L4Listener {
    /// `TCP`: the service every connection is proxied to (required). `TLS`: the
    /// service for connections whose server name matches no route, or that send
    /// none. Absent on a `TLS` listener: such connections are closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `TLS` only: services chosen by the server name of the ClientHello.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<SniRoute>,
    /// A connection with no bytes flowing in either direction for this long is
    /// closed. Default `1h`.
    #[serde(default = "L4Listener::default_idle_timeout")]
    pub idle_timeout: Duration,
    /// `TLS` only: how long a client may take to send its whole ClientHello before
    /// the connection is closed. Default `5s`.
    #[serde(default = "L4Listener::default_client_hello_timeout")]
    pub client_hello_timeout: Duration,
    /// `TCP` only: route each connection by the address the client originally
    /// dialled, as recovered from a connection redirected here by iptables
    /// (`SO_ORIGINAL_DST`, transparent interception): the connection goes to the
    /// service one of whose `endpoints` is that exact `ip:port`, else to `service`
    /// (now optional), else it is closed (reason `unknown_destination`). A
    /// connection that was not redirected goes to `service`. Default `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub original_destination: bool,
}

impl L4Listener {
    fn default_idle_timeout() -> Duration {
        Duration::from_secs(3600)
    }

    fn default_client_hello_timeout() -> Duration {
        Duration::from_secs(5)
    }
}

impl Default for L4Listener {
    fn default() -> Self {
        Self {
            service: None,
            routes: Vec::new(),
            idle_timeout: Self::default_idle_timeout(),
            client_hello_timeout: Self::default_client_hello_timeout(),
            original_destination: false,
        }
    }
}

/// Connections whose TLS server name matches one of `hostnames` go to `service`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SniRoute {
    /// Server names: `db.example.com` (exact, case-insensitive) or `*.example.com`
    /// (any name ending in `.example.com`, not `example.com` itself). Each name may
    /// appear in only one route of a listener.
    pub hostnames: Vec<String>,
    /// The service the connection's bytes (ClientHello included) are passed to.
    pub service: String,
}
