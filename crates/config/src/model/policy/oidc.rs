//! Settings of the `Oidc` policy: provider, client, session cookie.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// OpenID Connect login for browser apps.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OidcPolicy {}
