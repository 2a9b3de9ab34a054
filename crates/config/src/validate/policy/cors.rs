//! Checks of `cors` policies.

use crate::Config;
use crate::model::CorsPolicy;
use crate::validate::Issues;

/// Checks the settings at `at` (e.g. `policies[3].cors`).
pub(super) fn check(_at: &str, _p: &CorsPolicy, _config: &Config, _issues: &mut Issues) {}
