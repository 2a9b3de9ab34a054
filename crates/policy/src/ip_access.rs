//! The `IpAccess` policy: CIDR allow and deny lists on the client address (403).

use std::net::IpAddr;

use ipnet::IpNet;
use meshgate_config as config;
use meshgate_core::filter::{Filter, Flow, RequestCx};
use meshgate_core::rescue::ProxyError;

/// A CIDR or a single address.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR (10.0.0.0/8) or an IP address"))
}

#[derive(Debug)]
pub struct IpAccess {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl IpAccess {
    pub fn compile(c: &config::IpAccessPolicy) -> Result<Self, String> {
        let nets = |v: &[String]| {
            v.iter()
                .map(|s| parse_net(s))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(IpAccess {
            allow: nets(&c.allow)?,
            deny: nets(&c.deny)?,
        })
    }

    fn allows(&self, ip: IpAddr) -> bool {
        // IPv4 clients on a dual-stack socket arrive as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        !self.deny.iter().any(|n| n.contains(&ip))
            && (self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip)))
    }
}

impl Filter for IpAccess {
    fn name(&self) -> &'static str {
        "IpAccess"
    }
    fn on_request(&self, _: &mut http::request::Parts, cx: &mut RequestCx<'_>) -> Flow {
        if self.allows(cx.client) {
            let client = cx.client;
            cx.note(|| format!("client {client} is allowed"));
            Flow::Continue
        } else {
            let client = cx.client;
            cx.note(|| format!("client {client} is not allowed"));
            Flow::Reject(ProxyError::IpDenied)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_wins_and_allow_narrows() {
        let p = IpAccess::compile(&config::IpAccessPolicy {
            allow: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
            deny: vec!["10.1.2.3".into()],
        })
        .unwrap();
        assert!(p.allows("10.9.9.9".parse().unwrap()));
        assert!(!p.allows("10.1.2.3".parse().unwrap()));
        assert!(!p.allows("192.168.1.1".parse().unwrap()));
        assert!(p.allows("2001:db8::1".parse().unwrap()));
        assert!(
            p.allows("::ffff:10.2.3.4".parse().unwrap()),
            "v4-mapped addresses match v4 rules"
        );
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("nope").is_err());
    }
}
