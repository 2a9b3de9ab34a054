//! `meshgate plan`: what applying a document would change, field by field, and
//! which proxies it would reach, without applying anything.
//!
//! Both configs are compared in their parsed form ([`diff`]), so formatting,
//! comments and explicitly written defaults are no change. The rendered text is
//! deterministic (sections in a fixed order, items by name, fields by name) so it
//! can be golden-tested and compared between runs, and it never shows a secret.

pub mod diff;

use meshgate_config::Config;
use serde_json::Value;

use crate::store::ProxyRecord;
pub use diff::{Detail, Line, is_secret_field};

/// Sections shown first, in this order; any other top-level section follows by name.
const SECTIONS: [&str; 11] = [
    "listeners",
    "routes",
    "services",
    "policies",
    "consumers",
    "errorResponses",
    "runtime",
    "accessLog",
    "admin",
    "reload",
    "tracing",
];

/// The difference between the running config and a candidate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The version compared against (0: nothing applied yet).
    pub running_version: u64,
    /// Every difference, in render order.
    pub lines: Vec<Line>,
    /// Node ids of the connected gateways the change would reach (None: not
    /// looked up, and not rendered).
    pub gateways: Option<Vec<String>>,
}

/// Compares `next` with `running` (None: nothing applied, so everything `next`
/// sets beyond the defaults is new).
pub fn plan(running: Option<&Config>, next: &Config) -> Plan {
    let default = Config::default();
    let old = as_value(running.unwrap_or(&default));
    let new = as_value(next);
    let mut keys: Vec<&str> = SECTIONS.to_vec();
    let mut others: Vec<&str> = [&old, &new]
        .into_iter()
        .filter_map(Value::as_object)
        .flat_map(|m| m.keys().map(String::as_str))
        .filter(|k| !SECTIONS.contains(k))
        .collect();
    others.sort_unstable();
    others.dedup();
    keys.extend(others);
    let mut lines = Vec::new();
    for key in keys {
        let (a, b) = (section(&old, key), section(&new, key));
        diff::diff(key, key, &a, &b, &mut lines);
    }
    Plan {
        running_version: 0,
        lines,
        gateways: None,
    }
}

fn as_value(config: &Config) -> Value {
    // The model is plain data; serialising it cannot fail in practice, and an
    // empty value only makes the plan show more.
    serde_json::to_value(config).unwrap_or(Value::Null)
}

fn section(config: &Value, key: &str) -> Value {
    config.get(key).cloned().unwrap_or(Value::Null)
}

impl Plan {
    /// Records the version the plan was made against (shown in the header).
    pub fn against(mut self, version: u64) -> Self {
        self.running_version = version;
        self
    }

    /// Records the connected gateways (from the store's proxy records) that
    /// applying would reach.
    pub fn affecting(mut self, proxies: &[ProxyRecord]) -> Self {
        let mut nodes: Vec<String> = proxies
            .iter()
            .filter(|p| p.connected && p.role == "gateway")
            .map(|p| p.node_id.clone())
            .collect();
        nodes.sort();
        nodes.dedup();
        self.gateways = Some(nodes);
        self
    }

    pub fn has_changes(&self) -> bool {
        !self.lines.is_empty()
    }

    /// (added, changed, removed) lines.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for line in &self.lines {
            match line.detail {
                Detail::Added(_) => counts.0 += 1,
                Detail::Changed { .. } | Detail::SecretChanged => counts.1 += 1,
                Detail::Removed(_) => counts.2 += 1,
            }
        }
        counts
    }

    /// The text `meshgate plan` prints.
    pub fn render(&self) -> String {
        if !self.has_changes() {
            return "No changes.\n".into();
        }
        let mut out = match self.running_version {
            0 => "Nothing applied yet: compared with an empty config.\n\n".to_string(),
            v => format!("Compared with running version {v}.\n\n"),
        };
        for line in &self.lines {
            let text = match &line.detail {
                Detail::Added(None) => format!("  + {}", line.path),
                Detail::Added(Some(v)) => format!("  + {}: {v}", line.path),
                Detail::Removed(None) => format!("  - {}", line.path),
                Detail::Removed(Some(v)) => format!("  - {}: {v}", line.path),
                Detail::Changed { from, to } => format!("  ~ {}: {from} → {to}", line.path),
                Detail::SecretChanged => format!("  ~ {}: (changed)", line.path),
            };
            out.push_str(&text);
            out.push('\n');
        }
        let (added, changed, removed) = self.counts();
        out.push_str(&format!(
            "\nPlan: {added} to add, {changed} to change, {removed} to remove.\n"
        ));
        if let Some(nodes) = &self.gateways {
            out.push_str(&match nodes.len() {
                0 => "affects: 0 gateways (none connected)\n".to_string(),
                1 => format!("affects: 1 gateway ({})\n", nodes[0]),
                n => format!("affects: {n} gateways ({})\n", nodes.join(", ")),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Config {
        meshgate_config::parse_str(yaml, "t.yaml").unwrap()
    }

    #[test]
    fn equal_documents_have_no_changes() {
        let a = parse("services: [{name: s, endpoints: [\"127.0.0.1:1\"]}]\n");
        let b = parse(
            "# a comment\nruntime: {drainTimeout: 30s}\nservices:\n  - name: s\n    endpoints: [\"127.0.0.1:1\"]\n",
        );
        let p = plan(Some(&a), &b);
        assert!(!p.has_changes(), "{:?}", p.lines);
        assert_eq!(p.render(), "No changes.\n");
    }

    #[test]
    fn first_plan_shows_everything_new() {
        let b = parse("services: [{name: s, endpoints: [\"127.0.0.1:1\"]}]\n");
        let text = plan(None, &b).affecting(&[]).render();
        assert!(text.starts_with("Nothing applied yet"), "{text}");
        assert!(text.contains("  + services[s]\n"), "{text}");
        assert!(
            text.contains("affects: 0 gateways (none connected)"),
            "{text}"
        );
    }
}
