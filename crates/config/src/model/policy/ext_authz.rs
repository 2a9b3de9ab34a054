//! Settings of the `ExtAuthz` policy: the external HTTP authorization service.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which service decides and what happens when it cannot.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtAuthzPolicy {}
