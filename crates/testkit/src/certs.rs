//! A throw-away certificate authority for tests: issues server certificates for DNS
//! names (wildcards included) and client certificates with a subject and SANs, writes
//! them as PEM files into a fresh temp dir, and builds matching rustls configs.
//!
//! ```no_run
//! use meshgate_testkit::certs::TestCa;
//! let ca = TestCa::new("tls-demo");
//! let a = ca.server_cert("a", &["a.test", "*.a.test"]);
//! let alice = ca.client_cert("alice", "alice", &["spiffe://example.org/alice"]);
//! // ca.ca_path(), a.cert, a.key, alice.cert, alice.key are PEM files on disk.
//! ```
//!
//! Certificates are valid from 1975 to 4096 and use ECDSA P-256 keys (rcgen's default).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test CA with its own temp directory (removed when the `TestCa` is dropped).
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

/// One issued certificate: its files on disk and the same material in memory.
#[derive(Clone, Debug)]
pub struct Issued {
    /// Path of the PEM certificate (leaf only; the CA is [`TestCa::ca_path`]).
    pub cert: PathBuf,
    /// Path of the PEM PKCS#8 private key.
    pub key: PathBuf,
    /// The certificate as PEM text.
    pub cert_pem: String,
    /// The private key as PEM text.
    pub key_pem: String,
    /// The certificate as DER, e.g. to compare with what a TLS peer presented.
    pub cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl TestCa {
    /// A new CA named `meshgate test CA (<tag>)`; writes `ca.pem` into a fresh temp dir.
    pub fn new(tag: &str) -> TestCa {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "meshgate-certs-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create cert temp dir");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("meshgate test CA ({tag})"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-signed CA");
        let ca = TestCa { issuer, dir };
        write(&ca.ca_path(), &ca.ca_pem());
        ca
    }

    /// The temp directory holding every file this CA wrote.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the CA certificate (PEM), for `--cacert` or a `caFile` setting.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The CA certificate as PEM text.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate as DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Issues a server certificate (subject CN = first name, SAN = every name; IP
    /// literals become IP SANs) and writes `<file>.crt` / `<file>.key`. Issuing again
    /// with the same `file` replaces both files (atomically, by rename) with a new key.
    pub fn server_cert(&self, file: &str, dns_names: &[&str]) -> Issued {
        let names: Vec<String> = dns_names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("valid DNS names");
        params.distinguished_name = DistinguishedName::new();
        if let Some(first) = dns_names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(file, params)
    }

    /// Issues a client certificate with subject `CN=<common_name>` and the given SANs
    /// (a SAN containing `://` is a URI SAN such as a SPIFFE ID, one containing `@` an
    /// e-mail, anything else a DNS name); writes `<file>.crt` / `<file>.key`.
    pub fn client_cert(&self, file: &str, common_name: &str, sans: &[&str]) -> Issued {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = sans
            .iter()
            .map(|s| {
                let ia5 = (*s).try_into().expect("ASCII SAN");
                if s.contains("://") {
                    SanType::URI(ia5)
                } else if s.contains('@') {
                    SanType::Rfc822Name(ia5)
                } else {
                    SanType::DnsName(ia5)
                }
            })
            .collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(file, params)
    }

    fn issue(&self, file: &str, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let issued = Issued {
            cert: self.dir.join(format!("{file}.crt")),
            key: self.dir.join(format!("{file}.key")),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        };
        write(&issued.key, &issued.key_pem);
        write(&issued.cert, &issued.cert_pem);
        issued
    }

    /// A rustls client config trusting only this CA, offering ALPN `h2` and
    /// `http/1.1`, presenting `client` if given.
    pub fn client_config(&self, client: Option<&Issued>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der()).expect("CA into root store");
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
        let mut config = match client {
            Some(c) => builder
                .with_client_auth_cert(vec![c.cert_der()], c.key_der())
                .expect("client cert and key"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Issued {
    /// The certificate as a rustls DER value.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.cert_der.clone())
    }

    /// The private key as a rustls DER value.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// A rustls server config presenting this certificate (no client auth), offering
    /// ALPN `alpn` (e.g. `&["h2", "http/1.1"]`; empty: no ALPN). For TLS backends.
    pub fn server_config(&self, alpn: &[&str]) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der()], self.key_der())
            .expect("server cert and key");
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The aws-lc-rs crypto provider (meshgate never uses ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Writes `text` to `path` via a temp file and a rename, so a file watcher never sees a
/// half-written file.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write PEM");
    std::fs::rename(&tmp, path).expect("rename PEM into place");
}
