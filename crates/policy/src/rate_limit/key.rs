//! What a request is counted against: the bucket key of the `RateLimit` policy
//! (consumer, client address, a header's value, or the route) and how the client
//! address is found behind trusted proxies (`x-forwarded-for`).
//!
//! Keys are cheap to build on every request: an address is copied, names are
//! `Arc<str>` clones and header values share their bytes, so nothing is allocated.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use meshgate_config as config;
use meshgate_core::filter::RequestCx;

use crate::ip_access::parse_net;

/// One bucket's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Ip(IpAddr),
    /// A consumer or route name.
    Name(Arc<str>),
    /// A header's value.
    Value(HeaderValue),
    /// The one bucket of requests without a key (anonymous, header absent, no route).
    Shared,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Ip(ip) => write!(f, "{ip}"),
            Key::Name(n) => f.write_str(n),
            Key::Value(v) => f.write_str(&String::from_utf8_lossy(v.as_bytes())),
            Key::Shared => f.write_str("-"),
        }
    }
}

impl Key {
    /// The key's bytes for a shared store, distinct for every key (`-` for the shared
    /// bucket, `=` before any other value so a value `-` cannot collide with it).
    pub fn store_suffix(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        match self {
            Key::Shared => out.push(b'-'),
            Key::Ip(ip) => {
                out.push(b'=');
                out.extend_from_slice(ip.to_string().as_bytes());
            }
            Key::Name(n) => {
                out.push(b'=');
                out.extend_from_slice(n.as_bytes());
            }
            Key::Value(v) => {
                out.push(b'=');
                out.extend_from_slice(v.as_bytes());
            }
        }
        out
    }
}

/// How the key is read from a request.
#[derive(Debug)]
pub enum KeySource {
    Consumer,
    ClientIp { trusted: Vec<IpNet> },
    Header(HeaderName),
    Route,
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

impl KeySource {
    pub fn compile(c: &config::RateLimitPolicy) -> Result<Self, String> {
        Ok(match c.key {
            config::RateLimitKey::Consumer => KeySource::Consumer,
            config::RateLimitKey::Route => KeySource::Route,
            config::RateLimitKey::Header => {
                let name = c
                    .header
                    .as_deref()
                    .ok_or("header is required when key is header")?;
                KeySource::Header(crate::identity::header_name(name)?)
            }
            config::RateLimitKey::ClientIp => KeySource::ClientIp {
                trusted: c
                    .trusted_proxies
                    .iter()
                    .map(|s| parse_net(s))
                    .collect::<Result<_, _>>()?,
            },
        })
    }

    /// The kind, as written in config (`clientIp`…), for store keys and notes.
    pub fn kind(&self) -> &'static str {
        match self {
            KeySource::Consumer => "consumer",
            KeySource::ClientIp { .. } => "clientIp",
            KeySource::Header(_) => "header",
            KeySource::Route => "route",
        }
    }

    pub fn key(&self, req: &http::request::Parts, cx: &RequestCx<'_>) -> Key {
        match self {
            KeySource::Consumer => cx
                .consumer
                .as_ref()
                .map_or(Key::Shared, |c| Key::Name(c.name.clone())),
            KeySource::Route => cx.route.clone().map_or(Key::Shared, Key::Name),
            KeySource::Header(h) => req
                .headers
                .get(h)
                .map_or(Key::Shared, |v| Key::Value(v.clone())),
            KeySource::ClientIp { trusted } => Key::Ip(client_ip(trusted, req, cx.client)),
        }
    }
}

/// The client address: the TCP peer, unless the peer is a trusted proxy; then the
/// rightmost `x-forwarded-for` address that is not a trusted proxy (the leftmost
/// when all are). A malformed list is not believed at all: the peer is the client.
pub fn client_ip(trusted: &[IpNet], req: &http::request::Parts, peer: IpAddr) -> IpAddr {
    // IPv4 clients on a dual-stack socket arrive as ::ffff:a.b.c.d.
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut leftmost = None;
    // Later header lines are appended by nearer proxies: walk right to left.
    for line in req.headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(line) = line.to_str() else {
            return peer;
        };
        for entry in line.rsplit(',') {
            let Some(ip) = parse_entry(entry.trim()) else {
                return peer;
            };
            if !is_trusted(&ip) {
                return ip;
            }
            leftmost = Some(ip);
        }
    }
    leftmost.unwrap_or(peer)
}

/// `203.0.113.7`, `2001:db8::1`, or with a port: `203.0.113.7:4711`, `[2001:db8::1]:4711`.
fn parse_entry(s: &str) -> Option<IpAddr> {
    let ip = s
        .parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| s.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(xff: &[&str]) -> http::request::Parts {
        let mut b = http::Request::builder();
        for v in xff {
            b = b.header("x-forwarded-for", *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rightmost_untrusted_forwarded_address_is_the_client() {
        let trusted = vec![parse_net("10.0.0.0/8").unwrap(), parse_net("::1").unwrap()];
        let from_proxy = ip("10.1.1.1");
        let cases: &[(&[&str], &str)] = &[
            (&[], "10.1.1.1"),
            (&["203.0.113.7"], "203.0.113.7"),
            (&["198.51.100.1, 203.0.113.7, 10.2.2.2"], "203.0.113.7"),
            // Two header lines: the second is the nearer proxy's.
            (&["198.51.100.1", "203.0.113.7, 10.2.2.2"], "203.0.113.7"),
            (&["10.3.3.3, 10.2.2.2"], "10.3.3.3"),
            (&["[2001:db8::7]:4711"], "2001:db8::7"),
            (&["203.0.113.7:4711"], "203.0.113.7"),
            (&["::ffff:203.0.113.9"], "203.0.113.9"),
            // Malformed lists are not believed.
            (&["203.0.113.7, nonsense"], "10.1.1.1"),
            (&["203.0.113.7,,10.2.2.2"], "10.1.1.1"),
            (&["unknown"], "10.1.1.1"),
        ];
        for (xff, want) in cases {
            assert_eq!(
                client_ip(&trusted, &parts(xff), from_proxy),
                ip(want),
                "{xff:?}"
            );
        }
        // From an untrusted peer the header is ignored.
        assert_eq!(
            client_ip(&trusted, &parts(&["203.0.113.7"]), ip("192.0.2.1")),
            ip("192.0.2.1")
        );
        assert_eq!(
            client_ip(&[], &parts(&["203.0.113.7"]), ip("::ffff:192.0.2.1")),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn store_suffixes_never_collide_with_the_shared_bucket() {
        assert_eq!(Key::Shared.store_suffix(), b"-");
        assert_eq!(Key::Name("-".into()).store_suffix(), b"=-");
        assert_eq!(Key::Ip(ip("10.0.0.1")).store_suffix(), b"=10.0.0.1");
        assert_eq!(
            Key::Value(HeaderValue::from_static("t1")).store_suffix(),
            b"=t1"
        );
    }
}
