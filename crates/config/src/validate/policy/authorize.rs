//! Checks of `authorize` policies.

use crate::Config;
use crate::model::AuthorizePolicy;
use crate::validate::Issues;

/// Checks the settings at `at` (e.g. `policies[3].authorize`).
pub(super) fn check(_at: &str, _p: &AuthorizePolicy, _config: &Config, _issues: &mut Issues) {}
