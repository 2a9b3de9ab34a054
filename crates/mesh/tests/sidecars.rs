//! Three workloads in the mesh, in process: a control plane (config stream,
//! registry, the mesh CA's Identity service) on real TLS gRPC, three real HTTP
//! apps and a TCP echo server, and a sidecar beside each app — all on
//! 127.0.0.1 with their own ports. A's app calls B and C through its outbound
//! port by host name; the calls cross both sidecars with mTLS (B's sidecar logs
//! A's SPIFFE ID; C is an HTTP2 service, reached in HTTP/2). B's inbound port
//! refuses plaintext and a certificate from another CA, and accepts one of the
//! mesh. A TCP port of C is reached at L4, over mTLS. When B stops it
//! deregisters, and A's config follows (503 for b).

mod mesh_support;

use std::sync::Arc;

use mesh_support::*;
use meshgate_core::filter::NoPolicies;
use meshgate_mesh::sidecar::Sidecar;
use meshgate_testkit::Backend;
use meshgate_testkit::certs::{TestCa, provider};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sidecars_speak_mtls_and_refuse_strangers() {
    let plane = Plane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let apps = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let echo = echo_server().await;
    let doc = format!(
        "mesh:\n  services:\n    - {{name: a, ports: [{{port: 80}}]}}\n    - {{name: b, ports: [{{port: 80}}]}}\n    - {{name: c, ports: [{{port: 80, protocol: HTTP2}}, {{port: {}, protocol: TCP}}]}}\n",
        echo.port()
    );
    plane.commit(doc).await;

    let mut sidecars = Vec::new();
    for app in &apps {
        let settings = plane.settings(&app.name, app.addr.port(), dir.path());
        let started = Sidecar::start(settings.clone(), Arc::new(NoPolicies));
        let sidecar = tokio::time::timeout(PATIENCE, started)
            .await
            .expect("sidecar started in time")
            .unwrap_or_else(|e| panic!("sidecar {}: {e}", app.name));
        sidecars.push((settings, sidecar));
    }
    let (a, b) = (&sidecars[0], &sidecars[1]);
    assert_eq!(
        a.1.identity().spiffe_id().as_str(),
        "spiffe://cluster.local/ns/default/sa/a"
    );
    until_endpoints(
        &a.1,
        &[
            "b.default",
            "c.default",
            &format!("c.default:{}", echo.port()),
        ],
    )
    .await;

    // A's app calls B and C by name, through both sidecars.
    let answer = get_via(a.0.ports.outbound, "b").await;
    assert!(answer.contains("\"backend\":\"b\""), "{answer}");
    let answer = get_via(a.0.ports.outbound, "c.default.svc:80").await;
    assert!(answer.contains("\"backend\":\"c\""), "{answer}");
    // C is an HTTP2 service: HTTP/2 between the sidecars and to its app.
    assert!(answer.contains("\"version\":\"HTTP/2.0\""), "{answer}");
    // The destination sidecars saw A's verified identity.
    let a_id = "spiffe://cluster.local/ns/default/sa/a";
    until_logged(&log_path(dir.path(), "b"), a_id).await;
    until_logged(&log_path(dir.path(), "c"), a_id).await;
    // An unknown host is not sent anywhere.
    let answer = get_via(a.0.ports.outbound, "nobody").await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

    // C's TCP port, at L4: A's outbound port + 1 (the mesh's first TCP port).
    let mut tcp = TcpStream::connect(("127.0.0.1", a.0.ports.outbound + 1))
        .await
        .unwrap();
    tcp.write_all(b"ping over the mesh").await.unwrap();
    let mut back = [0u8; 18];
    tokio::time::timeout(PATIENCE, tcp.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&back, b"ping over the mesh");
    drop(tcp);
    // The hop was mTLS: C's inbound TCP port (inbound + 1) echoes nothing in plaintext.
    let c_tcp = ("127.0.0.1", sidecars[2].0.ports.inbound + 1);
    let mut plain = TcpStream::connect(c_tcp).await.unwrap();
    let _ = plain.write_all(b"plaintext ping").await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, plain.read_to_end(&mut got)).await;
    assert!(
        !got.starts_with(b"plaintext"),
        "echoed in plaintext: {got:?}"
    );

    // STRICT: plaintext to B's inbound port gets no answer.
    let inbound_b = ("127.0.0.1", b.0.ports.inbound);
    let answer = get(TcpStream::connect(inbound_b).await.unwrap(), "b").await;
    assert!(!answer.contains("HTTP/1.1"), "plaintext answered: {answer}");

    // A certificate of another CA (even with a mesh-looking SPIFFE ID) is refused…
    let foreign = TestCa::new("foreign");
    let cert = foreign.client_cert("intruder", "intruder", &[a_id]);
    let key = CertifiedKey::from_der(vec![cert.cert_der()], cert.key_der(), &provider()).unwrap();
    let answer = mtls_get(inbound_b, Arc::new(key)).await;
    assert!(
        !answer.contains("HTTP/1.1"),
        "foreign CA answered: {answer}"
    );
    // …while the same client with A's mesh certificate is served.
    let answer = mtls_get(inbound_b, a.1.identity().certified_key()).await;
    assert!(answer.contains("\"backend\":\"b\""), "{answer}");

    // B stops: it deregisters, A's config follows, and A answers for b itself.
    let mut sidecars = sidecars.into_iter();
    let (a, b, c) = (
        sidecars.next().unwrap(),
        sidecars.next().unwrap(),
        sidecars.next().unwrap(),
    );
    b.1.shutdown().await;
    until_config(&a.1, &["b.default"], false).await;
    let answer = get_via(a.0.ports.outbound, "b").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    a.1.shutdown().await;
    c.1.shutdown().await;
}
