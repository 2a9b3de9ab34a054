//! `meshgate_tls_handshake_failures_total{listener, reason}`: TLS handshakes of
//! `HTTPS` listeners that did not complete, by a small fixed set of reasons
//! ([`TlsFailure`]), so cardinality is bounded by the number of listeners. The
//! gateway maps the TLS library's error to a reason where the handshake runs.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::Name;

/// Why a TLS handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsFailure {
    /// `sniStrict`, and the client sent no SNI.
    NoSni,
    /// `sniStrict`, and no certificate serves the client's SNI.
    UnknownSni,
    /// `clientAuth.mode: Require`, and the client presented no certificate.
    NoCertificate,
    /// The client's certificate did not verify (unknown issuer, expired, wrong
    /// usage, …).
    BadCertificate,
    /// The client refused the gateway's certificate (an alert such as
    /// `unknown_ca` or `bad_certificate`: it does not trust the CA, or the name).
    CertificateRejected,
    /// No TLS version both sides accept (e.g. a TLS 1.2 client, `minVersion: TLS1_3`).
    ProtocolVersion,
    /// No common cipher suite, key-exchange group, signature scheme or ALPN protocol.
    Incompatible,
    /// What the client sent is not TLS (e.g. plain HTTP to the HTTPS port) or is
    /// malformed.
    NotTls,
    /// The client closed or reset the connection before the handshake finished.
    Closed,
    /// The handshake did not finish within `handshakeTimeout`.
    Timeout,
    /// Mesh mTLS: the peer's verified SPIFFE ID is not in `allowedPeers`.
    PeerNotAllowed,
    /// Anything else (including alerts the client sent for other reasons).
    Other,
}

impl TlsFailure {
    /// Every reason, in a fixed order.
    pub const ALL: [TlsFailure; 12] = [
        TlsFailure::NoSni,
        TlsFailure::UnknownSni,
        TlsFailure::NoCertificate,
        TlsFailure::BadCertificate,
        TlsFailure::CertificateRejected,
        TlsFailure::ProtocolVersion,
        TlsFailure::Incompatible,
        TlsFailure::NotTls,
        TlsFailure::Closed,
        TlsFailure::Timeout,
        TlsFailure::PeerNotAllowed,
        TlsFailure::Other,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsFailure::NoSni => "no_sni",
            TlsFailure::UnknownSni => "unknown_sni",
            TlsFailure::NoCertificate => "no_certificate",
            TlsFailure::BadCertificate => "bad_certificate",
            TlsFailure::CertificateRejected => "certificate_rejected",
            TlsFailure::ProtocolVersion => "protocol_version",
            TlsFailure::Incompatible => "incompatible",
            TlsFailure::NotTls => "not_tls",
            TlsFailure::Closed => "closed",
            TlsFailure::Timeout => "timeout",
            TlsFailure::PeerNotAllowed => "peer_not_allowed",
            TlsFailure::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsFailureLabels {
    pub listener: Name,
    pub reason: &'static str,
}

/// The failed-handshake counters of every `HTTPS` listener.
#[derive(Debug, Clone, Default)]
pub struct TlsHandshakeFailures(Family<TlsFailureLabels, Counter>);

impl TlsHandshakeFailures {
    /// Creates the family and registers it in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let this = Self::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes of HTTPS listeners that failed, by listener and reason",
            this.0.clone(),
        );
        this
    }

    /// Counts one failed handshake on `listener`. Failures only: the label lookup
    /// is never on the path of a connection that succeeds.
    pub fn inc(&self, listener: &Arc<str>, reason: TlsFailure) {
        self.0
            .get_or_create(&TlsFailureLabels {
                listener: Name(listener.clone()),
                reason: reason.as_str(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_listener_and_reason() {
        let mut registry = Registry::with_prefix("meshgate");
        let failures = TlsHandshakeFailures::register(&mut registry);
        let web: Arc<str> = Arc::from("web");
        failures.inc(&web, TlsFailure::UnknownSni);
        failures.inc(&web, TlsFailure::UnknownSni);
        failures.inc(&web, TlsFailure::Timeout);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "meshgate_tls_handshake_failures_total{listener=\"web\",reason=\"unknown_sni\"} 2"
            ),
            "{text}"
        );
        let names: std::collections::HashSet<_> =
            TlsFailure::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), TlsFailure::ALL.len());
    }
}
