//! Syntax of strings the model keeps as `String`: HTTP tokens (header names,
//! methods), header values, DNS host names, `host:port` addresses, paths and
//! regular expressions. Each check returns the problem as a message, or `None`.

use std::net::Ipv6Addr;

/// The punctuation RFC 9110 allows in a token (`tchar`), besides letters and digits.
const TCHAR_PUNCT: &str = "!#$%&'*+-.^_`|~";

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || TCHAR_PUNCT.contains(c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_tchar)
}

/// An HTTP header name (also used for cookie names): a non-empty token.
pub(super) fn header_name(name: &str) -> Option<String> {
    (!is_token(name)).then(|| {
        format!("invalid header name {name:?}: expected a token of letters, digits and {TCHAR_PUNCT} (RFC 9110)")
    })
}

/// A header value sent on the wire: no CR, LF or NUL.
pub(super) fn header_value(value: &str) -> Option<String> {
    value
        .contains(['\r', '\n', '\0'])
        .then(|| "invalid header value: must not contain CR, LF or NUL characters".to_owned())
}

/// An HTTP method: an uppercase token (`GET`, `POST`, or any extension method).
pub(super) fn method(m: &str) -> Option<String> {
    (!is_token(m) || m.chars().any(|c| c.is_ascii_lowercase())).then(|| {
        format!("invalid method {m:?}: expected an uppercase token such as GET, POST or PURGE")
    })
}

/// A request path in a match or a rewrite: starts with `/`, no query or fragment.
pub(super) fn path(p: &str) -> Option<String> {
    if !p.starts_with('/') {
        Some(format!("invalid path {p:?}: must start with \"/\""))
    } else if p.contains(['?', '#']) || p.contains(char::is_whitespace) {
        Some(format!(
            "invalid path {p:?}: must not contain \"?\", \"#\" or whitespace (match query strings with queryParams)"
        ))
    } else {
        None
    }
}

/// A regular expression of the `regex` crate; the message carries its error on one line.
pub(super) fn regex(pattern: &str) -> Option<String> {
    let err = regex::Regex::new(pattern).err()?;
    let detail = match &err {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .map_or_else(
                || text.split_whitespace().collect::<Vec<_>>().join(" "),
                str::to_owned,
            ),
        regex::Error::CompiledTooBig(limit) => {
            format!("compiled regex exceeds the size limit of {limit} bytes")
        }
        other => other
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    };
    Some(format!("invalid regular expression {pattern:?}: {detail}"))
}

const HOSTNAME_EXAMPLE: &str = "expected a DNS name such as api.example.com";

/// A route hostname: a DNS name, optionally with a single leading `*.` wildcard.
pub(super) fn route_hostname(h: &str) -> Option<String> {
    let (name, wildcard) = match h.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (h, false),
    };
    let reason = if name.contains('*') {
        Some("a wildcard is only allowed as a single leading \"*.\"".to_owned())
    } else {
        dns_name(name, wildcard)
    };
    reason.map(|r| format!("invalid hostname {h:?}: {r}; {HOSTNAME_EXAMPLE} or *.example.com"))
}

/// A host name sent upstream or in a redirect: a DNS name, no wildcard, no port.
pub(super) fn plain_hostname(h: &str) -> Option<String> {
    let reason = if h.contains('*') {
        Some("a wildcard is not allowed here".to_owned())
    } else {
        dns_name(h, false)
    };
    reason.map(|r| format!("invalid hostname {h:?}: {r}; {HOSTNAME_EXAMPLE}"))
}

/// Why `name` is not a DNS name (labels of letters, digits and inner `-`), if it is not.
fn dns_name(name: &str, after_wildcard: bool) -> Option<String> {
    if name.is_empty() {
        return Some(
            if after_wildcard {
                "nothing follows the wildcard"
            } else {
                "must not be empty"
            }
            .to_owned(),
        );
    }
    if name.contains(':') {
        return Some("a port is not allowed".to_owned());
    }
    if name.len() > 253 {
        return Some(format!("longer than 253 characters ({})", name.len()));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Some("empty label (leading, trailing or doubled \".\")".to_owned());
        }
        if label.len() > 63 {
            return Some(format!("label {label:?} is longer than 63 characters"));
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Some(format!(
                "label {label:?} may only contain letters, digits and \"-\""
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("label {label:?} must not start or end with \"-\""));
        }
    }
    None
}

