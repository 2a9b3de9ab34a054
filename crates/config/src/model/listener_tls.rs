//! TLS termination settings of an `HTTPS` listener (`listeners[].tls`), and the
//! HTTP→HTTPS redirect of an `HTTP` listener (`listeners[].httpsRedirect`).
//!
//! Certificate, key and CA files are read when the config is applied, not by
//! `meshgate validate`: a missing, unreadable or mismatched file refuses the whole
//! config (naming the listener and the file) and the running config stays.

use std::num::NonZeroU16;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// Certificates (chosen by SNI), protocol versions, ALPN, client certificates.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenerTls {
    /// Certificates served, chosen by the client's SNI: an exact hostname first, then
    /// a wildcard (`*.example.com` matches one label). The first one is also the
    /// default for clients whose SNI matches none (unless `sniStrict`). At least one.
    pub certificates: Vec<ListenerCertificate>,
    /// Refuse the handshake when the client sends no SNI or one that matches no
    /// certificate's hostnames. Default false: such clients get the first certificate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sni_strict: bool,
    /// Oldest TLS version accepted: `TLS1_2` (default) or `TLS1_3`.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Application protocols offered by ALPN, in order of preference. Default
    /// `[h2, http/1.1]`; `[http/1.1]` keeps clients on HTTP/1.1.
    #[serde(default = "ListenerTls::default_alpn")]
    pub alpn: Vec<AlpnProtocol>,
    /// Verify client certificates (mTLS at the edge). Absent: none are asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
    /// A client that has not completed the TLS handshake within this is
    /// disconnected. Default `10s`.
    #[serde(default = "ListenerTls::default_handshake_timeout")]
    pub handshake_timeout: Duration,
}

impl ListenerTls {
    fn default_alpn() -> Vec<AlpnProtocol> {
        vec![AlpnProtocol::H2, AlpnProtocol::Http11]
    }
    fn default_handshake_timeout() -> Duration {
        Duration::from_secs(10)
    }
}

impl Default for ListenerTls {
    fn default() -> Self {
        Self {
            certificates: Vec::new(),
            sni_strict: false,
            min_version: TlsVersion::default(),
            alpn: Self::default_alpn(),
            client_auth: None,
            handshake_timeout: Self::default_handshake_timeout(),
        }
    }
}

/// One certificate with its private key, and the hostnames it serves.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenerCertificate {
    /// PEM file: the certificate first, then its intermediates. Re-read when it
    /// changes on disk (checked every second); a broken new file keeps the old one.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) matching `certFile`.
    pub key_file: String,
    /// SNI names this certificate is chosen for (`*.example.com` for one label of
    /// any subdomain). Default: the DNS names in the certificate's subjectAltName.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
}

/// TLS protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[allow(non_camel_case_types)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    TLS1_2,
    /// TLS 1.3 only.
    TLS1_3,
}

/// Application protocols negotiated by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum AlpnProtocol {
    /// HTTP/2.
    #[serde(rename = "h2")]
    H2,
    /// HTTP/1.1.
    #[serde(rename = "http/1.1")]
    Http11,
}

impl AlpnProtocol {
    /// The protocol id sent in ALPN.
    pub fn id(self) -> &'static str {
        match self {
            AlpnProtocol::H2 => "h2",
            AlpnProtocol::Http11 => "http/1.1",
        }
    }
}

/// Client certificate verification at the edge.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientAuth {
    /// PEM bundle of the CAs whose (chains of) client certificates are accepted.
    /// Re-read when it changes on disk, like the certificates.
    pub ca_file: String,
    /// `Require` (default): a client without a valid certificate is refused in the
    /// handshake. `Optional`: clients without one are let in (with one, it must verify).
    #[serde(default)]
    pub mode: ClientAuthMode,
}

/// Whether a client certificate is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
pub enum ClientAuthMode {
    /// No valid client certificate, no connection.
    #[default]
    Require,
    /// Verified when presented; clients without one are let in.
    Optional,
}

/// Answer every request of an `HTTP` listener with a redirect to HTTPS.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpsRedirect {
    /// Port of the `Location` URL (`https://host:port/path?query`; omitted when 443).
    /// Default 443.
    #[serde(default = "HttpsRedirect::default_port")]
    pub port: NonZeroU16,
}

impl HttpsRedirect {
    fn default_port() -> NonZeroU16 {
        NonZeroU16::MIN.saturating_add(442)
    }
}
