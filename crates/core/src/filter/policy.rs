//! Named policies from `policies:`, compiled once per snapshot and shared by every
//! listener and route that names them: `ApiKey` (in `api_key`), `IpAccess` (CIDR allow/deny → 403) and
//! `RequestLimits` (URI → 414, headers → 431, body → 413/411).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use meshgate_config as config;

use super::{Filter, Flow, RequestCx};
use crate::rescue::ProxyError;

/// Every policy of the config by name.
pub fn compile_policies(
    policies: &[config::Policy],
    consumers: &[config::Consumer],
) -> Result<HashMap<String, Arc<dyn Filter>>, String> {
    let keys = super::api_key::index(consumers)?;
    policies
        .iter()
        .map(|p| {
            let missing = || {
                format!(
                    "policies {:?}: {} is required for type {:?}",
                    p.name,
                    p.kind.field(),
                    p.kind
                )
            };
            let filter: Arc<dyn Filter> = match p.kind {
                config::PolicyType::ApiKey => Arc::new(super::api_key::ApiKey::compile(
                    p.api_key.as_ref().ok_or_else(missing)?,
                    keys.clone(),
                )?),
                config::PolicyType::IpAccess => Arc::new(IpAccess::compile(
                    p.ip_access.as_ref().ok_or_else(missing)?,
                )?),
                config::PolicyType::RequestLimits => {
                    Arc::new(RequestLimits(p.request_limits.clone().ok_or_else(missing)?))
                }
            };
            Ok((p.name.clone(), filter))
        })
        .collect()
}

/// A CIDR or a single address.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR (10.0.0.0/8) or an IP address"))
}

#[derive(Debug)]
struct IpAccess {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl IpAccess {
    fn compile(c: &config::IpAccessPolicy) -> Result<Self, String> {
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
            Flow::Continue
        } else {
            Flow::Reject(ProxyError::IpDenied)
        }
    }
}

#[derive(Debug)]
struct RequestLimits(config::RequestLimitsPolicy);

impl Filter for RequestLimits {
    fn name(&self) -> &'static str {
        "RequestLimits"
    }
    fn on_request(&self, req: &mut http::request::Parts, _: &mut RequestCx<'_>) -> Flow {
        let l = &self.0;
        if let Some(max) = l.max_uri_bytes {
            let len = req.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
            if len > max as usize {
                return Flow::Reject(ProxyError::UriTooLong);
            }
        }
        if let Some(max) = l.max_header_bytes {
            let total: usize = req
                .headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len())
                .sum();
            if total > max as usize {
                return Flow::Reject(ProxyError::HeadersTooLarge);
            }
        }
        if let Some(max) = l.max_body_bytes {
            let length = req
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let chunked = req.headers.contains_key(http::header::TRANSFER_ENCODING);
            match length {
                Some(n) if n > max => return Flow::Reject(ProxyError::BodyTooLarge),
                None if chunked => return Flow::Reject(ProxyError::LengthRequired),
                _ => {}
            }
        }
        Flow::Continue
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
