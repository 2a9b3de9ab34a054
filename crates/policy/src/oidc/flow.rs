//! The login itself: the redirect to the provider (state, nonce, PKCE S256 per
//! RFC 7636, sealed in a short-lived login cookie), the callback (state checked,
//! code exchanged, ID token verified, session cookie set, back to the page the user
//! asked for), and logout. Plus the URL encoding the protocol needs.

use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Response, StatusCode, header};
use meshgate_core::body::Body;
use meshgate_core::filter::{Consumer, Flow, RequestCx};
use meshgate_core::rescue::ProxyError;
use serde_json::Value;

use super::Oidc;
use super::discovery::{IdpError, Metadata};
use super::session::{Pending, Session, cookie, set_cookie};

/// How long a login may take between the redirect and the callback.
pub const LOGIN_TTL_SECS: u64 = 600;
/// Largest cookie browsers are sure to keep (RFC 6265 §6.1), name included.
const MAX_COOKIE: usize = 4000;

impl Oidc {
    /// A 302 to the provider's login page, with the login cookie that the callback
    /// needs.
    pub(super) fn login_redirect(
        &self,
        meta: &Metadata,
        req: &http::request::Parts,
        cx: &mut RequestCx<'_>,
        why: &str,
    ) -> Flow {
        if cx.authority.is_empty() {
            return Flow::Reject(ProxyError::BadRequest);
        }
        let (Some(state), Some(nonce), Some(verifier)) =
            (random_token(), random_token(), random_token())
        else {
            cx.note(|| "the system random source failed".into());
            return Flow::Reject(ProxyError::IdpUnavailable);
        };
        let challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()));
        let redirect_uri = format!("{}://{}{}", cx.scheme, cx.authority, self.redirect_path);
        let pending = Pending {
            state,
            nonce,
            verifier,
            return_to: safe_return(req.uri.path_and_query().map_or("/", |pq| pq.as_str())),
            redirect_uri,
            expires: now() + LOGIN_TTL_SECS,
        };
        let query = [
            ("response_type", "code"),
            ("client_id", &self.client.id),
            ("redirect_uri", &pending.redirect_uri),
            ("scope", &self.scope),
            ("state", &pending.state),
            ("nonce", &pending.nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
        let sep = if meta.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let location = format!("{}{sep}{query}", meta.authorization_endpoint);
        let sealed = match self.key.seal_pending(&pending) {
            Ok(s) => s,
            Err(e) => {
                cx.note(|| format!("cannot seal the login cookie: {e}"));
                return Flow::Reject(ProxyError::IdpUnavailable);
            }
        };
        let secure = cx.scheme == "https";
        let login_cookie = set_cookie(
            &self.login_cookie_name(&pending.state),
            &sealed,
            &self.redirect_path,
            LOGIN_TTL_SECS,
            secure,
        );
        let (Ok(location), Some(login_cookie)) = (HeaderValue::from_str(&location), login_cookie)
        else {
            return Flow::Reject(ProxyError::BadRequest);
        };
        let mut resp = redirect(location);
        resp.headers_mut().insert(header::SET_COOKIE, login_cookie);
        cx.note(|| format!("{why}: redirect to the provider's login"));
        Flow::Respond(resp)
    }

    /// The provider sent the browser back: finish the login.
    pub(super) async fn callback(
        &self,
        req: &http::request::Parts,
        cx: &mut RequestCx<'_>,
    ) -> Flow {
        let query = req.uri.query().unwrap_or("");
        let param = |name: &str| query_param(query, name);
        let Some(state) = param("state") else {
            cx.note(|| "callback without state".into());
            return Flow::Reject(ProxyError::InvalidCredentials);
        };
        let cookie_name = self.login_cookie_name(&state);
        // Whatever happens, this login is over: its cookie goes.
        let secure = cx.scheme == "https";
        if let Some(clear) = set_cookie(&cookie_name, "", &self.redirect_path, 0, secure) {
            cx.response_headers.push((header::SET_COOKIE, clear));
        }
        let pending = cookie(&req.headers, &cookie_name).and_then(|c| self.key.open_pending(c));
        let Some(pending) = pending.filter(|p| {
            aws_lc_rs::constant_time::verify_slices_are_equal(p.state.as_bytes(), state.as_bytes())
                .is_ok()
        }) else {
            cx.note(|| "the state matches no login in progress in this browser".into());
            return Flow::Reject(ProxyError::InvalidCredentials);
        };
        if pending.expires < now() {
            cx.note(|| "the login took longer than 10 minutes".into());
            return Flow::Reject(ProxyError::InvalidCredentials);
        }
        if let Some(error) = param("error") {
            let denied = error == "access_denied";
            cx.note(|| format!("the provider answered error={error}"));
            return Flow::Reject(if denied {
                ProxyError::Forbidden
            } else {
                ProxyError::InvalidCredentials
            });
        }
        let Some(code) = param("code") else {
            cx.note(|| "callback without code".into());
            return Flow::Reject(ProxyError::InvalidCredentials);
        };
        let claims = match self.finish(&pending, &code).await {
            Ok(c) => c,
            Err(IdpError::Unavailable(why)) => {
                cx.note(|| format!("provider unavailable: {why}"));
                return Flow::Reject(ProxyError::IdpUnavailable);
            }
            Err(IdpError::Refused(why)) => {
                cx.note(|| why);
                return Flow::Reject(ProxyError::InvalidCredentials);
            }
        };
        let mut session = match self.session_of(&claims) {
            Ok(s) => s,
            Err(why) => {
                cx.note(|| why);
                return Flow::Reject(ProxyError::InvalidCredentials);
            }
        };
        let sealed = match self.seal_fitting(&mut session) {
            Ok(s) => s,
            Err(why) => {
                cx.note(|| why);
                return Flow::Reject(ProxyError::InvalidCredentials);
            }
        };
        let Ok(location) = HeaderValue::from_str(&pending.return_to) else {
            return Flow::Reject(ProxyError::BadRequest);
        };
        let mut resp = redirect(location);
        let ttl = self.session_ttl.as_secs();
        if let Some(c) = set_cookie(&self.cookie_name, &sealed, "/", ttl, secure) {
            resp.headers_mut().insert(header::SET_COOKIE, c);
        }
        let consumer = session.into_consumer();
        cx.note(|| format!("logged in: consumer {}", consumer.name));
        cx.consumer = Some(consumer);
        Flow::Respond(resp)
    }

    async fn finish(&self, pending: &Pending, code: &str) -> Result<Value, IdpError> {
        let meta = self.provider.metadata().await?;
        let id_token = self
            .provider
            .exchange_code(
                &meta,
                &self.client,
                code,
                &pending.verifier,
                &pending.redirect_uri,
            )
            .await?;
        self.provider
            .verify_id_token(&meta, &id_token, &self.client.id, &pending.nonce)
            .await
    }

    /// The session for verified ID token claims.
    fn session_of(&self, claims: &Value) -> Result<Session, String> {
        let name = match claim(claims, &self.consumer_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(format!(
                    "the ID token has no {:?} claim",
                    self.consumer_claim
                ));
            }
        };
        let groups = match claim(claims, &self.groups_claim) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(String::from).collect(),
            _ => Vec::new(),
        };
        let kept = self
            .session_claims
            .iter()
            .chain([&self.consumer_claim, &self.groups_claim])
            .filter_map(|c| Some((c.clone(), claims.get(c)?.clone())))
            .collect();
        Ok(Session {
            name,
            groups,
            claims: kept,
            expires: now() + self.session_ttl.as_secs(),
        })
    }

    /// The sealed session; its extra claims are dropped if they make it too big a
    /// cookie (so this request's consumer matches later ones).
    fn seal_fitting(&self, session: &mut Session) -> Result<String, String> {
        let fits = |s: &str| self.cookie_name.len() + 1 + s.len() <= MAX_COOKIE;
        let sealed = self.key.seal_session(session)?;
        if fits(&sealed) {
            return Ok(sealed);
        }
        session.claims.clear();
        let sealed = self.key.seal_session(session)?;
        if fits(&sealed) {
            return Ok(sealed);
        }
        Err(format!(
            "the session ({} groups) is too large for a cookie",
            session.groups.len()
        ))
    }

    /// Ends the session: clears the cookie and sends the browser on.
    pub(super) fn logout(&self, cx: &mut RequestCx<'_>) -> Flow {
        let mut resp = redirect(self.logout_redirect.clone());
        if let Some(c) = set_cookie(&self.cookie_name, "", "/", 0, cx.scheme == "https") {
            resp.headers_mut().insert(header::SET_COOKIE, c);
        }
        cx.note(|| "logout: session cookie cleared".into());
        Flow::Respond(resp)
    }

    pub(super) fn login_cookie_name(&self, state: &str) -> String {
        // Per login, so two tabs logging in at once do not overwrite each other.
        let tag: String = state.chars().take(8).collect();
        format!("{}{tag}", self.login_prefix)
    }
}

