//! Consumers (who calls) and policies (what is checked), defined once and
//! referenced by name from listeners and routes. A route's pipeline is its
//! listener's `policies`, then its own `policies`, then its Gateway API `filters`,
//! each in the order written.

mod authorize;
mod basic_auth;
mod client_cert;
mod cors;
mod ext_authz;
mod jwt;
mod oidc;
mod rate_limit;

pub use authorize::*;
pub use basic_auth::*;
pub use client_cert::*;
pub use cors::*;
pub use ext_authz::*;
pub use jwt::*;
pub use oidc::*;
pub use rate_limit::*;

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
    /// HTTP Basic credentials, the password stored as an argon2 or bcrypt hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicCredential>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuthPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_authz: Option<ExtAuthzPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorize: Option<AuthorizePolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<ClientCertPolicy>,
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
    /// Authenticate a consumer by HTTP Basic credentials (401 with a challenge).
    BasicAuth,
    /// Validate a bearer JWT (keys inline or from a JWKS URL); 401 when invalid.
    Jwt,
    /// Browser login through an OpenID Connect provider (authorization code + PKCE).
    Oidc,
    /// Ask an external HTTP service whether the request may proceed.
    ExtAuthz,
    /// Allow the request only when a rule matches the authenticated caller (403 otherwise).
    Authorize,
    /// Token-bucket rate limit, local or shared through Redis (429).
    RateLimit,
    /// Cross-origin resource sharing: preflights answered here, response headers added.
    Cors,
    /// Authenticate a consumer by the client certificate the listener verified
    /// (401 without one, 403 when it is not allowed).
    ClientCert,
}

impl PolicyType {
    /// Every kind, in declaration order.
    pub const ALL: [PolicyType; 11] = [
        PolicyType::ApiKey,
        PolicyType::IpAccess,
        PolicyType::RequestLimits,
        PolicyType::BasicAuth,
        PolicyType::Jwt,
        PolicyType::Oidc,
        PolicyType::ExtAuthz,
        PolicyType::Authorize,
        PolicyType::RateLimit,
        PolicyType::Cors,
        PolicyType::ClientCert,
    ];

    /// Policies that establish who the caller is.
    pub fn authenticates(self) -> bool {
        matches!(
            self,
            PolicyType::ApiKey
                | PolicyType::BasicAuth
                | PolicyType::Jwt
                | PolicyType::Oidc
                | PolicyType::ExtAuthz
                | PolicyType::ClientCert
        )
    }
}

impl Policy {
    /// Whether the settings field of `kind` is present.
    pub fn has_settings(&self, kind: PolicyType) -> bool {
        match kind {
            PolicyType::ApiKey => self.api_key.is_some(),
            PolicyType::IpAccess => self.ip_access.is_some(),
            PolicyType::RequestLimits => self.request_limits.is_some(),
            PolicyType::BasicAuth => self.basic_auth.is_some(),
            PolicyType::Jwt => self.jwt.is_some(),
            PolicyType::Oidc => self.oidc.is_some(),
            PolicyType::ExtAuthz => self.ext_authz.is_some(),
            PolicyType::Authorize => self.authorize.is_some(),
            PolicyType::RateLimit => self.rate_limit.is_some(),
            PolicyType::Cors => self.cors.is_some(),
            PolicyType::ClientCert => self.client_cert.is_some(),
        }
    }
}

impl PolicyType {
    /// The camelCase field that must hold this policy's settings.
    pub fn field(self) -> &'static str {
        match self {
            PolicyType::ApiKey => "apiKey",
            PolicyType::IpAccess => "ipAccess",
            PolicyType::RequestLimits => "requestLimits",
            PolicyType::BasicAuth => "basicAuth",
            PolicyType::Jwt => "jwt",
            PolicyType::Oidc => "oidc",
            PolicyType::ExtAuthz => "extAuthz",
            PolicyType::Authorize => "authorize",
            PolicyType::RateLimit => "rateLimit",
            PolicyType::Cors => "cors",
            PolicyType::ClientCert => "clientCert",
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
    /// Largest request body in bytes → 413. A larger `content-length` is refused
    /// before anything is read; a body without one (HTTP/1.1 chunked, HTTP/2) is read
    /// up to the cap before forwarding and refused as soon as it goes past it.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
}
