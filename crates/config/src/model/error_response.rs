//! Custom bodies for the errors the gateway itself answers (401, 403, 404, 413,
//! 429, 502, 503, 504…), globally or per route.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A templated body for gateway-generated errors.
///
/// The body may use `{{status}}`, `{{reason}}` (e.g. `rate_limited`), `{{message}}`,
/// `{{requestId}}`, `{{route}}`, `{{method}}` and `{{path}}`. Values are escaped
/// for the content type: JSON string escapes for `*json`, HTML entities for `*html`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ErrorResponse {
    /// Statuses this body is used for. Empty: every gateway-generated error.
    #[serde(default)]
    pub statuses: Vec<u16>,
    /// Default `application/json`.
    #[serde(default = "ErrorResponse::default_content_type")]
    pub content_type: String,
    pub body: String,
}

impl ErrorResponse {
    fn default_content_type() -> String {
        "application/json".into()
    }

    /// Template variables a body may use.
    pub const VARIABLES: [&str; 7] = [
        "status",
        "reason",
        "message",
        "requestId",
        "route",
        "method",
        "path",
    ];
}
