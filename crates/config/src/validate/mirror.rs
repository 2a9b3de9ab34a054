//! Checks of `routes[].mirror`: the shadow service exists, the share is a
//! percentage, the timeout and body cap are sane, and the diff settings parse.

use crate::Config;
use crate::model::{Mirror, parse_json_path};

use super::names::Known;
use super::{Issues, syntax};

/// Largest `maxBodyBytes`: mirrored bodies and compared responses are held in memory.
const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

/// Checks the settings at `at` (`routes[i].mirror`).
pub(super) fn check(at: &str, s: &Mirror, config: &Config, issues: &mut Issues) {
    if let Some(msg) = Known::of(config).service(&s.service) {
        issues.add(format!("{at}.service"), msg);
    }
    if !(0.0..=100.0).contains(&s.percent) {
        issues.add(
            format!("{at}.percent"),
            format!("must be between 0 and 100 (got {})", s.percent),
        );
    }
    if s.timeout.get().is_zero() {
        issues.add(format!("{at}.timeout"), "must be greater than 0, e.g. 1s");
    }
    if s.max_body_bytes > MAX_BODY_BYTES {
        issues.add(
            format!("{at}.maxBodyBytes"),
            format!(
                "must be at most {MAX_BODY_BYTES} (16 MiB): mirrored bodies are held in memory (got {})",
                s.max_body_bytes
            ),
        );
    }
    let Some(diff) = &s.diff else {
        return;
    };
    for (j, h) in diff.compare_headers.iter().enumerate() {
        if let Some(msg) = syntax::header_name(h) {
            issues.add(format!("{at}.diff.compareHeaders[{j}]"), msg);
        }
    }
    for (j, f) in diff.ignore_json_fields.iter().enumerate() {
        if let Err(msg) = parse_json_path(f) {
            issues.add(format!("{at}.diff.ignoreJsonFields[{j}]"), msg);
        }
    }
}