impl Session {
    /// The consumer this session stands for.
    pub fn into_consumer(self) -> Arc<Consumer> {
        Arc::new(Consumer {
            name: self.name.into(),
            groups: self.groups,
            claims: Some(Value::Object(self.claims)),
        })
    }
}

fn redirect(location: HeaderValue) -> Response<Body> {
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = StatusCode::FOUND;
    resp.headers_mut().insert(header::LOCATION, location);
    // Login answers are per browser and per moment.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A claim by name, or by dotted path into objects (`realm_access.roles`).
fn claim<'v>(claims: &'v Value, path: &str) -> Option<&'v Value> {
    claims
        .get(path)
        .or_else(|| path.split('.').try_fold(claims, |v, part| v.get(part)))
}

/// A path of this site to return to: never `//host` or `/\host`, which browsers
/// would take for another site (an open redirect).
fn safe_return(pq: &str) -> String {
    if pq.starts_with('/') && !pq.starts_with("//") && !pq.starts_with("/\\") {
        pq.to_owned()
    } else {
        "/".to_owned()
    }
}

/// 256 random bits, base64url (43 characters: a valid PKCE verifier too).
fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `application/x-www-form-urlencoded` encoding of one value (also fine in a query).
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The decoded value of query parameter `name`, if present.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| form_decode(v))
    })
}

fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_round_trips() {
        let s = "http://a:8080/cb?x=1&y=é ~";
        assert_eq!(
            form_encode(s),
            "http%3A%2F%2Fa%3A8080%2Fcb%3Fx%3D1%26y%3D%C3%A9%20~"
        );
        let q = format!("a=1&s={}&e", form_encode(s));
        assert_eq!(query_param(&q, "s").as_deref(), Some(s));
        assert_eq!(query_param(&q, "e").as_deref(), Some(""));
        assert_eq!(query_param(&q, "z"), None);
        assert_eq!(form_decode("a+b%2"), "a b%2");
        assert_eq!(form_decode("%zz%41"), "%zzA");
    }

    #[test]
    fn returns_stay_on_this_site() {
        assert_eq!(safe_return("/app?x=1"), "/app?x=1");
        assert_eq!(safe_return("//evil.example/x"), "/");
        assert_eq!(safe_return("/\\evil.example"), "/");
    }

    #[test]
    fn pkce_challenge_follows_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()));
        assert_eq!(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert_eq!(random_token().map(|t| t.len()), Some(43));
    }
}
