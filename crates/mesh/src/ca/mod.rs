//! The mesh CA: the control plane's certificate authority for workload
//! identities. It either generates its own root on first start (key and
//! self-signed certificate under `<dataDir>/mesh-ca/`, reused on every later
//! start) or signs with an intermediate CA loaded from files (its chain is sent
//! with every issued certificate). It issues SPIFFE X.509-SVIDs ([`issue`]),
//! publishes the trust bundle (every root to trust now) on a watch channel that
//! the gRPC [`service`] streams to workloads, and rotates its root with an
//! overlap ([`rotate`]).

pub mod issue;
pub mod rotate;
mod service;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use meshgate_control::config::mesh::MeshCaConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

pub use issue::{IssueError, Issued};
pub use rotate::{Phase, RotateError, RotationStatus};
pub use service::{IdentityApi, service};

/// Default lifetime of an issued certificate.
pub const DEFAULT_CERT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default longest lifetime a workload may ask for.
pub const DEFAULT_MAX_CERT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Lifetime of a generated root.
const ROOT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How the CA is set up (from control.yaml's `mesh:` block).
#[derive(Debug, Clone)]
pub struct CaOptions {
    /// The control plane's data dir; the CA lives in `<data_dir>/mesh-ca/`.
    pub data_dir: PathBuf,
    /// `spiffe://<trust_domain>/…`.
    pub trust_domain: String,
    /// Lifetime of a certificate when the workload asks for none.
    pub cert_ttl: Duration,
    /// Longest lifetime a workload may ask for (longer requests are cut).
    pub max_cert_ttl: Duration,
    /// Sign with this intermediate CA instead of a generated root.
    pub intermediate: Option<IntermediateFiles>,
}

impl CaOptions {
    /// From control.yaml's `mesh:` block (paths already resolved) and `dataDir`.
    pub fn from_config(config: &MeshCaConfig, data_dir: &Path) -> CaOptions {
        CaOptions {
            data_dir: data_dir.to_owned(),
            trust_domain: config.trust_domain.clone(),
            cert_ttl: config.cert_ttl.get(),
            max_cert_ttl: config.max_cert_ttl.get(),
            intermediate: config.intermediate.as_ref().map(|i| IntermediateFiles {
                cert_file: i.cert_file.clone(),
                key_file: i.key_file.clone(),
            }),
        }
    }
}

/// An intermediate CA given as files.
#[derive(Debug, Clone)]
pub struct IntermediateFiles {
    /// PEM: the intermediate certificate first, then its issuers; the last one is
    /// the root workloads trust (a single certificate is trusted itself).
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1) of the first certificate.
    pub key_file: PathBuf,
}

/// Why the CA could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("trust domain {0:?}: only lowercase letters, digits, '.', '-' and '_'")]
    TrustDomain(String),
    #[error("cannot create the CA: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Something that signs: a key and the CA certificate naming it.
pub(crate) struct Signer {
    issuer: Issuer<'static, KeyPair>,
    /// Sent after the leaf: the intermediates (empty for a root signing directly).
    chain: Vec<CertificateDer<'static>>,
}

/// The trust bundle: every root a workload must trust now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundle {
    pub roots: Vec<CertificateDer<'static>>,
    /// Grows with every change during this process's life.
    pub version: u64,
}

impl TrustBundle {
    /// The roots as concatenated PEM.
    pub fn pem(&self) -> String {
        self.roots.iter().map(|r| to_pem(r)).collect()
    }
}

