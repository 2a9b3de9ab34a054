//! One compiled match of one route: its path condition plus the method, header and
//! query conditions checked after the path index has narrowed the candidates.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, Method};
use meshgate_config as config;
use regex::Regex;

use super::Route;

/// How the path is matched; decides which index of the table holds the rule.
#[derive(Debug, Clone)]
pub enum PathRule {
    Exact(Box<str>),
    /// Normalised: no trailing `/` except for the root prefix `/`.
    Prefix(Box<str>),
    Regex(Regex),
}

#[derive(Debug, Clone)]
enum ValueRule {
    Exact(Box<str>),
    Regex(Regex),
}

impl ValueRule {
    /// The Gateway API match type and the value as configured.
    fn describe(&self) -> (&'static str, String) {
        match self {
            ValueRule::Exact(v) => ("Exact", v.to_string()),
            ValueRule::Regex(re) => ("RegularExpression", unanchored(re).to_owned()),
        }
    }

    fn new(kind: config::StringMatchType, value: &str) -> Result<Self, regex::Error> {
        Ok(match kind {
            config::StringMatchType::Exact => ValueRule::Exact(value.into()),
            config::StringMatchType::RegularExpression => ValueRule::Regex(anchored(value)?),
        })
    }
    fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueRule::Exact(want) => want.as_bytes() == value,
            ValueRule::Regex(re) => std::str::from_utf8(value).is_ok_and(|v| re.is_match(v)),
        }
    }
}

/// A regex that must match the whole input, as the Gateway API specifies.
pub fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// The pattern given to [`anchored`], without the anchoring added around it.
fn unanchored(re: &Regex) -> &str {
    let s = re.as_str();
    s.strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(s)
}

impl PathRule {
    /// The Gateway API path match type: `Exact`, `PathPrefix` or `RegularExpression`.
    pub fn kind(&self) -> &'static str {
        match self {
            PathRule::Exact(_) => "Exact",
            PathRule::Prefix(_) => "PathPrefix",
            PathRule::Regex(_) => "RegularExpression",
        }
    }

    /// Whether `path` matches, with Gateway API semantics: a prefix matches whole
    /// segments (`/api` matches `/api` and `/api/x`, not `/apix`). The route table
    /// gets the same answer through its index; this is for checks outside it.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathRule::Exact(p) => **p == *path,
            PathRule::Prefix(p) => {
                &**p == "/"
                    || path == &**p
                    || path
                        .strip_prefix(&**p)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
            PathRule::Regex(re) => re.is_match(path),
        }
    }

    /// The path, normalised prefix or regex pattern as matched.
    pub fn value(&self) -> &str {
        match self {
            PathRule::Exact(p) | PathRule::Prefix(p) => p,
            PathRule::Regex(re) => unanchored(re),
        }
    }
}

/// A header or query parameter condition of a rule, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Condition {
    pub name: String,
    /// `Exact` or `RegularExpression`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub value: String,
}

/// A route's match, compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    pub route: Arc<Route>,
    pub path: PathRule,
    method: Option<Method>,
    headers: Vec<(HeaderName, ValueRule)>,
    query: Vec<(Box<str>, ValueRule)>,
    /// Declaration order across the config: the last tie-breaker.
    pub order: usize,
}

