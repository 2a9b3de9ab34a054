//! One L4 connection, accept to close: the listener's settings from the current
//! snapshot (so a reload applies to new connections), for `TLS` the ClientHello and
//! the route its server name picks, the endpoint (the service's balancer, health and
//! outlier state, connect timeout), then the byte copy; and at the end one access
//! log line and the connection counter.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use meshgate_config::{L4Listener, ListenerProtocol};
use meshgate_observe::access_log::ConnectionRecord;
use meshgate_observe::metrics::L4Labels;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::proxy::{ByteMetrics, Counts, End, pipe};
use super::sni;
use crate::balance::InFlight;
use crate::proxy::Shared;
use crate::snapshot::Snapshot;
use crate::upstream::{Outcome, Upstream};

/// What the accept loop knows about its listener.
pub(super) struct Listener {
    pub name: Arc<str>,
    pub bytes: ByteMetrics,
}

/// Why a connection was closed before (or instead of) being proxied.
type Refused = &'static str;

/// Serves one accepted connection; never fails (problems become the log's reason).
pub(super) async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    listener: &Listener,
    shared: &Shared,
    mut drained: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let _ = client.set_nodelay(true);
    let mut record = ConnectionRecord {
        time: SystemTime::now(),
        protocol: "tcp",
        listener: listener.name.clone(),
        client: peer.ip(),
        server_name: None,
        service: None,
        upstream: None,
        bytes_in: 0,
        bytes_out: 0,
        connect: None,
        duration: Duration::ZERO,
        reason: None,
    };
    let counts = Counts::default();
    let end = run(client, listener, shared, &mut drained, &mut record, &counts).await;
    record.reason = match end {
        Ok(end) => end.reason(),
        Err(refused) => Some(refused),
    };
    record.bytes_in = counts.bytes_in.load(Relaxed);
    record.bytes_out = counts.bytes_out.load(Relaxed);
    record.duration = started.elapsed();
    if let Some(reason) = record.reason {
        tracing::debug!(listener = %listener.name, client = %peer, reason, "L4 connection ended");
    }
    let service = record.service.clone().unwrap_or_else(|| "none".into());
    shared
        .metrics
        .l4_connections
        .get_or_create(&L4Labels {
            listener: listener.name.clone().into(),
            service: service.into(),
        })
        .inc();
    shared.log.send_connection(record);
}

async fn run(
    mut client: TcpStream,
    listener: &Listener,
    shared: &Shared,
    drained: &mut watch::Receiver<bool>,
    record: &mut ConnectionRecord,
    counts: &Counts,
) -> Result<End, Refused> {
    let snapshot = shared.snapshot.load_full();
    let (protocol, l4) = settings(&snapshot, &listener.name).ok_or("listener_removed")?;
    let idle = l4.idle_timeout.get();
    let mut hello = Vec::new();
    let service = if protocol == ListenerProtocol::TLS {
        record.protocol = "tls";
        let reading = sni::read_client_hello(&mut client, &mut hello);
        let name = tokio::select! {
            read = tokio::time::timeout(l4.client_hello_timeout.get(), reading) => match read {
                Err(_elapsed) => return Err("client_hello_timeout"),
                Ok(read) => read.map_err(sni::HelloError::reason)?,
            },
            Ok(_) = drained.wait_for(|d| *d) => return Err("drain_timeout"),
        };
        record.server_name = name.as_deref().map(Into::into);
        route(l4, name.as_deref()).ok_or(if name.is_some() {
            "unknown_sni"
        } else {
            "no_sni"
        })?
    } else if l4.original_destination {
        let original = super::original_dst::original_destination(&client);
        super::original_dst::route(&snapshot, l4, original)?
    } else {
        l4.service.as_deref().ok_or("no_backend")?
    };
    // `listeners[].mesh`: terminate mTLS, then copy the plaintext.
    let (client, peer) = match snapshot.listener_mesh.get(&listener.name) {
        Some(mesh) => mesh.accept_stream(client, shared).await?,
        None => (crate::server::mesh::MeshStream::from(client), None),
    };
    // `meshAuthorization`: the caller's identity decides (a TCP stream has no
    // method or path); a connection later denied by a reload is shut at once.
    let admitted = crate::mesh_authz::admit_stream(shared, &listener.name, peer.as_deref(), false)
        .ok_or("mesh_denied")?;
    let client = admitted.wrap(client);
    let upstream = snapshot.upstreams.get(service).ok_or("no_backend")?.clone();
    record.service = Some(upstream.name.clone());
    let connect_timeout = snapshot
        .config
        .services
        .iter()
        .find(|s| s.name == service)
        .map_or(Duration::from_secs(1), |s| s.connect_timeout.get());
    // A long-lived connection must not keep an old config's services alive.
    drop(snapshot);
    let connecting = connect(&upstream, record, connect_timeout);
    let (server, in_flight) = tokio::select! {
        connected = connecting => connected?,
        Ok(_) = drained.wait_for(|d| *d) => return Err("drain_timeout"),
    };
    // `services[].mesh`: originate mTLS to the endpoint.
    let endpoint = record.upstream.as_deref().unwrap_or_default();
    let mut server =
        crate::server::mesh::originate(upstream.mesh.as_deref(), server, endpoint).await?;
    drop(upstream);
    if !hello.is_empty() {
        server
            .write_all(&hello)
            .await
            .map_err(|_| "upstream_reset")?;
        let n = hello.len() as u64;
        counts.bytes_in.fetch_add(n, Relaxed);
        listener.bytes.bytes_in.inc_by(n);
        drop(hello);
    }
    let end = pipe(client, server, idle, counts, &listener.bytes, drained).await;
    drop(in_flight);
    Ok(end)
}

