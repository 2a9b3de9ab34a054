//! Checks of `listeners[].tls`: at least one certificate, file names present,
//! hostnames well-formed and served by one certificate only, ALPN without
//! repeats, a handshake timeout above zero.
//!
//! Whether the files exist, parse and match (certificate and key) is checked when
//! the config is applied (the config crate reads no files): `meshgate validate`
//! passes on a machine without them, and the gateway refuses the config, naming the
//! listener and the file.

use crate::Config;
use crate::model::ListenerTls;

use super::Issues;
use super::syntax;

/// Checks the settings at `at` (e.g. `listeners[0].tls`).
pub(super) fn check(at: &str, s: &ListenerTls, _config: &Config, issues: &mut Issues) {
    if s.certificates.is_empty() {
        issues.add(
            format!("{at}.certificates"),
            "needs at least one certificate ({certFile, keyFile})",
        );
    }
    // (hostname in lower case, certificates index) of every explicit hostname so far.
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (i, c) in s.certificates.iter().enumerate() {
        let base = format!("{at}.certificates[{i}]");
        for (field, value) in [("certFile", &c.cert_file), ("keyFile", &c.key_file)] {
            if value.trim().is_empty() {
                issues.add(format!("{base}.{field}"), "must not be empty");
            }
        }
        for (j, h) in c.hostnames.iter().enumerate() {
            let path = format!("{base}.hostnames[{j}]");
            if let Some(msg) = syntax::route_hostname(h) {
                issues.add(path, msg);
                continue;
            }
            let lower = h.to_ascii_lowercase();
            match seen.iter().find(|(name, _)| *name == lower) {
                Some((_, first)) if *first == i => {
                    issues.add(path, format!("{h:?} is listed twice"));
                }
                Some((_, first)) => issues.add(
                    path,
                    format!("{h:?} is already served by certificates[{first}]"),
                ),
                None => seen.push((lower, i)),
            }
        }
    }
    if s.alpn.is_empty() {
        issues.add(
            format!("{at}.alpn"),
            "must name at least one protocol: h2, http/1.1",
        );
    }
    for (k, p) in s.alpn.iter().enumerate() {
        if s.alpn[..k].contains(p) {
            issues.add(
                format!("{at}.alpn[{k}]"),
                format!("{} is listed twice", p.id()),
            );
        }
    }
    if let Some(auth) = &s.client_auth
        && auth.ca_file.trim().is_empty()
    {
        issues.add(format!("{at}.clientAuth.caFile"), "must not be empty");
    }
    if s.handshake_timeout.get().is_zero() {
        issues.add(format!("{at}.handshakeTimeout"), "must be greater than 0");
    }
}
