//! Checks of `routes[].compression`: at least one encoding, none twice, and media
//! type patterns the runtime can match (`type/subtype` or `type/*`).

use std::collections::HashMap;

use crate::model::Compression;

use super::Issues;

/// Checks the settings at `at` (`routes[i].compression`).
pub(super) fn check(at: &str, s: &Compression, issues: &mut Issues) {
    if s.algorithms.is_empty() {
        issues.add(
            format!("{at}.algorithms"),
            "must list at least one of zstd, br, gzip (remove `compression` to turn it off)",
        );
    }
    for (j, a) in s.algorithms.iter().enumerate() {
        if let Some(first) = s.algorithms[..j].iter().position(|b| b == a) {
            issues.add(
                format!("{at}.algorithms[{j}]"),
                format!(
                    "duplicate encoding {} (first at algorithms[{first}])",
                    a.token()
                ),
            );
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (j, t) in s.content_types.iter().enumerate() {
        if let Some(msg) = media_range(t) {
            issues.add(format!("{at}.contentTypes[{j}]"), msg);
            continue;
        }
        let key = t.to_ascii_lowercase();
        if let Some(first) = seen.get(&key) {
            issues.add(
                format!("{at}.contentTypes[{j}]"),
                format!("duplicate content type {t:?} (first at contentTypes[{first}])"),
            );
        } else {
            seen.insert(key, j);
        }
    }
}

/// `None` when `t` is `type/subtype` or `type/*` made of token characters.
fn media_range(t: &str) -> Option<String> {
    let bad = || {
        Some(format!(
            "{t:?} is not a media type: expected type/subtype or type/* without parameters, e.g. text/* or application/json"
        ))
    };
    let Some((ty, sub)) = t.split_once('/') else {
        return bad();
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    if !token(ty) || !(sub == "*" || token(sub)) {
        return bad();
    }
    None
}
