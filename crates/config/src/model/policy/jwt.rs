//! Settings of the `Jwt` policy: where the token is read, which algorithms and keys
//! verify it (inline or from a JWKS URL), which claims are checked, and what the
//! upstream is told about the caller.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// How bearer JWTs are validated.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtPolicy {
    /// Where the token is read, tried in order; the first place holding one is used.
    /// Default: `[{header: authorization, prefix: "Bearer "}]`.
    #[serde(default = "JwtPolicy::default_token_from")]
    pub token_from: Vec<JwtTokenLocation>,
    /// Accepted `alg` values of the token header. Required. `none` is never accepted,
    /// and HMAC (`HS*`) cannot be mixed with public-key algorithms (a public key must
    /// never be usable as an HMAC secret: key confusion).
    #[serde(default)]
    pub algorithms: Vec<JwtAlgorithm>,
    /// Keys written in the config (HMAC secrets or PEM public keys).
    #[serde(default)]
    pub keys: Vec<JwtKey>,
    /// An inline JWKS document (`{keys: [{kty, kid, alg, n, e}, …]}`, RFC 7517).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// URL of the issuer's JWKS (`http://` for now). Fetched when the policy is
    /// compiled, refreshed every `jwksRefresh`, and at once when a token names a `kid`
    /// it does not hold (at most once per `jwksMinRefreshInterval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// How often the JWKS is fetched again. Default `5m`.
    #[serde(default = "JwtPolicy::default_jwks_refresh")]
    pub jwks_refresh: Duration,
    /// Least time between two JWKS fetches, whatever asks for them (unknown `kid`s,
    /// retries while the URL is down), so forged `kid`s cannot hammer the endpoint.
    /// Default `10s`.
    #[serde(default = "JwtPolicy::default_jwks_min_refresh_interval")]
    pub jwks_min_refresh_interval: Duration,
    /// Time allowed for one JWKS fetch. Default `5s`.
    #[serde(default = "JwtPolicy::default_jwks_timeout")]
    pub jwks_timeout: Duration,
    /// Required `iss` claim. Default: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Accepted `aud` values: the token's `aud` (a string or a list) must hold one of
    /// them. Default: not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Claims that must be present (besides `exp`, which always is).
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Tolerance for clocks that disagree, applied to `exp` and `nbf`. Default `60s`.
    #[serde(default = "JwtPolicy::default_clock_skew")]
    pub clock_skew: Duration,
    /// Claim naming the consumer (a string; a dotted path such as `user.name` reaches
    /// into objects). Default `sub`.
    #[serde(default = "JwtPolicy::default_consumer_claim")]
    pub consumer_claim: String,
    /// Claim holding the consumer's groups: a list of strings or a space-separated
    /// string (such as `scope`); dotted paths reach into objects
    /// (`realm_access.roles`). Absent means no groups. Default `groups`.
    #[serde(default = "JwtPolicy::default_groups_claim")]
    pub groups_claim: String,
    /// Header set upstream to the consumer's name. Any copy the client sent is
    /// removed first, so it cannot be forged. Default `x-consumer`.
    #[serde(default = "JwtPolicy::default_consumer_header")]
    pub consumer_header: String,
    /// Header set upstream to the consumer's groups, comma-separated (client copies
    /// removed). Default `x-consumer-groups`.
    #[serde(default = "JwtPolicy::default_groups_header")]
    pub groups_header: String,
    /// Send the token on to the upstream. Default false: it is removed from where it
    /// was found (header, cookie or query parameter).
    #[serde(default)]
    pub forward_token: bool,
    /// Further claims told to the upstream as headers (client copies removed).
    #[serde(default)]
    pub claim_headers: Vec<JwtClaimHeader>,
    /// How many verified tokens are remembered (by a SHA-256 of the token, until
    /// their `exp`), so signatures are not verified again on every request. `0`
    /// verifies every time. Default `10000`.
    #[serde(default = "JwtPolicy::default_cache_size")]
    pub cache_size: u32,
}

/// One place a token may be: exactly one of `header`, `cookie`, `queryParam`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtTokenLocation {
    /// Header carrying the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// With `header`: text the value starts with (compared case-insensitively),
    /// removed to get the token, e.g. `"Bearer "`. Default: the whole value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Cookie carrying the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// Query parameter carrying the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_param: Option<String>,
}

/// A JWS algorithm (RFC 7518). `none` does not exist here on purpose.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 (shared secret).
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl JwtAlgorithm {
    /// HMAC (shared-secret) algorithms, as opposed to public-key ones.
    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
        )
    }
}

/// A key written in the config: exactly one of `secretEnv`, `secret`, `publicKeyPem`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtKey {
    /// Key id, matched against the token's `kid` header. Keys without one are tried
    /// for tokens whose `kid` no key has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// HMAC secret read from this environment variable when the policy is compiled,
    /// so it stays out of the config file. At least 32 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// HMAC secret written inline (prefer `secretEnv`). At least 32 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// A public key in PEM: `BEGIN PUBLIC KEY` (RSA, EC P-256/P-384 or Ed25519) or
    /// `BEGIN RSA PUBLIC KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
}

/// A claim sent upstream as a header: strings as they are, lists comma-joined,
/// anything else as JSON.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtClaimHeader {
    /// Claim name (or dotted path).
    pub claim: String,
    /// Header to set.
    pub header: String,
}

impl Default for JwtPolicy {
    fn default() -> Self {
        JwtPolicy {
            token_from: Self::default_token_from(),
            algorithms: Vec::new(),
            keys: Vec::new(),
            jwks: None,
            jwks_url: None,
            jwks_refresh: Self::default_jwks_refresh(),
            jwks_min_refresh_interval: Self::default_jwks_min_refresh_interval(),
            jwks_timeout: Self::default_jwks_timeout(),
            issuer: None,
            audiences: Vec::new(),
            required_claims: Vec::new(),
            clock_skew: Self::default_clock_skew(),
            consumer_claim: Self::default_consumer_claim(),
            groups_claim: Self::default_groups_claim(),
            consumer_header: Self::default_consumer_header(),
            groups_header: Self::default_groups_header(),
            forward_token: false,
            claim_headers: Vec::new(),
            cache_size: Self::default_cache_size(),
        }
    }
}

impl JwtPolicy {
    fn default_token_from() -> Vec<JwtTokenLocation> {
        vec![JwtTokenLocation {
            header: Some("authorization".into()),
            prefix: Some("Bearer ".into()),
            ..JwtTokenLocation::default()
        }]
    }
    fn default_jwks_refresh() -> Duration {
        Duration::from_secs(300)
    }
    fn default_jwks_min_refresh_interval() -> Duration {
        Duration::from_secs(10)
    }
    fn default_jwks_timeout() -> Duration {
        Duration::from_secs(5)
    }
    fn default_clock_skew() -> Duration {
        Duration::from_secs(60)
    }
    fn default_consumer_claim() -> String {
        "sub".into()
    }
    fn default_groups_claim() -> String {
        "groups".into()
    }
    fn default_consumer_header() -> String {
        "x-consumer".into()
    }
    fn default_groups_header() -> String {
        "x-consumer-groups".into()
    }
    fn default_cache_size() -> u32 {
        10_000
    }
}
