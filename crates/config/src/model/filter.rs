//! Route filters, in the Gateway API shape: `{type: X, x: {...}}`. The field named
//! after the type is required; the others must be absent (checked in validation).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One filter of a route.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Filter {
    /// Which filter this is; the matching field below carries its settings.
    #[serde(rename = "type")]
    pub kind: FilterType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<RequestRedirect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<UrlRewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<DirectResponse>,
}

/// Filter kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum FilterType {
    /// Set, add or remove request headers before forwarding.
    RequestHeaderModifier,
    /// Set, add or remove response headers before answering.
    ResponseHeaderModifier,
    /// Answer with a redirect instead of forwarding.
    RequestRedirect,
    /// Rewrite host and/or path before forwarding.
    URLRewrite,
    /// Answer with a fixed status, body and headers (stubs, maintenance pages).
    DirectResponse,
}

impl FilterType {
    /// The camelCase field that must hold this filter's settings.
    pub fn field(self) -> &'static str {
        match self {
            FilterType::RequestHeaderModifier => "requestHeaderModifier",
            FilterType::ResponseHeaderModifier => "responseHeaderModifier",
            FilterType::RequestRedirect => "requestRedirect",
            FilterType::URLRewrite => "urlRewrite",
            FilterType::DirectResponse => "directResponse",
        }
    }
}

/// Header edits, applied in the order set, add, remove.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderModifier {
    /// Replace (or create) these headers.
    #[serde(default)]
    pub set: Vec<HeaderValue>,
    /// Append these values, keeping existing ones.
    #[serde(default)]
    pub add: Vec<HeaderValue>,
    /// Remove these headers (names, case-insensitive).
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A header name and value.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderValue {
    pub name: String,
    pub value: String,
}

/// Redirect the client; unset parts keep the request's own.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestRedirect {
    /// `http` or `https`.
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    /// Port in the Location. Absent: with `scheme` set, its well-known port; else
    /// the listener's port. A scheme's default port is never written.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub path: Option<PathModifier>,
    /// 301, 302 (default), 303, 307 or 308.
    #[serde(default = "RequestRedirect::default_status")]
    pub status_code: u16,
}

impl RequestRedirect {
    fn default_status() -> u16 {
        302
    }
}

/// Rewrite the request before forwarding.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UrlRewrite {
    /// Host header sent upstream.
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub path: Option<PathModifier>,
}

/// A path change: the whole path, or the part matched by the route's `PathPrefix`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PathModifier {
    /// `ReplaceFullPath` or `ReplacePrefixMatch` (needs a `PathPrefix` match).
    #[serde(rename = "type")]
    pub kind: PathModifierType,
    #[serde(default)]
    pub replace_full_path: Option<String>,
    #[serde(default)]
    pub replace_prefix_match: Option<String>,
}

/// Path modifier kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum PathModifierType {
    ReplaceFullPath,
    ReplacePrefixMatch,
}

/// A response produced by the gateway itself.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DirectResponse {
    /// HTTP status, 200-599.
    pub status: u16,
    /// Response body. Default empty.
    #[serde(default)]
    pub body: String,
    /// Response headers (e.g. `content-type`).
    #[serde(default)]
    pub headers: Vec<HeaderValue>,
}
