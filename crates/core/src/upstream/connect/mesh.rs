//! Mesh mTLS origination (`services[].mesh`): a rustls client config that presents
//! the workload identity's current certificate and accepts an endpoint only if its
//! certificate chains to the identity's current trust bundle and carries the
//! expected SPIFFE ID (its URI SAN; never its DNS name or IP: sidecar endpoints
//! are addresses, their identity is the SPIFFE ID).
//!
//! The result is an ordinary [`TlsOrigin`], so the pooled client, the
//! `LimitedConnector`, load balancing, retries, health checks and L4 services use
//! it exactly like `services[].tls`. Both the certificate and the bundle are read
//! per handshake: rotations reach new connections and leave pooled ones alone.
//! Session resumption is off (a resumed session would not be checked against the
//! current bundle).

use std::sync::Arc;

use meshgate_config as config;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::CryptoProvider;
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::TlsOrigin;
use crate::identity::WorkloadIdentity;
use crate::server::mesh::verify::{IdentityCert, Patterns};

/// The mesh client side of one service: builds its [`TlsOrigin`]s.
#[derive(Debug, Clone)]
pub struct MeshClient {
    service: Arc<str>,
    identity: Arc<WorkloadIdentity>,
    expected: Patterns,
}

impl MeshClient {
    /// The mesh client of service `svc`; `Ok(None)` when it has no `mesh`. A
    /// service with `mesh` needs `identity`.
    pub fn of(
        svc: &config::Service,
        identity: Option<&Arc<WorkloadIdentity>>,
    ) -> Result<Option<Self>, String> {
        let Some(mesh) = &svc.mesh else {
            return Ok(None);
        };
        let identity = identity.ok_or(
            "mesh needs a workload identity, and this process has none (it is installed by \
             meshgate sidecar, or a gateway joining the mesh)",
        )?;
        Ok(Some(MeshClient {
            service: svc.name.as_str().into(),
            identity: identity.clone(),
            expected: Patterns(Arc::from([mesh.spiffe_id.clone()])),
        }))
    }

    /// The origin for HTTP traffic: ALPN from the service's `protocol`.
    pub fn http_origin(&self, protocol: config::UpstreamProtocol) -> Result<TlsOrigin, String> {
        self.origin(Some(match protocol {
            config::UpstreamProtocol::HTTP1 => b"http/1.1",
            config::UpstreamProtocol::HTTP2 => b"h2",
        }))
    }

    /// An origin offering ALPN `alpn` (none: an L4 byte stream).
    pub fn origin(&self, alpn: Option<&[u8]>) -> Result<TlsOrigin, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = ExpectedPeer {
            identity: self.identity.clone(),
            provider: provider.clone(),
            expected: self.expected.clone(),
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("mesh: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(IdentityCert(self.identity.clone())));
        config.alpn_protocols = alpn.map(|p| vec![p.to_vec()]).unwrap_or_default();
        config.resumption = Resumption::disabled();
        Ok(TlsOrigin::from_config(
            self.service.clone(),
            Arc::new(config),
        ))
    }
}

/// Verifies an endpoint's certificate: chain to the current bundle, then the
/// SPIFFE ID. The server name is ignored on purpose (see the module doc).
#[derive(Debug)]
struct ExpectedPeer {
    identity: Arc<WorkloadIdentity>,
    provider: Arc<CryptoProvider>,
    expected: Patterns,
}

impl ServerCertVerifier for ExpectedPeer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.identity.roots(),
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        self.expected.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
