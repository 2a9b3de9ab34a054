//! The `Authorize` policy: allow rules on the authenticated caller (name, groups,
//! token claims) and the request (method, path), default deny. A request passes
//! when any rule matches; a rule matches when all the conditions it gives hold.
//! Everything is compiled once; checking a request allocates nothing unless an
//! explanation was asked for.

use std::sync::Arc;

use http::Method;
use meshgate_config as config;
use meshgate_core::filter::{Consumer, Filter, Flow, PolicyEnv, RequestCx};
use meshgate_core::rescue::ProxyError;
use meshgate_core::route::{PathRule, anchored, normalise_prefix};
use serde_json::Value;

use config::ClaimValue;

/// Compiles the policy.
pub fn compile(
    c: &config::AuthorizePolicy,
    _env: &PolicyEnv<'_>,
) -> Result<Arc<dyn Filter>, String> {
    Ok(Arc::new(Authorize::compile(c)?))
}

#[derive(Debug)]
pub struct Authorize {
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Rule {
    consumers: Vec<Box<str>>,
    groups: Vec<Box<str>>,
    methods: Vec<Method>,
    paths: Vec<PathRule>,
    claims: Vec<Claim>,
}

#[derive(Debug)]
struct Claim {
    keys: Vec<Box<str>>,
    test: Test,
}

#[derive(Debug)]
enum Test {
    Equals(ClaimValue),
    Contains(ClaimValue),
    AnyOf(Vec<ClaimValue>),
    Present(bool),
}

/// The first condition of a rule that did not hold (rendered only for `explain`).
#[derive(Debug, Clone, Copy)]
enum Miss {
    NoConsumer,
    Consumer,
    Group,
    Method,
    Path,
    NoClaims,
    Claim(usize),
}

impl Authorize {
    pub fn compile(c: &config::AuthorizePolicy) -> Result<Self, String> {
        let rules = c
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| Rule::compile(r).map_err(|e| format!("rules[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Authorize { rules })
    }

    /// The index of the first rule that allows the request.
    fn decide(&self, req: &http::request::Parts, consumer: Option<&Consumer>) -> Option<usize> {
        self.rules
            .iter()
            .position(|r| r.check(req, consumer).is_ok())
    }

    /// Which rule allowed, or why each rule did not.
    fn explain(
        &self,
        allowed: Option<usize>,
        req: &http::request::Parts,
        consumer: Option<&Consumer>,
    ) -> String {
        if let Some(i) = allowed {
            return match consumer {
                Some(c) => format!("rule {i} allows consumer {}", c.name),
                None => format!("rule {i} allows (no consumer needed)"),
            };
        }
        let why: Vec<String> = self
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let miss = r.check(req, consumer).err()?;
                Some(format!("rule {i}: {}", r.describe(miss, req, consumer)))
            })
            .collect();
        format!("no rule allows: {}", why.join("; "))
    }
}

impl Rule {
    fn compile(r: &config::AuthorizeRule) -> Result<Self, String> {
        let methods = r
            .methods
            .iter()
            .map(|m| Method::from_bytes(m.as_bytes()).map_err(|e| format!("method {m:?}: {e}")))
            .collect::<Result<_, _>>()?;
        let paths = r
            .paths
            .iter()
            .map(|p| {
                Ok(match p.kind {
                    config::PathMatchType::Exact => PathRule::Exact(p.value.as_str().into()),
                    config::PathMatchType::PathPrefix => {
                        PathRule::Prefix(normalise_prefix(&p.value).into())
                    }
                    config::PathMatchType::RegularExpression => {
                        PathRule::Regex(anchored(&p.value).map_err(|e| format!("path regex: {e}"))?)
                    }
                })
            })
            .collect::<Result<_, String>>()?;
        let claims = r
            .claims
            .iter()
            .map(Claim::compile)
            .collect::<Result<_, _>>()?;
        Ok(Rule {
            consumers: r.consumers.iter().map(|s| s.as_str().into()).collect(),
            groups: r.groups.iter().map(|s| s.as_str().into()).collect(),
            methods,
            paths,
            claims,
        })
    }

    fn needs_consumer(&self) -> bool {
        !self.consumers.is_empty() || !self.groups.is_empty() || !self.claims.is_empty()
    }

    /// Conditions in the order written in the docs: who, then what, then claims.
    fn check(&self, req: &http::request::Parts, consumer: Option<&Consumer>) -> Result<(), Miss> {
        let who = match consumer {
            Some(c) => Some(c),
            None if self.needs_consumer() => return Err(Miss::NoConsumer),
            None => None,
        };
        if let Some(c) = who {
            if !self.consumers.is_empty() && !self.consumers.iter().any(|n| **n == *c.name) {
                return Err(Miss::Consumer);
            }
            if !self.groups.is_empty()
                && !self
                    .groups
                    .iter()
                    .any(|g| c.groups.iter().any(|h| **g == **h))
            {
                return Err(Miss::Group);
            }
        }
        if !self.methods.is_empty() && !self.methods.contains(&req.method) {
            return Err(Miss::Method);
        }
        let path = req.uri.path();
        if !self.paths.is_empty() && !self.paths.iter().any(|p| p.matches(path)) {
            return Err(Miss::Path);
        }
        if !self.claims.is_empty() {
            let Some(claims) = who.and_then(|c| c.claims.as_ref()) else {
                return Err(Miss::NoClaims);
            };
            if let Some(i) = self.claims.iter().position(|c| !c.holds(claims)) {
                return Err(Miss::Claim(i));
            }
        }
        Ok(())
    }

