//! Checks of `jwt` policies.

use crate::Config;
use crate::model::JwtPolicy;
use crate::validate::Issues;

/// Checks the settings at `at` (e.g. `policies[3].jwt`).
pub(super) fn check(_at: &str, _p: &JwtPolicy, _config: &Config, _issues: &mut Issues) {}
