//! TLS origination: the rustls client config of a service (read from its files),
//! the handshake with SNI and verification, and the connector that runs it over a
//! connection from the `LimitedConnector`, so `connectTimeout` and
//! `maxConnections` apply to TLS connections too.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use meshgate_config as config;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tower::Service;

use super::super::LimitedConnector;

/// A service's TLS client settings, loaded from its files.
#[derive(Debug)]
pub struct TlsOrigin {
    service: Arc<str>,
    config: Arc<ClientConfig>,
    /// `serverName` when configured; else each endpoint's host.
    server_name: Option<ServerName<'static>>,
}

/// A failed TLS handshake with an endpoint; in the error chain of the client's
/// connect error (see [`is_tls_failure`]).
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake with {endpoint} (service {service:?}) failed: {source}")]
pub struct TlsHandshakeError {
    pub service: Arc<str>,
    pub endpoint: String,
    #[source]
    pub source: std::io::Error,
}

/// Whether a client error was caused by a failed TLS handshake (as opposed to the
/// TCP connect), e.g. to give it its own reason.
pub fn is_tls_failure(e: &(dyn StdError + 'static)) -> bool {
    std::iter::successors(Some(e), |&c| c.source()).any(|c| c.is::<TlsHandshakeError>())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TlsOrigin {
    /// Reads the files of `tls` and builds the rustls client config, with ALPN
    /// from `protocol`. Errors name the setting and the file (the caller adds the
    /// service).
    pub fn load(
        service: &str,
        tls: &config::UpstreamTls,
        protocol: config::UpstreamProtocol,
    ) -> Result<Self, String> {
        if tls.insecure_skip_verify {
            tracing::warn!(
                service,
                "tls.insecureSkipVerify: the endpoints' certificates are NOT verified; \
                 anyone on the path can read and change this service's traffic"
            );
        }
        Self::with_alpn(
            service,
            tls,
            match protocol {
                config::UpstreamProtocol::HTTP1 => b"http/1.1",
                config::UpstreamProtocol::HTTP2 => b"h2",
            },
        )
    }

    /// Like [`TlsOrigin::load`] but offering ALPN `alpn` whatever the service's
    /// protocol, and without repeating the `insecureSkipVerify` warning: for the
    /// active health checks (a gRPC check needs `h2` on an `HTTP1` service too).
    pub fn with_alpn(
        service: &str,
        tls: &config::UpstreamTls,
        alpn: &[u8],
    ) -> Result<Self, String> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?;
        let builder = match (&tls.ca_file, tls.insecure_skip_verify) {
            (_, true) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider))),
            (Some(ca), false) => builder.with_root_certificates(roots(ca)?),
            (None, false) => {
                return Err("tls: set caFile or insecureSkipVerify".to_owned());
            }
        };
        let mut config = match (&tls.client_cert_file, &tls.client_key_file) {
            (Some(cert), Some(key_file)) => {
                let chain = certificates("tls.clientCertFile", cert)?;
                let key = PrivateKeyDer::from_pem_file(key_file)
                    .map_err(|e| format!("tls.clientKeyFile {key_file:?}: {e}"))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    format!(
                        "tls.clientKeyFile {key_file:?}: does not fit tls.clientCertFile {cert:?}: {e}"
                    )
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![alpn.to_vec()];
        let server_name = match &tls.server_name {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|e| format!("tls.serverName {name:?}: {e}"))?,
            ),
            None => None,
        };
        Ok(TlsOrigin {
            service: service.into(),
            config: Arc::new(config),
            server_name,
        })
    }

    /// An origin with a ready client config (mesh mTLS: `connect::mesh`), sending
    /// each endpoint's host as the server name.
    pub(super) fn from_config(service: Arc<str>, config: Arc<ClientConfig>) -> Self {
        TlsOrigin {
            service,
            config,
            server_name: None,
        }
    }

    /// The name to send and verify for an endpoint whose host is `host` (as in a
    /// URI: an IPv6 address in brackets).
    fn name_for(&self, host: &str) -> Result<ServerName<'static>, std::io::Error> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        ServerName::try_from(bare.to_owned())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    }

    /// Runs the client handshake over `io`.
    pub async fn handshake<IO>(
        &self,
        io: IO,
        host: &str,
    ) -> Result<tokio_rustls::client::TlsStream<IO>, TlsHandshakeError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let failed = |source| TlsHandshakeError {
            service: self.service.clone(),
            endpoint: host.to_owned(),
            source,
        };
        let name = self.name_for(host).map_err(failed)?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, io)
            .await
            .map_err(failed)
    }
}

/// The trusted roots from the PEM bundle at `path`.
fn roots(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("tls.caFile", path)? {
        roots
            .add(cert)
            .map_err(|e| format!("tls.caFile {path:?}: not a usable CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// Every certificate in the PEM file at `path`; at least one.
fn certificates(field: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{field} {path:?}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{field} {path:?}: no certificate found (expected PEM \"BEGIN CERTIFICATE\" blocks)"
        ));
    }
    Ok(certs)
}

/// `insecureSkipVerify`: any certificate is accepted; the handshake signatures are
/// still checked, so the peer holds the key of the certificate it sent.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connects through the `LimitedConnector` (timeout, `maxConnections`), then
/// runs the TLS handshake.
#[derive(Debug, Clone)]
pub struct TlsConnector {
    pub(super) inner: LimitedConnector,
    pub(super) origin: Arc<TlsOrigin>,
}

type BoxError = Box<dyn StdError + Send + Sync>;
type Tcp = <LimitedConnector as Service<Uri>>::Response;

/// A TLS connection to an endpoint (its TCP part holds the `maxConnections` slot).
#[derive(Debug)]
pub struct TlsConn(TokioIo<tokio_rustls::client::TlsStream<TokioIo<Tcp>>>);

impl Service<Uri> for TlsConnector {
    type Response = TlsConn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsConn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let host = dst.host().unwrap_or_default().to_owned();
        let endpoint = dst.authority().map_or_else(String::new, |a| a.to_string());
        let connecting = self.inner.call(dst);
        let origin = self.origin.clone();
        Box::pin(async move {
            let tcp = connecting.await?;
            match origin.handshake(TokioIo::new(tcp), &host).await {
                Ok(tls) => Ok(TlsConn(TokioIo::new(tls))),
                Err(e) => {
                    // The access log says `upstream_connect_failure`; this says why.
                    tracing::warn!(service = %origin.service, %endpoint, error = %e.source, "upstream TLS handshake failed");
                    Err(e.into())
                }
            }
        })
    }
}

impl hyper::rt::Read for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }
}

impl Connection for TlsConn {
    fn connected(&self) -> Connected {
        let (tcp, session) = self.0.inner().get_ref();
        let connected = tcp.inner().connected();
        if session.alpn_protocol() == Some(b"h2") {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}
