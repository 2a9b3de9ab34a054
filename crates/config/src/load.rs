//! Loading a document: YAML → model (serde-saphyr, field path via
//! serde_path_to_error; JSON documents by serde_json first), then semantic
//! validation; every error located.

use std::path::Path;

use crate::locate::PathIndex;
use crate::validate::validate;
use crate::{Config, ConfigError, ConfigErrors};

/// Reads and checks a config file.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    parse_str(&read_file(path)?, &path.display().to_string())
}

/// A config file's text, or a located "cannot read" error naming it.
pub fn read_file(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            path: String::new(),
            message: format!("cannot read: {e}"),
        }])
    })
}

/// Parses and checks a document; `file` names it in errors.
pub fn parse_str(src: &str, file: &str) -> Result<Config, ConfigErrors> {
    let config = deserialize(src, file)?;
    let issues = validate(&config);
    if issues.is_empty() {
        return Ok(config);
    }
    Err(ConfigErrors(locate_all(src, file, issues)))
}

/// Suspicious but valid choices in a valid `config` parsed from `src` (for example a
/// rate limit keyed by consumer placed before any authentication), located like errors.
pub fn warnings(config: &Config, src: &str, file: &str) -> Vec<ConfigError> {
    locate_all(src, file, crate::validate::warnings(config))
}

fn locate_all(src: &str, file: &str, issues: Vec<crate::validate::Issue>) -> Vec<ConfigError> {
    if issues.is_empty() {
        return Vec::new();
    }
    let index = PathIndex::build(src);
    issues
        .into_iter()
        .map(|issue| {
            let (line, column) = index.locate(&issue.path);
            ConfigError {
                file: file.to_owned(),
                line,
                column,
                path: issue.path,
                message: issue.message,
            }
        })
        .collect()
}

fn deserialize(src: &str, file: &str) -> Result<Config, ConfigErrors> {
    // The documents the control plane generates for sidecars are JSON (a subset
    // of YAML): serde_json reads them without the YAML machinery, whose code a
    // sidecar then never runs or keeps resident. Any error is left to the YAML
    // path below, which locates it.
    if src.trim_start().starts_with('{')
        && let Ok(config) = serde_json::from_str::<Config>(src)
    {
        return Ok(config);
    }
    let mut field_path = String::new();
    // The parser's default budget (250,000 nodes, 1,000,000 events) refuses a
    // 10,000-route config (~27 nodes a route); alias and depth limits, which are
    // what protect against hostile documents, stay at their defaults.
    let options = serde_saphyr::options! {
        with_snippet: false,
        budget: serde_saphyr::budget! {
            max_nodes: 4_000_000,
            max_events: 16_000_000,
        },
    };
    let result = serde_saphyr::with_deserializer_from_str_with_options(src, options, |de| {
        serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
            field_path = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let (line, column) = match e.location() {
            Some(loc) if loc.line() > 0 => (loc.line() as usize, loc.column() as usize),
            _ => PathIndex::build(src).locate(&field_path),
        };
        let path = if field_path == "." {
            String::new()
        } else {
            field_path
        };
        ConfigErrors(vec![ConfigError {
            file: file.to_owned(),
            line,
            column,
            path,
            message: plain_message(&e),
        }])
    })
}

