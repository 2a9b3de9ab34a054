//! Talking to the OpenID provider: its metadata (OpenID Connect Discovery, read
//! when first needed and kept for an hour), its signing keys (JWKS, fetched again
//! when a token names a key not held, at most every 10 s), the code exchange at the
//! token endpoint, and ID token verification (OpenID Connect Core §3.1.3.7).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Request, header};
use http_body_util::Full;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::flow::form_encode;
use crate::http_client::{FetchError, HttpClient, parse_url};

/// How long metadata is used before it is read again (the stale copy stays in use
/// while the provider cannot be reached).
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// Least time between two JWKS fetches.
const JWKS_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Tolerance for clocks that disagree, on `exp`, `nbf` and `iat`.
const CLOCK_SKEW_SECS: u64 = 60;

/// Why the provider did not give what was needed.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// It could not be reached, answered 5xx, or answered nonsense: 503.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// It refused (bad code, bad client) or the ID token is not valid: 401.
    #[error("{0}")]
    Refused(String),
}

impl From<FetchError> for IdpError {
    fn from(e: FetchError) -> Self {
        IdpError::Unavailable(e.to_string())
    }
}

/// The parts of the provider's metadata the login uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// The client's credentials at the token endpoint.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub secret: Option<String>,
    /// `client_secret_post` rather than `client_secret_basic`.
    pub post: bool,
}

/// One provider, its cached metadata and keys.
#[derive(Debug)]
pub struct Provider {
    pub issuer: String,
    discovery_url: String,
    http: HttpClient,
    timeout: Duration,
    metadata: RwLock<Option<(Arc<Metadata>, Instant)>>,
    keys: RwLock<Option<(Arc<JwkSet>, Instant)>>,
}

impl Provider {
    pub fn new(issuer: &str, timeout: Duration) -> Result<Self, String> {
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        parse_url(&discovery_url).map_err(|e| format!("issuer: {e}"))?;
        Ok(Provider {
            issuer: issuer.to_owned(),
            discovery_url,
            http: HttpClient::new(256 * 1024),
            timeout,
            metadata: RwLock::new(None),
            keys: RwLock::new(None),
        })
    }

    /// The metadata when it is held and fresh: no I/O.
    pub fn cached_metadata(&self) -> Option<Arc<Metadata>> {
        let held = self.metadata.read().ok()?;
        let (m, at) = held.as_ref()?;
        (at.elapsed() < METADATA_TTL).then(|| m.clone())
    }

    /// The metadata, read from the provider when not held or stale.
    pub async fn metadata(&self) -> Result<Arc<Metadata>, IdpError> {
        if let Some(m) = self.cached_metadata() {
            return Ok(m);
        }
        match self.fetch_metadata().await {
            Ok(m) => {
                let m = Arc::new(m);
                if let Ok(mut held) = self.metadata.write() {
                    *held = Some((m.clone(), Instant::now()));
                }
                Ok(m)
            }
            Err(e) => {
                let stale = self.metadata.read().ok().and_then(|h| h.clone());
                stale.map(|(m, _)| m).ok_or(e)
            }
        }
    }

    async fn fetch_metadata(&self) -> Result<Metadata, IdpError> {
        let got = self.http.get(&self.discovery_url, self.timeout).await?;
        if !got.status.is_success() {
            return Err(IdpError::Unavailable(format!(
                "{} answered {}",
                self.discovery_url, got.status
            )));
        }
        let m: Metadata = serde_json::from_slice(&got.body)
            .map_err(|e| IdpError::Unavailable(format!("{}: {e}", self.discovery_url)))?;
        // Discovery §4.3: the metadata must be about the configured issuer.
        if m.issuer != self.issuer {
            return Err(IdpError::Unavailable(format!(
                "metadata names issuer {:?}, not {:?}",
                m.issuer, self.issuer
            )));
        }
        for (field, url) in [
            ("token_endpoint", &m.token_endpoint),
            ("jwks_uri", &m.jwks_uri),
        ] {
            parse_url(url).map_err(|e| IdpError::Unavailable(format!("{field}: {e}")))?;
        }
        Ok(m)
    }

