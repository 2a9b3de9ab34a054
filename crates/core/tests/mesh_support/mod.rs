//! What the mesh mTLS tests share: a test CA issuing SPIFFE certificates (URI SAN
//! only, empty subject, server and client usage; valid or long expired), workload
//! identities from them, gateways started with an identity and a file access log,
//! and raw rustls peers: a client that records the certificate it was shown, and
//! a backend verifier that records the client certificates it was shown.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshgate_core::Gateway;
use meshgate_core::access_log::AccessLog;
use meshgate_core::identity::WorkloadIdentity;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName as Dn, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const TD: &str = "spiffe://test.local/ns/default/sa";

/// `spiffe://test.local/ns/default/sa/<sa>`.
pub fn id(sa: &str) -> String {
    format!("{TD}/{sa}")
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A mesh CA.
pub struct MeshCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// An issued SPIFFE certificate with its key.
#[derive(Clone)]
pub struct Svid {
    pub der: CertificateDer<'static>,
    key: Vec<u8>,
}

impl Svid {
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.der.clone()]
    }
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }
}

impl MeshCa {
    pub fn new(name: &str) -> MeshCa {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("mesh test CA ({name})"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        MeshCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA"),
        }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A certificate for `spiffe_id` (valid 1975-4096).
    pub fn svid(&self, spiffe_id: &str) -> Svid {
        self.issue(spiffe_id, false)
    }

    /// A certificate for `spiffe_id` that expired in 2001.
    pub fn expired_svid(&self, spiffe_id: &str) -> Svid {
        self.issue(spiffe_id, true)
    }

    fn issue(&self, spiffe_id: &str, expired: bool) -> Svid {
        let mut params = CertificateParams::default();
        // SVIDs name their workload in the URI SAN only.
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names =
            vec![SanType::URI(spiffe_id.try_into().expect("ASCII SPIFFE ID"))];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Svid {
            der: cert.der().clone(),
            key: key.serialize_der(),
        }
    }

    /// A workload identity with a fresh certificate for `spiffe_id`, trusting `bundle`.
    pub fn identity(&self, spiffe_id: &str, bundle: &[&MeshCa]) -> Arc<WorkloadIdentity> {
        let svid = self.svid(spiffe_id);
        WorkloadIdentity::new(
            svid.chain(),
            svid.key(),
            bundle.iter().map(|c| c.der()).collect(),
        )
        .expect("identity")
    }
}

/// A gateway with an identity and an access log file.
pub struct MeshGateway {
    pub gateway: Gateway,
    pub log_path: PathBuf,
}

impl MeshGateway {
    pub async fn start(yaml: &str, identity: Option<Arc<WorkloadIdentity>>) -> MeshGateway {
        Self::try_start(yaml, identity)
            .await
            .expect("gateway starts")
    }

    pub async fn try_start(
        yaml: &str,
        identity: Option<Arc<WorkloadIdentity>>,
    ) -> Result<MeshGateway, meshgate_core::StartError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let config = meshgate_config::parse_str(yaml, "mesh.yaml")
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n{yaml}"));
        let log_path = std::env::temp_dir().join(format!(
            "meshgate-mesh-{}-{}.log",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let log = AccessLog::open(log_path.to_str().expect("utf-8 path")).expect("access log");
        let gateway = Gateway::start_with_identity(
            config,
            log,
            Arc::new(meshgate_core::filter::NoPolicies),
            identity,
        )
        .await?;
        Ok(MeshGateway { gateway, log_path })
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.gateway.local_addr(listener).expect("listener bound")
    }

    /// Access log lines once at least `n` are written (bounded wait).
    pub async fn log_lines(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the metrics text contains `line`.
    pub async fn wait_metric(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.gateway.metrics().encode();
            if text.contains(line) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "metric {line:?} not found in:\n{}",
                text.lines()
                    .filter(|l| l.contains("tls_handshake"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for MeshGateway {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// `meshgate_tls_handshake_failures_total{listener=…,reason=…} n`.
pub fn failures(listener: &str, reason: &str, n: u64) -> String {
    format!(
        "meshgate_tls_handshake_failures_total{{listener=\"{listener}\",reason=\"{reason}\"}} {n}"
    )
}

/// A server verifier that accepts anything and remembers the leaf it was shown.
#[derive(Debug, Default)]
pub struct SeeServer(pub Mutex<Option<CertificateDer<'static>>>);

impl ServerCertVerifier for SeeServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = Some(end_entity.clone().into_owned());
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A raw mTLS client presenting `svid` (or nothing) to `addr`: one HTTP/1.1 GET.
/// Ok(the server's leaf) when a `200` came back; Err(what went wrong) otherwise.
pub async fn mtls_get(
    addr: SocketAddr,
    svid: Option<&Svid>,
) -> Result<CertificateDer<'static>, String> {
    let seen = Arc::new(SeeServer::default());
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(seen.clone());
    let mut config = match svid {
        Some(s) => builder.with_client_auth_cert(s.chain(), s.key()).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(addr.ip().to_string()).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET / HTTP/1.1\r\nhost: mesh\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    tls.read_to_end(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    if !reply.starts_with(b"HTTP/1.1 200") {
        return Err(format!("reply: {}", String::from_utf8_lossy(&reply)));
    }
    let leaf = seen.0.lock().unwrap().clone();
    leaf.ok_or_else(|| "no server certificate".to_owned())
}

/// A client verifier for test backends: WebPki against `ca`, recording every
/// client leaf it verified.
#[derive(Debug)]
pub struct SeeClients {
    inner: Arc<dyn ClientCertVerifier>,
    pub seen: Mutex<Vec<CertificateDer<'static>>>,
}

impl SeeClients {
    pub fn new(ca: &MeshCa) -> Arc<SeeClients> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der()).unwrap();
        let inner = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        Arc::new(SeeClients {
            inner,
            seen: Mutex::new(Vec::new()),
        })
    }

    /// A server config presenting `svid` and verifying clients with `self`.
    pub fn server_config(self: &Arc<Self>, svid: &Svid) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(self.clone())
            .with_single_cert(svid.chain(), svid.key())
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    pub fn last(&self) -> Option<CertificateDer<'static>> {
        self.seen.lock().unwrap().last().cloned()
    }
}

impl ClientCertVerifier for SeeClients {
    fn root_hint_subjects(&self) -> &[Dn] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.seen
            .lock()
            .unwrap()
            .push(end_entity.clone().into_owned());
        Ok(ok)
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
