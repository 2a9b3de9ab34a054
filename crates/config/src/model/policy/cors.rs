//! Settings of the `Cors` policy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Cross-origin rules.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CorsPolicy {}