/// serde-saphyr's message without its own location suffix (we print ours).
fn plain_message(e: &serde_saphyr::Error) -> String {
    let msg = e.without_snippet().to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(src: &str) -> String {
        parse_str(src, "t.yaml").unwrap_err().to_string()
    }

    #[test]
    fn ten_thousand_routes_load_from_yaml_with_duplicates_still_found() {
        let mut yaml =
            String::from("services:\n  - name: s\n    endpoints: [127.0.0.1:1]\nroutes:\n");
        for i in 0..10_000 {
            yaml.push_str(&format!(
                "  - name: r{i}\n    hostnames: [h{}.test]\n    matches:\n      - path: {{type: PathPrefix, value: /p{}}}\n        headers: [{{name: x-tenant, value: t{i}}}]\n    backendRefs: [{{name: s}}]\n",
                i / 10,
                i % 10
            ));
        }
        let config = parse_str(&yaml, "big.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.routes.len(), 10_000);
        let dup = yaml.replace("name: r9999\n", "name: r5\n");
        let e = parse_str(&dup, "big.yaml").unwrap_err().to_string();
        assert!(
            e.contains("routes[9999].name: duplicate route name \"r5\" (first at routes[5])"),
            "{e}"
        );
    }

    #[test]
    fn json_documents_parse_and_their_errors_are_still_located() {
        let json = r#"{"services": [{"name": "s", "endpoints": ["127.0.0.1:1"]}]}"#;
        let yaml = "services:\n  - name: s\n    endpoints: [127.0.0.1:1]\n";
        assert_eq!(
            parse_str(json, "t.json").unwrap(),
            parse_str(yaml, "t.yaml").unwrap()
        );
        let bad = r#"{"routes": [{"name": "r", "bogus": 1}]}"#;
        let e = parse_str(bad, "t.json").unwrap_err().to_string();
        assert!(e.starts_with("t.json:1:"), "{e}");
        assert!(e.contains("routes[0].bogus: unknown field `bogus`"), "{e}");
    }

    #[test]
    fn type_errors_carry_location_and_path() {
        let cases = [
            (
                "listeners:\n  - name: a\n    address: 127.0.0.1:1\nroutes:\n  - name: r\n    matches:\n      - path: {type: Prefix, value: /x}\n",
                "t.yaml:7:22: routes[0].matches[0].path.type: unknown variant `Prefix`, expected one of Exact, PathPrefix, RegularExpression",
            ),
            (
                "routes:\n  - name: r\n    bogus: 1\n",
                "t.yaml:3:5: routes[0].bogus: unknown field `bogus`, expected one of name, hostnames, listeners, matches, policies, filters, backendRefs, backendAffinity, timeouts, retry, errorResponses, mirror, compression",
            ),
            (
                "routes:\n  - name: r\n    timeouts:\n      request: 5\n",
                "t.yaml:4:16: routes[0].timeouts.request: invalid duration 5: a unit is required (ms, s, m, h), e.g. 5ms or 5s",
            ),
            (
                "services:\n  - name: s\n    endpoints:\n      - {address: a:1, wieght: 2}\n",
                "t.yaml:4:24: services[0].endpoints[0].wieght: unknown field `wieght`, expected one of address, weight",
            ),
            (
                "listeners:\n  - name: a\n    address: nope\n",
                "t.yaml:3:14: listeners[0].address: invalid socket address syntax",
            ),
            (
                "listeners: [\n",
                "t.yaml:1:12: listeners: unclosed bracket '['",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(errors(src), want, "{src}");
        }
    }

    #[test]
    fn semantic_errors_are_located_and_all_reported() {
        let src = "routes:\n  - name: r\n    backendRefs:\n      - name: ordrs\nservices:\n  - name: orders\n    endpoints: []\n";
        let want = "t.yaml:4:15: routes[0].backendRefs[0].name: unknown service \"ordrs\" (did you mean \"orders\"?)\n\
                    t.yaml:7:16: services[0].endpoints: must list at least one endpoint";
        assert_eq!(errors(src), want);
    }

    #[test]
    fn missing_field_is_reported_at_its_parent() {
        let src = "routes:\n  - name: r\n    hostnames: [a.example]\n";
        let err = parse_str(src, "t.yaml").unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!((err.0[0].line, err.0[0].column), (2, 5));
        assert_eq!(err.0[0].path, "routes[0].backendRefs");
    }

    #[test]
    fn valid_document_parses_with_defaults() {
        let src = "listeners:\n  - {name: web, address: 127.0.0.1:8080}\nroutes:\n  - name: r\n    backendRefs: [{name: s}]\nservices:\n  - {name: s, endpoints: [127.0.0.1:9000]}\n";
        let config = parse_str(src, "t.yaml").unwrap();
        assert_eq!(config.routes[0].backend_refs[0].weight, 1);
        assert_eq!(config.services[0].endpoints[0].address, "127.0.0.1:9000");
        assert_eq!(config.access_log.path, "stdout");
    }

    #[test]
    fn unreadable_file_has_no_position() {
        let err = load_file(Path::new("/nonexistent/meshgate.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/nonexistent/meshgate.yaml: cannot read: "),
            "{err}"
        );
    }
}
