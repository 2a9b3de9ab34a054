//! Checks of `basicAuth` policies and consumer Basic credentials.

use crate::Config;
use crate::model::BasicAuthPolicy;
use crate::validate::Issues;

/// Checks the settings at `at` (e.g. `policies[3].basic_auth`).
pub(super) fn check(_at: &str, _p: &BasicAuthPolicy, _config: &Config, _issues: &mut Issues) {}

/// Checks a consumer's `basicAuth` credential at `at`.
pub(super) fn check_credential(
    _at: &str,
    _c: &crate::model::BasicCredential,
    _issues: &mut Issues,
) {
}
