//! Settings of the `BasicAuth` policy and the consumer credential it checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where Basic credentials are checked and what the upstream is told.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicAuthPolicy {}

/// A consumer's Basic credential; the password only as a hash.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicCredential {}
