//! Shared set-up of the in-process mesh tests (sidecars.rs, mesh_policy.rs,
//! ingress.rs): a control plane with the mesh CA on real TLS gRPC, sidecar
//! settings on free ports, and raw HTTP/1.1 and mTLS clients. Each test binary
//! uses a different part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use meshgate_control::client::Backoff;
use meshgate_control::server::{ControlPlane, Options, Scope, Token, Tokens};
use meshgate_control::sidecar::Ports;
use meshgate_control::store::embedded::EmbeddedStore;
use meshgate_control::store::{NewRevision, Store};
use meshgate_mesh::ca::{self, CaOptions, MeshCa};
use meshgate_mesh::sidecar::{Sidecar, SidecarSettings};
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

pub const SIDECAR_TOKEN: &str = "sidecar-secret";
pub const REGISTRAR_TOKEN: &str = "registrar-secret";
pub const GATEWAY_TOKEN: &str = "gateway-secret";
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running control plane with the mesh CA.
pub struct Plane {
    pub url: String,
    pub tls_ca: TestCa,
    pub store: Arc<EmbeddedStore>,
    /// The mesh CA (for rotation steps).
    pub ca: Arc<MeshCa>,
    _dir: tempfile::TempDir,
}

impl Plane {
    pub async fn start() -> Plane {
        Plane::start_with_ttl(ca::DEFAULT_CERT_TTL).await
    }

    /// A control plane whose mesh CA issues certificates for `cert_ttl` (control.yaml
    /// `mesh.certTtl`).
    pub async fn start_with_ttl(cert_ttl: Duration) -> Plane {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("control");
        let store = EmbeddedStore::open(&data, 10).unwrap();
        let cp = ControlPlane::start(store.clone(), options());
        let mesh = MeshCa::open(CaOptions {
            data_dir: data.clone(),
            trust_domain: "cluster.local".into(),
            cert_ttl,
            max_cert_ttl: ca::DEFAULT_MAX_CERT_TTL,
            intermediate: None,
        })
        .unwrap();
        let tls_ca = TestCa::new("sidecars");
        let cert = tls_ca.server_cert("control", &["localhost", "127.0.0.1"]);
        let routes = cp.routes().add_service(ca::service(
            mesh.clone(),
            cp.options.tokens.clone(),
            cp.stopping(),
        ));
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
            ca: mesh,
            _dir: dir,
        }
    }

    /// Commits `yaml` as the next document version (what `meshgate apply` does).
    pub async fn commit(&self, yaml: String) -> u64 {
        let current = self
            .store
            .config()
            .borrow()
            .as_ref()
            .map_or(0, |r| r.version);
        let new = NewRevision {
            yaml,
            source: "test".into(),
            note: String::new(),
        };
        self.store.commit(current, new).await.unwrap().version
    }

    pub fn settings(&self, service: &str, app: u16, dir: &Path) -> SidecarSettings {
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
            backoff: fast_backoff(),
            build: "test".into(),
        }
    }
}

pub fn fast_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(50),
        cap: Duration::from_millis(500),
    }
}

fn options() -> Options {
    let token = |name: &str, secret: &str, scope| Token {
        name: name.into(),
        secret: secret.into(),
        scope,
    };
    let proxy = |role: &str| Scope::Proxy {
        role: role.into(),
        services: vec![],
    };
    Options {
        replica: "cp-1".into(),
        auto_rollback: None,
        tokens: Tokens(vec![
            token("sidecars", SIDECAR_TOKEN, proxy("sidecar")),
            token("gateways", GATEWAY_TOKEN, proxy("gateway")),
            token(
                "registrar",
                REGISTRAR_TOKEN,
                Scope::Registrar { services: vec![] },
            ),
        ]),
    }
}

pub fn log_path(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("{service}-access.log"))
}

/// A port p such that p and p + 1 were free a moment ago (a sidecar with one
/// TCP port uses both).
pub fn port_pair() -> u16 {
    meshgate_testkit::free_ports(2)
}

/// A TCP server echoing every byte back.
pub async fn echo_server() -> SocketAddr {
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

/// Starts one sidecar per settings, in order.
pub async fn start_sidecars(settings: Vec<SidecarSettings>) -> Vec<(SidecarSettings, Sidecar)> {
    let mut sidecars = Vec::new();
    for s in settings {
        let started = Sidecar::start(s.clone(), meshgate_policy::Policies::compiler());
        let sidecar = tokio::time::timeout(PATIENCE, started)
            .await
            .expect("sidecar started in time")
            .unwrap_or_else(|e| panic!("sidecar {}: {e}", s.service));
        sidecars.push((s, sidecar));
    }
    sidecars
}

/// Waits until `sidecar` serves a config in which each of `services` has an
/// endpoint (the other sidecars registered and the control plane pushed it).
pub async fn until_endpoints(sidecar: &Sidecar, services: &[&str]) {
    until_config(sidecar, services, true).await
}

/// Waits until each of `services` has endpoints (`present`) or none in the config
/// `sidecar` serves.
pub async fn until_config(sidecar: &Sidecar, services: &[&str], present: bool) {
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

/// Waits until `sidecar` serves (has applied and ACKed) document `version`.
pub async fn until_version(sidecar: &Sidecar, version: u64) {
    let mut applied = sidecar.applied();
    // Snapshot versions start with the document version ("7" or "7.<n>").
    let at = |v: &Option<String>| {
        v.as_deref()
            .and_then(|v| v.split(['.', '-', '+']).next())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| v >= version)
    };
    tokio::time::timeout(PATIENCE, applied.wait_for(at))
        .await
        .unwrap_or_else(|_| panic!("document {version} never applied"))
        .unwrap();
}

/// Sends a plain HTTP/1.1 request on `stream`; the whole answer (or what came
/// before the peer closed or failed).
pub async fn get<S: AsyncRead + AsyncWrite + Unpin>(stream: S, host: &str) -> String {
    get_with(stream, host, "").await
}

/// [`get`] with extra header lines (each ending in `\r\n`).
pub async fn get_with<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    headers: &str,
) -> String {
    let request =
        format!("GET /hello HTTP/1.1\r\nhost: {host}\r\n{headers}connection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

pub async fn get_via(outbound: u16, host: &str) -> String {
    get(
        TcpStream::connect(("127.0.0.1", outbound)).await.unwrap(),
        host,
    )
    .await
}

/// Waits until the access log at `path` mentions `needle`.
pub async fn until_logged(path: &Path, needle: &str) {
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

/// The value of the Prometheus sample `name{labels}` in `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// An mTLS client presenting `key` and trusting any server certificate (so only
/// the server's verdict on the client matters).
pub fn mtls_connector(key: Arc<CertifiedKey>) -> tokio_rustls::TlsConnector {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_client_cert_resolver(Arc::new(Fixed(key)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// The answer to one GET over mTLS presenting `key` ("" when refused).
pub async fn mtls_get(addr: (&str, u16), key: Arc<CertifiedKey>) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("b.default").unwrap();
    match mtls_connector(key).connect(name, tcp).await {
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
