//! The rustls pieces that tie a TLS config to a [`WorkloadIdentity`], read per
//! handshake so that a rotation (certificate or trust bundle) applies to the next
//! handshake without rebuilding any config and without touching open connections:
//!
//! - [`IdentityCert`]: presents the identity's current certificate, as server
//!   (mesh listeners) and as client (mesh services).
//! - [`PeerVerifier`]: a client verifier that requires a certificate chaining to
//!   the current trust bundle (a WebPki verifier rebuilt only when the identity's
//!   generation moves) carrying a SPIFFE ID, optionally one of `allowedPeers`.
//! - [`spiffe_id`], [`PeerNotAllowed`]: what the verifiers look at and refuse with.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::ResolvesClientCert;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};
use rustls::{Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::identity::WorkloadIdentity;

/// The SPIFFE ID (first `spiffe://` URI SAN) of a DER certificate.
pub fn spiffe_id(der: &[u8]) -> Option<String> {
    crate::server::tls::x509::names(der)?
        .uris
        .into_iter()
        .find(|u| u.starts_with("spiffe://"))
}

/// A verified peer whose SPIFFE ID no pattern allows (listener `allowedPeers`),
/// or that is not the one a service expects (`services[].mesh.spiffeId`).
#[derive(Debug, thiserror::Error)]
#[error("peer {id} is not allowed (expected {expected})")]
pub struct PeerNotAllowed {
    pub id: String,
    pub expected: String,
}

/// A certificate that chains to the bundle but carries no SPIFFE ID.
#[derive(Debug, thiserror::Error)]
#[error("the certificate has no SPIFFE ID (a spiffe:// URI SAN)")]
pub struct NoSpiffeId;

/// A rustls error carrying `e` as an invalid-certificate reason.
pub fn refused(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Whether a handshake error is our [`PeerNotAllowed`] refusal.
pub fn is_peer_not_allowed(e: &std::io::Error) -> bool {
    let Some(Error::InvalidCertificate(CertificateError::Other(other))) =
        e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
    else {
        return false;
    };
    other.0.downcast_ref::<PeerNotAllowed>().is_some()
}

/// SPIFFE ID patterns: exact, or a prefix ending in `*`.
#[derive(Debug, Clone)]
pub struct Patterns(pub Arc<[String]>);

impl Patterns {
    pub fn allows(&self, id: &str) -> bool {
        self.0
            .iter()
            .any(|p| meshgate_config::spiffe_id_matches(p, id))
    }

    /// Checks that `der` carries a SPIFFE ID these patterns allow.
    pub fn check(&self, der: &[u8]) -> Result<(), Error> {
        let id = spiffe_id(der).ok_or_else(|| refused(NoSpiffeId))?;
        if self.allows(&id) {
            Ok(())
        } else {
            Err(refused(PeerNotAllowed {
                id,
                expected: self.0.join(" | "),
            }))
        }
    }
}

/// Presents the identity's current certificate chain and key.
#[derive(Debug)]
pub struct IdentityCert(pub Arc<WorkloadIdentity>);

impl ResolvesServerCert for IdentityCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.certified_key())
    }
}

impl ResolvesClientCert for IdentityCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The WebPki verifier of one identity generation.
struct Cached {
    generation: u64,
    verifier: Arc<dyn ClientCertVerifier>,
}

/// Verifies client certificates against the identity's current trust bundle
/// (certificate required) and, when set, `allowed`.
pub struct PeerVerifier {
    identity: Arc<WorkloadIdentity>,
    provider: Arc<CryptoProvider>,
    cached: ArcSwap<Cached>,
    allowed: Option<Patterns>,
}

impl std::fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("identity", &self.identity)
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

impl PeerVerifier {
    pub fn new(
        identity: Arc<WorkloadIdentity>,
        provider: Arc<CryptoProvider>,
        allowed: Option<Patterns>,
    ) -> Result<Self, String> {
        let cached = ArcSwap::from_pointee(build(&identity, &provider)?);
        Ok(PeerVerifier {
            identity,
            provider,
            cached,
            allowed,
        })
    }

    /// The verifier of the identity's current generation: the cached one, or a
    /// new one once a rotation or bundle change bumped the generation.
    fn current(&self) -> Result<Arc<dyn ClientCertVerifier>, Error> {
        let cached = self.cached.load();
        if cached.generation == self.identity.generation() {
            return Ok(cached.verifier.clone());
        }
        let fresh = build(&self.identity, &self.provider).map_err(Error::General)?;
        let verifier = fresh.verifier.clone();
        self.cached.store(Arc::new(fresh));
        Ok(verifier)
    }
}

/// A WebPki client verifier for the identity's bundle, tagged with the generation
/// read before the bundle (a change in between only causes one more rebuild).
fn build(identity: &WorkloadIdentity, provider: &Arc<CryptoProvider>) -> Result<Cached, String> {
    let generation = identity.generation();
    let verifier = WebPkiClientVerifier::builder_with_provider(identity.roots(), provider.clone())
        .build()
        .map_err(|e| format!("mesh trust bundle: {e}"))?;
    Ok(Cached {
        generation,
        verifier,
    })
}

impl ClientCertVerifier for PeerVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: the bundle may change between handshakes, and a mesh client has
    /// exactly one certificate to send anyway.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .current()?
            .verify_client_cert(end_entity, intermediates, now)?;
        match &self.allowed {
            Some(allowed) => allowed.check(end_entity)?,
            None => {
                spiffe_id(end_entity).ok_or_else(|| refused(NoSpiffeId))?;
            }
        }
        Ok(verified)
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

#[cfg(test)]
mod tests {
    use super::*;
    use meshgate_testkit::certs::TestCa;

    fn identity(ca: &TestCa, id: &str) -> Arc<WorkloadIdentity> {
        let c = ca.client_cert("w", "w", &[id]);
        WorkloadIdentity::new(vec![c.cert_der()], c.key_der(), vec![ca.ca_der()]).unwrap()
    }

    #[test]
    fn the_webpki_verifier_is_rebuilt_only_when_the_identity_changes() {
        let ca = TestCa::new("mesh-verify");
        let id = identity(&ca, "spiffe://t.local/ns/a/sa/w");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let v = PeerVerifier::new(id.clone(), provider, None).unwrap();
        let first = v.current().unwrap();
        assert!(Arc::ptr_eq(&first, &v.current().unwrap()));
        id.set_trust_bundle(vec![ca.ca_der()]).unwrap();
        let second = v.current().unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(Arc::ptr_eq(&second, &v.current().unwrap()));
    }

    #[test]
    fn patterns_check_the_spiffe_id() {
        let ca = TestCa::new("mesh-patterns");
        let web = ca.client_cert("web", "web", &["spiffe://t.local/ns/a/sa/web"]);
        let none = ca.client_cert("none", "none", &[]);
        let p = Patterns(Arc::from(["spiffe://t.local/ns/a/*".to_owned()]));
        assert!(p.check(&web.cert_der).is_ok());
        let q = Patterns(Arc::from(["spiffe://t.local/ns/b/sa/web".to_owned()]));
        let e = q.check(&web.cert_der).unwrap_err();
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        assert!(is_peer_not_allowed(&io));
        let e = p.check(&none.cert_der).unwrap_err();
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        assert!(!is_peer_not_allowed(&io));
    }
}
