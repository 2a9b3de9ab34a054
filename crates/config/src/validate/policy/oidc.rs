//! Checks of `oidc` policies.

use crate::Config;
use crate::model::OidcPolicy;
use crate::validate::Issues;

/// Checks the settings at `at` (e.g. `policies[3].oidc`).
pub(super) fn check(_at: &str, _p: &OidcPolicy, _config: &Config, _issues: &mut Issues) {}
