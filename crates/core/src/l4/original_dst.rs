//! Routing a `TCP` listener's connections by their original destination
//! (`l4.originalDestination: true`), for transparent interception: iptables
//! `REDIRECT` rewrote the address the client dialled to this listener's port, and
//! conntrack still knows the original one, which `SO_ORIGINAL_DST` (IPv4) or
//! `IP6T_SO_ORIGINAL_DST` (IPv6) reads back. This module owns that lookup and the
//! choice of service it leads to.
//!
//! The service is the first one (in config order) one of whose current endpoints
//! is exactly that `ip:port`: the client asked for one instance of the service,
//! the proxy then balances over all of them like for any other L4 connection.
//! Services that originate TLS are skipped: an L4 listener passes bytes through.

use std::io;
use std::net::{IpAddr, SocketAddr};

use meshgate_config::L4Listener;
use tokio::net::TcpStream;

use crate::snapshot::Snapshot;

/// Why a connection routed by original destination was closed (the access log's
/// reason).
pub(super) const UNKNOWN_DESTINATION: &str = "unknown_destination";

/// The address `stream`'s client originally dialled, when the connection was
/// redirected to this socket; `None` when it was not (the client dialled this
/// listener itself) or the kernel has no record of it (no conntrack entry).
pub fn original_destination(stream: &TcpStream) -> Option<SocketAddr> {
    let local = stream.local_addr().ok()?;
    match lookup(stream, local) {
        Ok(original) if same(original, local) => None,
        Ok(original) => Some(original),
        Err(e) => {
            // ENOENT: no NAT entry for this connection, i.e. it was not redirected.
            if e.raw_os_error() != Some(2) {
                tracing::debug!(error = %e, "reading SO_ORIGINAL_DST failed");
            }
            None
        }
    }
}

/// `getsockopt(SO_ORIGINAL_DST)` for the socket's address family; an IPv6 socket
/// carrying IPv4 (`::ffff:a.b.c.d`) was NATed by the IPv4 tables.
fn lookup(stream: &TcpStream, local: SocketAddr) -> io::Result<SocketAddr> {
    let socket = socket2::SockRef::from(stream);
    let v4 = match local.ip() {
        IpAddr::V4(_) => true,
        IpAddr::V6(ip) => ip.to_ipv4_mapped().is_some(),
    };
    let addr = if v4 {
        socket.original_dst_v4()?
    } else {
        socket.original_dst_v6()?
    };
    addr.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP address"))
}

/// Whether `a` and `b` are the same socket address, IPv4-mapped IPv6 equal to IPv4.
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

/// The service for a connection of listener `l4` whose client dialled `original`
/// (`None`: not redirected): the first service with an endpoint at exactly that
/// address, else the listener's `service`.
pub(super) fn route<'s>(
    snapshot: &'s Snapshot,
    l4: &'s L4Listener,
    original: Option<SocketAddr>,
) -> Result<&'s str, &'static str> {
    let by_endpoint = original.and_then(|dst| {
        snapshot
            .config
            .services
            .iter()
            .filter(|s| s.tls.is_none())
            .find(|s| {
                snapshot.upstreams.get(&s.name).is_some_and(|u| {
                    u.endpoints
                        .iter()
                        .any(|e| e.address.parse().is_ok_and(|a| same(a, dst)))
                })
            })
            .map(|s| s.name.as_str())
    });
    by_endpoint
        .or(l4.service.as_deref())
        .ok_or(UNKNOWN_DESTINATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_mapped_addresses_equal_their_ipv4_form() {
        let v4: SocketAddr = "10.1.2.3:80".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:80".parse().unwrap();
        assert!(same(v4, mapped));
        assert!(!same(v4, "10.1.2.3:81".parse().unwrap()));
        assert!(!same(v4, "10.1.2.4:80".parse().unwrap()));
    }

    #[test]
    fn routes_to_the_first_plain_service_with_that_endpoint_else_the_default() {
        let yaml = r#"
listeners:
  - {name: out, address: "127.0.0.1:0", protocol: TCP, l4: {originalDestination: true, service: d}}
  - {name: strict, address: "127.0.0.1:0", protocol: TCP, l4: {originalDestination: true}}
services:
  - {name: tls, endpoints: ["10.0.0.1:80"], tls: {insecureSkipVerify: true}}
  - {name: a, endpoints: ["10.0.0.9:5432", "10.0.0.1:80"]}
  - {name: b, endpoints: ["10.0.0.1:80", "10.0.0.2:80"]}
  - {name: d, endpoints: ["10.0.0.3:80"]}
"#;
        let config = meshgate_config::parse_str(yaml, "t.yaml").expect("valid");
        let metrics = std::sync::Arc::new(meshgate_observe::Metrics::new());
        let snap = Snapshot::compile(config, None, &metrics, &crate::filter::NoPolicies)
            .expect("compiles");
        let l4 = |i: usize| snap.config.listeners[i].l4.as_ref().expect("l4");
        let at = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert_eq!(route(&snap, l4(0), at("10.0.0.1:80")), Ok("a"));
        assert_eq!(route(&snap, l4(0), at("[::ffff:10.0.0.2]:80")), Ok("b"));
        assert_eq!(route(&snap, l4(0), at("10.0.0.2:81")), Ok("d"));
        assert_eq!(route(&snap, l4(0), None), Ok("d"));
        assert_eq!(route(&snap, l4(1), at("10.0.0.9:5432")), Ok("a"));
        assert_eq!(
            route(&snap, l4(1), at("10.0.0.7:1")),
            Err(UNKNOWN_DESTINATION)
        );
        assert_eq!(route(&snap, l4(1), None), Err(UNKNOWN_DESTINATION));
    }

    #[test]
    fn only_tcp_listeners_route_by_original_destination() {
        let yaml = "listeners: [{name: t, address: \"127.0.0.1:0\", protocol: TLS, \
                    l4: {service: a, originalDestination: true}}]\n\
                    services: [{name: a, endpoints: [\"10.0.0.1:1\"]}]\n";
        let err = meshgate_config::parse_str(yaml, "t.yaml").expect_err("invalid");
        let text = err.to_string();
        assert!(
            text.contains("listeners[0].l4.originalDestination: only allowed when protocol is TCP"),
            "{text}"
        );
    }

    /// A connection that was not redirected has no original destination, whether
    /// or not conntrack tracks it (the answer is then the local address).
    #[tokio::test]
    async fn a_direct_connection_has_no_original_destination() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_client, accepted) =
            tokio::join!(TcpStream::connect(addr), async { listener.accept().await });
        let (server, _) = accepted.unwrap();
        assert_eq!(original_destination(&server), None);
    }
}
