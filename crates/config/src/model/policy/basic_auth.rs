//! Settings of the `BasicAuth` policy and the consumer credential it checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// Where Basic credentials are checked and what the upstream is told.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicAuthPolicy {
    /// Realm named in the `WWW-Authenticate: Basic realm="…"` challenge of a 401.
    /// Default `meshgate`.
    #[serde(default = "BasicAuthPolicy::default_realm")]
    pub realm: String,
    /// Header set upstream to the consumer's name. Any copy the client sent is
    /// removed first, so it cannot be forged. Default `x-consumer`.
    #[serde(default = "BasicAuthPolicy::default_consumer_header")]
    pub consumer_header: String,
    /// Header set upstream to the consumer's groups, comma-separated (client copies
    /// removed). Default `x-consumer-groups`.
    #[serde(default = "BasicAuthPolicy::default_groups_header")]
    pub groups_header: String,
    /// Remove the `Authorization` header before forwarding, so the password never
    /// reaches the upstream. Default true.
    #[serde(default = "BasicAuthPolicy::yes")]
    pub strip_credential: bool,
    /// How long a successful password check is remembered (by a SHA-256 of the
    /// credentials, never the password), so the slow password hash is not computed
    /// on every request. `0s` checks the hash every time. Default `5m`. Changing the
    /// consumers or the policy starts with an empty cache.
    #[serde(default = "BasicAuthPolicy::default_cache_ttl")]
    pub cache_ttl: Duration,
}

impl Default for BasicAuthPolicy {
    fn default() -> Self {
        BasicAuthPolicy {
            realm: Self::default_realm(),
            consumer_header: Self::default_consumer_header(),
            groups_header: Self::default_groups_header(),
            strip_credential: true,
            cache_ttl: Self::default_cache_ttl(),
        }
    }
}

impl BasicAuthPolicy {
    fn default_realm() -> String {
        "meshgate".into()
    }
    fn default_consumer_header() -> String {
        "x-consumer".into()
    }
    fn default_groups_header() -> String {
        "x-consumer-groups".into()
    }
    fn yes() -> bool {
        true
    }
    fn default_cache_ttl() -> Duration {
        Duration::from_secs(300)
    }
}

/// A consumer's Basic credential; the password only as a hash.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicCredential {
    /// User name the client sends. Default: the consumer's name. Unique across
    /// consumers; must not contain `:` (RFC 7617).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password's hash: argon2 in PHC form (`$argon2id$v=19$m=19456,t=2,p=1$…`,
    /// as printed by `meshgate keys password`) or bcrypt (`$2b$`, `$2a$`, `$2y$`).
    /// The password itself never appears in config.
    pub password_hash: String,
}
