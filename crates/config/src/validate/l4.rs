//! Checks of `listeners[].l4`.

use crate::Config;
use crate::model::L4Listener;

use super::Issues;

/// Checks the settings at `at` (e.g. `listeners[0].tls`).
pub(super) fn check(_at: &str, _s: &L4Listener, _config: &Config, _issues: &mut Issues) {}
