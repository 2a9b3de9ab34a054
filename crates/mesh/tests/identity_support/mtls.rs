//! mTLS between two workloads in tests: an echo server and a client whose TLS
//! configs are built from a `WorkloadIdentity` for each connection, so every
//! handshake sees the identity's current certificate and trust bundle.

use std::net::SocketAddr;
use std::sync::Arc;

use meshgate_core::identity::WorkloadIdentity;
use meshgate_core::server::tls::x509;
use meshgate_testkit::certs::provider;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::PATIENCE;

/// Serves lines back over mTLS, with a TLS config built from `identity` for
/// each connection (so handshakes see its current certificate and bundle).
pub async fn echo_server(identity: Arc<WorkloadIdentity>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let verifier =
                WebPkiClientVerifier::builder_with_provider(identity.roots(), provider())
                    .build()
                    .unwrap();
            let config = rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(Arc::new(Current(identity.clone())));
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (read, mut write) = tokio::io::split(tls);
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if write
                        .write_all(format!("{line}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The identity's certificate at handshake time (both sides).
#[derive(Debug)]
pub struct Current(Arc<WorkloadIdentity>);

impl rustls::server::ResolvesServerCert for Current {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.certified_key())
    }
}

impl rustls::client::ResolvesClientCert for Current {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.certified_key())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// Accepts a server certificate that chains to the bundle and names `expected`.
#[derive(Debug)]
pub struct SpiffeVerifier {
    roots: Arc<RootCertStore>,
    expected: String,
}

impl ServerCertVerifier for SpiffeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Our SVIDs carry serverAuth and clientAuth: the client-side webpki
        // verifier checks the chain without wanting a DNS name.
        let chain = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .unwrap();
        chain.verify_client_cert(end_entity, intermediates, now)?;
        let names = x509::names(end_entity).unwrap_or_default();
        if names.uris != [self.expected.clone()] {
            return Err(rustls::Error::General(format!(
                "wrong peer {:?}",
                names.uris
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An mTLS connection from `client` to the echo server of `server_id`.
pub struct Conn {
    lines: tokio::io::Lines<
        BufReader<tokio::io::ReadHalf<tokio_rustls::client::TlsStream<TcpStream>>>,
    >,
    write: tokio::io::WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>,
    pub server_cert: CertificateDer<'static>,
}

impl Conn {
    pub async fn open(client: &Arc<WorkloadIdentity>, addr: SocketAddr, server_id: &str) -> Conn {
        let verifier = SpiffeVerifier {
            roots: client.roots(),
            expected: server_id.into(),
        };
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(Current(client.clone())));
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = connector
            .connect(ServerName::try_from("payments.mesh").unwrap(), tcp)
            .await
            .unwrap();
        let server_cert = tls.get_ref().1.peer_certificates().unwrap()[0]
            .clone()
            .into_owned();
        let (read, write) = tokio::io::split(tls);
        Conn {
            lines: BufReader::new(read).lines(),
            write,
            server_cert,
        }
    }

    pub async fn echo(&mut self, text: &str) {
        self.write
            .write_all(format!("{text}\n").as_bytes())
            .await
            .unwrap();
        let line = tokio::time::timeout(PATIENCE, self.lines.next_line())
            .await
            .expect("echo in time")
            .unwrap();
        assert_eq!(line.as_deref(), Some(text));
    }
}
