//! Issuing an X.509-SVID: the CSR proves the workload holds the private key
//! (its self-signature is checked); everything else in it — subject, SANs, key
//! usages, CA flags — is ignored. The certificate carries exactly one URI SAN,
//! the SPIFFE ID the caller was found entitled to (see `service.rs`), key usage
//! digitalSignature, extended key usages serverAuth and clientAuth, a random
//! serial, and is valid from one minute ago (clock skew) for its TTL.

use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType, SerialNumber,
};

use super::{MeshCa, to_pem};

/// Longest service or namespace name (a DNS label).
const MAX_NAME: usize = 63;
/// Shortest lifetime issued (shorter requests get this).
const MIN_TTL: Duration = Duration::from_secs(1);

/// Why a certificate was not issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("the CSR cannot be used: {0}")]
    Csr(String),
    #[error(
        "{what} {value:?}: 1-63 characters, lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
    )]
    Name { what: &'static str, value: String },
    #[error("signing failed: {0}")]
    Sign(#[from] rcgen::Error),
}

/// An issued certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, then the intermediates (PEM).
    pub chain_pem: String,
    pub spiffe_id: String,
    pub not_after: SystemTime,
}

impl MeshCa {
    /// Signs `csr_pem` for `service` in `namespace` (the caller's entitlement is
    /// checked before); `ttl` None means the default, longer than the maximum
    /// is cut to the maximum.
    pub fn issue(
        &self,
        csr_pem: &str,
        namespace: &str,
        service: &str,
        ttl: Option<Duration>,
    ) -> Result<Issued, IssueError> {
        check_name("namespace", namespace)?;
        check_name("service", service)?;
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| IssueError::Csr(e.to_string()))?;
        let ttl = ttl
            .unwrap_or(self.cert_ttl)
            .clamp(MIN_TTL, self.max_cert_ttl);
        let spiffe_id = self.spiffe_id(namespace, service);

        let now = time::OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "meshgate");
        params.distinguished_name = name;
        params.subject_alt_names = vec![SanType::URI(spiffe_id.clone().try_into().map_err(
            |_| IssueError::Name {
                what: "service",
                value: service.to_owned(),
            },
        )?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        params.not_before = now - time::Duration::minutes(1);
        let not_after = now + ttl;
        params.not_after = not_after;

        let signer = self.lock().active.clone();
        let cert = params.signed_by(&csr.public_key, &signer.issuer)?;
        let mut chain_pem = to_pem(cert.der());
        for c in &signer.chain {
            chain_pem.push_str(&to_pem(c));
        }
        let not_after = SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(not_after.unix_timestamp()).unwrap_or(0));
        Ok(Issued {
            chain_pem,
            spiffe_id,
            not_after,
        })
    }
}

/// A random positive 128-bit serial (RFC 5280: at most 20 octets, positive).
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // The system RNG failing is not recoverable in any useful way; fall back to
    // a non-cryptographic source rather than issuing a constant serial.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        bytes = fastrand::u128(..).to_be_bytes();
    }
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn check_name(what: &'static str, value: &str) -> Result<(), IssueError> {
    let b = value.as_bytes();
    let edge = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok = !b.is_empty()
        && b.len() <= MAX_NAME
        && edge(b.first())
        && edge(b.last())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.');
    if ok {
        Ok(())
    } else {
        Err(IssueError::Name {
            what,
            value: value.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["orders", "a", "orders-v2", "team.orders", "x1"] {
            assert!(check_name("service", good).is_ok(), "{good}");
        }
        for bad in ["", "Orders", "-x", "x-", "a/b", "a b", &"x".repeat(64), "é"] {
            assert!(check_name("service", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serials_are_positive_and_differ() {
        let a = random_serial().to_bytes();
        let b = random_serial().to_bytes();
        assert_ne!(a, b);
        assert!(a[0] & 0x80 == 0 && a[0] != 0);
    }
}
