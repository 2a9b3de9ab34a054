//! TLS termination settings of an `HTTPS` listener.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Certificates (chosen by SNI), protocol versions, ALPN, client certificates.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenerTls {}
