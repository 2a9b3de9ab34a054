//! Settings of the `ClientCert` policy (authentication by the client certificate a
//! listener's `tls.clientAuth` verified), and the RFC 4514 subject reading that
//! validation and the policy share, so a configured subject compares with a
//! certificate's exactly as written by the TLS layer.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who the verified client certificate says the caller is.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientCertPolicy {
    /// Which certificate field becomes the consumer's name: `subjectCN` (the
    /// subject's common name), `subject` (the whole RFC 4514 subject), `uri` (a
    /// subjectAltName URI, e.g. a SPIFFE ID) or `dns` (a subjectAltName DNS name).
    /// Default `subjectCN`.
    #[serde(default)]
    pub consumer_from: ClientCertIdentity,
    /// Certificates accepted: one whose fields match ANY entry (all conditions of
    /// the entry) passes; others are refused with 403. Empty (default): every
    /// certificate the listener verified passes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<ClientCertMatch>,
    /// Only certificates whose consumer name is a `consumers:` entry pass (403
    /// otherwise). Default false: any name is a consumer, with the groups below.
    #[serde(default)]
    pub require_consumer: bool,
    /// Groups given to every caller this policy authenticates, after the groups of
    /// the `consumers:` entry of the same name (if any). Default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Header set upstream to the consumer's name. Any copy the client sent is
    /// removed first, so it cannot be forged. Default `x-consumer`.
    #[serde(default = "ClientCertPolicy::default_consumer_header")]
    pub consumer_header: String,
    /// Header set upstream to the consumer's groups, comma-separated (client copies
    /// removed). Default `x-consumer-groups`.
    #[serde(default = "ClientCertPolicy::default_groups_header")]
    pub groups_header: String,
    /// Header set upstream to the certificate's RFC 4514 subject (client copies
    /// removed). Default `x-client-cert-subject`.
    #[serde(default = "ClientCertPolicy::default_subject_header")]
    pub subject_header: String,
}

impl Default for ClientCertPolicy {
    fn default() -> Self {
        ClientCertPolicy {
            consumer_from: ClientCertIdentity::default(),
            allow: Vec::new(),
            require_consumer: false,
            groups: Vec::new(),
            consumer_header: Self::default_consumer_header(),
            groups_header: Self::default_groups_header(),
            subject_header: Self::default_subject_header(),
        }
    }
}

impl ClientCertPolicy {
    fn default_consumer_header() -> String {
        "x-consumer".into()
    }
    fn default_groups_header() -> String {
        "x-consumer-groups".into()
    }
    fn default_subject_header() -> String {
        "x-client-cert-subject".into()
    }
}

/// The certificate field that names the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ClientCertIdentity {
    /// The first `CN` of the subject as RFC 4514 writes it (the most specific one).
    #[default]
    #[serde(rename = "subjectCN")]
    SubjectCn,
    /// The whole subject, RFC 4514 (`CN=alice,O=Example`).
    Subject,
    /// The first subjectAltName URI (that the matching `allow` entry accepts).
    Uri,
    /// The first subjectAltName DNS name (that the matching `allow` entry accepts).
    Dns,
}

impl ClientCertIdentity {
    /// The config spelling, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientCertIdentity::SubjectCn => "subjectCN",
            ClientCertIdentity::Subject => "subject",
            ClientCertIdentity::Uri => "uri",
            ClientCertIdentity::Dns => "dns",
        }
    }
}

/// Conditions on a certificate; all that are given must hold, at least one is
/// given. `uri`/`uriPrefix` and `dns`/`dnsSuffix` are each one or the other.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientCertMatch {
    /// The subject, RFC 4514 (`CN=alice,O=Example`): compared attribute by
    /// attribute, types case-insensitively, values exactly; spaces around `,`, `+`
    /// and `=` are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// A subjectAltName URI equals this (`spiffe://example.org/ns/a/sa/b`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// A subjectAltName URI starts with this (`spiffe://example.org/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_prefix: Option<String>,
    /// A subjectAltName DNS name equals this (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    /// A subjectAltName DNS name ends with this (case-insensitive); starts with `.`
    /// (`.partners.example`), so `evilpartners.example` does not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_suffix: Option<String>,
}

/// Attribute types the TLS layer writes by name; any other is written as a dotted
/// OID (`2.5.4.5`).
const ATTRIBUTE_NAMES: [&str; 9] = ["CN", "C", "L", "ST", "STREET", "O", "OU", "DC", "UID"];

/// An RFC 4514 distinguished name in the canonical form the TLS layer writes
/// certificate subjects in: types upper-case (or dotted OIDs), no spaces around
/// separators, values escaped the same way. `Err` says what is wrong.
pub fn canonical_subject(dn: &str) -> Result<String, String> {
    let rdns = parse_subject(dn)?;
    let mut out = String::with_capacity(dn.len());
    for (i, rdn) in rdns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, (kind, value)) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            out.push_str(kind);
            out.push('=');
            escape_value(value, &mut out);
        }
    }
    Ok(out)
}

