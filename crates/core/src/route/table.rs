//! The route table of one listener: rules indexed by host (exact, wildcard suffix,
//! any) and, within a host, by exact path and path prefix, so a lookup costs a few
//! hash probes per path segment instead of a scan over every route.

use std::collections::HashMap as StdHashMap;

use http::{HeaderMap, Method};

use super::rule::{Condition, PathRule, Rule};
use crate::filter::RouteCheck;

/// Keys come from the config, lookups from requests: a fast seeded hash (the
/// table is never grown from request input, so SipHash's flooding defence buys
/// nothing here and cost ~1 % of the proxy's CPU).
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;

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
        let (map, path) = match &rule.path {
            PathRule::Exact(p) => (&mut self.exact, p),
            PathRule::Prefix(p) => (&mut self.prefix, p),
            PathRule::Regex(_) => return self.regex.push(rule),
        };
        // Looked up first: most paths repeat across hosts' routes, and a new key
        // is an allocation.
        match map.get_mut(&**path) {
            Some(rules) => rules.push(rule),
            None => {
                map.insert(path.clone(), vec![rule]);
            }
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

impl HostRules {
    /// Rules in the order `find` tries them: exact paths, regexes, prefixes longest
    /// first; rules sharing a path are already in precedence order.
    fn in_match_order(&self) -> impl Iterator<Item = &Rule> {
        let mut exact: Vec<_> = self.exact.iter().collect();
        // Distinct exact paths never compete; sorted only for a stable listing.
        exact.sort_by(|a, b| a.0.cmp(b.0));
        let mut prefix: Vec<_> = self.prefix.iter().collect();
        prefix.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(b.0)));
        exact
            .into_iter()
            .flat_map(|(_, rules)| rules)
            .chain(&self.regex)
            .chain(prefix.into_iter().flat_map(|(_, rules)| rules))
    }
}

/// One rule of a table, as the admin API lists it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteEntry {
    /// The host key the rule is indexed under: a hostname, `*.suffix` for a
    /// wildcard, or `*` for routes without hostnames.
    pub host: String,
    pub route: String,
    pub path: PathEntry,
    pub method: Option<String>,
    pub headers: Vec<Condition>,
    pub query_params: Vec<Condition>,
    pub backends: Vec<BackendEntry>,
    /// Declaration order across the config (the last tie-breaker).
    pub order: usize,
}

/// A rule's path condition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PathEntry {
    /// `Exact`, `PathPrefix` or `RegularExpression`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub value: String,
}

/// A weighted backend service of a route.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendEntry {
    pub service: String,
    pub weight: u32,
}

