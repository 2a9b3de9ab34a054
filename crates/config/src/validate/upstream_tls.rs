//! Checks of `services[].tls`.

use crate::Config;
use crate::model::UpstreamTls;

use super::Issues;

/// Checks the settings at `at` (e.g. `listeners[0].tls`).
pub(super) fn check(_at: &str, _s: &UpstreamTls, _config: &Config, _issues: &mut Issues) {}
