//! Settings of the `Oidc` policy: provider, client, session cookie, and what the
//! upstream is told about the logged-in user.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// OpenID Connect login for browser apps: the authorization code flow with PKCE
/// (S256). Requests without a valid session are sent to the provider's login page;
/// after login the gateway keeps who the user is in an encrypted cookie.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OidcPolicy {
    /// The provider's issuer identifier; its metadata is read from
    /// `{issuer}/.well-known/openid-configuration` when first needed. `http://` only
    /// until the gateway's TLS client arrives (issue 5).
    pub issuer: String,
    /// The client id registered with the provider.
    pub client_id: String,
    /// Client secret read from this environment variable when the policy is
    /// compiled. Without `clientSecretEnv` and `clientSecret` the gateway is a
    /// public client (PKCE alone protects the code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// Client secret written inline (prefer `clientSecretEnv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// How the client authenticates at the token endpoint: `basic`
    /// (`client_secret_basic`) or `post` (`client_secret_post`). Default `basic`.
    #[serde(default)]
    pub client_auth: OidcClientAuth,
    /// Path on the route's host where the provider sends the browser back (the
    /// `redirect_uri` is `{scheme}://{host}{redirectPath}`; register it with the
    /// provider). Served by the policy. Default `/oauth2/callback`.
    #[serde(default = "OidcPolicy::default_redirect_path")]
    pub redirect_path: String,
    /// Path that ends the session (clears the cookie, then redirects to
    /// `logoutRedirect`). Served by the policy. Default `/oauth2/logout`.
    #[serde(default = "OidcPolicy::default_logout_path")]
    pub logout_path: String,
    /// Where the browser goes after logout. Default `/`.
    #[serde(default = "OidcPolicy::default_logout_redirect")]
    pub logout_redirect: String,
    /// Scopes requested; must include `openid`. Default `openid profile email`.
    #[serde(default = "OidcPolicy::default_scopes")]
    pub scopes: Vec<String>,
    /// Name of the session cookie (the login-in-progress cookies are named
    /// `{cookieName}_login_…`). Default `meshgate_session`.
    #[serde(default = "OidcPolicy::default_cookie_name")]
    pub cookie_name: String,
    /// How long a session lasts after login. Default `8h`.
    #[serde(default = "OidcPolicy::default_session_ttl")]
    pub session_ttl: Duration,
    /// Key material (at least 32 bytes) for the session cookie's encryption, read
    /// from this environment variable when the policy is compiled. Every gateway
    /// instance serving the app needs the same value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_secret_env: Option<String>,
    /// Key material written inline (prefer `cookieSecretEnv`). At least 32 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_secret: Option<String>,
    /// ID token claim naming the consumer. Default `sub`.
    #[serde(default = "OidcPolicy::default_consumer_claim")]
    pub consumer_claim: String,
    /// ID token claim holding the user's groups: a list of strings or a
    /// space-separated string. Absent means no groups. Default `groups`.
    #[serde(default = "OidcPolicy::default_groups_claim")]
    pub groups_claim: String,
    /// Further ID token claims kept in the session, for `Authorize` rules on
    /// claims. Default `email`, `name`, `preferred_username`.
    #[serde(default = "OidcPolicy::default_session_claims")]
    pub session_claims: Vec<String>,
    /// Header set upstream to the consumer's name. Any copy the client sent is
    /// removed first, so it cannot be forged. Default `x-consumer`.
    #[serde(default = "OidcPolicy::default_consumer_header")]
    pub consumer_header: String,
    /// Header set upstream to the consumer's groups, comma-separated (client copies
    /// removed). Default `x-consumer-groups`.
    #[serde(default = "OidcPolicy::default_groups_header")]
    pub groups_header: String,
    /// Longest wait for one call to the provider (metadata, keys, token exchange).
    /// Default `5s`.
    #[serde(default = "OidcPolicy::default_timeout")]
    pub timeout: Duration,
}

/// Client authentication at the token endpoint (OpenID Connect Core §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OidcClientAuth {
    /// HTTP Basic with the client id and secret (`client_secret_basic`).
    #[default]
    Basic,
    /// Client id and secret in the form body (`client_secret_post`).
    Post,
}

impl OidcPolicy {
    fn default_redirect_path() -> String {
        "/oauth2/callback".into()
    }
    fn default_logout_path() -> String {
        "/oauth2/logout".into()
    }
    fn default_logout_redirect() -> String {
        "/".into()
    }
    fn default_scopes() -> Vec<String> {
        ["openid", "profile", "email"].map(String::from).to_vec()
    }
    fn default_cookie_name() -> String {
        "meshgate_session".into()
    }
    fn default_session_ttl() -> Duration {
        Duration::from_secs(8 * 3600)
    }
    fn default_consumer_claim() -> String {
        "sub".into()
    }
    fn default_groups_claim() -> String {
        "groups".into()
    }
    fn default_session_claims() -> Vec<String> {
        ["email", "name", "preferred_username"]
            .map(String::from)
            .to_vec()
    }
    fn default_consumer_header() -> String {
        "x-consumer".into()
    }
    fn default_groups_header() -> String {
        "x-consumer-groups".into()
    }
    fn default_timeout() -> Duration {
        Duration::from_secs(5)
    }
}
