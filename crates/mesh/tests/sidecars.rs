//! Three workloads in the mesh, in process: a control plane (config stream,
//! registry, the mesh CA's Identity service) on real TLS gRPC, three real HTTP
//! apps and a TCP echo server, and a sidecar beside each app — all on
//! 127.0.0.1 with their own ports. A's app calls B and C through its outbound
//! port by host name; the calls cross both sidecars with mTLS (B's sidecar logs
//! A's SPIFFE ID; C is an HTTP2 service, reached in HTTP/2). B's inbound port
//! refuses plaintext and a certificate from another CA, and accepts one of the
//! mesh. A TCP port of C is reached at L4, over mTLS. When B stops it
//! deregisters, and A's config follows (503 for b).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use meshgate_control::client::Backoff;
use meshgate_control::server::{ControlPlane, Options, Scope, Token, Tokens};
use meshgate_control::sidecar::Ports;
use meshgate_control::store::embedded::EmbeddedStore;
use meshgate_control::store::{NewRevision, Store};
use meshgate_core::filter::NoPolicies;
use meshgate_mesh::ca::{self, CaOptions, MeshCa};
use meshgate_mesh::sidecar::{Sidecar, SidecarSettings};
use meshgate_testkit::Backend;
use meshgate_testkit::certs::{TestCa, provider};
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, ServerTlsConfig};

const SIDECAR_TOKEN: &str = "sidecar-secret";
const REGISTRAR_TOKEN: &str = "registrar-secret";
const PATIENCE: Duration = Duration::from_secs(30);

struct Plane {
    url: String,
    tls_ca: TestCa,
    store: Arc<EmbeddedStore>,
    _dir: tempfile::TempDir,
}

impl Plane {
    async fn start() -> Plane {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("control");
        let store = EmbeddedStore::open(&data, 10).unwrap();
        let cp = ControlPlane::start(store.clone(), options());
        let mesh = MeshCa::open(CaOptions {
            data_dir: data.clone(),
            trust_domain: "cluster.local".into(),
            cert_ttl: ca::DEFAULT_CERT_TTL,
            max_cert_ttl: ca::DEFAULT_MAX_CERT_TTL,
            intermediate: None,
        })
        .unwrap();
        let tls_ca = TestCa::new("sidecars");
        let cert = tls_ca.server_cert("control", &["localhost", "127.0.0.1"]);
        let routes =
            cp.routes()
                .add_service(ca::service(mesh, cp.options.tokens.clone(), cp.stopping()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let server = tonic::transport::Server::builder()
            .tls_config(
                ServerTlsConfig::new().identity(Identity::from_pem(&cert.cert_pem, &cert.key_pem)),
            )
            .unwrap()
            .add_routes(routes)
            .serve_with_incoming(TcpIncoming::from(listener));
        tokio::spawn(async move {
            let _cp = cp;
            server.await.unwrap();
        });
        Plane {
            url,
            tls_ca,
            store,
            _dir: dir,
        }
    }

    fn settings(&self, service: &str, app: u16, dir: &Path) -> SidecarSettings {
        let (inbound, outbound) = (port_pair(), port_pair());
        SidecarSettings {
            control: self.url.clone(),
            control_ca_pem: self.tls_ca.ca_pem().into_bytes(),
            token: SIDECAR_TOKEN.into(),
            registrar_token: Some(REGISTRAR_TOKEN.into()),
            service: service.into(),
            namespace: "default".into(),
            node_id: format!("{service}-1"),
            ports: Ports {
                inbound,
                outbound,
                app: Some(app),
            },
            advertise: format!("127.0.0.1:{inbound}"),
            data_dir: dir.join(service),
            access_log: Some(log_path(dir, service).display().to_string()),
            admin: None,
            registration_ttl: Duration::from_secs(10),
            certificate_ttl: None,
            backoff: Backoff {
                initial: Duration::from_millis(50),
                cap: Duration::from_millis(500),
            },
            build: "test".into(),
        }
    }
}

fn options() -> Options {
    let token = |name: &str, secret: &str, scope| Token {
        name: name.into(),
        secret: secret.into(),
        scope,
    };
    Options {
        replica: "cp-1".into(),
        auto_rollback: None,
        tokens: Tokens(vec![
            token(
                "sidecars",
                SIDECAR_TOKEN,
                Scope::Proxy {
                    role: "sidecar".into(),
                    services: vec![],
                },
            ),
            token(
                "registrar",
                REGISTRAR_TOKEN,
                Scope::Registrar { services: vec![] },
            ),
        ]),
    }
}

fn log_path(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("{service}-access.log"))
}

/// A port p such that p and p + 1 were free a moment ago (a sidecar with one
/// TCP port uses both).
fn port_pair() -> u16 {
    loop {
        let p = meshgate_testkit::free_port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// A TCP server echoing every byte back.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Waits until `sidecar` serves a config in which each of `services` has an
/// endpoint (the other sidecars registered and the control plane pushed it).
async fn until_endpoints(sidecar: &Sidecar, services: &[&str]) {
    until_config(sidecar, services, true).await
}

/// Waits until each of `services` has endpoints (`present`) or none in the config
/// `sidecar` serves.
async fn until_config(sidecar: &Sidecar, services: &[&str], present: bool) {
    let mut applied = sidecar.applied();
    let ready = || {
        let config = sidecar.gateway().snapshot().config.clone();
        services.iter().all(|name| {
            config
                .services
                .iter()
                .any(|s| s.name == *name && s.endpoints.is_empty() != present)
        })
    };
    tokio::time::timeout(PATIENCE, async {
        while !ready() {
            applied.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("endpoints of {services:?} never {present}"));
}

/// Sends a plain HTTP/1.1 request on `stream`; the whole answer (or what came
/// before the peer closed or failed).
async fn get<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, host: &str) -> String {
    let request = format!("GET /hello HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

async fn get_via(outbound: u16, host: &str) -> String {
    get(
        TcpStream::connect(("127.0.0.1", outbound)).await.unwrap(),
        host,
    )
    .await
}

/// Waits until the access log at `path` mentions `needle`.
async fn until_logged(path: &Path, needle: &str) {
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            if std::fs::read_to_string(path).is_ok_and(|s| s.contains(needle)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "{} never mentions {needle}:\n{}",
        path.display(),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

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
    let new = NewRevision {
        yaml: doc,
        source: "test".into(),
        note: String::new(),
    };
    plane.store.commit(0, new).await.unwrap();

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

/// A raw mTLS client presenting `key` (and trusting any server certificate, so
/// only the server's verdict on the client matters); the answer to one GET.
async fn mtls_get(addr: (&str, u16), key: Arc<CertifiedKey>) -> String {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_client_cert_resolver(Arc::new(Fixed(key)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("b.default").unwrap();
    match connector.connect(name, tcp).await {
        Ok(tls) => get(tls, "b").await,
        Err(_) => String::new(),
    }
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesClientCert for Fixed {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
