//! Settings of the `Jwt` policy: token location, accepted algorithms and keys, claims checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How bearer JWTs are validated.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtPolicy {}
