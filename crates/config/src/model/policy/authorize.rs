//! Settings of the `Authorize` policy: rules on the authenticated caller.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Allow rules; a request no rule allows is refused (default deny).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthorizePolicy {}