/// What the CA holds now: the issuing signer, and the rotation's extra roots.
pub(crate) struct State {
    pub(crate) active: Arc<Signer>,
    /// The root(s) trusted for `active` (bundle anchors).
    pub(crate) active_roots: Vec<CertificateDer<'static>>,
    /// Prepared new root (trusted, not issuing yet).
    pub(crate) next: Option<(Arc<Signer>, CertificateDer<'static>)>,
    /// Replaced root, still trusted until the rotation finishes.
    pub(crate) previous: Option<CertificateDer<'static>>,
    /// Rotation is only for a generated root.
    pub(crate) generated: bool,
}

/// The mesh CA of one control plane.
pub struct MeshCa {
    trust_domain: String,
    cert_ttl: Duration,
    max_cert_ttl: Duration,
    dir: PathBuf,
    pub(crate) state: Mutex<State>,
    bundle: watch::Sender<Arc<TrustBundle>>,
}

impl std::fmt::Debug for MeshCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshCa")
            .field("trust_domain", &self.trust_domain)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl MeshCa {
    /// Loads the CA (creating the root on first start, finishing a rotation
    /// step a crash interrupted).
    pub fn open(options: CaOptions) -> Result<Arc<MeshCa>, CaError> {
        if !valid_trust_domain(&options.trust_domain) {
            return Err(CaError::TrustDomain(options.trust_domain));
        }
        let dir = options.data_dir.join("mesh-ca");
        let state = match &options.intermediate {
            Some(files) => load_intermediate(files)?,
            None => rotate::load_generated(&dir, &options.trust_domain)?,
        };
        let bundle = TrustBundle {
            roots: bundle_roots(&state),
            version: 1,
        };
        let ca = MeshCa {
            trust_domain: options.trust_domain,
            cert_ttl: options.cert_ttl,
            max_cert_ttl: options.max_cert_ttl.max(options.cert_ttl),
            dir,
            state: Mutex::new(state),
            bundle: watch::channel(Arc::new(bundle)).0,
        };
        Ok(Arc::new(ca))
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// `spiffe://<trust-domain>/ns/<namespace>/sa/<service>`.
    pub fn spiffe_id(&self, namespace: &str, service: &str) -> String {
        format!("spiffe://{}/ns/{namespace}/sa/{service}", self.trust_domain)
    }

    /// The trust bundle now.
    pub fn bundle(&self) -> Arc<TrustBundle> {
        self.bundle.borrow().clone()
    }

    /// Follows the trust bundle (the current value is marked seen).
    pub fn watch_bundle(&self) -> watch::Receiver<Arc<TrustBundle>> {
        self.bundle.subscribe()
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes the bundle of `state` if it differs from the current one.
    pub(crate) fn publish(&self, state: &State) {
        let roots = bundle_roots(state);
        self.bundle.send_if_modified(|b| {
            if b.roots == roots {
                return false;
            }
            *b = Arc::new(TrustBundle {
                roots,
                version: b.version + 1,
            });
            true
        });
    }
}

/// Active roots, then the prepared or the previous one.
fn bundle_roots(state: &State) -> Vec<CertificateDer<'static>> {
    let mut roots = state.active_roots.clone();
    roots.extend(state.next.as_ref().map(|(_, root)| root.clone()));
    roots.extend(state.previous.clone());
    roots
}

fn valid_trust_domain(td: &str) -> bool {
    !td.is_empty()
        && td.len() <= 255
        && td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
}

fn load_intermediate(files: &IntermediateFiles) -> Result<State, CaError> {
    let cert_path = files.cert_file.display().to_string();
    let invalid = |path: &str, message: String| CaError::Invalid {
        path: path.to_owned(),
        message,
    };
    let certs = read_certs(&files.cert_file)?;
    let key_pem = read(&files.key_file)?;
    let key_path = files.key_file.display().to_string();
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|e| invalid(&key_path, format!("not a usable private key: {e}")))?;
    check_key_matches(&certs[0], &key_pem).map_err(|m| invalid(&cert_path, m))?;
    let issuer = Issuer::from_ca_cert_der(&certs[0], key)
        .map_err(|e| invalid(&cert_path, format!("not a usable CA certificate: {e}")))?;
    let (chain, roots) = match certs.split_last() {
        Some((root, rest)) if !rest.is_empty() => (rest.to_vec(), vec![root.clone()]),
        _ => (Vec::new(), certs.clone()),
    };
    Ok(State {
        active: Arc::new(Signer { issuer, chain }),
        active_roots: roots,
        next: None,
        previous: None,
        generated: false,
    })
}

/// rustls refuses a certificate and key that do not belong together (the PEM
/// label tells the key's format: PKCS#8, SEC1 or PKCS#1).
fn check_key_matches(cert: &CertificateDer<'static>, key_pem: &str) -> Result<(), String> {
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("the key cannot be read: {e}"))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    rustls::sign::CertifiedKey::from_der(vec![cert.clone()], key, &provider)
        .map(drop)
        .map_err(|e| format!("the key does not fit the certificate: {e}"))
}

/// A new self-signed root for `trust_domain` and its key.
pub(crate) fn generate_root(
    trust_domain: &str,
) -> Result<(CertificateDer<'static>, KeyPair), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "meshgate");
    let now = time::OffsetDateTime::now_utc();
    name.push(
        DnType::CommonName,
        format!("meshgate mesh CA {trust_domain} {}", now.unix_timestamp()),
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + ROOT_VALIDITY;
    params.serial_number = Some(issue::random_serial());
    let cert = params.self_signed(&key)?;
    Ok((cert.der().clone(), key))
}

/// A signer for a root certificate and its key.
pub(crate) fn root_signer(
    path: &Path,
    cert: &CertificateDer<'static>,
    key: KeyPair,
) -> Result<Signer, CaError> {
    let issuer = Issuer::from_ca_cert_der(cert, key).map_err(|e| CaError::Invalid {
        path: path.display().to_string(),
        message: format!("not a usable CA certificate: {e}"),
    })?;
    Ok(Signer {
        issuer,
        chain: Vec::new(),
    })
}

pub(crate) fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| CaError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Every certificate of a PEM file (at least one).
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaError::Invalid {
            path: path.display().to_string(),
            message: format!("bad PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(CaError::Invalid {
            path: path.display().to_string(),
            message: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

pub(crate) fn to_pem(der: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    // base64 output is ASCII: splitting it anywhere is a char boundary.
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