    /// Exchanges the authorization code for tokens; the ID token.
    pub async fn exchange_code(
        &self,
        meta: &Metadata,
        client: &Client,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, IdpError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let mut req = Request::post(parse_url(&meta.token_endpoint)?)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        match (&client.secret, client.post) {
            (Some(secret), false) => {
                // RFC 6749 §2.3.1: both parts form-encoded before Basic.
                let pair = format!("{}:{}", form_encode(&client.id), form_encode(secret));
                req = req.header(
                    header::AUTHORIZATION,
                    format!("Basic {}", STANDARD.encode(pair)),
                );
            }
            (Some(secret), true) => {
                form.push(("client_id", &client.id));
                form.push(("client_secret", secret));
            }
            (None, _) => form.push(("client_id", &client.id)),
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| IdpError::Unavailable(e.to_string()))?;
        let got = self.http.send(req, self.timeout).await?;
        let json: Value = serde_json::from_slice(&got.body).unwrap_or(Value::Null);
        if got.status.is_server_error() {
            return Err(IdpError::Unavailable(format!(
                "token endpoint answered {}",
                got.status
            )));
        }
        if !got.status.is_success() {
            let error = json["error"].as_str().unwrap_or("no error code");
            let detail = json["error_description"].as_str().unwrap_or("");
            return Err(IdpError::Refused(format!(
                "token endpoint refused the code ({}): {error} {detail}",
                got.status.as_u16()
            )));
        }
        json["id_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| IdpError::Refused("the token response has no id_token".into()))
    }

    /// The verified claims of `id_token`, issued by this provider to `client_id`
    /// for the login with `nonce`.
    pub async fn verify_id_token(
        &self,
        meta: &Metadata,
        id_token: &str,
        client_id: &str,
        nonce: &str,
    ) -> Result<Value, IdpError> {
        let refused = |what: String| IdpError::Refused(format!("ID token: {what}"));
        let head = jsonwebtoken::decode_header(id_token).map_err(|e| refused(e.to_string()))?;
        if !asymmetric(head.alg) {
            return Err(refused(format!("algorithm {:?} is not accepted", head.alg)));
        }
        let key = self.key(meta, head.kid.as_deref()).await?;
        let mut v = Validation::new(head.alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[client_id]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = CLOCK_SKEW_SECS;
        let claims = jsonwebtoken::decode::<Value>(id_token, &key, &v)
            .map_err(|e| refused(e.to_string()))?
            .claims;
        if claims["nonce"].as_str() != Some(nonce) {
            return Err(refused("nonce does not match the login".into()));
        }
        // Core §3.1.3.7 (4, 5): with several audiences, we must be the authorized party.
        if claims["aud"].as_array().is_some_and(|a| a.len() > 1)
            && claims["azp"].as_str() != Some(client_id)
        {
            return Err(refused(
                "several audiences and azp is not this client".into(),
            ));
        }
        Ok(claims)
    }

    /// The verification key named `kid` (or the only key, without a `kid`).
    async fn key(&self, meta: &Metadata, kid: Option<&str>) -> Result<DecodingKey, IdpError> {
        let held = self.keys.read().ok().and_then(|k| k.clone());
        if let Some((set, _)) = &held
            && let Some(k) = find(set, kid)
        {
            return k;
        }
        let recent = held
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() < JWKS_MIN_INTERVAL);
        if recent {
            return Err(IdpError::Refused(format!("ID token: no key {kid:?}")));
        }
        let got = self.http.get(&meta.jwks_uri, self.timeout).await?;
        if !got.status.is_success() {
            return Err(IdpError::Unavailable(format!(
                "{} answered {}",
                meta.jwks_uri, got.status
            )));
        }
        let set: JwkSet = serde_json::from_slice(&got.body)
            .map_err(|e| IdpError::Unavailable(format!("{}: {e}", meta.jwks_uri)))?;
        let set = Arc::new(set);
        if let Ok(mut keys) = self.keys.write() {
            *keys = Some((set.clone(), Instant::now()));
        }
        find(&set, kid)
            .unwrap_or_else(|| Err(IdpError::Refused(format!("ID token: no key {kid:?}"))))
    }
}

fn find(set: &JwkSet, kid: Option<&str>) -> Option<Result<DecodingKey, IdpError>> {
    let jwk = match kid {
        Some(kid) => set.find(kid)?,
        None if set.keys.len() == 1 => &set.keys[0],
        None => return None,
    };
    Some(DecodingKey::from_jwk(jwk).map_err(|e| IdpError::Refused(format!("JWKS key: {e}"))))
}

/// Public-key algorithms only: an HMAC "key" from a JWKS would be a published secret.
fn asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}