    /// Why this rule did not match, in a few words.
    fn describe(
        &self,
        miss: Miss,
        req: &http::request::Parts,
        consumer: Option<&Consumer>,
    ) -> String {
        let name = consumer.map_or("", |c| &*c.name);
        match miss {
            Miss::NoConsumer => "no authenticated consumer".into(),
            Miss::Consumer => format!("consumer {name} is not one of {}", list(&self.consumers)),
            Miss::Group => format!(
                "consumer {name} is in none of groups {}",
                list(&self.groups)
            ),
            Miss::Method => format!(
                "method {} is not one of {}",
                req.method,
                list(&self.methods)
            ),
            Miss::Path => format!(
                "path {} matches none of {}",
                req.uri.path(),
                list(
                    self.paths
                        .iter()
                        .map(|p| format!("{} {}", p.kind(), p.value()))
                )
            ),
            Miss::NoClaims => format!("consumer {name} has no token claims"),
            Miss::Claim(i) => self.claims[i].describe(),
        }
    }
}

fn list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    format!("[{}]", items.join(", "))
}

impl Claim {
    fn compile(c: &config::ClaimCondition) -> Result<Self, String> {
        let keys: Vec<Box<str>> = c.keys().into_iter().map(Into::into).collect();
        if keys.is_empty() {
            return Err("a claim condition needs claim or claimPath".into());
        }
        let test = match (&c.equals, &c.contains, &c.any_of, c.present) {
            (Some(v), None, None, None) => Test::Equals(v.clone()),
            (None, Some(v), None, None) => Test::Contains(v.clone()),
            (None, None, Some(vs), None) => Test::AnyOf(vs.clone()),
            (None, None, None, Some(p)) => Test::Present(p),
            _ => {
                return Err(
                    "a claim condition needs exactly one of equals, contains, anyOf, present"
                        .into(),
                );
            }
        };
        Ok(Claim { keys, test })
    }

    /// The value at the path, if any (a number key indexes an array).
    fn find<'v>(&self, claims: &'v Value) -> Option<&'v Value> {
        self.keys.iter().try_fold(claims, |v, k| match v {
            Value::Object(map) => map.get(&**k),
            Value::Array(items) => items.get(k.parse::<usize>().ok()?),
            _ => None,
        })
    }

    fn holds(&self, claims: &Value) -> bool {
        let found = self.find(claims).filter(|v| !v.is_null());
        match (&self.test, found) {
            (Test::Present(want), found) => found.is_some() == *want,
            (_, None) => false,
            (Test::Equals(want), Some(v)) => equals(v, want),
            (Test::Contains(want), Some(Value::Array(items))) => {
                items.iter().any(|i| equals(i, want))
            }
            (Test::Contains(ClaimValue::String(want)), Some(Value::String(s))) => {
                s.split_ascii_whitespace().any(|token| token == want)
            }
            (Test::Contains(_), Some(_)) => false,
            (Test::AnyOf(wants), Some(Value::Array(items))) => {
                items.iter().any(|i| wants.iter().any(|w| equals(i, w)))
            }
            (Test::AnyOf(wants), Some(v)) => wants.iter().any(|w| equals(v, w)),
        }
    }

    fn describe(&self) -> String {
        let path = self.keys.join(".");
        match &self.test {
            Test::Equals(v) => format!("claim {path} does not equal {v}"),
            Test::Contains(v) => format!("claim {path} does not contain {v}"),
            Test::AnyOf(vs) => format!("claim {path} is none of {}", list(vs)),
            Test::Present(true) => format!("claim {path} is absent"),
            Test::Present(false) => format!("claim {path} is present"),
        }
    }
}

/// A JSON claim value equals a configured scalar (numbers compared as numbers).
fn equals(v: &Value, want: &ClaimValue) -> bool {
    match (v, want) {
        (Value::String(s), ClaimValue::String(w)) => s == w,
        (Value::Bool(b), ClaimValue::Bool(w)) => b == w,
        (Value::Number(n), ClaimValue::Number(w)) => n.as_f64() == Some(*w),
        _ => false,
    }
}

impl Filter for Authorize {
    fn name(&self) -> &'static str {
        "Authorize"
    }

    fn on_request(&self, req: &mut http::request::Parts, cx: &mut RequestCx<'_>) -> Flow {
        let allowed = self.decide(req, cx.consumer.as_deref());
        if cx.explain.is_some() {
            let consumer = cx.consumer.clone();
            cx.note(|| self.explain(allowed, req, consumer.as_deref()));
        }
        match allowed {
            Some(_) => Flow::Continue,
            None => Flow::Reject(ProxyError::Forbidden),
        }
    }
}
