//! Settings of the `ExtAuthz` policy: the external HTTP authorization service.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::FailureMode;
use crate::Duration;

/// Which service decides and what happens when it cannot.
///
/// For every request the gateway sends the service a request with the same method,
/// to `url`'s path followed by the original path and query, carrying the
/// `allowedHeaders` of the original request plus `x-forwarded-method`,
/// `x-forwarded-uri`, `x-forwarded-host`, `x-forwarded-proto`, `x-forwarded-for`
/// and `x-request-id` (never the body). A 2xx answer allows the request; any other
/// answer is sent to the client as it is (status and body).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtAuthzPolicy {
    /// The authorization service: `http://host:port[/path-prefix]`. Plain HTTP only
    /// until the gateway's TLS client arrives (issue 5).
    pub url: String,
    /// Longest wait for the service's whole answer before `failureMode` applies.
    /// Default 200ms.
    #[serde(default = "ExtAuthzPolicy::default_timeout")]
    pub timeout: Duration,
    /// What to do when the service cannot be reached or does not answer in time:
    /// `closed` refuses the request (503 `authz_unavailable`), `open` lets it
    /// through without any of the `headersToUpstream`. Default `closed`.
    #[serde(default = "ExtAuthzPolicy::default_failure_mode")]
    pub failure_mode: FailureMode,
    /// Headers of the original request sent to the service (when present).
    /// Default `authorization`, `cookie`, `user-agent`.
    #[serde(default = "ExtAuthzPolicy::default_allowed_headers")]
    pub allowed_headers: Vec<String>,
    /// Headers of an allowing answer copied onto the request sent upstream
    /// (`x-user-id`…). Whatever the client sent under these names is always removed
    /// first, so they cannot be forged. Default: none.
    #[serde(default)]
    pub headers_to_upstream: Vec<String>,
    /// Headers of a refusing answer passed to the client along with its status and
    /// body (`content-type` always is). Default `www-authenticate`, `location`.
    #[serde(default = "ExtAuthzPolicy::default_headers_to_client")]
    pub headers_to_client: Vec<String>,
    /// Header of an allowing answer that names the caller: it becomes the
    /// authenticated consumer (access log, `Authorize` rules, rate limits by
    /// consumer). Default: none (the request stays anonymous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_from: Option<String>,
    /// Header of an allowing answer listing the consumer's groups, comma-separated
    /// (used with `consumerFrom`). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_from: Option<String>,
}

impl ExtAuthzPolicy {
    fn default_timeout() -> Duration {
        Duration::from_millis(200)
    }
    fn default_failure_mode() -> FailureMode {
        // An authorization check that fails open by default would turn an outage
        // of the service into open access.
        FailureMode::Closed
    }
    fn default_allowed_headers() -> Vec<String> {
        ["authorization", "cookie", "user-agent"]
            .map(String::from)
            .to_vec()
    }
    fn default_headers_to_client() -> Vec<String> {
        ["www-authenticate", "location"].map(String::from).to_vec()
    }
}
