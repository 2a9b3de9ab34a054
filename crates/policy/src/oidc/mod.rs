//! The `Oidc` policy: OpenID Connect login for browser apps (authorization code
//! flow with PKCE), the session kept in an encrypted cookie.
//!
//! - a valid session cookie: the request goes on as its consumer (identity headers
//!   set, client copies stripped, the policy's cookies removed) — no I/O;
//! - none (or tampered, or expired): a browser navigation (`GET`/`HEAD` accepting
//!   `text/html`, not XHR) is redirected to the provider's login; anything else
//!   gets 401, since a redirect to a login page means nothing to a script;
//! - `redirectPath`: the provider's callback (`flow`); `logoutPath`: logout.
//!
//! `session` owns the cookies, `discovery` the provider calls, `flow` the login.

mod discovery;
mod flow;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use meshgate_config as config;
use meshgate_core::filter::{Filter, Flow, FlowFuture, PolicyEnv, RequestCx};
use meshgate_core::rescue::ProxyError;

use crate::identity::IdentityHeaders;
use discovery::{Client, Provider};
use session::{CookieKey, Session, cookie, strip_cookies};

/// A compiled `Oidc` policy.
#[derive(Debug)]
pub struct Oidc {
    provider: Provider,
    client: Client,
    /// The space-separated `scope` parameter.
    scope: String,
    redirect_path: String,
    logout_path: String,
    logout_redirect: HeaderValue,
    cookie_name: String,
    /// `{cookieName}_login_`: the start of every login-in-progress cookie's name.
    login_prefix: String,
    session_ttl: Duration,
    key: CookieKey,
    consumer_claim: String,
    groups_claim: String,
    session_claims: Vec<String>,
    identity: IdentityHeaders,
}

/// Compiles the policy (reading the secrets from the environment when so configured).
pub fn compile(c: &config::OidcPolicy, _env: &PolicyEnv<'_>) -> Result<Arc<dyn Filter>, String> {
    Ok(Arc::new(Oidc::compile(c)?))
}

/// A secret from the environment variable `env` or inline.
fn secret(env: &Option<String>, inline: &Option<String>) -> Result<Option<String>, String> {
    match (env, inline) {
        (Some(var), _) => std::env::var(var)
            .map(Some)
            .map_err(|_| format!("environment variable {var} is not set (or not UTF-8)")),
        (None, inline) => Ok(inline.clone()),
    }
}

impl Oidc {
    pub fn compile(c: &config::OidcPolicy) -> Result<Self, String> {
        let material = secret(&c.cookie_secret_env, &c.cookie_secret)?
            .ok_or("cookieSecretEnv or cookieSecret is required")?;
        if material.len() < 32 {
            return Err(format!(
                "the cookie secret must be at least 32 bytes (got {})",
                material.len()
            ));
        }
        Ok(Oidc {
            provider: Provider::new(&c.issuer, c.timeout.get())?,
            client: Client {
                id: c.client_id.clone(),
                secret: secret(&c.client_secret_env, &c.client_secret)?,
                post: c.client_auth == config::OidcClientAuth::Post,
            },
            scope: c.scopes.join(" "),
            redirect_path: c.redirect_path.clone(),
            logout_path: c.logout_path.clone(),
            logout_redirect: HeaderValue::from_str(&c.logout_redirect)
                .map_err(|e| format!("logoutRedirect: {e}"))?,
            cookie_name: c.cookie_name.clone(),
            login_prefix: format!("{}_login_", c.cookie_name),
            session_ttl: c.session_ttl.get(),
            key: CookieKey::new(material.as_bytes(), &c.issuer, &c.client_id, &c.cookie_name)?,
            consumer_claim: c.consumer_claim.clone(),
            groups_claim: c.groups_claim.clone(),
            session_claims: c.session_claims.clone(),
            identity: IdentityHeaders::compile(&c.consumer_header, &c.groups_header)?,
        })
    }

    /// The session in the request's cookie; else why not, and whether a cookie was
    /// there (and is not a valid, current session).
    fn session(&self, req: &http::request::Parts) -> Result<Session, (bool, &'static str)> {
        let sealed = cookie(&req.headers, &self.cookie_name).ok_or((false, "no session cookie"))?;
        let session = self.key.open_session(sealed).ok_or((
            true,
            "the session cookie is not valid (tampered or another key)",
        ))?;
        if session.expires < flow::now() {
            return Err((true, "the session has expired"));
        }
        Ok(session)
    }

    /// Lets a request with a valid session through as its consumer.
    fn admit(&self, s: Session, req: &mut http::request::Parts, cx: &mut RequestCx<'_>) {
        let left = s.expires.saturating_sub(flow::now());
        let consumer = s.into_consumer();
        self.identity.set(&mut req.headers, &consumer);
        let prefix = self.login_prefix.as_str();
        strip_cookies(&mut req.headers, |n| {
            n == self.cookie_name || n.starts_with(prefix)
        });
        cx.note(|| format!("session of {}, {left}s left", consumer.name));
        cx.consumer = Some(consumer);
    }
}

/// Whether a login page makes sense for this request: a browser navigating, not a
/// script (XHR/fetch) or an API client, and not a body that a redirect would lose.
fn is_navigation(req: &http::request::Parts) -> bool {
    let method_ok = req.method == http::Method::GET || req.method == http::Method::HEAD;
    let xhr = req
        .headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"));
    let html = req
        .headers
        .get_all(http::header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|a| a.contains("text/html")));
    method_ok && !xhr && html
}

impl Filter for Oidc {
    fn name(&self) -> &'static str {
        "Oidc"
    }

    fn on_request(&self, req: &mut http::request::Parts, cx: &mut RequestCx<'_>) -> Flow {
        // Whatever happens next, the client's own copies never go upstream.
        self.identity.strip(&mut req.headers);
        let path = req.uri.path();
        if path == self.redirect_path {
            return Flow::Defer;
        }
        if path == self.logout_path {
            return self.logout(cx);
        }
        let (invalid, why) = match self.session(req) {
            Ok(s) => {
                self.admit(s, req, cx);
                return Flow::Continue;
            }
            Err(e) => e,
        };
        if !is_navigation(req) {
            cx.note(|| format!("{why}; not a browser navigation, so no login redirect"));
            return Flow::Reject(if invalid {
                ProxyError::InvalidCredentials
            } else {
                ProxyError::MissingCredentials
            });
        }
        match self.provider.cached_metadata() {
            Some(meta) => self.login_redirect(&meta, req, cx, why),
            None => Flow::Defer,
        }
    }

    fn on_request_async<'a>(
        &'a self,
        req: &'a mut http::request::Parts,
        cx: &'a mut RequestCx<'_>,
    ) -> FlowFuture<'a> {
        Box::pin(async move {
            if req.uri.path() == self.redirect_path {
                return self.callback(req, cx).await;
            }
            // A login redirect waiting for the provider's metadata.
            let why = match self.session(req) {
                Err((_, why)) => why,
                Ok(_) => "no session",
            };
            match self.provider.metadata().await {
                Ok(meta) => self.login_redirect(&meta, req, cx, why),
                Err(e) => {
                    cx.note(|| e.to_string());
                    Flow::Reject(ProxyError::IdpUnavailable)
                }
            }
        })
    }
}
