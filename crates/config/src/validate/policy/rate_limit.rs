//! Checks of `rateLimit` policies.

use crate::Config;
use crate::model::RateLimitPolicy;
use crate::validate::Issues;

/// Checks the settings at `at` (e.g. `policies[3].rate_limit`).
pub(super) fn check(_at: &str, _p: &RateLimitPolicy, _config: &Config, _issues: &mut Issues) {}
