//! Mesh mTLS between two real gateways with workload identities from a test CA:
//! gateway A (an outbound HTTP or TCP listener, services with `mesh`) calls gateway
//! B (an inbound listener with `mesh`) in front of a real backend. STRICT and
//! PERMISSIVE modes, refused peers (plaintext, foreign CA, expired, not allowed,
//! wrong SPIFFE ID), certificate rotation under steady traffic and a CA rotation
//! with overlap.

mod mesh_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mesh_support::*;
use meshgate_testkit::Backend;

/// B: a mesh listener `in` (`mesh` as YAML flow) in front of `app`.
fn inbound(mesh: &str, app: SocketAddr) -> String {
    format!(
        "listeners: [{{name: in, address: \"127.0.0.1:0\", mesh: {mesh}}}]
routes: [{{name: r, backendRefs: [{{name: app}}]}}]
services: [{{name: app, endpoints: [\"{app}\"]}}]
"
    )
}

/// A: a plain listener `out` routing to service `b` at `b` expecting `expect`
/// (`extra`: more settings of that service, as flow-mapping entries).
fn outbound(b: SocketAddr, expect: &str, extra: &str) -> String {
    format!(
        "listeners: [{{name: out, address: \"127.0.0.1:0\"}}]
routes: [{{name: r, backendRefs: [{{name: b}}]}}]
services: [{{name: b, endpoints: [\"{b}\"], mesh: {{spiffeId: \"{expect}\"}}{extra}}}]
"
    )
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let resp = client
        .get(format!("http://{addr}{path}").parse().unwrap())
        .await
        .expect("gateway answers");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn curl(args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .await
        .expect("curl runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test]
async fn a_calls_b_over_mtls_and_b_logs_the_spiffe_id_of_a() {
    let ca = MeshCa::new("basic");
    let app = Backend::start("app").await;
    let b = MeshGateway::start(
        &inbound("{}", app.addr),
        Some(ca.identity(&id("b"), &[&ca])),
    )
    .await;
    let yaml = format!(
        "listeners: [{{name: out, address: \"127.0.0.1:0\"}}]
routes:
  - {{name: h2, matches: [{{path: {{type: PathPrefix, value: /h2}}}}], backendRefs: [{{name: b2}}]}}
  - {{name: r, backendRefs: [{{name: b}}]}}
services:
  - {{name: b, endpoints: [\"{0}\"], mesh: {{spiffeId: \"{1}\"}}, healthCheck: {{interval: 100ms, timeout: 100ms, http: {{path: /healthz}}}}}}
  - {{name: b2, endpoints: [\"{0}\"], protocol: HTTP2, mesh: {{spiffeId: \"{TD}/*\"}}}}
",
        b.addr("in"),
        id("b")
    );
    let a = MeshGateway::start(&yaml, Some(ca.identity(&id("a"), &[&ca]))).await;

    // The HTTP health checks of the service go over mesh mTLS too.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while app.health_checks() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no health check arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let checks = app.health_checks();
    let (status, body) = get(a.addr("out"), "/hello").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"backend\":\"app\""), "{body}");
    let (status, body) = get(a.addr("out"), "/h2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.hits(), 2);

    let mut lines = Vec::new();
    for n in checks + 2.. {
        lines = b.log_lines(n).await;
        lines.retain(|l| l["path"] != "/healthz");
        if lines.len() >= 2 || n > checks + 200 {
            break;
        }
    }
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        assert_eq!(line["client_cert"], id("a").as_str(), "{line}");
    }
    assert_eq!(lines[0]["protocol"], "HTTP/1.1", "{}", lines[0]);
    assert_eq!(lines[1]["protocol"], "HTTP/2.0", "{}", lines[1]);
    a.gateway.shutdown().await;
    b.gateway.shutdown().await;
}

#[tokio::test]
async fn strict_refuses_plaintext_foreign_expired_and_unlisted_peers() {
    let ca = MeshCa::new("strict");
    let foreign = MeshCa::new("foreign");
    let app = Backend::start("app").await;
    let mesh = format!("{{allowedPeers: [\"{}\", \"{TD}/trusted-*\"]}}", id("a"));
    let b = MeshGateway::start(
        &inbound(&mesh, app.addr),
        Some(ca.identity(&id("b"), &[&ca])),
    )
    .await;
    let addr = b.addr("in");

    let (ok, out) = curl(&[&format!("http://{addr}/")]).await;
    assert!(!ok, "plaintext must be refused: {out}");
    b.wait_metric(&failures("in", "not_tls", 1)).await;

    let err = mtls_get(addr, None).await.expect_err("no certificate");
    b.wait_metric(&failures("in", "no_certificate", 1)).await;
    let err2 = mtls_get(addr, Some(&foreign.svid(&id("a"))))
        .await
        .expect_err("foreign CA");
    b.wait_metric(&failures("in", "bad_certificate", 1)).await;
    mtls_get(addr, Some(&ca.expired_svid(&id("a"))))
        .await
        .expect_err("expired");
    b.wait_metric(&failures("in", "bad_certificate", 2)).await;
    mtls_get(addr, Some(&ca.svid(&id("mallory"))))
        .await
        .expect_err("not allowed");
    b.wait_metric(&failures("in", "peer_not_allowed", 1)).await;

    mtls_get(addr, Some(&ca.svid(&id("a"))))
        .await
        .unwrap_or_else(|e| panic!("a is allowed ({err}; {err2}): {e}"));
    mtls_get(addr, Some(&ca.svid(&id("trusted-x"))))
        .await
        .expect("trusted-* is allowed");
    assert_eq!(app.hits(), 2);
    b.gateway.shutdown().await;
}

#[tokio::test]
async fn a_refuses_an_endpoint_with_the_wrong_spiffe_id() {
    let ca = MeshCa::new("wrong-id");
    let app = Backend::start("app").await;
    // C answers with identity sa/c where A expects sa/b.
    let c = MeshGateway::start(
        &inbound("{}", app.addr),
        Some(ca.identity(&id("c"), &[&ca])),
    )
    .await;
    let a = MeshGateway::start(
        &outbound(c.addr("in"), &id("b"), ""),
        Some(ca.identity(&id("a"), &[&ca])),
    )
    .await;
    let (status, body) = get(a.addr("out"), "/").await;
    assert_eq!(status, 503, "{body}");
    let lines = a.log_lines(1).await;
    assert_eq!(
        lines[0]["reason"], "upstream_connect_failure",
        "{}",
        lines[0]
    );
    assert_eq!(app.hits(), 0);
    a.gateway.shutdown().await;
    c.gateway.shutdown().await;
}

#[tokio::test]
async fn permissive_serves_plaintext_and_mtls_on_one_port() {
    let ca = MeshCa::new("permissive");
    let app = Backend::start("app").await;
    let b = MeshGateway::start(
        &inbound("{mode: PERMISSIVE}", app.addr),
        Some(ca.identity(&id("b"), &[&ca])),
    )
    .await;
    let addr = b.addr("in");
    let (ok, out) = curl(&[&format!("http://{addr}/plain")]).await;
    assert!(ok && out.contains("\"backend\":\"app\""), "{out}");
    mtls_get(addr, Some(&ca.svid(&id("a"))))
        .await
        .expect("mTLS on the same port");
    // TLS still means mTLS.
    mtls_get(addr, None)
        .await
        .expect_err("TLS without a certificate");
    b.wait_metric(&failures("in", "no_certificate", 1)).await;
    let lines = b.log_lines(2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0]["client_cert"].is_null(), "{}", lines[0]);
    assert_eq!(lines[1]["client_cert"], id("a").as_str());
    b.gateway.shutdown().await;
}

#[tokio::test]
async fn tcp_listeners_tunnel_bytes_over_mesh_mtls() {
    let ca = MeshCa::new("l4");
    let app = Backend::start("app").await;
    let b = MeshGateway::start(
        &format!(
            "listeners: [{{name: in, address: \"127.0.0.1:0\", protocol: TCP, l4: {{service: app}}, mesh: {{}}}}]
services: [{{name: app, endpoints: [\"{}\"]}}]
",
            app.addr
        ),
        Some(ca.identity(&id("b"), &[&ca])),
    )
    .await;
    let a = MeshGateway::start(
        &format!(
            "listeners: [{{name: out, address: \"127.0.0.1:0\", protocol: TCP, l4: {{service: b}}}}]
services: [{{name: b, endpoints: [\"{}\"], mesh: {{spiffeId: \"{}\"}}}}]
",
            b.addr("in"),
            id("b")
        ),
        Some(ca.identity(&id("a"), &[&ca])),
    )
    .await;
    let (ok, out) = curl(&[&format!("http://{}/over-l4", a.addr("out"))]).await;
    assert!(ok && out.contains("\"backend\":\"app\""), "{out}");
    // Plaintext straight to B's TCP mesh listener is refused.
    let (ok, _) = curl(&[&format!("http://{}/", b.addr("in"))]).await;
    assert!(!ok);
    b.wait_metric(&failures("in", "not_tls", 1)).await;
    assert_eq!(app.hits(), 1);
    a.gateway.shutdown().await;
    b.gateway.shutdown().await;
}

#[tokio::test]
async fn mesh_without_an_identity_is_refused() {
    let app = Backend::start("app").await;
    let err = MeshGateway::try_start(&inbound("{}", app.addr), None)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("workload identity"), "{err}");
    let err = MeshGateway::try_start(&outbound(app.addr, &id("b"), ""), None)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("workload identity"), "{err}");
    // A running gateway without one refuses such a config and keeps serving.
    let plain = format!(
        "listeners: [{{name: out, address: \"127.0.0.1:0\"}}]
routes: [{{name: r, backendRefs: [{{name: app}}]}}]
services: [{{name: app, endpoints: [\"{}\"]}}]
",
        app.addr
    );
    let g = MeshGateway::start(&plain, None).await;
    let config = meshgate_config::parse_str(&outbound(app.addr, &id("b"), ""), "x.yaml").unwrap();
    let err = g.gateway.apply(config).await.expect_err("refused");
    assert!(err.to_string().contains("workload identity"), "{err}");
    assert_eq!(get(g.addr("out"), "/").await.0, 200);
    g.gateway.shutdown().await;
}

#[tokio::test]
async fn rotation_under_steady_traffic_fails_no_request() {
    let ca = MeshCa::new("rotate");
    let app = Backend::start("app").await;
    let id_b = ca.identity(&id("b"), &[&ca]);
    let id_a = ca.identity(&id("a"), &[&ca]);
    let b = MeshGateway::start(&inbound("{}", app.addr), Some(id_b.clone())).await;
    // A also calls a probe backend that records A's client certificate; no
    // pooling there, so every request is a new handshake.
    let probe_verifier = SeeClients::new(&ca);
    let probe = Backend::start_tls(
        "probe",
        probe_verifier.server_config(&ca.svid(&id("probe"))),
    )
    .await;
    let yaml = format!(
        "listeners: [{{name: out, address: \"127.0.0.1:0\"}}]
routes:
  - {{name: p, matches: [{{path: {{type: PathPrefix, value: /probe}}}}], backendRefs: [{{name: probe}}]}}
  - {{name: r, backendRefs: [{{name: b}}]}}
services:
  - {{name: b, endpoints: [\"{}\"], mesh: {{spiffeId: \"{}\"}}}}
  - {{name: probe, endpoints: [\"{}\"], pool: {{maxIdlePerEndpoint: 0}}, mesh: {{spiffeId: \"{}\"}}}}
",
        b.addr("in"),
        id("b"),
        probe.addr,
        id("probe")
    );
    let a = MeshGateway::start(&yaml, Some(id_a.clone())).await;
    let out = a.addr("out");

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            // One keep-alive client each.
            let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            while !stop.load(Ordering::Relaxed) {
                let uri = format!("http://{out}/steady").parse().unwrap();
                match client.get(uri).await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.into_body().collect().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let (mut last_a, mut last_b) = (None, None);
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (sa, sb) = (ca.svid(&id("a")), ca.svid(&id("b")));
        id_a.rotate(sa.chain(), sa.key()).expect("rotate a");
        id_b.rotate(sb.chain(), sb.key()).expect("rotate b");
        (last_a, last_b) = (Some(sa), Some(sb));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(ok > 40, "too little traffic to mean anything: {ok}");

    // New connections present the newest certificates: B to a fresh client...
    let shown = mtls_get(b.addr("in"), Some(&ca.svid(&id("a"))))
        .await
        .expect("fresh mTLS to B");
    assert_eq!(
        shown,
        last_b.unwrap().der,
        "B presents its newest certificate"
    );
    // ...and A to the probe.
    let (status, body) = get(out, "/probe").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(probe_verifier.last(), Some(last_a.unwrap().der));
    a.gateway.shutdown().await;
    b.gateway.shutdown().await;
}

#[tokio::test]
async fn ca_rotation_with_overlap_then_the_old_ca_is_refused() {
    let (old, new) = (MeshCa::new("ca-old"), MeshCa::new("ca-new"));
    let app = Backend::start("app").await;
    let id_b = old.identity(&id("b"), &[&old, &new]);
    let id_a = old.identity(&id("a"), &[&old, &new]);
    let b = MeshGateway::start(&inbound("{}", app.addr), Some(id_b.clone())).await;
    // No pooling: every request is a new handshake under the current bundles.
    let extra =
        ", pool: {maxIdlePerEndpoint: 0}, retryBudget: {percent: 0, minRetriesPerSecond: 0}";
    let a = MeshGateway::start(&outbound(b.addr("in"), &id("b"), extra), Some(id_a.clone())).await;
    let out = a.addr("out");
    assert_eq!(get(out, "/").await.0, 200);

    // B moves to the new CA; A still has its old-CA certificate: both trust both.
    let sb = new.svid(&id("b"));
    id_b.rotate(sb.chain(), sb.key()).unwrap();
    assert_eq!(get(out, "/").await.0, 200);
    let shown = mtls_get(b.addr("in"), Some(&old.svid(&id("a"))))
        .await
        .unwrap();
    assert_eq!(shown, sb.der);

    // The overlap ends on B: A's old-CA certificate is refused.
    id_b.set_trust_bundle(vec![new.der()]).unwrap();
    let (status, body) = get(out, "/").await;
    assert!(status >= 500, "{status} {body}");
    b.wait_metric(&failures("in", "bad_certificate", 1)).await;
    // Once A has a new-CA certificate too, they talk again.
    let sa = new.svid(&id("a"));
    id_a.rotate(sa.chain(), sa.key()).unwrap();
    assert_eq!(get(out, "/").await.0, 200);
    // Three through A, one from the test's own mTLS client.
    assert_eq!(app.hits(), 4);
    a.gateway.shutdown().await;
    b.gateway.shutdown().await;
}

/// B's TCP mesh listener with `meshAuthorization` allowing only `allowed`.
fn tcp_inbound_allowing(app: SocketAddr, allowed: &str) -> String {
    format!(
        "listeners: [{{name: in, address: \"127.0.0.1:0\", protocol: TCP, l4: {{service: app}}, mesh: {{}},
  meshAuthorization: {{defaultAction: DENY, rules: [{{name: only, action: ALLOW, from: [{{spiffeId: \"{allowed}\"}}]}}]}}}}]
services: [{{name: app, endpoints: [\"{app}\"]}}]
"
    )
}

/// A TCP (L4) gateway `out` in front of B's listener, with identity `sa`.
async fn tcp_caller(ca: &MeshCa, sa: &str, b: SocketAddr) -> MeshGateway {
    MeshGateway::start(
        &format!(
            "listeners: [{{name: out, address: \"127.0.0.1:0\", protocol: TCP, l4: {{service: b}}}}]
services: [{{name: b, endpoints: [\"{b}\"], mesh: {{spiffeId: \"{}\"}}}}]
",
            id("b")
        ),
        Some(ca.identity(&id(sa), &[ca])),
    )
    .await
}

/// One HTTP/1.1 keep-alive exchange on an open TCP stream; false if the stream
/// was closed instead of answered.
async fn exchange(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream
        .write_all(b"GET /l4 HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => buf[..n].starts_with(b"HTTP/1.1 200"),
        _ => false,
    }
}

#[tokio::test]
async fn tcp_mesh_listeners_enforce_and_recheck_mesh_authorization() {
    let ca = MeshCa::new("l4-authz");
    let app = Backend::start("app").await;
    let b = MeshGateway::start(
        &tcp_inbound_allowing(app.addr, &id("a")),
        Some(ca.identity(&id("b"), &[&ca])),
    )
    .await;
    let a = tcp_caller(&ca, "a", b.addr("in")).await;
    let c = tcp_caller(&ca, "c", b.addr("in")).await;

    // A is allowed and keeps its connection open; C's is refused.
    let mut open = tokio::net::TcpStream::connect(a.addr("out")).await.unwrap();
    assert!(exchange(&mut open).await, "A allowed over L4 mesh mTLS");
    let mut refused = tokio::net::TcpStream::connect(c.addr("out")).await.unwrap();
    assert!(
        !exchange(&mut refused).await,
        "C denied by meshAuthorization"
    );
    b.wait_metric("meshgate_mesh_authz_denied_total{listener=\"in\",rule=\"defaultAction\",stage=\"connection\"} 1")
        .await;

    // A reload that allows only C closes A's open tunnel.
    let next =
        meshgate_config::parse_str(&tcp_inbound_allowing(app.addr, &id("c")), "t.yaml").unwrap();
    b.gateway.apply(next).await.unwrap();
    assert!(
        !exchange(&mut open).await,
        "A's open tunnel closed after the reload"
    );
    let mut now = tokio::net::TcpStream::connect(c.addr("out")).await.unwrap();
    assert!(exchange(&mut now).await, "C allowed after the reload");
    // Open tunnels would hold the drain until its timeout.
    drop((open, refused, now));
    for g in [a, c, b] {
        g.gateway.shutdown().await;
    }
}
