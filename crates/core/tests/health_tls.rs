//! Active health checks of services with `tls`, against real rustls backends: HTTP
//! checks over TLS keep an endpoint with a verifiable certificate in and take one
//! whose certificate does not verify out; they present the service's client
//! certificate to an upstream that requires one, and speak HTTP/2 when ALPN picks
//! it. gRPC checks over TLS (ALPN h2) against real tonic-health servers served by
//! hyper over tokio-rustls: NOT_SERVING goes out and comes back when SERVING, and a
//! server whose certificate does not verify goes out.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshgate_core::upstream::EndpointStatus;
use meshgate_testkit::Backend;
use meshgate_testkit::certs::{Issued, TestCa, provider};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

const WAIT: Duration = Duration::from_secs(5);

/// One route to service `svc` with `endpoints`, then `service_extra` lines.
fn config(endpoints: &[SocketAddr], service_extra: &str) -> String {
    let eps: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
routes:
  - name: r
    backendRefs: [{{name: svc}}]
services:
  - name: svc
    endpoints: [{}]
{service_extra}",
        eps.join(", ")
    )
}

/// `tls:` trusting `ca`, verifying `backend.test`, plus `more` settings.
fn tls_lines(ca: &TestCa, more: &str) -> String {
    format!(
        "    tls: {{caFile: \"{}\", serverName: backend.test{more}}}\n",
        ca.ca_path().display()
    )
}

const HTTP_CHECK: &str = "    healthCheck:
      interval: 200ms
      timeout: 200ms
      healthyThreshold: 1
      unhealthyThreshold: 2
      http: {path: /healthz}
";

fn status(h: &common::Harness) -> Vec<EndpointStatus> {
    h.gateway.snapshot().upstreams["svc"].endpoint_status()
}

#[tokio::test]
async fn http_check_over_tls_verifies_the_certificate() {
    let ca = TestCa::new("health-tls");
    let other = TestCa::new("health-tls-other");
    let good_cert = ca.server_cert("good", &["backend.test"]);
    let bad_cert = other.server_cert("bad", &["backend.test"]);
    let good = Backend::start_tls("good", good_cert.server_config(&["http/1.1"])).await;
    let bad = Backend::start_tls("bad", bad_cert.server_config(&["http/1.1"])).await;
    let h = common::start(&config(
        &[good.addr, bad.addr],
        &format!("{}{HTTP_CHECK}", tls_lines(&ca, "")),
    ))
    .await;

    common::wait_for("the bad endpoint out", WAIT, || !status(&h)[1].healthy).await;
    // The good endpoint answered checks over TLS, and stays in.
    common::wait_for("checks over TLS", WAIT, || good.health_checks() >= 3).await;
    assert!(status(&h)[0].healthy);
    // The bad one refused every handshake: no check reached it as HTTP.
    assert!(bad.tls_failures() >= 2, "{}", bad.tls_failures());
    assert_eq!(bad.health_checks(), 0);
    for _ in 0..10 {
        let r = h.get("example.com", "/").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.backend(), "good");
    }

    // An HTTP status failure still counts over TLS, and recovery too.
    good.set_health_failing(true);
    common::wait_for("good out on 503", WAIT, || !status(&h)[0].healthy).await;
    good.set_health_failing(false);
    common::wait_for("good back", WAIT, || status(&h)[0].healthy).await;
}

#[tokio::test]
async fn http_check_presents_the_client_certificate() {
    let ca = TestCa::new("health-mtls");
    let cert = ca.server_cert("backend", &["backend.test"]);
    let gateway_cert = ca.client_cert("gateway", "meshgate", &[]);
    let backend = Backend::start_tls("mtls", mtls_server(&ca, &cert)).await;
    let with_cert = format!(
        ", clientCertFile: \"{}\", clientKeyFile: \"{}\"",
        gateway_cert.cert.display(),
        gateway_cert.key.display()
    );
    let h = common::start(&config(
        &[backend.addr],
        &format!("{}{HTTP_CHECK}", tls_lines(&ca, &with_cert)),
    ))
    .await;
    common::wait_for("checks with the client certificate", WAIT, || {
        backend.health_checks() >= 3
    })
    .await;
    assert!(status(&h)[0].healthy);
    assert_eq!(backend.tls_failures(), 0);

    // The same service without the client certificate: refused, so out.
    let before = backend.tls_failures();
    let h2 = common::start(&config(
        &[backend.addr],
        &format!("{}{HTTP_CHECK}", tls_lines(&ca, "")),
    ))
    .await;
    common::wait_for("out without a client certificate", WAIT, || {
        !status(&h2)[0].healthy
    })
    .await;
    assert!(backend.tls_failures() > before);
}

