//! Checks of `extAuthz` policies.

use crate::Config;
use crate::model::ExtAuthzPolicy;
use crate::validate::Issues;

/// Checks the settings at `at` (e.g. `policies[3].ext_authz`).
pub(super) fn check(_at: &str, _p: &ExtAuthzPolicy, _config: &Config, _issues: &mut Issues) {}