/// The protocol and L4 settings of listener `name` in `snapshot`.
fn settings<'s>(snapshot: &'s Snapshot, name: &str) -> Option<(ListenerProtocol, &'s L4Listener)> {
    let l = snapshot.config.listeners.iter().find(|l| l.name == name)?;
    Some((l.protocol, l.l4.as_ref()?))
}

/// The service for server name `name`: a route listing it exactly, else the route
/// with the longest matching wildcard suffix, else the listener's default service.
fn route<'a>(l4: &'a L4Listener, name: Option<&str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    if let Some(name) = name {
        for r in &l4.routes {
            for h in &r.hostnames {
                match h.strip_prefix("*.") {
                    None if h.eq_ignore_ascii_case(name) => return Some(&r.service),
                    Some(suffix)
                        if wildcard_matches(suffix, name)
                            && best.is_none_or(|(len, _)| suffix.len() > len) =>
                    {
                        best = Some((suffix.len(), &r.service));
                    }
                    _ => {}
                }
            }
        }
    }
    best.map(|(_, s)| s).or(l4.service.as_deref())
}

/// Whether `name` is `<one or more labels>.<suffix>` (case-insensitive).
fn wildcard_matches(suffix: &str, name: &str) -> bool {
    let Some(cut) = name.len().checked_sub(suffix.len() + 1) else {
        return false;
    };
    cut > 0
        && name.as_bytes()[cut] == b'.'
        && name
            .get(cut + 1..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
}

/// Connects to an endpoint of `upstream` picked by its balancer (health and outlier
/// state respected); a connect failure is recorded for outlier detection and tried
/// once more on another endpoint, when there is one.
async fn connect(
    upstream: &Upstream,
    record: &mut ConnectionRecord,
    timeout: Duration,
) -> Result<(TcpStream, InFlight), Refused> {
    let client_ip: IpAddr = record.client;
    let hash = upstream.hash_for(&http::HeaderMap::new(), client_ip);
    let tries = if upstream.endpoints.len() > 1 { 2 } else { 1 };
    let mut avoid = None;
    for _ in 0..tries {
        let i = upstream.pick(hash, avoid).map_err(|e| e.reason())?;
        let endpoint = &upstream.endpoints[i];
        record.upstream = Some(endpoint.address.clone());
        let in_flight = endpoint.load.start();
        let started = Instant::now();
        match tokio::time::timeout(timeout, TcpStream::connect(&*endpoint.address)).await {
            Ok(Ok(stream)) => {
                upstream.record(i, Outcome::Success);
                record.connect = Some(started.elapsed());
                let _ = stream.set_nodelay(true);
                return Ok((stream, in_flight));
            }
            Ok(Err(e)) => {
                tracing::debug!(service = %upstream.name, endpoint = %endpoint.address, error = %e, "L4 connect failed");
            }
            Err(_elapsed) => {
                tracing::debug!(service = %upstream.name, endpoint = %endpoint.address, "L4 connect timed out");
            }
        }
        upstream.record(i, Outcome::LocalFailure);
        avoid = Some(i);
    }
    Err("upstream_connect_failure")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings `l4` of a TLS listener, through the real parser and validation.
    fn l4(l4: &str) -> L4Listener {
        let src = format!(
            "listeners: [{{name: t, address: \"127.0.0.1:0\", protocol: TLS, l4: {l4}}}]\n\
             services: [{{name: a, endpoints: [\"10.0.0.1:1\"]}}, {{name: b, endpoints: [\"10.0.0.1:2\"]}}, \
             {{name: c, endpoints: [\"10.0.0.1:3\"]}}, {{name: d, endpoints: [\"10.0.0.1:4\"]}}]\n"
        );
        let config = meshgate_config::parse_str(&src, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
        config.listeners[0].l4.clone().unwrap()
    }

    #[test]
    fn exact_then_longest_wildcard_then_default() {
        let s = l4("{service: d, routes: [\
             {hostnames: [\"*.test\"], service: c},\
             {hostnames: [\"*.a.test\", b.test], service: b},\
             {hostnames: [A.test], service: a}]}");
        assert_eq!(route(&s, Some("a.test")), Some("a"));
        assert_eq!(route(&s, Some("x.a.test")), Some("b"));
        assert_eq!(route(&s, Some("y.x.a.test")), Some("b"));
        assert_eq!(route(&s, Some("b.test")), Some("b"));
        assert_eq!(route(&s, Some("z.test")), Some("c"));
        assert_eq!(route(&s, Some("test")), Some("d"));
        assert_eq!(route(&s, Some("atest")), Some("d"));
        assert_eq!(route(&s, Some("other.example")), Some("d"));
        assert_eq!(route(&s, None), Some("d"));
    }

    #[test]
    fn without_a_default_unmatched_names_have_no_service() {
        let s = l4("{routes: [{hostnames: [\"*.a.test\"], service: a}]}");
        assert_eq!(route(&s, Some("x.a.test")), Some("a"));
        assert_eq!(route(&s, Some("a.test")), None);
        assert_eq!(route(&s, Some(".a.test")), None);
        assert_eq!(route(&s, None), None);
    }
}
