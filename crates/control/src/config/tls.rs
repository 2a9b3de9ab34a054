//! The control plane's serving identity. With `tls.certFile`/`keyFile` those files
//! are served as they are. Otherwise the control plane is its own CA: on first
//! start it generates a CA key and certificate under `<dataDir>/ca/` (`ca.pem`,
//! `ca-key.pem`, the key readable by the owner only), and on every start it issues
//! a fresh serving certificate for the configured names (`server.pem`,
//! `server-key.pem`), so changing `serverNames` needs only a restart. Proxies and
//! operators verify the control plane with `--control-ca <dataDir>/ca/ca.pem`.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::{ControlConfig, hostname};

/// The PEM to serve, and the CA that proxies should trust (None when the
/// certificate is configured: its CA is not ours to know).
pub struct ServingIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// `<dataDir>/ca/ca.pem` for a generated certificate.
    pub ca_file: Option<PathBuf>,
    /// The names of a generated certificate.
    pub names: Vec<String>,
}

/// Why the serving identity cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a usable key: {source}")]
    Key { path: String, source: rcgen::Error },
    #[error("generating a certificate: {0}")]
    Generate(rcgen::Error),
    #[error("server name {0:?} is neither a DNS name nor an IP address")]
    Name(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The identity `config` asks for (blocking file I/O: call before serving).
pub fn serving_identity(config: &ControlConfig) -> Result<ServingIdentity, TlsError> {
    if let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) {
        return Ok(ServingIdentity {
            cert_pem: std::fs::read(cert).map_err(io(cert))?,
            key_pem: std::fs::read(key).map_err(io(key))?,
            ca_file: None,
            names: Vec::new(),
        });
    }
    let names = if config.tls.server_names.is_empty() {
        default_names()
    } else {
        config.tls.server_names.clone()
    };
    generated(&config.data_dir.join("ca"), &names)
}

/// `localhost`, `127.0.0.1` and the host name.
pub fn default_names() -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if let Some(host) = hostname()
        && !names.contains(&host)
    {
        names.push(host);
    }
    names
}

/// The CA's parameters. Fixed, so a CA key read back from disk signs leaves that
/// chain to the stored CA certificate (same subject, same key identifier).
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "meshgate control-plane CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// Loads (or first creates) the CA in `dir` and issues a serving certificate.
pub fn generated(dir: &Path, names: &[String]) -> Result<ServingIdentity, TlsError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (ca_file, ca_key_file) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let ca_key = if ca_file.exists() && ca_key_file.exists() {
        let pem = std::fs::read_to_string(&ca_key_file).map_err(io(&ca_key_file))?;
        KeyPair::from_pem(&pem).map_err(|source| TlsError::Key {
            path: ca_key_file.display().to_string(),
            source,
        })?
    } else {
        let key = KeyPair::generate().map_err(TlsError::Generate)?;
        let cert = ca_params().self_signed(&key).map_err(TlsError::Generate)?;
        // Key first: a crash in between leaves no CA certificate without its key.
        write_private(&ca_key_file, key.serialize_pem().as_bytes())?;
        write_atomic(&ca_file, cert.pem().as_bytes(), false)?;
        tracing::info!(file = %ca_file.display(), "generated the control-plane CA");
        key
    };
    let issuer = Issuer::new(ca_params(), ca_key);

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if let Some(first) = names.first() {
        params.distinguished_name.push(DnType::CommonName, first);
    }
    params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<_, _>>()?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(TlsError::Generate)?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(TlsError::Generate)?;
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    // Kept on disk for inspection (openssl x509 -in server.pem -text) only.
    write_private(&dir.join("server-key.pem"), key_pem.as_bytes())?;
    write_atomic(&dir.join("server.pem"), cert_pem.as_bytes(), false)?;
    Ok(ServingIdentity {
        cert_pem: cert_pem.into_bytes(),
        key_pem: key_pem.into_bytes(),
        ca_file: Some(ca_file),
        names: names.to_vec(),
    })
}

fn san(name: &str) -> Result<SanType, TlsError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let dns = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'*');
    if !dns {
        return Err(TlsError::Name(name.to_owned()));
    }
    name.try_into()
        .map(SanType::DnsName)
        .map_err(|_| TlsError::Name(name.to_owned()))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    write_atomic(path, bytes, true)
}

/// Temporary file, fsync, rename: a crash leaves the old file or the new one.
fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("pem.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}
