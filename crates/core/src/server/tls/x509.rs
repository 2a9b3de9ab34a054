//! Just enough X.509 reading for TLS termination: a certificate's subject (as an
//! RFC 4514 string) and its subjectAltName DNS names, URIs and e-mail addresses.
//! Signatures and validity are rustls' job; this only reads fields, and returns
//! `None` on anything malformed instead of panicking (peers send these bytes).

use std::fmt::Write;

/// What the gateway reads from a certificate.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CertNames {
    /// The subject as RFC 4514 writes it: RDNs in reverse order (`CN=alice,O=Example`
    /// for a certificate whose subject is `O=Example` then `CN=alice`).
    pub subject: String,
    /// subjectAltName dNSName entries (wildcards kept as `*.example.com`).
    pub dns: Vec<String>,
    /// subjectAltName URI entries (SPIFFE IDs live here).
    pub uris: Vec<String>,
    /// subjectAltName rfc822Name entries.
    pub emails: Vec<String>,
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const EXTENSIONS: u8 = 0xa3;
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// Reads the names of a DER certificate.
pub fn names(der: &[u8]) -> Option<CertNames> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (mut tbs, _) = expect(cert, SEQUENCE)?;
    // version [0] EXPLICIT is optional.
    if tbs.first() == Some(&0xa0) {
        tbs = next(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity.
    for _ in 0..4 {
        tbs = next(tbs)?.2;
    }
    let (subject, mut rest) = expect(tbs, SEQUENCE)?;
    let mut out = CertNames {
        subject: subject_string(subject)?,
        ..CertNames::default()
    };
    // subjectPublicKeyInfo, then the optional unique ids and extensions.
    rest = next(rest)?.2;
    while !rest.is_empty() {
        let (tag, body, after) = next(rest)?;
        rest = after;
        if tag == EXTENSIONS {
            read_extensions(expect(body, SEQUENCE)?.0, &mut out)?;
        }
    }
    Some(out)
}

fn read_extensions(mut exts: &[u8], out: &mut CertNames) -> Option<()> {
    while !exts.is_empty() {
        let (ext, rest) = expect(exts, SEQUENCE)?;
        exts = rest;
        let (oid, mut ext) = expect(ext, OID)?;
        if oid != SUBJECT_ALT_NAME {
            continue;
        }
        if ext.first() == Some(&0x01) {
            ext = next(ext)?.2; // critical BOOLEAN
        }
        let (value, _) = expect(ext, 0x04)?;
        let (mut general_names, _) = expect(value, SEQUENCE)?;
        while !general_names.is_empty() {
            let (tag, body, rest) = next(general_names)?;
            general_names = rest;
            let text = || String::from_utf8_lossy(body).into_owned();
            match tag {
                0x81 => out.emails.push(text()),
                0x82 => out.dns.push(text()),
                0x86 => out.uris.push(text()),
                _ => {}
            }
        }
    }
    Some(())
}

/// RFC 4514: RDNs in reverse order, `,` between RDNs, `+` within one.
fn subject_string(mut name: &[u8]) -> Option<String> {
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (rdn, rest) = expect(name, SET)?;
        name = rest;
        let mut parts = Vec::new();
        let mut atvs = rdn;
        while !atvs.is_empty() {
            let (atv, rest) = expect(atvs, SEQUENCE)?;
            atvs = rest;
            let (oid, value) = expect(atv, OID)?;
            let (tag, body, _) = next(value)?;
            parts.push(format!(
                "{}={}",
                attribute_name(oid),
                value_string(tag, body)
            ));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn attribute_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x09] => "STREET".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID".into(),
        _ => dotted(oid),
    }
}

/// An OID in dotted form (`1.2.840.113549.1.9.1`).
fn dotted(oid: &[u8]) -> String {
    let mut out = String::new();
    let mut value: u64 = 0;
    let mut first = true;
    for &b in oid {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 != 0 {
            continue;
        }
        if first {
            let (a, b) = if value < 80 {
                (value / 40, value % 40)
            } else {
                (2, value - 80)
            };
            let _ = write!(out, "{a}.{b}");
            first = false;
        } else {
            let _ = write!(out, ".{value}");
        }
        value = 0;
    }
    out
}

/// A directory string, escaped per RFC 4514; other types as `#` and hex DER.
fn value_string(tag: u8, body: &[u8]) -> String {
    let text = match tag {
        0x0c | 0x13 | 0x16 => String::from_utf8_lossy(body).into_owned(),
        0x14 => body.iter().map(|&b| char::from(b)).collect(),
        0x1e => {
            let units: Vec<u16> = body
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => {
            let mut hex = format!("#{tag:02x}");
            let len = body.len();
            if len < 0x80 {
                let _ = write!(hex, "{len:02x}");
            }
            for b in body {
                let _ = write!(hex, "{b:02x}");
            }
            return hex;
        }
    };
    let mut out = String::with_capacity(text.len());
    let last = text.chars().count().saturating_sub(1);
    for (i, c) in text.chars().enumerate() {
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
    out
}

/// The next TLV: (tag, contents, rest). Only single-byte tags and definite lengths
/// (DER).
fn next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (body, rest) = rest.split_at(len);
    Some((tag, body, rest))
}

/// The next TLV, which must have tag `want`: (contents, rest).
fn expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, body, rest) = next(input)?;
    (tag == want).then_some((body, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshgate_testkit::certs::TestCa;

    #[test]
    fn reads_subject_and_sans() {
        let ca = TestCa::new("x509");
        let server = ca.server_cert("s", &["a.test", "*.b.test"]);
        let n = names(&server.cert_der).expect("parses");
        assert_eq!(n.subject, "CN=a.test");
        assert_eq!(n.dns, ["a.test", "*.b.test"]);
        let client = ca.client_cert(
            "c",
            "alice, \"admin\"",
            &[
                "spiffe://example.org/alice",
                "alice.example.org",
                "a@example.org",
            ],
        );
        let n = names(&client.cert_der).expect("parses");
        assert_eq!(n.subject, "CN=alice\\, \\\"admin\\\"");
        assert_eq!(n.uris, ["spiffe://example.org/alice"]);
        assert_eq!(n.dns, ["alice.example.org"]);
        assert_eq!(n.emails, ["a@example.org"]);
        let n = names(&ca.ca_der()).expect("parses");
        assert_eq!(n.subject, "CN=meshgate test CA (x509)");
        assert!(n.dns.is_empty());
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        let ca = TestCa::new("x509-bad");
        let good = ca.server_cert("s", &["a.test"]).cert_der;
        for cut in 0..good.len() {
            let _ = names(&good[..cut]);
        }
        assert_eq!(names(&[]), None);
        assert_eq!(names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
    }
}
