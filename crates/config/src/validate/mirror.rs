//! Checks of `routes[].mirror`.

use crate::Config;
use crate::model::Mirror;

use super::Issues;

/// Checks the settings at `at` (e.g. `listeners[0].tls`).
pub(super) fn check(_at: &str, _s: &Mirror, _config: &Config, _issues: &mut Issues) {}