#[tokio::test]
async fn http_check_speaks_http2_when_alpn_chooses_it() {
    let ca = TestCa::new("health-h2");
    let cert = ca.server_cert("backend", &["backend.test"]);
    // An h2-only TLS backend: an HTTP/1.1 check would fail on it.
    let backend = Backend::start_tls("h2", cert.server_config(&["h2"])).await;
    let h = common::start(&config(
        &[backend.addr],
        &format!("    protocol: HTTP2\n{}{HTTP_CHECK}", tls_lines(&ca, "")),
    ))
    .await;
    common::wait_for("h2 checks", WAIT, || backend.health_checks() >= 3).await;
    assert!(status(&h)[0].healthy);
    backend.set_health_failing(true);
    common::wait_for("out on 503 over h2", WAIT, || !status(&h)[0].healthy).await;
}

#[tokio::test]
async fn grpc_check_over_tls_follows_the_serving_status() {
    let ca = TestCa::new("health-grpc");
    let cert = ca.server_cert("grpc", &["backend.test"]);
    let a = GrpcTls::start(cert.server_config(&["h2"]), &["greeter"]).await;
    let b = GrpcTls::start(cert.server_config(&["h2"]), &["greeter"]).await;
    let h = common::start(&config(
        &[a.addr, b.addr],
        &format!(
            "    protocol: HTTP2
{}    healthCheck:
      interval: 200ms
      timeout: 200ms
      healthyThreshold: 2
      unhealthyThreshold: 2
      grpc: {{service: greeter}}
",
            tls_lines(&ca, "")
        ),
    ))
    .await;
    common::wait_for("checks over TLS", WAIT, || {
        a.handshakes.load(Ordering::SeqCst) >= 3 && b.handshakes.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert!(status(&h).iter().all(|s| s.healthy));

    b.reporter
        .set_service_status("greeter", ServingStatus::NotServing)
        .await;
    common::wait_for("b out", WAIT, || !status(&h)[1].healthy).await;
    assert!(status(&h)[0].healthy, "a still passes");

    b.reporter
        .set_service_status("greeter", ServingStatus::Serving)
        .await;
    common::wait_for("b back", WAIT, || status(&h)[1].healthy).await;
    assert_eq!(a.tls_failures.load(Ordering::SeqCst), 0);
    assert_eq!(b.tls_failures.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn grpc_check_over_tls_refuses_an_unverified_server() {
    let ca = TestCa::new("health-grpc-bad");
    let other = TestCa::new("health-grpc-other");
    let good = GrpcTls::start(
        ca.server_cert("good", &["backend.test"])
            .server_config(&["h2"]),
        &["greeter"],
    )
    .await;
    let bad = GrpcTls::start(
        other
            .server_cert("bad", &["backend.test"])
            .server_config(&["h2"]),
        &["greeter"],
    )
    .await;
    // An HTTP1 service: the gRPC check still offers ALPN h2.
    let h = common::start(&config(
        &[good.addr, bad.addr],
        &format!(
            "{}    healthCheck:
      interval: 200ms
      timeout: 200ms
      healthyThreshold: 1
      unhealthyThreshold: 2
      grpc: {{service: greeter}}
",
            tls_lines(&ca, "")
        ),
    ))
    .await;
    common::wait_for("bad out", WAIT, || !status(&h)[1].healthy).await;
    common::wait_for("good checked", WAIT, || {
        good.handshakes.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert!(status(&h)[0].healthy);
    assert!(bad.tls_failures.load(Ordering::SeqCst) >= 2);
    assert_eq!(bad.handshakes.load(Ordering::SeqCst), 0);
}

/// A rustls server config for `cert` that requires a client certificate of `ca`.
fn mtls_server(ca: &TestCa, cert: &Issued) -> Arc<rustls::ServerConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.ca_der()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.cert_der()], cert.key_der())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A tonic-health server over TLS: tonic's service served by hyper's HTTP/2
/// server on tokio-rustls connections (the workspace's tonic has no TLS feature).
struct GrpcTls {
    addr: SocketAddr,
    reporter: HealthReporter,
    /// Completed and failed TLS handshakes.
    handshakes: Arc<AtomicUsize>,
    tls_failures: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcTls {
    async fn start(config: Arc<rustls::ServerConfig>, serving: &[&str]) -> GrpcTls {
        let (reporter, service) = tonic_health::server::health_reporter();
        for name in serving {
            reporter
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let handshakes = Arc::new(AtomicUsize::new(0));
        let tls_failures = Arc::new(AtomicUsize::new(0));
        let (ok, failed) = (handshakes.clone(), tls_failures.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, service) = (acceptor.clone(), service.clone());
                let (ok, failed) = (ok.clone(), failed.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        failed.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    ok.fetch_add(1, Ordering::SeqCst);
                    let hyper_service =
                        hyper::service::service_fn(move |req: http::Request<Incoming>| {
                            let mut service = service.clone();
                            async move { tower::Service::call(&mut service, req).await }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .http2_only()
                        .serve_connection(TokioIo::new(tls), hyper_service)
                        .await;
                });
            }
        });
        GrpcTls {
            addr,
            reporter,
            handshakes,
            tls_failures,
            task,
        }
    }
}

impl Drop for GrpcTls {
    fn drop(&mut self) {
        self.task.abort();
    }
}
