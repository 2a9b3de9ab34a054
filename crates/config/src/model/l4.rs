//! Settings of `TCP` and `TLS` (SNI passthrough) listeners.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where an L4 listener sends connections.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct L4Listener {}
