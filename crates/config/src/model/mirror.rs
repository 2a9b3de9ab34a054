//! Request mirroring (shadowing) of a route, with optional response diffing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// A shadow service that gets a copy of a share of the route's requests.
///
/// Fire-and-forget: the copy is sent on its own task with its own timeout, and its
/// outcome never delays, fails or changes the primary response. Only requests whose
/// body the gateway holds in memory (no body, or `content-length` up to
/// `maxBodyBytes`) are mirrored; streaming bodies are never buffered for a mirror.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mirror {
    /// Name of the shadow service (an entry in `services`). It gets the request
    /// with the same method, path, query, headers and body, and a Host header
    /// suffixed with `-shadow` (`api.example.com:8080` → `api.example.com-shadow:8080`).
    pub service: String,
    /// Share of the route's requests that are mirrored, 0 to 100 (fractions
    /// allowed, e.g. 0.5). Default 100.
    #[serde(default = "Mirror::default_percent")]
    pub percent: f64,
    /// Limit on the whole shadow exchange: connect, response head, and reading the
    /// response body. Default `1s`.
    #[serde(default = "Mirror::default_timeout")]
    pub timeout: Duration,
    /// Requests whose body is larger than this (by `content-length`), or have no
    /// `content-length`, are not mirrored; in diff mode, response bodies larger
    /// than this are not compared. Default 65536.
    #[serde(default = "Mirror::default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Compare the shadow's responses with the primary's and report divergences.
    /// Absent: responses of the shadow are read and discarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<MirrorDiff>,
}

impl Mirror {
    fn default_percent() -> f64 {
        100.0
    }
    fn default_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub fn default_max_body_bytes() -> u64 {
        64 * 1024
    }
}

/// Response diffing: status, selected headers and body of the shadow's response
/// against the primary's.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MirrorDiff {
    /// Response headers compared (names, case-insensitive). Default `[content-type]`;
    /// `[]` compares none.
    #[serde(default = "MirrorDiff::default_compare_headers")]
    pub compare_headers: Vec<String>,
    /// JSON fields left out of the body comparison: dotted paths from the root,
    /// optionally starting with `$.` (`$.timestamp`, `meta.requestId`), where `*`
    /// stands for any array element or object member (`items.*.id`). Default `[]`.
    #[serde(default)]
    pub ignore_json_fields: Vec<String>,
    /// Divergence log records (tracing, level info) per minute and route, at most;
    /// the rest are only counted. Default 10; 0 logs none.
    #[serde(default = "MirrorDiff::default_sample_log_per_minute")]
    pub sample_log_per_minute: u32,
}

impl MirrorDiff {
    fn default_compare_headers() -> Vec<String> {
        vec!["content-type".to_owned()]
    }
    fn default_sample_log_per_minute() -> u32 {
        10
    }
}

/// One step of an `ignoreJsonFields` path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonPathStep {
    /// An object member by name; all digits also selects that array index.
    Key(String),
    /// `*`: any array element or object member.
    Any,
}

/// Parses an `ignoreJsonFields` entry: dotted names from the root, with an
/// optional `$.` in front and `*` for any element or member.
pub fn parse_json_path(path: &str) -> Result<Vec<JsonPathStep>, String> {
    let rest = match path.strip_prefix('$') {
        Some("") => return Err("must name a field below the root, e.g. $.timestamp".into()),
        Some(r) => r.strip_prefix('.').ok_or_else(|| {
            format!("{path:?}: expected `$.` then dotted field names, e.g. $.items.*.id")
        })?,
        None => path,
    };
    rest.split('.')
        .map(|s| match s {
            "" => Err(format!(
                "{path:?} has an empty field name: expected dotted field names, e.g. items.*.id"
            )),
            "*" => Ok(JsonPathStep::Any),
            name => Ok(JsonPathStep::Key(name.to_owned())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{JsonPathStep as S, parse_json_path as p};

    #[test]
    fn json_paths_parse() {
        let k = |s: &str| S::Key(s.into());
        assert_eq!(p("$.timestamp").unwrap(), vec![k("timestamp")]);
        assert_eq!(p("id").unwrap(), vec![k("id")]);
        assert_eq!(p("items.*.id").unwrap(), vec![k("items"), S::Any, k("id")]);
        assert!(p("$").is_err());
        assert!(p("$x").is_err());
        assert!(p("a..b").is_err());
        assert!(p("").is_err());
        assert!(p("a.").is_err());
    }
}
