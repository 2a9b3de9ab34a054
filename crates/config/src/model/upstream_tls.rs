//! TLS origination to a service's endpoints.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the gateway speaks TLS to the endpoints.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpstreamTls {}
