//! The server TLS handshake of an `HTTPS` connection, and why one failed: the
//! reason counted in `meshgate_tls_handshake_failures_total` ([`TlsFailure`]).
//!
//! The ClientHello is read first ([`LazyConfigAcceptor`]) so that a refused
//! certificate choice can tell "no SNI" from "an SNI no certificate serves"; the
//! handshake then continues with the listener's current config, as
//! `TlsAcceptor::accept` would.

use std::io;
use std::sync::Arc;

use meshgate_observe::metrics::TlsFailure;
use rustls::{AlertDescription, Error, PeerIncompatible};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};

/// A failed handshake: the error, and whether the ClientHello carried an SNI
/// (`None` when it was not read).
pub(super) struct Failed {
    pub error: io::Error,
    pub sni: Option<bool>,
}

impl Failed {
    pub(super) fn reason(&self) -> TlsFailure {
        reason(&self.error, self.sni)
    }
}

/// Runs the server side of the handshake on `stream` with `acceptor`'s config.
pub(super) async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> Result<TlsStream<TcpStream>, Failed> {
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
        .await
        .map_err(|error| Failed { error, sni: None })?;
    let sni = start.client_hello().server_name().is_some();
    start
        .into_stream(Arc::clone(acceptor.config()))
        .await
        .map_err(|error| Failed {
            error,
            sni: Some(sni),
        })
}

/// The reason for a failed handshake: the rustls error inside `e` when there is
/// one, else what happened to the connection. `sni`: whether the client sent one.
pub(crate) fn reason(e: &io::Error, sni: Option<bool>) -> TlsFailure {
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) else {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => TlsFailure::Closed,
            _ => TlsFailure::Other,
        };
    };
    match tls {
        Error::NoCertificatesPresented => TlsFailure::NoCertificate,
        Error::InvalidCertificate(_) | Error::InvalidCertRevocationList(_) => {
            TlsFailure::BadCertificate
        }
        // What rustls says when the certificate resolver (sniStrict) chose none.
        Error::General(msg) if msg == "no server certificate chain resolved" => match sni {
            Some(true) => TlsFailure::UnknownSni,
            _ => TlsFailure::NoSni,
        },
        Error::PeerIncompatible(p) => match p {
            PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::ServerDoesNotSupportTls12Or13
            | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig => {
                TlsFailure::ProtocolVersion
            }
            _ => TlsFailure::Incompatible,
        },
        Error::NoApplicationProtocol => TlsFailure::Incompatible,
        Error::AlertReceived(alert) => match alert {
            AlertDescription::ProtocolVersion => TlsFailure::ProtocolVersion,
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA => TlsFailure::CertificateRejected,
            _ => TlsFailure::Other,
        },
        Error::InvalidMessage(_)
        | Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. }
        | Error::PeerSentOversizedRecord => TlsFailure::NotTls,
        _ => TlsFailure::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError;

    fn tls(e: Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn rustls_errors_map_to_reasons() {
        let cases = [
            (tls(Error::NoCertificatesPresented), None, "no_certificate"),
            (
                tls(Error::InvalidCertificate(CertificateError::UnknownIssuer)),
                None,
                "bad_certificate",
            ),
            (
                tls(Error::General(
                    "no server certificate chain resolved".into(),
                )),
                Some(true),
                "unknown_sni",
            ),
            (
                tls(Error::General(
                    "no server certificate chain resolved".into(),
                )),
                Some(false),
                "no_sni",
            ),
            (
                tls(PeerIncompatible::Tls12NotOfferedOrEnabled.into()),
                Some(true),
                "protocol_version",
            ),
            (
                tls(PeerIncompatible::NoCipherSuitesInCommon.into()),
                None,
                "incompatible",
            ),
            (
                tls(Error::AlertReceived(AlertDescription::UnknownCA)),
                Some(true),
                "certificate_rejected",
            ),
            (
                tls(Error::InvalidMessage(
                    rustls::InvalidMessage::InvalidContentType,
                )),
                None,
                "not_tls",
            ),
            (io::ErrorKind::UnexpectedEof.into(), None, "closed"),
            (io::ErrorKind::ConnectionReset.into(), Some(true), "closed"),
            (tls(Error::General("?".into())), None, "other"),
            (io::Error::other("?"), None, "other"),
        ];
        for (e, sni, want) in cases {
            assert_eq!(reason(&e, sni).as_str(), want, "{e:?}");
        }
    }
}
