//! Authorization between services over real mTLS: an edge `HTTPS` listener with
//! `clientAuth: Require` and `meshAuthorization`, clients presenting certificates
//! with SPIFFE URI SANs from the test CA (rustls on both sides). Covers request
//! verdicts by caller, method and path (`403 mesh_denied` in the answer, the access
//! log, the denial metric and live `explain`), default deny, connections refused
//! after the handshake, east-west metrics and the service graph, and open
//! connections (HTTP/1.1 keep-alive, HTTP/2, WebSocket) closed when a reload
//! denies their caller while another caller's stay open.

mod common;
mod mesh_support;
mod websocket_support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshgate_testkit::Backend;
use meshgate_testkit::certs::{Issued, TestCa};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "explain-token";

/// Everything a test needs: the CA, the server certificate, one client
/// certificate per caller service.
struct Pki {
    ca: TestCa,
    server: Issued,
    a: Issued,
    b: Issued,
    c: Issued,
    d: Issued,
}

fn pki(tag: &str) -> Pki {
    let ca = TestCa::new(tag);
    let id = |sa: &str| format!("spiffe://td.test/ns/default/sa/{sa}");
    Pki {
        server: ca.server_cert("orders", &["orders.test"]),
        a: ca.client_cert("a", "a", &[&id("a")]),
        b: ca.client_cert("b", "b", &[&id("b")]),
        c: ca.client_cert("c", "c", &[&id("c")]),
        d: ca.client_cert("d", "d", &[&id("d")]),
        ca,
    }
}

