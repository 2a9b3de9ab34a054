//! Settings of the `Cors` policy: which origins, methods and headers browsers may
//! use across origins, and what they may read back.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// Cross-origin rules. Preflights are answered by the gateway; actual requests
/// from an allowed origin get the CORS response headers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CorsPolicy {
    /// Allowed origins: exact (`https://app.example.com`, port included when not
    /// the default), a wildcard for subdomains at any depth
    /// (`https://*.example.com` matches `https://a.example.com` and
    /// `https://a.b.example.com`, not `https://example.com`), or `*` (every
    /// origin; not with `allowCredentials`). Compared case-insensitively.
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// Regular expressions an origin may match instead (the whole origin, e.g.
    /// `https://pr-[0-9]+\.preview\.example\.com`).
    #[serde(default)]
    pub allow_origin_regex: Vec<String>,
    /// Methods a preflight may ask for, or `*` for any. Default `GET`, `HEAD`, `POST`.
    #[serde(default = "CorsPolicy::default_methods")]
    pub allow_methods: Vec<String>,
    /// Request headers a preflight may ask for (case-insensitive), or `*` for any.
    /// Default: none beyond the CORS-safelisted ones.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers scripts may read beyond the safelisted ones
    /// (`Access-Control-Expose-Headers`); `*` for all (not with `allowCredentials`).
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Let browsers send cookies and HTTP authentication, and read the response
    /// (`Access-Control-Allow-Credentials: true`). Default false.
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer (`Access-Control-Max-Age`,
    /// whole seconds), e.g. `10m`. Default: not sent (browsers use 5 seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
}

impl Default for CorsPolicy {
    fn default() -> Self {
        CorsPolicy {
            allow_origins: Vec::new(),
            allow_origin_regex: Vec::new(),
            allow_methods: Self::default_methods(),
            allow_headers: Vec::new(),
            expose_headers: Vec::new(),
            allow_credentials: false,
            max_age: None,
        }
    }
}

impl CorsPolicy {
    fn default_methods() -> Vec<String> {
        vec!["GET".into(), "HEAD".into(), "POST".into()]
    }
}