impl RouteEntry {
    fn new(host: String, rule: &Rule) -> Self {
        let backends = rule.route.backends.services.iter();
        RouteEntry {
            host,
            route: rule.route.name.to_string(),
            path: PathEntry {
                kind: rule.path.kind(),
                value: rule.path.value().to_owned(),
            },
            method: rule.method().map(|m| m.as_str().to_owned()),
            headers: rule.header_conditions(),
            query_params: rule.query_conditions(),
            backends: backends
                .map(|(up, weight)| BackendEntry {
                    service: up.name.to_string(),
                    weight: *weight,
                })
                .collect(),
            order: rule.order,
        }
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
    /// Adds a rule under each of its route's `hostnames` (or under "any host").
    /// The rule is cloned only for a route's second and later hostnames.
    pub fn insert(&mut self, rule: Rule, hostnames: &[String]) {
        self.len += 1;
        let Some((last, others)) = hostnames.split_last() else {
            self.any_host.insert(rule);
            return;
        };
        for host in others {
            self.host_rules(host).insert(rule.clone());
        }
        self.host_rules(last).insert(rule);
    }

    /// The rules of `host` (a wildcard `*.suffix` or an exact name, any case),
    /// allocating its key only the first time it is seen.
    fn host_rules(&mut self, host: &str) -> &mut HostRules {
        let (map, key) = match host.strip_prefix('*') {
            Some(suffix) => (&mut self.wildcard_hosts, suffix),
            None => (&mut self.exact_hosts, host),
        };
        let lower;
        let key = if key.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = key.to_ascii_lowercase();
            lower.as_str()
        } else {
            key
        };
        if !map.contains_key(key) {
            map.insert(key.into(), HostRules::default());
        }
        map.get_mut(key).expect("inserted above")
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

    /// Every rule in the order lookups try them: exact hosts (by name), wildcard
    /// hosts longest suffix first, then routes without hostnames; within a host,
    /// exact paths, regexes in declaration order, prefixes longest first, and rules
    /// sharing a path by precedence (method, headers, query, declaration order).
    pub fn describe(&self) -> Vec<RouteEntry> {
        let mut exact: Vec<_> = self.exact_hosts.iter().collect();
        exact.sort_by(|a, b| a.0.cmp(b.0));
        let mut wildcard: Vec<_> = self.wildcard_hosts.iter().collect();
        wildcard.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(b.0)));
        let hosts = exact
            .into_iter()
            .map(|(h, rules)| (h.to_string(), rules))
            .chain(
                wildcard
                    .into_iter()
                    .map(|(h, rules)| (format!("*{h}"), rules)),
            )
            .chain(std::iter::once(("*".to_owned(), &self.any_host)));
        hosts
            .flat_map(|(host, rules)| {
                rules
                    .in_match_order()
                    .map(move |rule| RouteEntry::new(host.clone(), rule))
            })
            .collect()
    }

    /// The candidates `find` considers, in its order, each with why it did not
    /// match, up to and including the first that does (for `explain`).
    pub fn explain(&self, req: &RequestView<'_>) -> Vec<RouteCheck> {
        let mut checks = Vec::new();
        for entry in self.describe() {
            let applies = match entry.host.strip_prefix('*') {
                Some("") => true,
                Some(suffix) => req.host.ends_with(suffix) && req.host.len() > suffix.len(),
                None => entry.host == req.host,
            };
            let rule_text = format!("{} {} {}", entry.host, entry.path.kind, entry.path.value);
            let mismatch = if !applies {
                Some(format!("host {:?} is not {}", req.host, entry.host))
            } else {
                let rule = self.rule_of(&entry);
                rule.and_then(|r| r.mismatch(req.path, req.method, req.headers, req.query))
            };
            let matched = mismatch.is_none();
            checks.push(RouteCheck {
                route: entry.route,
                rule: rule_text,
                mismatch,
            });
            if matched {
                break;
            }
        }
        checks
    }

    /// The compiled rule a `describe` entry lists.
    fn rule_of(&self, entry: &RouteEntry) -> Option<&Rule> {
        let rules = match entry.host.strip_prefix('*') {
            Some("") => &self.any_host,
            Some(suffix) => self.wildcard_hosts.get(suffix)?,
            None => self.exact_hosts.get(entry.host.as_str())?,
        };
        rules
            .in_match_order()
            .find(|r| r.order == entry.order && *r.route.name == *entry.route)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::snapshot::Snapshot;

    #[test]
    fn describe_lists_rules_in_match_order() {
        let yaml = r#"
listeners: [{name: l, address: "127.0.0.1:0"}]
routes:
  - {name: any-root, matches: [{path: {type: PathPrefix, value: /}}], backendRefs: [{name: s, weight: 3}]}
  - {name: any-api, matches: [{path: {type: PathPrefix, value: /api/}}], backendRefs: [{name: s}]}
  - {name: any-api-v1, matches: [{path: {type: PathPrefix, value: /api/v1}}], backendRefs: [{name: s}]}
  - {name: any-re, matches: [{path: {type: RegularExpression, value: "/r/[0-9]+"}}], backendRefs: [{name: s}]}
  - name: any-exact
    matches:
      - {path: {type: Exact, value: /x}}
      - path: {type: Exact, value: /x}
        method: GET
        headers: [{name: x-env, value: canary}]
        queryParams: [{name: v, type: RegularExpression, value: "[0-9]"}]
    backendRefs: [{name: s}]
  - {name: short-wild, hostnames: ["*.com"], backendRefs: [{name: s}]}
  - {name: long-wild, hostnames: ["*.example.com"], backendRefs: [{name: s}]}
  - {name: exact-host, hostnames: [a.example.com], backendRefs: [{name: s}]}
services: [{name: s, endpoints: ["127.0.0.1:1"]}]
"#;
        let config = meshgate_config::parse_str(yaml, "t.yaml").expect("valid");
        let metrics = Arc::new(meshgate_observe::Metrics::new());
        let snap = Snapshot::compile(config, None, &metrics, &crate::filter::NoPolicies)
            .expect("compiles");
        let entries = snap.table("l").expect("table").describe();
        let got: Vec<(&str, &str, &str, &str)> = entries
            .iter()
            .map(|e| (&*e.host, &*e.route, e.path.kind, &*e.path.value))
            .collect();
        assert_eq!(
            got,
            [
                ("a.example.com", "exact-host", "PathPrefix", "/"),
                ("*.example.com", "long-wild", "PathPrefix", "/"),
                ("*.com", "short-wild", "PathPrefix", "/"),
                ("*", "any-exact", "Exact", "/x"),
                ("*", "any-exact", "Exact", "/x"),
                ("*", "any-re", "RegularExpression", "/r/[0-9]+"),
                ("*", "any-api-v1", "PathPrefix", "/api/v1"),
                ("*", "any-api", "PathPrefix", "/api"),
                ("*", "any-root", "PathPrefix", "/"),
            ]
        );
        // The rule with a method and conditions precedes the bare one on the same path.
        let specific = &entries[3];
        assert_eq!(specific.method.as_deref(), Some("GET"));
        assert_eq!(specific.headers[0].name, "x-env");
        assert_eq!(specific.headers[0].kind, "Exact");
        assert_eq!(specific.query_params[0].kind, "RegularExpression");
        assert_eq!(specific.query_params[0].value, "[0-9]");
        assert!(entries[4].method.is_none() && entries[4].headers.is_empty());
        assert_eq!(entries[8].backends[0].service, "s");
        assert_eq!(entries[8].backends[0].weight, 3);
    }
}