impl Rule {
    pub fn compile(
        route: Arc<Route>,
        m: &config::RouteMatch,
        order: usize,
    ) -> Result<Self, String> {
        let path = match &m.path {
            None => PathRule::Prefix("/".into()),
            Some(p) => match p.kind {
                config::PathMatchType::Exact => PathRule::Exact(p.value.as_str().into()),
                config::PathMatchType::PathPrefix => {
                    PathRule::Prefix(normalise_prefix(&p.value).into())
                }
                config::PathMatchType::RegularExpression => {
                    PathRule::Regex(anchored(&p.value).map_err(|e| format!("path regex: {e}"))?)
                }
            },
        };
        let method = match &m.method {
            Some(name) => Some(
                Method::from_bytes(name.as_bytes()).map_err(|e| format!("method {name:?}: {e}"))?,
            ),
            None => None,
        };
        let headers = m
            .headers
            .iter()
            .map(|h| {
                let name = HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|e| format!("header {:?}: {e}", h.name))?;
                Ok((
                    name,
                    ValueRule::new(h.kind, &h.value).map_err(|e| format!("header regex: {e}"))?,
                ))
            })
            .collect::<Result<_, String>>()?;
        let query = m
            .query_params
            .iter()
            .map(|q| {
                Ok((
                    q.name.as_str().into(),
                    ValueRule::new(q.kind, &q.value).map_err(|e| format!("query regex: {e}"))?,
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(Rule {
            route,
            path,
            method,
            headers,
            query,
            order,
        })
    }

    /// Gateway API tie-break among rules with the same path key: a method match, then
    /// more header matches, then more query matches, then declaration order.
    pub fn precedence_key(
        &self,
    ) -> (
        bool,
        std::cmp::Reverse<usize>,
        std::cmp::Reverse<usize>,
        usize,
    ) {
        use std::cmp::Reverse;
        (
            self.method.is_none(),
            Reverse(self.headers.len()),
            Reverse(self.query.len()),
            self.order,
        )
    }

    /// The method condition, if any.
    pub fn method(&self) -> Option<&Method> {
        self.method.as_ref()
    }

    /// The header conditions, in declaration order.
    pub fn header_conditions(&self) -> Vec<Condition> {
        let named = self.headers.iter().map(|(n, r)| (n.as_str(), r));
        describe_all(named)
    }

    /// The query parameter conditions, in declaration order.
    pub fn query_conditions(&self) -> Vec<Condition> {
        describe_all(self.query.iter().map(|(n, r)| (&**n, r)))
    }

    /// The conditions other than the path.
    pub fn matches_rest(&self, method: &Method, headers: &HeaderMap, query: Option<&str>) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        let headers_ok = self.headers.iter().all(|(name, rule)| {
            headers
                .get_all(name)
                .iter()
                .any(|v| rule.matches(v.as_bytes()))
        });
        headers_ok
            && self
                .query
                .iter()
                .all(|(name, rule)| query_values(query, name).any(|v| rule.matches(v.as_bytes())))
    }

    /// Why this rule does not match `path`, `method`, `headers` and `query`; `None`
    /// when it does. For `explain`: the lookup itself never calls this.
    pub fn mismatch(
        &self,
        path: &str,
        method: &Method,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Option<String> {
        if !self.path.matches(path) {
            return Some(format!(
                "path {path} does not match {} {}",
                self.path.kind(),
                self.path.value()
            ));
        }
        if let Some(m) = self.method.as_ref().filter(|m| *m != method) {
            return Some(format!("method {method} is not {m}"));
        }
        for (name, rule) in &self.headers {
            if !headers
                .get_all(name)
                .iter()
                .any(|v| rule.matches(v.as_bytes()))
            {
                let (kind, value) = rule.describe();
                return Some(format!("header {name} does not match {kind} {value}"));
            }
        }
        for (name, rule) in &self.query {
            if !query_values(query, name).any(|v| rule.matches(v.as_bytes())) {
                let (kind, value) = rule.describe();
                return Some(format!(
                    "query parameter {name} does not match {kind} {value}"
                ));
            }
        }
        None
    }

    /// For `ReplacePrefixMatch`: how many bytes of the path the prefix matched.
    pub fn matched_prefix_len(&self) -> Option<usize> {
        match &self.path {
            PathRule::Prefix(p) if &**p == "/" => Some(0),
            PathRule::Prefix(p) => Some(p.len()),
            _ => None,
        }
    }
}

fn describe_all<'a>(rules: impl Iterator<Item = (&'a str, &'a ValueRule)>) -> Vec<Condition> {
    rules
        .map(|(name, rule)| {
            let (kind, value) = rule.describe();
            Condition {
                name: name.to_owned(),
                kind,
                value,
            }
        })
        .collect()
}

/// `/api/` and `/api` are the same prefix; keep `/` as is.
pub fn normalise_prefix(p: &str) -> &str {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() { "/" } else { trimmed }
}

/// Values of `name` in a raw query string (not percent-decoded).
fn query_values<'a>(query: Option<&'a str>, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    query.unwrap_or("").split('&').filter_map(move |pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_finds_every_occurrence() {
        let q = Some("a=1&b=2&a=3&c");
        assert_eq!(query_values(q, "a").collect::<Vec<_>>(), ["1", "3"]);
        assert_eq!(query_values(q, "c").collect::<Vec<_>>(), [""]);
        assert_eq!(query_values(None, "a").count(), 0);
    }

    #[test]
    fn prefixes_normalise() {
        assert_eq!(normalise_prefix("/api/"), "/api");
        assert_eq!(normalise_prefix("/"), "/");
        assert_eq!(normalise_prefix("/api"), "/api");
    }
}
