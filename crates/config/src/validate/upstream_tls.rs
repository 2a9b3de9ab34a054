//! Checks of `services[].tls` (what to verify the endpoints against, the client
//! certificate pair) and of `services[].protocol` with `services[].http2`.
//!
//! Whether the files exist and parse is checked when the config is applied (the
//! config crate reads no files): `meshgate validate` passes on a machine without
//! them, and the gateway refuses the config, naming the service and the file.

use std::net::IpAddr;

use crate::Config;
use crate::model::{Service, UpstreamProtocol, UpstreamTls};

use super::Issues;
use super::syntax;

/// Checks the settings at `at` (e.g. `services[0].tls`).
pub(super) fn check(at: &str, s: &UpstreamTls, _config: &Config, issues: &mut Issues) {
    match (&s.ca_file, s.insecure_skip_verify) {
        (None, false) => issues.add(
            at,
            "set caFile (a PEM bundle of the CAs that issue the endpoints' certificates), or insecureSkipVerify: true for development",
        ),
        (Some(_), true) => issues.add(
            format!("{at}.insecureSkipVerify"),
            "not allowed with caFile: either verify against caFile or skip verification",
        ),
        _ => {}
    }
    for (field, value) in [
        ("caFile", &s.ca_file),
        ("clientCertFile", &s.client_cert_file),
        ("clientKeyFile", &s.client_key_file),
    ] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            issues.add(format!("{at}.{field}"), "must not be empty");
        }
    }
    match (&s.client_cert_file, &s.client_key_file) {
        (Some(_), None) => issues.add(
            format!("{at}.clientCertFile"),
            "needs clientKeyFile: the private key of the client certificate",
        ),
        (None, Some(_)) => issues.add(
            format!("{at}.clientKeyFile"),
            "needs clientCertFile: the certificate of the client key",
        ),
        _ => {}
    }
    if let Some(name) = &s.server_name
        && name.parse::<IpAddr>().is_err()
        && let Some(msg) = syntax::plain_hostname(name)
    {
        issues.add(
            format!("{at}.serverName"),
            format!("{msg} or an IP address"),
        );
    }
}

/// Checks that `http2` settings come with `protocol: HTTP2` (service at `base`,
/// e.g. `services[0]`).
pub(crate) fn check_protocol(base: &str, s: &Service, issues: &mut Issues) {
    if s.http2.is_some() && s.protocol != UpstreamProtocol::HTTP2 {
        issues.add(
            format!("{base}.http2"),
            format!(
                "only allowed when protocol is HTTP2 (protocol is {:?})",
                s.protocol
            ),
        );
    }
}
