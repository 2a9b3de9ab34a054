//! The `Oidc` policy's cookies: the session (who logged in, until when) and the
//! login in progress (state, nonce, PKCE verifier, where to return), both sealed
//! with AES-256-GCM so the browser can neither read nor change them, and kept in
//! the browser rather than in gateway memory so any instance sharing the key can
//! continue a login or accept a session. Public so tests and tools can mint
//! cookies with a known key.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hkdf;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

/// A browser session, as sealed in the session cookie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The consumer's name (the `consumerClaim`).
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "g", default)]
    pub groups: Vec<String>,
    /// The kept claims (`sessionClaims`, with the consumer and groups claims).
    #[serde(rename = "c", default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// Unix seconds after which the session is over.
    #[serde(rename = "e")]
    pub expires: u64,
}

/// A login in progress, as sealed in its `{cookieName}_login_…` cookie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    #[serde(rename = "s")]
    pub state: String,
    #[serde(rename = "n")]
    pub nonce: String,
    /// The PKCE `code_verifier` (RFC 7636).
    #[serde(rename = "v")]
    pub verifier: String,
    /// The `redirect_uri` sent to the provider (the token request repeats it).
    #[serde(rename = "u")]
    pub redirect_uri: String,
    /// Path and query the user asked for.
    #[serde(rename = "r")]
    pub return_to: String,
    #[serde(rename = "e")]
    pub expires: u64,
}

/// What a cookie is for; bound into the seal so one kind cannot pass for another.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    Session,
    Login,
}

/// The key of one policy's cookies.
pub struct CookieKey {
    key: RandomizedNonceKey,
    /// Additional data of each purpose: binds sealed values to the purpose, the
    /// provider, the client and the cookie name, so a cookie of another policy
    /// sharing the key material, or of another purpose, is not accepted here.
    session_aad: Vec<u8>,
    login_aad: Vec<u8>,
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    /// Derives the AES-256-GCM key from `material` (HKDF-SHA256), for cookies of the
    /// policy with this issuer, client id and cookie name.
    pub fn new(
        material: &[u8],
        issuer: &str,
        client_id: &str,
        cookie_name: &str,
    ) -> Result<Self, String> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"meshgate oidc cookie v1");
        let prk = salt.extract(material);
        let info: [&[u8]; 1] = [b"aes-256-gcm"];
        let mut key = [0u8; 32];
        prk.expand(&info, &AES_256_GCM)
            .and_then(|okm| okm.fill(&mut key))
            .map_err(|_| "cookie key derivation failed".to_owned())?;
        let key = RandomizedNonceKey::new(&AES_256_GCM, &key)
            .map_err(|_| "cookie key setup failed".to_owned())?;
        let context = [issuer, client_id, cookie_name].join("\0");
        Ok(CookieKey {
            key,
            session_aad: format!("session\0{context}").into_bytes(),
            login_aad: format!("login\0{context}").into_bytes(),
        })
    }

    pub fn seal_session(&self, s: &Session) -> Result<String, String> {
        self.seal(Purpose::Session, s)
    }

    pub fn open_session(&self, sealed: &str) -> Option<Session> {
        self.open(Purpose::Session, sealed)
    }

    pub fn seal_pending(&self, p: &Pending) -> Result<String, String> {
        self.seal(Purpose::Login, p)
    }

    pub fn open_pending(&self, sealed: &str) -> Option<Pending> {
        self.open(Purpose::Login, sealed)
    }

    fn aad(&self, purpose: Purpose) -> Aad<&[u8]> {
        Aad::from(match purpose {
            Purpose::Session => self.session_aad.as_slice(),
            Purpose::Login => self.login_aad.as_slice(),
        })
    }

    /// base64url(nonce ‖ ciphertext ‖ tag) of the value's JSON.
    fn seal<T: Serialize>(&self, purpose: Purpose, value: &T) -> Result<String, String> {
        let mut data = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        let nonce = self
            .key
            .seal_in_place_append_tag(self.aad(purpose), &mut data)
            .map_err(|_| "cookie encryption failed".to_owned())?;
        let mut out = Vec::with_capacity(NONCE_LEN + data.len());
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&data);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// The value, when `sealed` was sealed by this key for this purpose and is intact.
    fn open<T: for<'de> Deserialize<'de>>(&self, purpose: Purpose, sealed: &str) -> Option<T> {
        let mut raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let mut data = raw.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&raw).ok()?;
        let plain = self
            .key
            .open_in_place(nonce, self.aad(purpose), &mut data)
            .ok()?;
        serde_json::from_slice(plain).ok()
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v.trim_matches('"'))
        })
}

/// Removes the cookies `ours` says are the policy's from the `Cookie` headers (the
/// upstream has no use for them); the header goes when nothing else is left.
pub fn strip_cookies(headers: &mut HeaderMap, ours: impl Fn(&str) -> bool) {
    let kept: Vec<String> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !ours(pair.split('=').next().unwrap_or_default()))
        .map(String::from)
        .collect();
    headers.remove(http::header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(http::header::COOKIE, v);
    }
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Secure over https; `max_age` 0
/// deletes the cookie.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
    secure: bool,
) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(material: &[u8]) -> CookieKey {
        CookieKey::new(material, "http://idp", "app", "s").unwrap()
    }

    fn session() -> Session {
        Session {
            name: "alice".into(),
            groups: vec!["admins".into()],
            claims: serde_json::Map::new(),
            expires: 4_000_000_000,
        }
    }

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_purpose() {
        let k = key(&[7; 32]);
        let sealed = k.seal_session(&session()).unwrap();
        assert_eq!(k.open_session(&sealed), Some(session()));
        assert!(!sealed.contains("alice"), "encrypted, not just signed");
        assert_eq!(key(&[8; 32]).open_session(&sealed), None);
        let other_client = CookieKey::new(&[7; 32], "http://idp", "other", "s").unwrap();
        assert_eq!(other_client.open_session(&sealed), None);
        assert_eq!(k.open_pending(&sealed), None, "a session is not a login");
        // Any flipped bit is refused.
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 1;
            assert_eq!(
                k.open_session(&URL_SAFE_NO_PAD.encode(&raw)),
                None,
                "byte {i}"
            );
            raw[i] ^= 1;
        }
        assert_eq!(k.open_session("short"), None);
        assert_eq!(k.open_session("not base64 !"), None);
    }

    #[test]
    fn cookies_are_found_and_stripped() {
        let mut h = HeaderMap::new();
        h.append("cookie", HeaderValue::from_static("a=1; s=xyz"));
        h.append("cookie", HeaderValue::from_static("s_login_abc=p; b=2"));
        assert_eq!(cookie(&h, "s"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        strip_cookies(&mut h, |n| n == "s" || n.starts_with("s_login_"));
        assert_eq!(h["cookie"], "a=1; b=2");
        strip_cookies(&mut h, |_| true);
        assert!(h.get("cookie").is_none());
    }
}
