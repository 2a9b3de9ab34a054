//! Consumers (who calls) and policies (what is checked), defined once and
//! referenced by name from listeners and routes. A route's pipeline is its
//! listener's `policies`, then its own `policies`, then its Gateway API `filters`,
//! each in the order written.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An API consumer and its credentials.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Consumer {
    /// Unique name; the `consumer` of the access log.
    pub name: String,
    /// Groups, sent upstream by the authentication policy.
    #[serde(default)]
    pub groups: Vec<String>,
    /// API keys, stored hashed: `sha256:<64 hex digits>`, as printed by
    /// `meshgate keys generate`. The keys themselves never appear in config.
    #[serde(default)]
    pub api_keys: Vec<String>,
}

/// A named, reusable policy.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    /// Unique name, referenced by `listeners[].policies` and `routes[].policies`.
    pub name: String,
    /// Which policy this is; the field named after it carries its settings.
    #[serde(rename = "type")]
    pub kind: PolicyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_access: Option<IpAccessPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_limits: Option<RequestLimitsPolicy>,
}

/// Policy kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum PolicyType {
    /// Authenticate a consumer by API key (401 when missing or unknown).
    ApiKey,
    /// Allow/deny client addresses by CIDR (403 when refused).
    IpAccess,
    /// Caps on URI, header and body sizes (414, 431, 413).
    RequestLimits,
}

impl PolicyType {
    /// The camelCase field that must hold this policy's settings.
    pub fn field(self) -> &'static str {
        match self {
            PolicyType::ApiKey => "apiKey",
            PolicyType::IpAccess => "ipAccess",
            PolicyType::RequestLimits => "requestLimits",
        }
    }
}

/// Where the key is read and what the upstream is told.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiKeyPolicy {
    /// Header carrying the key. Default `x-api-key`.
    #[serde(default = "ApiKeyPolicy::default_header")]
    pub header: String,
    /// Query parameter carrying the key, read when the header is absent. Default: none.
    #[serde(default)]
    pub query_param: Option<String>,
    /// Header set upstream to the consumer's name. Any copy the client sent is
    /// removed first, so it cannot be forged. Default `x-consumer`.
    #[serde(default = "ApiKeyPolicy::default_consumer_header")]
    pub consumer_header: String,
    /// Header set upstream to the consumer's groups, comma-separated (client copies
    /// removed). Default `x-consumer-groups`.
    #[serde(default = "ApiKeyPolicy::default_groups_header")]
    pub groups_header: String,
    /// Remove the key (header or query parameter) before forwarding. Default true.
    #[serde(default = "yes")]
    pub strip_credential: bool,
}

fn yes() -> bool {
    true
}

impl ApiKeyPolicy {
    fn default_header() -> String {
        "x-api-key".into()
    }
    fn default_consumer_header() -> String {
        "x-consumer".into()
    }
    fn default_groups_header() -> String {
        "x-consumer-groups".into()
    }
}

/// Client address rules: a request is refused when its address is in `deny`, or
/// when `allow` is not empty and the address is not in it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpAccessPolicy {
    /// CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single addresses.
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

/// Size caps, checked before anything is forwarded.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestLimitsPolicy {
    /// Longest request target (path and query) in bytes → 414.
    #[serde(default)]
    pub max_uri_bytes: Option<u32>,
    /// Largest sum of header names and values in bytes → 431.
    #[serde(default)]
    pub max_header_bytes: Option<u32>,
    /// Largest request body in bytes, by `content-length` → 413 before anything is
    /// read or forwarded. Bodies without a `content-length` (chunked) are refused
    /// with 411 when this is set, so the cap cannot be bypassed.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
}
