//! Checks of `listeners[].tls`.

use crate::Config;
use crate::model::ListenerTls;

use super::Issues;

/// Checks the settings at `at` (e.g. `listeners[0].tls`).
pub(super) fn check(_at: &str, _s: &ListenerTls, _config: &Config, _issues: &mut Issues) {}
