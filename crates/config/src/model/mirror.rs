//! Request mirroring (shadowing) of a route, with optional response diffing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A shadow service that gets a copy of a share of the route's requests.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mirror {}
