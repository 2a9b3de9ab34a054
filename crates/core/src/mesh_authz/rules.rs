//! A listener's `meshAuthorization`, compiled once per snapshot, and its
//! evaluation: `DENY` rules first, then `ALLOW` rules, then `defaultAction`
//! (Istio AuthorizationPolicy semantics). Requests are judged on the caller's
//! SPIFFE ID, method, path and headers; whole connections on identity alone.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use meshgate_config::{MeshAuthorization, MeshAuthzAction, MeshAuthzRule, MeshOperation, MeshPeer};

/// The name reported when no rule matched and `defaultAction` decided.
pub const DEFAULT_ACTION: &str = "defaultAction";

/// A compiled `meshAuthorization`.
#[derive(Debug)]
pub struct Policy {
    default_deny: bool,
    deny: Vec<Rule>,
    allow: Vec<Rule>,
    default_name: Arc<str>,
}

#[derive(Debug)]
struct Rule {
    name: Arc<str>,
    from: Vec<PeerMatch>,
    to: Vec<OpMatch>,
}

#[derive(Debug)]
enum PeerMatch {
    Exact(String),
    Prefix(String),
    Service { service: String, namespace: String },
    Namespace(String),
}

#[derive(Debug)]
struct OpMatch {
    methods: Vec<Method>,
    paths: Vec<PathMatch>,
    headers: Vec<(HeaderName, Option<HeaderValue>)>,
}

#[derive(Debug)]
enum PathMatch {
    Any,
    Exact(String),
    /// The prefix including its trailing `/`.
    Prefix(String),
}

/// What the policy decided, and which rule decided it (`None`: `defaultAction`).
#[derive(Debug, Clone)]
pub struct Verdict {
    pub allow: bool,
    pub rule: Arc<str>,
}

impl Policy {
    /// Compiles validated settings; anything that still cannot compile is an error.
    pub fn compile(a: &MeshAuthorization) -> Result<Self, String> {
        let mut deny = Vec::new();
        let mut allow = Vec::new();
        for r in &a.rules {
            let rule = compile_rule(r)?;
            match r.action {
                MeshAuthzAction::DENY => deny.push(rule),
                MeshAuthzAction::ALLOW => allow.push(rule),
            }
        }
        Ok(Policy {
            default_deny: a.default_action == MeshAuthzAction::DENY,
            deny,
            allow,
            default_name: DEFAULT_ACTION.into(),
        })
    }

    fn default(&self) -> Verdict {
        Verdict {
            allow: !self.default_deny,
            rule: self.default_name.clone(),
        }
    }

    /// Judges one HTTP request from `peer` (its SPIFFE ID, if it has one).
    pub fn check_request(
        &self,
        peer: Option<&str>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Verdict {
        let matches = |r: &Rule| {
            r.matches_peer(peer)
                && (r.to.is_empty() || r.to.iter().any(|o| o.matches(method, path, headers)))
        };
        if let Some(r) = self.deny.iter().find(|r| matches(r)) {
            return r.verdict(false);
        }
        if let Some(r) = self.allow.iter().find(|r| matches(r)) {
            return r.verdict(true);
        }
        self.default()
    }

    /// Judges a whole connection from `peer`: denied when a `DENY` rule about
    /// identity alone matches, or when `defaultAction` is `DENY` and no `ALLOW`
    /// rule could ever match this peer. On a TCP connection (`http` false) HTTP
    /// operations cannot be seen: a `DENY` rule with operations applies as if it
    /// had none, an `ALLOW` rule with operations never matches (the strict
    /// reading, as Istio does).
    pub fn check_connection(&self, peer: Option<&str>, http: bool) -> Verdict {
        let deny = self
            .deny
            .iter()
            .find(|r| (r.to.is_empty() || !http) && r.matches_peer(peer));
        if let Some(r) = deny {
            return r.verdict(false);
        }
        let allow = self
            .allow
            .iter()
            .filter(|r| r.matches_peer(peer))
            .find(|r| r.to.is_empty() || (http && self.default_deny));
        match allow {
            Some(r) => r.verdict(true),
            None => self.default(),
        }
    }
}

impl Rule {
    fn verdict(&self, allow: bool) -> Verdict {
        Verdict {
            allow,
            rule: self.name.clone(),
        }
    }

