//! Checks of `authorize` policies: at least one rule, no empty rule (it would allow
//! everything), method and path syntax as in route matches, and claim conditions
//! with exactly one place and exactly one test.

use crate::Config;
use crate::model::{AuthorizePolicy, AuthorizeRule, ClaimCondition, PathMatchType};
use crate::validate::Issues;

use super::super::syntax;

/// Checks the settings at `at` (e.g. `policies[3].authorize`).
pub(super) fn check(at: &str, p: &AuthorizePolicy, _config: &Config, issues: &mut Issues) {
    if p.rules.is_empty() {
        issues.add(
            format!("{at}.rules"),
            "set at least one rule (without rules every request is refused)",
        );
    }
    for (i, r) in p.rules.iter().enumerate() {
        check_rule(&format!("{at}.rules[{i}]"), r, issues);
    }
}

fn check_rule(at: &str, r: &AuthorizeRule, issues: &mut Issues) {
    if r.consumers.is_empty()
        && r.groups.is_empty()
        && r.methods.is_empty()
        && r.paths.is_empty()
        && r.claims.is_empty()
    {
        issues.add(
            at,
            "set at least one of consumers, groups, methods, paths, claims \
             (an empty rule would allow every request)",
        );
    }
    for (field, list) in [("consumers", &r.consumers), ("groups", &r.groups)] {
        for (j, v) in list.iter().enumerate() {
            if v.is_empty() {
                issues.add(format!("{at}.{field}[{j}]"), "must not be empty");
            }
        }
    }
    for (j, m) in r.methods.iter().enumerate() {
        if let Some(msg) = syntax::method(m) {
            issues.add(format!("{at}.methods[{j}]"), msg);
        }
    }
    for (j, p) in r.paths.iter().enumerate() {
        let problem = match p.kind {
            PathMatchType::Exact | PathMatchType::PathPrefix => syntax::path(&p.value),
            PathMatchType::RegularExpression => syntax::regex(&p.value),
        };
        if let Some(msg) = problem {
            issues.add(format!("{at}.paths[{j}].value"), msg);
        }
    }
    for (j, c) in r.claims.iter().enumerate() {
        check_claim(&format!("{at}.claims[{j}]"), c, issues);
    }
}

fn check_claim(at: &str, c: &ClaimCondition, issues: &mut Issues) {
    match (&c.claim, &c.claim_path) {
        (None, None) => issues.add(
            at,
            "set claim (a dot path such as realm_access.roles) or claimPath (a list of keys)",
        ),
        (Some(_), Some(_)) => issues.add(
            format!("{at}.claimPath"),
            "set claim or claimPath, not both",
        ),
        (Some(path), None) => {
            if path.split('.').any(str::is_empty) {
                issues.add(
                    format!("{at}.claim"),
                    format!(
                        "{path:?} has an empty segment; for keys that contain dots use claimPath"
                    ),
                );
            }
        }
        (None, Some(keys)) => {
            if keys.is_empty() {
                issues.add(format!("{at}.claimPath"), "must not be empty");
            }
            for (k, key) in keys.iter().enumerate() {
                if key.is_empty() {
                    issues.add(format!("{at}.claimPath[{k}]"), "must not be empty");
                }
            }
        }
    }
    let tests: Vec<&str> = [
        ("equals", c.equals.is_some()),
        ("contains", c.contains.is_some()),
        ("anyOf", c.any_of.is_some()),
        ("present", c.present.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    match tests.len() {
        0 => issues.add(at, "set one of equals, contains, anyOf, present"),
        1 => {}
        _ => issues.add(
            at,
            format!(
                "set only one of equals, contains, anyOf, present (got {})",
                tests.join(", ")
            ),
        ),
    }
    if c.any_of.as_ref().is_some_and(Vec::is_empty) {
        issues.add(format!("{at}.anyOf"), "must not be empty");
    }
}