/// An endpoint address: `host:port` with a DNS name, IPv4 or bracketed IPv6 host.
pub(super) fn host_port(addr: &str) -> Option<String> {
    let reason = host_port_reason(addr)?;
    Some(format!(
        "invalid endpoint address {addr:?}: {reason}; expected host:port, e.g. 10.0.0.7:8080, orders.internal:80 or [::1]:8080"
    ))
}

fn host_port_reason(addr: &str) -> Option<String> {
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let Some((ip, port)) = rest.split_once(']') else {
            return Some("missing \"]\"".to_owned());
        };
        if ip.parse::<Ipv6Addr>().is_err() {
            return Some(format!("{ip:?} is not an IPv6 address"));
        }
        let Some(port) = port.strip_prefix(':') else {
            return Some("missing port".to_owned());
        };
        (None, port)
    } else {
        let Some((host, port)) = addr.rsplit_once(':') else {
            return Some("missing port".to_owned());
        };
        if host.contains(':') {
            return Some("an IPv6 address must be in brackets".to_owned());
        }
        (Some(host), port)
    };
    match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => {}
        Ok(p) => return Some(format!("port {p} is out of range 1-65535")),
        Err(_) => return Some(format!("port {port:?} is not a number")),
    }
    host.and_then(|h| dns_name(h, false))
        .map(|r| format!("host: {r}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert_eq!(header_name("x-request-id"), None);
        assert_eq!(header_name("X_Weird~!"), None);
        assert!(header_name("").is_some());
        assert!(header_name("x y").is_some());
        assert!(header_name("x:y").is_some());
        assert_eq!(method("GET"), None);
        assert_eq!(method("PURGE"), None);
        assert!(method("get").is_some());
        assert!(method("GE T").is_some());
        assert!(method("").is_some());
    }

    #[test]
    fn hostnames() {
        for ok in [
            "example.com",
            "API.Example.com",
            "*.example.com",
            "*.com",
            "a-b.c1",
            "localhost",
        ] {
            assert_eq!(route_hostname(ok), None, "{ok}");
        }
        for bad in [
            "",
            "*",
            "*.",
            "a.*.com",
            "ex*mple.com",
            "example.com:80",
            "a..b",
            "-a.com",
            "a_b.com",
            ".a",
            "a.",
        ] {
            assert!(route_hostname(bad).is_some(), "{bad}");
        }
        assert!(plain_hostname("*.example.com").is_some());
        assert_eq!(plain_hostname("example.com"), None);
        assert!(
            route_hostname(&"a".repeat(64))
                .unwrap()
                .contains("longer than 63")
        );
    }

    #[test]
    fn addresses() {
        for ok in [
            "10.0.0.7:8080",
            "orders.internal:80",
            "[::1]:8080",
            "localhost:65535",
        ] {
            assert_eq!(host_port(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("10.0.0.7", "missing port"),
            ("a:0", "out of range"),
            ("a:65536", "out of range"),
            ("a:http", "not a number"),
            ("::1:80", "brackets"),
            ("[::1]", "missing port"),
            ("[zz]:80", "not an IPv6"),
            ("a b:80", "may only contain"),
            (":80", "must not be empty"),
        ] {
            let msg = host_port(bad).unwrap_or_default();
            assert!(msg.contains(why), "{bad}: {msg}");
        }
    }

    #[test]
    fn regex_errors_are_one_line() {
        assert_eq!(regex("^/v[0-9]+/.*$"), None);
        let msg = regex("/(a").unwrap();
        assert_eq!(msg, "invalid regular expression \"/(a\": unclosed group");
        assert!(!regex("[z-a]").unwrap().contains('\n'));
    }

    #[test]
    fn paths() {
        assert_eq!(path("/"), None);
        assert_eq!(path("/api/v1"), None);
        assert!(path("api").unwrap().contains("must start with"));
        assert!(path("/a?b=1").is_some());
        assert!(header_value("a\r\nb").is_some());
        assert_eq!(header_value("text/plain"), None);
    }
}