    fn matches_peer(&self, peer: Option<&str>) -> bool {
        if self.from.is_empty() {
            return true;
        }
        let Some(id) = peer else {
            return false;
        };
        let parsed = parse_spiffe(id);
        self.from.iter().any(|m| match m {
            PeerMatch::Exact(x) => id == x,
            PeerMatch::Prefix(p) => id.starts_with(p.as_str()),
            PeerMatch::Service { service, namespace } => {
                parsed.is_some_and(|(ns, sa)| ns == namespace && sa == service)
            }
            PeerMatch::Namespace(n) => parsed.is_some_and(|(ns, _)| ns == n),
        })
    }
}

impl OpMatch {
    fn matches(&self, method: &Method, path: &str, headers: &HeaderMap) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && (self.paths.is_empty()
                || self.paths.iter().any(|p| match p {
                    PathMatch::Any => true,
                    PathMatch::Exact(x) => path == x,
                    PathMatch::Prefix(x) => path.starts_with(x.as_str()),
                }))
            && self.headers.iter().all(|(name, want)| {
                let mut values = headers.get_all(name).iter();
                match want {
                    None => values.next().is_some(),
                    Some(v) => values.any(|got| got == v),
                }
            })
    }
}

fn compile_rule(r: &MeshAuthzRule) -> Result<Rule, String> {
    let from = r.from.iter().map(compile_peer).collect::<Result<_, _>>()?;
    let to =
        r.to.iter()
            .map(compile_op)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("rule {:?}: {e}", r.name))?;
    Ok(Rule {
        name: r.name.as_str().into(),
        from,
        to,
    })
}

fn compile_peer(p: &MeshPeer) -> Result<PeerMatch, String> {
    Ok(
        match (&p.spiffe_id, &p.spiffe_id_prefix, &p.service, &p.namespace) {
            (Some(id), None, None, None) => PeerMatch::Exact(id.clone()),
            (None, Some(prefix), None, None) => PeerMatch::Prefix(prefix.clone()),
            (None, None, Some(service), ns) => PeerMatch::Service {
                service: service.clone(),
                namespace: ns.clone().unwrap_or_else(|| "default".into()),
            },
            (None, None, None, Some(ns)) => PeerMatch::Namespace(ns.clone()),
            _ => return Err("a caller selector must name exactly one identity".into()),
        },
    )
}

fn compile_op(o: &MeshOperation) -> Result<OpMatch, String> {
    let methods = (o.methods.iter())
        .map(|m| Method::from_bytes(m.as_bytes()).map_err(|_| format!("invalid method {m:?}")))
        .collect::<Result<_, _>>()?;
    let paths = (o.paths.iter())
        .map(|p| match p.strip_suffix('*') {
            None => PathMatch::Exact(p.clone()),
            Some("") => PathMatch::Any,
            Some(prefix) => PathMatch::Prefix(prefix.to_owned()),
        })
        .collect();
    let headers = (o.headers.iter())
        .map(|(n, v)| {
            let name = HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| format!("invalid header name {n:?}"))?;
            let value = match v.as_str() {
                "*" => None,
                v => Some(
                    HeaderValue::from_str(v)
                        .map_err(|_| format!("invalid header value for {n:?}"))?,
                ),
            };
            Ok((name, value))
        })
        .collect::<Result<_, String>>()?;
    Ok(OpMatch {
        methods,
        paths,
        headers,
    })
}

/// `(namespace, service)` of `spiffe://<td>/ns/<ns>/sa/<service>`.
pub fn parse_spiffe(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix("spiffe://")?;
    let (_, path) = rest.split_once('/')?;
    let mut parts = path.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("ns"), Some(ns), Some("sa"), Some(sa), None) if !ns.is_empty() && !sa.is_empty() => {
            Some((ns, sa))
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
