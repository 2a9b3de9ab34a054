//! Settings of the `Authorize` policy: rules on the authenticated caller (its name,
//! groups and token claims) and on the request (method, path). Default deny.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::PathMatch;

/// Allow rules; a request no rule allows is refused (default deny, 403).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthorizePolicy {
    /// The request is allowed when ANY rule matches; a rule matches when ALL the
    /// conditions it gives hold. At least one rule.
    #[serde(default)]
    pub rules: Vec<AuthorizeRule>,
}

/// One allow rule. Conditions left out are not checked; at least one is required.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthorizeRule {
    /// The consumer's name is one of these. Needs an authenticated consumer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<String>,
    /// The consumer is in at least one of these groups. Needs an authenticated consumer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The request method is one of these (`GET`, `POST`…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// The request path matches at least one of these (`PathPrefix` (default,
    /// segment-aware), `Exact` or `RegularExpression`, as in route matches).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathMatch>,
    /// Conditions on the consumer's token claims (set by `Jwt`/`Oidc`); all must
    /// hold. Needs an authenticated consumer with claims.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimCondition>,
}

/// A condition on one claim: where it is (`claim` or `claimPath`, exactly one) and
/// what it must be (exactly one of `equals`, `contains`, `anyOf`, `present`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClaimCondition {
    /// Dot path into the claims: `sub`, `realm_access.roles`; a number segment
    /// indexes an array (`groups.0`). For keys that contain dots use `claimPath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// The same path as a list of keys, taken literally:
    /// `["https://example.com/claims", "roles"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_path: Option<Vec<String>>,
    /// The claim equals this string, number or boolean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<ClaimValue>,
    /// An array claim has an element equal to this; a string claim has this as one
    /// of its space-separated tokens (the OAuth `scope` convention: `scope`
    /// contains `orders:write`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<ClaimValue>,
    /// The claim equals one of these; for an array claim, any element does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_of: Option<Vec<ClaimValue>>,
    /// `true`: the claim is present (and not null); `false`: it is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

/// A scalar claim value to compare with.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ClaimValue {
    Bool(bool),
    Number(f64),
    String(String),
}

impl std::fmt::Display for ClaimValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimValue::Bool(b) => write!(f, "{b}"),
            ClaimValue::Number(n) => write!(f, "{n}"),
            ClaimValue::String(s) => write!(f, "{s:?}"),
        }
    }
}

impl ClaimCondition {
    /// The path's keys: `claimPath` as given, or `claim` split at dots.
    pub fn keys(&self) -> Vec<String> {
        match (&self.claim_path, &self.claim) {
            (Some(p), _) => p.clone(),
            (None, Some(c)) => c.split('.').map(str::to_owned).collect(),
            (None, None) => Vec::new(),
        }
    }
}

/// By hand rather than untagged, so a list or a map gets a clear message.
impl<'de> Deserialize<'de> for ClaimValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ClaimValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_bool<E>(self, v: bool) -> Result<ClaimValue, E> {
                Ok(ClaimValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<ClaimValue, E> {
                Ok(ClaimValue::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<ClaimValue, E> {
                Ok(ClaimValue::Number(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<ClaimValue, E> {
                Ok(ClaimValue::Number(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<ClaimValue, E> {
                Ok(ClaimValue::String(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}