/// An HTTPS listener requiring client certificates, with `authz` (YAML flow
/// mapping) as its `meshAuthorization`; `/ws` to the echo server, the rest to `app`.
fn config(p: &Pki, authz: &str, app: &Backend, echo: std::net::SocketAddr) -> String {
    format!(
        "admin: {{liveExplain: true, token: {TOKEN}}}
listeners:
  - name: web
    address: \"127.0.0.1:0\"
    protocol: HTTPS
    workload: orders.default
    tls:
      certificates: [{{certFile: \"{}\", keyFile: \"{}\"}}]
      clientAuth: {{caFile: \"{}\"}}
    meshAuthorization: {authz}
routes:
  - name: ws
    matches: [{{path: {{value: /ws}}}}]
    backendRefs: [{{name: echo}}]
  - name: app
    backendRefs: [{{name: app}}]
services:
  - {{name: app, endpoints: [\"{}\"]}}
  - {{name: echo, endpoints: [\"{echo}\"]}}
",
        p.server.cert.display(),
        p.server.key.display(),
        p.ca.ca_path().display(),
        app.addr,
    )
}

const RULES: &str = "{defaultAction: DENY, rules: [
      {name: a-and-b, action: ALLOW, from: [{service: a}, {service: b}]},
      {name: b-no-order-posts, action: DENY, from: [{service: b}], to: [{methods: [POST], paths: [/orders/*]}]},
      {name: c-public, action: ALLOW, from: [{spiffeId: \"spiffe://td.test/ns/default/sa/c\"}], to: [{methods: [GET], paths: [/public]}]}]}";

/// Requests over mTLS to the harness's HTTPS listener.
trait Mtls {
    async fn tls(&self, p: &Pki, who: &Issued, alpn: &str)
    -> std::io::Result<TlsStream<TcpStream>>;
}

impl Mtls for common::Harness {
    /// Connects with `who`'s certificate, offering `alpn`.
    async fn tls(
        &self,
        p: &Pki,
        who: &Issued,
        alpn: &str,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let mut config = (*p.ca.client_config(Some(who))).clone();
        config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
        let tcp = TcpStream::connect(self.addr).await?;
        let name = ServerName::try_from("orders.test").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    }
}

/// An HTTP/1.1 keep-alive connection of `who`; its driver task ends when it closes.
async fn h1(
    h: &common::Harness,
    p: &Pki,
    who: &Issued,
) -> Conn<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let tls = h.tls(p, who, "http/1.1").await.expect("handshake");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1");
    Conn {
        send,
        driver: tokio::spawn(async move {
            let _ = conn.await;
        }),
    }
}

async fn h2(
    h: &common::Harness,
    p: &Pki,
    who: &Issued,
) -> Conn<hyper::client::conn::http2::SendRequest<Empty<Bytes>>> {
    let tls = h.tls(p, who, "h2").await.expect("handshake");
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2");
    Conn {
        send,
        driver: tokio::spawn(async move {
            let _ = conn.await;
        }),
    }
}

/// One request of `who` on a fresh connection: (status, body, explain header).
async fn call(
    h: &common::Harness,
    p: &Pki,
    who: &Issued,
    method: Method,
    path: &str,
) -> (StatusCode, String, String) {
    let mut c = h1(h, p, who).await;
    let req = request(method, path)
        .header("x-meshgate-explain", TOKEN)
        .body(Empty::new())
        .unwrap();
    let resp = c.send.send_request(req).await.expect("answered");
    let status = resp.status();
    let explain = resp
        .headers()
        .get("x-meshgate-explain")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), explain)
}

struct Conn<S> {
    send: S,
    driver: tokio::task::JoinHandle<()>,
}

fn request(method: Method, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "orders.test")
}

async fn get_h1(
    c: &mut Conn<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>,
    path: &str,
) -> Result<StatusCode, hyper::Error> {
    c.send.ready().await?;
    let resp = c
        .send
        .send_request(request(Method::GET, path).body(Empty::new()).unwrap())
        .await?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    Ok(status)
}

async fn get_h2(
    c: &mut Conn<hyper::client::conn::http2::SendRequest<Empty<Bytes>>>,
    path: &str,
) -> Result<StatusCode, hyper::Error> {
    c.send.ready().await?;
    let uri = format!("https://orders.test{path}");
    let resp = c
        .send
        .send_request(Request::get(uri).body(Empty::new()).unwrap())
        .await?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    Ok(status)
}

/// The value of the sample starting with `prefix` (a metric name with labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn requests_are_judged_on_the_callers_identity_method_and_path() {
    let p = pki("authz-requests");
    let app = Backend::start("app").await;
    let echo = websocket_support::echo_server().await;
    let h = common::start(&config(&p, RULES, &app, echo.addr)).await;

    let (status, _, explain) = call(&h, &p, &p.a, Method::POST, "/orders/1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(explain.contains("meshAuthorization [MeshAuthorization]: continue - rule \"a-and-b\" allows spiffe://td.test/ns/default/sa/a"), "{explain}");

    // B may read orders but not create them.
    assert_eq!(
        call(&h, &p, &p.b, Method::GET, "/orders/1").await.0,
        StatusCode::OK
    );
    let (status, body, explain) = call(&h, &p, &p.b, Method::POST, "/orders/1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("\"error\":\"mesh_denied\""), "{body}");
    assert!(explain.contains("deny 403 mesh_denied - rule \"b-no-order-posts\" denies spiffe://td.test/ns/default/sa/b"), "{explain}");

    // C may only GET /public; anything else falls to the default deny.
    assert_eq!(
        call(&h, &p, &p.c, Method::GET, "/public").await.0,
        StatusCode::OK
    );
    let (status, _, explain) = call(&h, &p, &p.c, Method::GET, "/private").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        explain.contains("no rule matched spiffe://td.test/ns/default/sa/c: defaultAction denies"),
        "{explain}"
    );
    assert_eq!(
        call(&h, &p, &p.c, Method::POST, "/public").await.0,
        StatusCode::FORBIDDEN
    );

    // D can never be allowed anything: closed right after the handshake.
    let refused = match h.tls(&p, &p.d, "http/1.1").await {
        Err(_) => true,
        Ok(tls) => {
            match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tls)).await
            {
                Err(_) => true,
                Ok((mut send, conn)) => {
                    tokio::spawn(conn);
                    send.send_request(request(Method::GET, "/").body(Empty::new()).unwrap())
                        .await
                        .is_err()
                }
            }
        }
    };
    assert!(refused, "D's connection must be closed");

    let m = h.gateway.metrics().encode();
    let denied = |rule: &str, stage: &str| {
        sample(
            &m,
            &format!(
                "meshgate_mesh_authz_denied_total{{listener=\"web\",rule=\"{rule}\",stage=\"{stage}\"}}"
            ),
        )
    };
    assert_eq!(denied("b-no-order-posts", "request"), Some(1.0), "{m}");
    assert_eq!(denied("defaultAction", "request"), Some(2.0), "{m}");
    assert_eq!(denied("defaultAction", "connection"), Some(1.0), "{m}");
    let edge = |src: &str, class: &str| {
        sample(
            &m,
            &format!(
                "meshgate_mesh_requests_total{{source=\"{src}\",destination=\"orders.default\",code_class=\"{class}\"}}"
            ),
        )
    };
    assert_eq!(edge("a.default", "2xx"), Some(1.0), "{m}");
    assert_eq!(edge("b.default", "2xx"), Some(1.0));
    assert_eq!(edge("b.default", "4xx"), Some(1.0));
    assert_eq!(edge("c.default", "4xx"), Some(2.0));
    assert!(m.contains("meshgate_mesh_request_duration_seconds_count{source=\"c.default\",destination=\"orders.default\"} 3"), "{m}");

    let graph = h.gateway.metrics().mesh.graph();
    assert_eq!(
        graph.nodes,
        ["a.default", "b.default", "c.default", "orders.default"]
    );
    let c = graph
        .edges
        .iter()
        .find(|e| e.source == "c.default")
        .expect("edge from c");
    assert_eq!(
        (
            c.destination.as_str(),
            c.requests,
            c.client_errors,
            c.errors
        ),
        ("orders.default", 3, 2, 0)
    );
    assert!(c.p50_ms.is_some() && c.p99_ms.is_some());

    let lines = h.log_lines(6).await;
    assert_eq!(lines.len(), 6, "{lines:?}");
    let reasons: Vec<_> = lines
        .iter()
        .map(|l| l["reason"].as_str().unwrap_or("-").to_owned())
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| *r == "mesh_denied").count(),
        3,
        "{lines:?}"
    );
    h.gateway.shutdown().await;
}

#[tokio::test]
async fn open_connections_of_a_caller_denied_by_a_reload_are_closed() {
    let p = pki("authz-live");
    let app = Backend::start("app").await;
    let echo = websocket_support::echo_server().await;
    let open = "{rules: [{name: no-c, action: DENY, from: [{service: c}]}]}";
    let h = common::start(&config(&p, open, &app, echo.addr)).await;

    let mut a1 = h1(&h, &p, &p.a).await;
    let mut a2 = h2(&h, &p, &p.a).await;
    let mut b1 = h1(&h, &p, &p.b).await;
    let mut b2 = h2(&h, &p, &p.b).await;
    assert_eq!(get_h1(&mut a1, "/").await.unwrap(), StatusCode::OK);
    assert_eq!(get_h2(&mut a2, "/").await.unwrap(), StatusCode::OK);
    assert_eq!(get_h1(&mut b1, "/").await.unwrap(), StatusCode::OK);
    assert_eq!(get_h2(&mut b2, "/").await.unwrap(), StatusCode::OK);
    let tls = h.tls(&p, &p.a, "http/1.1").await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("wss://orders.test/ws", tls)
        .await
        .expect("WebSocket of A");
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));

    let deny_a = "{rules: [{name: no-c, action: DENY, from: [{service: c}]}, {name: no-a, action: DENY, from: [{service: a}]}]}";
    let next = meshgate_config::parse_str(&config(&p, deny_a, &app, echo.addr), "t.yaml").unwrap();
    let started = std::time::Instant::now();
    h.gateway.apply(next).await.expect("reload");

    let limit = Duration::from_secs(2);
    tokio::time::timeout(limit, &mut a1.driver)
        .await
        .expect("A's HTTP/1.1 connection closed")
        .unwrap();
    tokio::time::timeout(limit, &mut a2.driver)
        .await
        .expect("A's HTTP/2 connection closed")
        .unwrap();
    let ws_end = tokio::time::timeout(limit, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    });
    ws_end.await.expect("A's WebSocket closed");
    eprintln!(
        "A's connections closed {:?} after the reload",
        started.elapsed()
    );

    // B's connections were not touched and still serve.
    assert_eq!(get_h1(&mut b1, "/").await.unwrap(), StatusCode::OK);
    assert_eq!(get_h2(&mut b2, "/").await.unwrap(), StatusCode::OK);
    assert!(!b1.driver.is_finished() && !b2.driver.is_finished());
    // A new connection of A is refused at once.
    let mut again = h.tls(&p, &p.a, "http/1.1").await.ok();
    if let Some(tls) = again.take() {
        let r = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tls)).await;
        if let Ok((mut send, conn)) = r {
            tokio::spawn(conn);
            assert!(
                send.send_request(request(Method::GET, "/").body(Empty::new()).unwrap())
                    .await
                    .is_err()
            );
        }
    }
    let m = h.gateway.metrics().encode();
    let rechecked = sample(
        &m,
        "meshgate_mesh_authz_denied_total{listener=\"web\",rule=\"no-a\",stage=\"recheck\"}",
    );
    assert_eq!(rechecked, Some(3.0), "{m}");
    h.gateway.shutdown().await;
}

/// The same rules on a mesh listener (`listeners[].mesh`: mTLS with the workload
/// identity): a denied caller is closed after the handshake, an allowed caller's
/// keep-alive connection is closed when a reload denies it.
#[tokio::test]
async fn mesh_listeners_apply_the_rules_too() {
    use mesh_support::{MeshCa, MeshGateway, SeeServer, id, mtls_get, provider};
    let ca = MeshCa::new("authz");
    let app = Backend::start("app").await;
    let yaml = |authz: &str| {
        format!(
            "listeners: [{{name: in, address: \"127.0.0.1:0\", mesh: {{}}, workload: b.default, meshAuthorization: {authz}}}]
routes: [{{name: r, backendRefs: [{{name: app}}]}}]
services: [{{name: app, endpoints: [\"{}\"]}}]
",
            app.addr
        )
    };
    let open = "{rules: [{name: no-c, action: DENY, from: [{service: c}]}]}";
    let g = MeshGateway::start(&yaml(open), Some(ca.identity(&id("b"), &[&ca]))).await;
    let addr = g.addr("in");
    let a = ca.svid(&id("a"));
    mtls_get(addr, Some(&a)).await.expect("A is allowed");
    assert!(mtls_get(addr, Some(&ca.svid(&id("c")))).await.is_err());

    // A keep-alive connection of A, then a reload that denies A.
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SeeServer::default()));
    let mut config = builder.with_client_auth_cert(a.chain(), a.key()).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(addr.ip().to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    let mut keep = Conn {
        send,
        driver: tokio::spawn(async move {
            let _ = conn.await;
        }),
    };
    assert_eq!(get_h1(&mut keep, "/").await.unwrap(), StatusCode::OK);
    let deny_a = "{rules: [{name: no-a, action: DENY, from: [{spiffeIdPrefix: \"spiffe://test.local/ns/default/sa/a\"}]}]}";
    let next = meshgate_config::parse_str(&yaml(deny_a), "t.yaml").unwrap();
    g.gateway.apply(next).await.expect("reload");
    tokio::time::timeout(Duration::from_secs(2), &mut keep.driver)
        .await
        .expect("A's connection closed")
        .unwrap();
    assert!(mtls_get(addr, Some(&a)).await.is_err());
    let m = g.gateway.metrics().encode();
    let denied = |rule: &str, stage: &str| {
        sample(
            &m,
            &format!(
                "meshgate_mesh_authz_denied_total{{listener=\"in\",rule=\"{rule}\",stage=\"{stage}\"}}"
            ),
        )
    };
    assert_eq!(denied("no-c", "connection"), Some(1.0), "{m}");
    assert_eq!(denied("no-a", "recheck"), Some(1.0), "{m}");
    assert_eq!(denied("no-a", "connection"), Some(1.0), "{m}");
    let edge = "meshgate_mesh_requests_total{source=\"a.default\",destination=\"b.default\",code_class=\"2xx\"}";
    assert_eq!(sample(&m, edge), Some(2.0), "{m}");
    g.gateway.shutdown().await;
}
