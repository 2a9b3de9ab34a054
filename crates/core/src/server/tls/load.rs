//! Reads an `HTTPS` listener's certificate, key and CA files and builds its rustls
//! `ServerConfig` (aws-lc-rs provider): versions, ALPN, the SNI certificate table,
//! the client-certificate verifier. Every error names the file it is about.

use std::path::Path;
use std::sync::Arc;

use meshgate_config::{ClientAuthMode, ListenerTls, TlsVersion};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::sni::SniResolver;
use super::x509;

/// Why a listener's TLS settings could not be turned into a rustls config.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file} is not a PEM certificate file: {reason}")]
    BadCert { file: String, reason: String },
    #[error("{file} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}")]
    BadKey { file: String, reason: String },
    #[error("private key {key} does not match certificate {cert}")]
    KeyMismatch { cert: String, key: String },
    #[error("certificate {file} with key {key}: {reason}")]
    Unusable {
        file: String,
        key: String,
        reason: String,
    },
    #[error(
        "certificate {file} has no DNS names in its subjectAltName and no hostnames are set, so no SNI can select it; set hostnames"
    )]
    NoNames { file: String },
    #[error("{file} holds no usable CA certificate ({reason})")]
    BadCa { file: String, reason: String },
    #[error("cannot build the TLS config: {0}")]
    Config(String),
}

/// The only crypto provider meshgate uses.
pub(super) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads every file `s` names and builds the server config.
pub(super) fn server_config(s: &ListenerTls) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let mut resolver = SniResolver::default();
    for (i, c) in s.certificates.iter().enumerate() {
        let chain = read_chain(&c.cert_file)?;
        let key = read_key(&c.key_file)?;
        let names = chain
            .first()
            .and_then(|leaf| x509::names(leaf))
            .unwrap_or_default();
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                cert: c.cert_file.clone(),
                key: c.key_file.clone(),
            },
            other => TlsError::Unusable {
                file: c.cert_file.clone(),
                key: c.key_file.clone(),
                reason: other.to_string(),
            },
        })?;
        let hostnames = if c.hostnames.is_empty() {
            names.dns
        } else {
            for h in c.hostnames.iter().filter(|h| !covers(&names.dns, h)) {
                tracing::warn!(
                    certificate = %c.cert_file,
                    hostname = %h,
                    "hostname is not among the certificate's DNS names: clients will refuse it"
                );
            }
            c.hostnames.clone()
        };
        // A certificate without names is still served as the default (the first
        // one, when unknown SNI is allowed); anywhere else it could never be chosen.
        let is_default = i == 0 && !s.sni_strict;
        if hostnames.is_empty() && !is_default {
            return Err(TlsError::NoNames {
                file: c.cert_file.clone(),
            });
        }
        resolver.add(&hostnames, Arc::new(certified), is_default);
    }

    let versions: &[&'static rustls::SupportedProtocolVersion] = match s.min_version {
        TlsVersion::TLS1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::TLS1_3 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &s.client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let roots = read_roots(&auth.ca_file)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match auth.mode {
                ClientAuthMode::Require => verifier,
                ClientAuthMode::Optional => verifier.allow_unauthenticated(),
            };
            let verifier = verifier.build().map_err(|e| TlsError::BadCa {
                file: auth.ca_file.clone(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = s.alpn.iter().map(|p| p.id().as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}

/// Whether a certificate with subjectAltName DNS names `sans` is valid for
/// `hostname` (itself possibly a wildcard, covered only by the same wildcard).
fn covers(sans: &[String], hostname: &str) -> bool {
    sans.iter().any(|san| {
        san.eq_ignore_ascii_case(hostname)
            || san.strip_prefix("*.").is_some_and(|parent| {
                !hostname.starts_with("*.")
                    && hostname
                        .split_once('.')
                        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(parent))
            })
    })
}

fn read(file: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(Path::new(file)).map_err(|source| TlsError::Read {
        file: file.to_owned(),
        source,
    })
}

/// The certificate chain of a PEM file, leaf first.
fn read_chain(file: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(file)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCert {
            file: file.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::BadCert {
            file: file.to_owned(),
            reason: "no \"BEGIN CERTIFICATE\" section".into(),
        });
    }
    Ok(chain)
}

fn read_key(file: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(file)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::BadKey {
        file: file.to_owned(),
        reason: e.to_string(),
    })
}

fn read_roots(file: &str) -> Result<RootCertStore, TlsError> {
    let certs = read_chain(file).map_err(|e| match e {
        TlsError::BadCert { file, reason } => TlsError::BadCa { file, reason },
        other => other,
    })?;
    let mut roots = RootCertStore::empty();
    let (_, refused) = roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        return Err(TlsError::BadCa {
            file: file.to_owned(),
            reason: format!("{refused} certificate(s) could not be parsed"),
        });
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn wildcard_sans_cover_one_label() {
        let sans = ["a.test".to_owned(), "*.b.test".to_owned()];
        assert!(covers(&sans, "A.test"));
        assert!(covers(&sans, "x.b.test"));
        assert!(covers(&sans, "*.b.test"));
        assert!(!covers(&sans, "b.test"));
        assert!(!covers(&sans, "y.x.b.test"));
        assert!(!covers(&sans, "*.a.test"));
    }
}
