//! How the gateway talks to a service's endpoints: TLS origination (`services[].tls`:
//! the CA bundle, the name to verify, an optional client certificate), the HTTP
//! version (`services[].protocol`) and the HTTP/2 connection settings
//! (`services[].http2`).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, de};

use crate::Duration;

/// How the gateway speaks TLS to the endpoints. Certificate and key files are read
/// when the config is applied (not by `meshgate validate`): a missing or bad file
/// refuses the whole config and the running one stays.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpstreamTls {
    /// PEM bundle of the CA certificates that may have issued the endpoints'
    /// certificates; only these are trusted (no system roots). Required unless
    /// `insecureSkipVerify` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Name sent as SNI and verified against the endpoint's certificate. Default:
    /// each endpoint's host (a DNS name is sent as SNI; an IP address is verified
    /// against the certificate's IP SANs and sends no SNI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// PEM certificate chain presented to endpoints that ask for a client
    /// certificate (mTLS). Set together with `clientKeyFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `clientCertFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<String>,
    /// Accept any endpoint certificate without verification. For development only:
    /// anyone on the path can read and change the traffic. Logged as a warning
    /// whenever the service is built (start, and reloads that change it). Default
    /// false; excludes `caFile`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// The HTTP version spoken to a service's endpoints, whatever the client spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (over TLS: ALPN `http/1.1`). The default.
    #[default]
    HTTP1,
    /// HTTP/2 only: prior knowledge (h2c) over cleartext, ALPN `h2` over TLS.
    /// Requests to an endpoint share one multiplexed connection.
    HTTP2,
}

/// HTTP/2 connection settings, used when `protocol` is `HTTP2`. How many streams
/// run at once is the upstream's `SETTINGS_MAX_CONCURRENT_STREAMS` (requests past
/// it wait for a free stream) and the service's `circuitBreaker.maxRequests`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpstreamHttp2 {
    /// Flow-control window of each stream, in bytes (65535-2147483647): how much of
    /// a response body the upstream may send before the client reads it. Default
    /// 1048576 (1 MiB).
    #[serde(
        default = "UpstreamHttp2::default_stream_window",
        deserialize_with = "window_size"
    )]
    #[schemars(range(min = 65535, max = 2147483647))]
    pub initial_stream_window_size: u32,
    /// Flow-control window of the whole connection, in bytes (65535-2147483647).
    /// Default 4194304 (4 MiB).
    #[serde(
        default = "UpstreamHttp2::default_connection_window",
        deserialize_with = "window_size"
    )]
    #[schemars(range(min = 65535, max = 2147483647))]
    pub initial_connection_window_size: u32,
    /// Send an HTTP/2 PING this often to find dead connections (also while idle).
    /// Absent: no pings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive_interval: Option<Duration>,
    /// A PING not answered within this closes the connection. Default `20s`.
    #[serde(default = "UpstreamHttp2::default_keep_alive_timeout")]
    pub keep_alive_timeout: Duration,
}

impl UpstreamHttp2 {
    fn default_stream_window() -> u32 {
        1 << 20
    }
    fn default_connection_window() -> u32 {
        4 << 20
    }
    fn default_keep_alive_timeout() -> Duration {
        Duration::from_secs(20)
    }
}

impl Default for UpstreamHttp2 {
    fn default() -> Self {
        Self {
            initial_stream_window_size: Self::default_stream_window(),
            initial_connection_window_size: Self::default_connection_window(),
            keep_alive_interval: None,
            keep_alive_timeout: Self::default_keep_alive_timeout(),
        }
    }
}

/// Smallest and largest HTTP/2 flow-control window (RFC 9113 §6.9).
const MIN_WINDOW: u64 = 65_535;
const MAX_WINDOW: u64 = (1 << 31) - 1;

/// An HTTP/2 window size: refused at parse time when out of range, so the error
/// carries the field's file:line:col like every other parse error.
fn window_size<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = u32;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a window size in bytes, {MIN_WINDOW}-{MAX_WINDOW}")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
            if (MIN_WINDOW..=MAX_WINDOW).contains(&v) {
                Ok(v as u32)
            } else {
                Err(E::custom(format!(
                    "window size {v} is out of range {MIN_WINDOW}-{MAX_WINDOW}"
                )))
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format!(
                    "window size {v} is out of range {MIN_WINDOW}-{MAX_WINDOW}"
                ))),
            }
        }
    }
    d.deserialize_u64(V)
}
