//! Test support for the identity tests: a control plane served over real TLS
//! gRPC with the mesh CA's `Identity` service next to its own services, its
//! tokens, CSRs, and certificate verification as rustls does it.

#![allow(dead_code)]

pub mod mtls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use meshgate_control::client::Backoff;
use meshgate_control::proto::v1::identity_client::IdentityClient as IdentityRpc;
use meshgate_control::proto::v1::{CaRotation, CaStatus, SignRequest, SignResponse};
use meshgate_control::server::{ControlPlane, Options, Scope, Token, Tokens};
use meshgate_control::store::embedded::EmbeddedStore;
use meshgate_mesh::ca::{self, CaOptions, MeshCa};
use meshgate_mesh::identity_client::IdentitySettings;
use meshgate_testkit::certs::{TestCa, provider};
use rcgen::{CertificateParams, DnType, KeyPair, SanType};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig,
};
use tonic::{Request, Status};

pub const TRUST_DOMAIN: &str = "mesh.test";
pub const ORDERS_TOKEN: &str = "orders-sidecar-secret";
pub const ANY_SIDECAR_TOKEN: &str = "any-sidecar-secret";
pub const GATEWAY_TOKEN: &str = "gateway-secret";
pub const OPERATOR_TOKEN: &str = "operator-secret";
pub const PATIENCE: Duration = Duration::from_secs(30);
pub const MAX_TTL: Duration = Duration::from_secs(48 * 3600);

/// A control plane (config discovery etc. plus the Identity service) on TLS.
pub struct Plane {
    pub addr: SocketAddr,
    pub tls_ca: TestCa,
    pub mesh: Arc<MeshCa>,
    pub dir: tempfile::TempDir,
}

impl Plane {
    pub async fn start() -> Plane {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("control");
        let store = EmbeddedStore::open(&data, 10).unwrap();
        let cp = ControlPlane::start(store, options());
        let mesh = MeshCa::open(ca_options(&data)).unwrap();
        let tls_ca = TestCa::new("identity");
        let cert = tls_ca.server_cert("control", &["localhost", "127.0.0.1"]);
        let routes = cp.routes().add_service(ca::service(
            mesh.clone(),
            cp.options.tokens.clone(),
            cp.stopping(),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .tls_config(
                ServerTlsConfig::new().identity(Identity::from_pem(&cert.cert_pem, &cert.key_pem)),
            )
            .unwrap()
            .add_routes(routes)
            .serve_with_incoming(TcpIncoming::from(listener));
        tokio::spawn(async move {
            // Keeps the control plane alive as long as the server runs.
            let _cp = cp;
            server.await.unwrap();
        });
        Plane {
            addr,
            tls_ca,
            mesh,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    pub async fn rpc(&self) -> IdentityRpc<Channel> {
        let tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(self.tls_ca.ca_pem()));
        let channel = Endpoint::from_shared(self.url())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        IdentityRpc::new(channel)
    }

    pub async fn sign(
        &self,
        token: &str,
        service: &str,
        ttl_seconds: u32,
        csr_pem: String,
    ) -> Result<SignResponse, Status> {
        let message = SignRequest {
            csr_pem,
            requested_ttl_seconds: ttl_seconds,
            service: service.into(),
            namespace: String::new(),
        };
        let r = self.rpc().await.sign(authorized(message, token)).await?;
        Ok(r.into_inner())
    }

    pub async fn rotate(&self, step: &str) -> CaStatus {
        let message = CaRotation { step: step.into() };
        self.rpc()
            .await
            .rotate_ca(authorized(message, OPERATOR_TOKEN))
            .await
            .unwrap()
            .into_inner()
    }

    pub fn settings(&self, token: &str, service: &str, ttl: Option<Duration>) -> IdentitySettings {
        IdentitySettings {
            control: self.url(),
            ca_pem: self.tls_ca.ca_pem().into_bytes(),
            token: token.into(),
            service: service.into(),
            namespace: "shop".into(),
            ttl,
            backoff: Backoff {
                initial: Duration::from_millis(50),
                cap: Duration::from_millis(500),
            },
        }
    }
}

pub fn ca_options(data_dir: &std::path::Path) -> CaOptions {
    CaOptions {
        data_dir: data_dir.to_owned(),
        trust_domain: TRUST_DOMAIN.into(),
        cert_ttl: ca::DEFAULT_CERT_TTL,
        max_cert_ttl: MAX_TTL,
        intermediate: None,
    }
}

pub fn options() -> Options {
    let token = |name: &str, secret: &str, scope| Token {
        name: name.into(),
        secret: secret.into(),
        scope,
    };
    let sidecar = |services: &[&str]| Scope::Proxy {
        role: "sidecar".into(),
        services: services.iter().map(|s| s.to_string()).collect(),
    };
    Options {
        replica: "cp-1".into(),
        auto_rollback: None,
        tokens: Tokens(vec![
            token("orders-sidecars", ORDERS_TOKEN, sidecar(&["orders"])),
            token("sidecars", ANY_SIDECAR_TOKEN, sidecar(&[])),
            token(
                "gateways",
                GATEWAY_TOKEN,
                Scope::Proxy {
                    role: "gateway".into(),
                    services: vec![],
                },
            ),
            token("operators", OPERATOR_TOKEN, Scope::Operator),
        ]),
    }
}

pub fn authorized<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// A CSR asking for names the CA must ignore.
pub fn greedy_csr() -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "payments");
    params.subject_alt_names = vec![
        SanType::URI(
            "spiffe://evil.test/ns/default/sa/payments"
                .try_into()
                .unwrap(),
        ),
        SanType::DnsName("payments.example".try_into().unwrap()),
    ];
    params.serialize_request(&key).unwrap().pem().unwrap()
}

/// `csr_pem` with its subject's `payments` changed to `paymentz`.
pub fn tamper(csr_pem: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body: String = csr_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let mut der = b64.decode(body).unwrap();
    let at = der.windows(8).position(|w| w == b"payments").unwrap();
    der[at + 7] = b'z';
    format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        b64.encode(der)
    )
}

pub fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// Verifies `chain` (leaf first) against `bundle` at `now` as rustls would a
/// client certificate.
pub fn verify_at(
    chain: &[CertificateDer<'static>],
    bundle: &[CertificateDer<'static>],
    now: SystemTime,
) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(bundle.to_vec());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .unwrap();
    let now = UnixTime::since_unix_epoch(now.duration_since(SystemTime::UNIX_EPOCH).unwrap());
    verifier
        .verify_client_cert(&chain[0], &chain[1..], now)
        .map(drop)
}

pub fn verify(chain: &[CertificateDer<'static>], bundle: &[CertificateDer<'static>]) -> bool {
    verify_at(chain, bundle, SystemTime::now()).is_ok()
}

pub async fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
