//! The workload's mesh identity, shared by everything that speaks mTLS for it: its
//! current certificate chain and private key (a SPIFFE X.509-SVID) and the trust
//! bundle (the mesh CA roots; old and new ones side by side during a CA rotation).
//!
//! Both are swapped atomically: a rotation affects only handshakes that start
//! after it, so open connections are never dropped. Whoever obtains certificates
//! (the mesh crate's identity client, talking to the control plane's CA) calls
//! [`WorkloadIdentity::rotate`] and [`WorkloadIdentity::set_trust_bundle`]; TLS
//! code reads [`WorkloadIdentity::certified_key`] and [`WorkloadIdentity::roots`]
//! per handshake.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why certificates could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the certificate chain is empty")]
    EmptyChain,
    #[error("the private key cannot be used: {0}")]
    Key(String),
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    #[error("the trust bundle holds no usable CA certificate: {0}")]
    Bundle(String),
    #[error("the certificate has no SPIFFE ID (a spiffe:// URI SAN)")]
    NoSpiffeId,
}

/// A workload's certificate, key and trust bundle, swappable at run time.
pub struct WorkloadIdentity {
    spiffe_id: ArcSwap<String>,
    certified: ArcSwap<CertifiedKey>,
    roots: ArcSwap<RootCertStore>,
    /// Bumped on every rotation or bundle change: TLS state derived from the
    /// identity (verifiers built from the roots) rebuilds when it moves.
    generation: AtomicU64,
}

impl std::fmt::Debug for WorkloadIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadIdentity")
            .field("spiffe_id", &*self.spiffe_id.load())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl WorkloadIdentity {
    /// An identity from a PEM-decoded chain (leaf first), its key and the bundle.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        bundle: Vec<CertificateDer<'static>>,
    ) -> Result<Arc<Self>, IdentityError> {
        let (id, certified) = certified_key(chain, key)?;
        Ok(Arc::new(WorkloadIdentity {
            spiffe_id: ArcSwap::from_pointee(id),
            certified: ArcSwap::from_pointee(certified),
            roots: ArcSwap::from_pointee(root_store(bundle)?),
            generation: AtomicU64::new(1),
        }))
    }

    /// Installs a renewed certificate and key (new handshakes use them).
    pub fn rotate(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<(), IdentityError> {
        let (id, certified) = certified_key(chain, key)?;
        self.spiffe_id.store(Arc::new(id));
        self.certified.store(Arc::new(certified));
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Installs a new trust bundle (during a CA rotation: old and new roots).
    pub fn set_trust_bundle(
        &self,
        bundle: Vec<CertificateDer<'static>>,
    ) -> Result<(), IdentityError> {
        self.roots.store(Arc::new(root_store(bundle)?));
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// `spiffe://<trust-domain>/ns/<namespace>/sa/<service>` of the current certificate.
    pub fn spiffe_id(&self) -> Arc<String> {
        self.spiffe_id.load_full()
    }

    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified.load_full()
    }

    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<(String, CertifiedKey), IdentityError> {
    let leaf = chain.first().ok_or(IdentityError::EmptyChain)?;
    let id = crate::server::tls::x509::names(leaf)
        .and_then(|n| n.uris.into_iter().find(|u| u.starts_with("spiffe://")))
        .ok_or(IdentityError::NoSpiffeId)?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => IdentityError::KeyMismatch,
        other => IdentityError::Key(other.to_string()),
    })?;
    Ok((id, certified))
}

fn root_store(bundle: Vec<CertificateDer<'static>>) -> Result<RootCertStore, IdentityError> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(bundle);
    if added == 0 {
        return Err(IdentityError::Bundle("no certificate parsed".into()));
    }
    Ok(roots)
}
