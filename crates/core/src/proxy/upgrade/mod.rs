//! Protocol upgrades: WebSocket over HTTP/1.1 `Upgrade`, and over HTTP/2 extended
//! CONNECT (RFC 8441, see `h2`), which is forwarded to the upstream as the HTTP/1.1
//! handshake. The handshake is proxied like any request, and once the upstream
//! answered `101 Switching Protocols` the two connections are joined byte for byte
//! (`relay`), with the route's idle timeout, counted while open, and closed when
//! the gateway shuts down.

mod h2;
mod relay;

use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper::upgrade::OnUpgrade;

use crate::body::Body;
use crate::rescue::ProxyError;
use crate::route::Route;
use crate::snapshot::Snapshot;

/// Idle time after which an upgraded connection with no bytes either way is
/// closed, for routes without `timeouts.upgradeIdle`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// What a client asked to upgrade to, taken from the request before hop-by-hop
/// headers are stripped, with the client side of the connection.
pub struct Requested {
    protocol: HeaderValue,
    client: OnUpgrade,
    /// For an HTTP/2 extended CONNECT: the `Sec-WebSocket-Key` the gateway made up
    /// for the upstream handshake (the h2 request has none).
    h2_key: Option<HeaderValue>,
}

/// The upgrade the request asks for: an HTTP/1.1 `Connection: upgrade` request
/// with an `Upgrade` header, or an HTTP/2 CONNECT with `:protocol: websocket`
/// (then rewritten in place into the HTTP/1.1 handshake's `GET`). `None` for
/// other requests, or when hyper did not keep the connection for an upgrade.
///
/// Any other CONNECT (HTTP/1.1, plain HTTP/2, another `:protocol`) is refused:
/// meshgate is not a forward proxy, and a `2xx` from an upstream would tell the
/// client a tunnel is open when nothing is at its other end.
pub fn requested(parts: &mut http::request::Parts) -> Result<Option<Requested>, ProxyError> {
    if parts.method == http::Method::CONNECT {
        return match parts.version {
            http::Version::HTTP_2 => h2::requested(parts).map(Some).ok_or(ProxyError::BadRequest),
            _ => Err(ProxyError::BadRequest),
        };
    }
    if parts.version != http::Version::HTTP_11 {
        return Ok(None);
    }
    // The `Upgrade` lookup first: most requests end here.
    let Some(protocol) = parts.headers.get(header::UPGRADE) else {
        return Ok(None);
    };
    let wants = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !wants {
        return Ok(None);
    }
    let protocol = protocol.clone();
    let Some(client) = parts.extensions.remove::<OnUpgrade>() else {
        return Ok(None);
    };
    Ok(Some(Requested {
        protocol,
        client,
        h2_key: None,
    }))
}

/// The idle timeout of upgraded connections on `route` (`timeouts.upgradeIdle`).
/// Looked up in the snapshot's config only when a tunnel opens: nothing is added
/// to the compiled route or to ordinary requests.
fn idle_timeout(snapshot: &Snapshot, route: &Route) -> Duration {
    snapshot
        .config
        .routes
        .iter()
        .find(|r| *r.name == *route.name)
        .and_then(|r| r.timeouts.upgrade_idle)
        .map_or(DEFAULT_IDLE_TIMEOUT, |d| d.get())
}

impl Requested {
    /// Puts the upgrade headers back on the outgoing request (after hop-by-hop
    /// stripping removed them).
    pub fn restore(&self, headers: &mut HeaderMap) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, self.protocol.clone());
    }

    /// If the upstream switched protocols, answers the client accordingly (`101`
    /// with the upgrade headers for HTTP/1.1, `200` for HTTP/2) and joins the two
    /// connections in the background with `route`'s idle timeout.
    pub fn finish(
        self,
        response: &mut http::Response<Body>,
        snapshot: &Snapshot,
        route: &Route,
        tunnels: &Tunnels,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let upstream = if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            response.extensions_mut().remove::<OnUpgrade>()
        } else {
            None
        };
        let upstream = match &self.h2_key {
            Some(key) => match h2::answer(response, key, upstream) {
                Some(upstream) => upstream,
                None => return,
            },
            None => {
                let Some(upstream) = upstream else {
                    return;
                };
                let headers = response.headers_mut();
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(header::UPGRADE, self.protocol.clone());
                upstream
            }
        };
        let idle = idle_timeout(snapshot, route);
        let guard = tunnels.open();
        tokio::spawn(relay::join(self.client, upstream, guard, idle, shutdown));
    }
}

/// Counts upgraded connections (the `meshgate_upgraded_connections` gauge).
#[derive(Debug, Clone)]
pub struct Tunnels(prometheus_client::metrics::gauge::Gauge);

impl Tunnels {
    pub fn new(gauge: prometheus_client::metrics::gauge::Gauge) -> Self {
        Tunnels(gauge)
    }

    fn open(&self) -> TunnelGuard {
        self.0.inc();
        TunnelGuard(self.0.clone())
    }
}

/// Decrements the gauge when the tunnel ends, however it ends.
struct TunnelGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
