//! Headers on the way through: hop-by-hop removal (RFC 9110 §7.6.1), the
//! `x-forwarded-*`/`forwarded`/`via` additions, and the upstream Host.

use std::net::SocketAddr;

use http::Version;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes hop-by-hop headers, including any the `connection` header names.
/// The deadline a gRPC client sent (`grpc-timeout`: up to 8 digits and a unit,
/// `H` `M` `S` `m` `u` `n`); `None` when absent or malformed.
pub fn grpc_timeout(headers: &HeaderMap) -> Option<std::time::Duration> {
    use std::time::Duration;
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Whether the request's `te` lists `trailers` (kept when forwarding; every other
/// TE value is hop-by-hop).
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
}

pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for n in named {
            headers.remove(n);
        }
        headers.remove(header::CONNECTION);
    }
    for h in [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TRANSFER_ENCODING,
        &header::TE,
        &header::TRAILER,
        &header::UPGRADE,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(h);
    }
}

/// `via` token for the protocol version the message arrived with.
fn via_value(version: Version) -> HeaderValue {
    HeaderValue::from_static(match version {
        Version::HTTP_10 => "1.0 meshgate",
        Version::HTTP_2 => "2 meshgate",
        Version::HTTP_3 => "3 meshgate",
        _ => "1.1 meshgate",
    })
}

pub fn append_via(headers: &mut HeaderMap, version: Version) {
    headers.append(header::VIA, via_value(version));
}

/// Adds what the upstream needs to know about the original request.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    client: SocketAddr,
    scheme: &'static str,
    host: &HeaderValue,
) {
    let ip = client.ip().to_canonical();
    let ip_text = ip.to_string();
    // Repeated lines form one comma-separated list (RFC 9110 §5.3): keep them all.
    let mut xff = String::new();
    for prev in headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        xff.push_str(prev);
        xff.push_str(", ");
    }
    xff.push_str(&ip_text);
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
    headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    let node = if ip.is_ipv6() {
        format!("\"[{ip_text}]\"")
    } else {
        ip_text
    };
    let host_text = host.to_str().unwrap_or("");
    if let Ok(v) = HeaderValue::from_str(&format!("for={node};host=\"{host_text}\";proto={scheme}"))
    {
        headers.append(FORWARDED.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn grpc_timeouts_parse_per_the_spec() {
        use std::time::Duration;
        let t = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&h)
        };
        assert_eq!(t("200m"), Some(Duration::from_millis(200)));
        assert_eq!(t("3S"), Some(Duration::from_secs(3)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("5u"), Some(Duration::from_micros(5)));
        assert_eq!(t("123456789m"), None, "at most 8 digits");
        assert_eq!(t("m"), None);
        assert_eq!(t("10x"), None);
        assert_eq!(t("-1S"), None);
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }

    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("x-kept", "yes".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn appends_to_existing_forwarded_for() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "10.0.0.1".parse().unwrap());
        add_forwarding(
            &mut h,
            "[::1]:5000".parse().unwrap(),
            "http",
            &HeaderValue::from_static("a.example"),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, ::1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.example");
        assert_eq!(
            h["forwarded"],
            "for=\"[::1]\";host=\"a.example\";proto=http"
        );
    }
}