/// The value of the first `CN` of an RFC 4514 subject (unescaped), if it has one.
pub fn subject_common_name(dn: &str) -> Option<String> {
    parse_subject(dn)
        .ok()?
        .into_iter()
        .flatten()
        .find_map(|(kind, value)| (kind == "CN").then_some(value))
}

/// RDNs, each a list of (upper-case type, unescaped value).
type Rdns = Vec<Vec<(String, String)>>;

fn parse_subject(dn: &str) -> Result<Rdns, String> {
    let mut rdns: Rdns = vec![Vec::new()];
    let mut chars = dn.chars().peekable();
    loop {
        let mut written = String::new();
        let mut has_equals = false;
        for c in chars.by_ref() {
            if c == '=' {
                has_equals = true;
                break;
            }
            written.push(c);
        }
        let written = written.trim();
        if written.is_empty() || !has_equals {
            return Err("expected TYPE=value pairs separated by \",\" (CN=alice,O=Example)".into());
        }
        let kind = written.to_ascii_uppercase();
        let dotted = kind.split('.').count() > 1
            && kind
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !ATTRIBUTE_NAMES.contains(&kind.as_str()) && !dotted {
            return Err(format!(
                "unknown attribute type {written:?}: use {} or a dotted OID \
                 (e-mail: 1.2.840.113549.1.9.1)",
                ATTRIBUTE_NAMES.join(", ")
            ));
        }
        // The value: up to an unescaped `,` or `+`; `\c` and `\XX` (hex) escapes.
        // Unescaped spaces around it are layout, not value.
        let mut value = String::new();
        let mut bytes: Vec<u8> = Vec::new();
        let mut escaped_tail = 0;
        let mut end = None;
        while let Some(c) = chars.next() {
            match c {
                ',' | '+' => {
                    end = Some(c);
                    break;
                }
                '\\' => {
                    let Some(e) = chars.next() else {
                        return Err("ends with a lone \"\\\"".into());
                    };
                    let lo = chars.peek().and_then(|l| l.to_digit(16));
                    match (e.to_digit(16), lo) {
                        (Some(hi), Some(lo)) => {
                            chars.next();
                            bytes.push((hi * 16 + lo) as u8);
                        }
                        _ => {
                            flush(&mut value, &mut bytes, &mut escaped_tail);
                            value.push(e);
                            escaped_tail = value.len();
                        }
                    }
                }
                ' ' if value.is_empty() && bytes.is_empty() => {}
                c => {
                    flush(&mut value, &mut bytes, &mut escaped_tail);
                    value.push(c);
                }
            }
        }
        flush(&mut value, &mut bytes, &mut escaped_tail);
        let kept = value.trim_end_matches(' ').len().max(escaped_tail);
        value.truncate(kept);
        if value.is_empty() {
            return Err(format!("attribute {kind} has an empty value"));
        }
        if let Some(rdn) = rdns.last_mut() {
            rdn.push((kind, value));
        }
        match end {
            Some(',') => rdns.push(Vec::new()),
            Some(_) => {}
            None => return Ok(rdns),
        }
    }
}

/// Appends pending hex-escaped bytes (as UTF-8, lossily) to `value`; they are
/// escaped, so the value's escaped part now reaches its end.
fn flush(value: &mut String, bytes: &mut Vec<u8>, escaped_tail: &mut usize) {
    if !bytes.is_empty() {
        value.push_str(&String::from_utf8_lossy(bytes));
        bytes.clear();
        *escaped_tail = value.len();
    }
}

/// RFC 4514 escaping, as the TLS layer writes certificate subjects.
fn escape_value(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        if c == '\0' {
            out.push_str("\\00");
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_made_canonical() {
        let ok = |s: &str| canonical_subject(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("CN=alice,O=Example"), "CN=alice,O=Example");
        assert_eq!(ok(" cn = alice , o=Example Inc "), "CN=alice,O=Example Inc");
        assert_eq!(ok("CN=a\\,b\\2Cc+uid=7"), "CN=a\\,b\\,c+UID=7");
        assert_eq!(ok("CN=\\ x\\ "), "CN=\\ x\\ ");
        assert_eq!(ok("2.5.4.5=123,CN=caf\\C3\\A9"), "2.5.4.5=123,CN=café");
        for bad in [
            "",
            "alice",
            "CN=",
            "emailAddress=a@b",
            "CN=a,",
            "CN=a\\",
            "=x",
        ] {
            assert!(canonical_subject(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn common_name_is_the_first_cn() {
        assert_eq!(
            subject_common_name("CN=alice\\, admin,CN=outer,O=Example").as_deref(),
            Some("alice, admin")
        );
        assert_eq!(subject_common_name("O=Example"), None);
        assert_eq!(subject_common_name("garbage"), None);
    }
}
