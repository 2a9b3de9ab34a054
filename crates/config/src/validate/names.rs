//! Names: uniqueness of listener, route and service names, and references to
//! listeners and services, with a "did you mean" suggestion for near misses.

use std::collections::HashMap;

use super::Issues;
use crate::Config;

/// The named sections of a config.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Listener,
    Route,
    Service,
}

impl Kind {
    fn singular(self) -> &'static str {
        match self {
            Kind::Listener => "listener",
            Kind::Route => "route",
            Kind::Service => "service",
        }
    }

    fn section(self) -> &'static str {
        match self {
            Kind::Listener => "listeners",
            Kind::Route => "routes",
            Kind::Service => "services",
        }
    }
}

/// The names of listeners, routes and services, in declaration order.
pub(super) struct Known<'a> {
    listeners: Names<'a>,
    routes: Names<'a>,
    services: Names<'a>,
}

/// One section's names, and where each first appears (so that checks stay
/// linear with 10,000 routes).
struct Names<'a> {
    list: Vec<&'a str>,
    first: HashMap<&'a str, usize>,
}

impl<'a> Names<'a> {
    fn of(list: Vec<&'a str>) -> Self {
        let mut first = HashMap::with_capacity(list.len());
        for (i, name) in list.iter().enumerate() {
            first.entry(*name).or_insert(i);
        }
        Names { list, first }
    }
}

impl<'a> Known<'a> {
    pub(super) fn of(config: &'a Config) -> Self {
        Self {
            listeners: Names::of(config.listeners.iter().map(|l| l.name.as_str()).collect()),
            routes: Names::of(config.routes.iter().map(|r| r.name.as_str()).collect()),
            services: Names::of(config.services.iter().map(|s| s.name.as_str()).collect()),
        }
    }

    fn names(&self, kind: Kind) -> &Names<'a> {
        match kind {
            Kind::Listener => &self.listeners,
            Kind::Route => &self.routes,
            Kind::Service => &self.services,
        }
    }

    /// The problem with a reference to listener `name`, if any.
    pub(super) fn listener(&self, name: &str) -> Option<String> {
        known(Kind::Listener, name, &self.listeners)
    }

    /// The problem with a reference to service `name`, if any.
    pub(super) fn service(&self, name: &str) -> Option<String> {
        known(Kind::Service, name, &self.services)
    }

    /// Checks the name of entry `i` of `kind`'s section: not empty, not used by an
    /// earlier entry (reported here, naming the first one).
    pub(super) fn check_name(&self, kind: Kind, i: usize, issues: &mut Issues) {
        let names = self.names(kind);
        let (this, section) = (names.list[i], kind.section());
        let path = format!("{section}[{i}].name");
        if this.trim().is_empty() {
            issues.add(
                path,
                format!(
                    "must not be empty: every {} needs a unique name",
                    kind.singular()
                ),
            );
        } else if let Some(&first) = names.first.get(this).filter(|&&first| first < i) {
            issues.add(
                path,
                format!(
                    "duplicate {} name {this:?} (first at {section}[{first}])",
                    kind.singular()
                ),
            );
        }
    }
}

/// Most names listed in an "expected one of" message.
const LISTED: usize = 8;

/// [`unknown`], with a hash probe for the common case of a known name.
fn known(kind: Kind, name: &str, names: &Names<'_>) -> Option<String> {
    if names.first.contains_key(name) {
        return None;
    }
    unknown(kind, name, &names.list)
}

fn unknown(kind: Kind, name: &str, known: &[&str]) -> Option<String> {
    if known.contains(&name) {
        return None;
    }
    let mut msg = format!("unknown {} {name:?}", kind.singular());
    if let Some(close) = suggest(name, known) {
        msg.push_str(&format!(" (did you mean {close:?}?)"));
    } else if known.is_empty() {
        msg.push_str(&format!(": no {} are defined", kind.section()));
    } else {
        let listed: Vec<String> = known
            .iter()
            .take(LISTED)
            .map(|k| format!("{k:?}"))
            .collect();
        let more = if known.len() > LISTED { ", …" } else { "" };
        msg.push_str(&format!(": expected one of {}{more}", listed.join(", ")));
    }
    Some(msg)
}

/// The known name closest to `name` within edit distance 2 (first declared on ties).
pub(super) fn suggest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (levenshtein(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Edit distance (insertions, deletions, substitutions) between two strings, by chars.
pub(super) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("orders", "orders"), 0);
        assert_eq!(levenshtein("ordrs", "orders"), 1);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("ab", "ba"), 2);
        assert_eq!(levenshtein("héllo", "hello"), 1);
    }

    #[test]
    fn suggests_closest_within_two() {
        let known = ["users", "orders", "order"];
        assert_eq!(suggest("ordrs", &known), Some("orders"));
        assert_eq!(suggest("ordr", &known), Some("order"));
        assert_eq!(suggest("payments", &known), None);
    }

    #[test]
    fn unknown_reference_messages() {
        assert_eq!(unknown(Kind::Service, "a", &["a"]), None);
        assert_eq!(
            unknown(Kind::Service, "ordrs", &["orders"]).unwrap(),
            "unknown service \"ordrs\" (did you mean \"orders\"?)"
        );
        assert_eq!(
            unknown(Kind::Service, "x", &[]).unwrap(),
            "unknown service \"x\": no services are defined"
        );
        assert_eq!(
            unknown(Kind::Listener, "payments", &["public", "admin"]).unwrap(),
            "unknown listener \"payments\": expected one of \"public\", \"admin\""
        );
    }
}
