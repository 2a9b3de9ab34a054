//! The route table of one listener: rules indexed by host (exact, wildcard suffix,
//! any) and, within a host, by exact path and path prefix, so a lookup costs a few
//! hash probes per path segment instead of a scan over every route.

use std::collections::HashMap;

use http::{HeaderMap, Method};

use super::rule::{PathRule, Rule};

/// Rules for one host key.
#[derive(Debug, Default)]
struct HostRules {
    exact: HashMap<Box<str>, Vec<Rule>>,
    prefix: HashMap<Box<str>, Vec<Rule>>,
    /// Declaration order; tried after exact paths and before prefixes (as Envoy
    /// Gateway and Contour do), so a catch-all `PathPrefix /` cannot shadow them.
    regex: Vec<Rule>,
}

impl HostRules {
    fn insert(&mut self, rule: Rule) {
        match &rule.path {
            PathRule::Exact(p) => self.exact.entry(p.clone()).or_default().push(rule),
            PathRule::Prefix(p) => self.prefix.entry(p.clone()).or_default().push(rule),
            PathRule::Regex(_) => self.regex.push(rule),
        }
    }

    fn sort(&mut self) {
        for rules in self.exact.values_mut().chain(self.prefix.values_mut()) {
            rules.sort_by_key(Rule::precedence_key);
        }
        self.regex.sort_by_key(|r| r.order);
    }

    fn find(&self, req: &RequestView<'_>) -> Option<&Rule> {
        if let Some(hit) = self.exact.get(req.path).and_then(|rules| pick(rules, req)) {
            return Some(hit);
        }
        let regex_hit = self.regex.iter().find(|r| match &r.path {
            PathRule::Regex(re) => {
                re.is_match(req.path) && r.matches_rest(req.method, req.headers, req.query)
            }
            _ => false,
        });
        if regex_hit.is_some() {
            return regex_hit;
        }
        if !self.prefix.is_empty() {
            // Longest prefix first: the whole path, then each shorter segment boundary.
            let path = req.path;
            let mut end = path.len();
            loop {
                let key = if end == 0 { "/" } else { &path[..end] };
                if let Some(hit) = self.prefix.get(key).and_then(|rules| pick(rules, req)) {
                    return Some(hit);
                }
                if end == 0 {
                    break;
                }
                end = path[..end].rfind('/').unwrap_or(0);
            }
        }
        None
    }
}

/// The first rule (in precedence order) whose non-path conditions hold.
fn pick<'r>(rules: &'r [Rule], req: &RequestView<'_>) -> Option<&'r Rule> {
    rules
        .iter()
        .find(|r| r.matches_rest(req.method, req.headers, req.query))
}

/// What routing looks at in a request.
pub struct RequestView<'a> {
    /// Lower-case, without port.
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
}

/// Routes of one listener, ready for lookups.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact_hosts: HashMap<Box<str>, HostRules>,
    /// Keyed by the suffix with its leading dot: `*.example.com` → `.example.com`.
    wildcard_hosts: HashMap<Box<str>, HostRules>,
    any_host: HostRules,
    len: usize,
}

impl RouteTable {
    /// Adds a rule under each of its route's hostnames (or under "any host").
    pub fn insert(&mut self, rule: Rule) {
        self.len += 1;
        let hostnames = rule.route.hostnames.clone();
        if hostnames.is_empty() {
            self.any_host.insert(rule);
            return;
        }
        for host in hostnames.iter() {
            let host = host.to_ascii_lowercase();
            match host.strip_prefix('*') {
                Some(suffix) => self
                    .wildcard_hosts
                    .entry(suffix.into())
                    .or_default()
                    .insert(rule.clone()),
                None => self
                    .exact_hosts
                    .entry(host.into())
                    .or_default()
                    .insert(rule.clone()),
            }
        }
    }

    /// Orders candidates by precedence; call once after the last insert.
    pub fn finish(mut self) -> Self {
        self.exact_hosts
            .values_mut()
            .chain(self.wildcard_hosts.values_mut())
            .for_each(HostRules::sort);
        self.any_host.sort();
        self
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most specific matching rule: exact host, then the longest wildcard
    /// suffix, then routes without hostnames; within each, by path precedence.
    pub fn find(&self, req: &RequestView<'_>) -> Option<&Rule> {
        if let Some(hit) = self.exact_hosts.get(req.host).and_then(|h| h.find(req)) {
            return Some(hit);
        }
        if !self.wildcard_hosts.is_empty() {
            for (i, _) in req.host.match_indices('.') {
                if let Some(hit) = self
                    .wildcard_hosts
                    .get(&req.host[i..])
                    .and_then(|h| h.find(req))
                {
                    return Some(hit);
                }
            }
        }
        self.any_host.find(req)
    }
}
