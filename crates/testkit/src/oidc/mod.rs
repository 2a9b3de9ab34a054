//! A small, real OpenID Connect provider on `127.0.0.1:0` for tests: discovery,
//! `/authorize` (auto-approves the configured test user and redirects back with a
//! code, after checking the client, the registered `redirect_uri` and the PKCE
//! challenge), `/token` (client authentication, single-use codes, `redirect_uri`,
//! and the PKCE verifier hashed against the challenge; answers an RS256 ID token)
//! and `/jwks`. Strict on purpose: a gateway that skips a step fails here.
//!
//! ```no_run
//! # async fn demo() {
//! use meshgate_testkit::oidc::Provider;
//! let idp = Provider::start("app", Some("app-secret")).await;
//! idp.allow_redirect_uri("http://127.0.0.1:8080/oauth2/callback");
//! // configure the gateway with issuer idp.issuer(), clientId app
//! # }
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::jwt::{Algorithm, TestKey};

mod endpoints;

use endpoints::{authorize, json_response, text, token};
pub use endpoints::{decode, encode, parse_form};

/// A change made to every ID token's claims before signing (a wrong nonce, another
/// audience, an old `exp`…), to test what a relying party refuses.
pub type Tweak = Arc<dyn Fn(&mut Value) + Send + Sync>;

/// One `/authorize` request as the provider received it (query parameters).
pub type Authorization = HashMap<String, String>;

/// A code handed out, waiting for its exchange.
struct Grant {
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
}

#[derive(Default)]
struct Inner {
    redirect_uris: Vec<String>,
    user: Value,
    codes: HashMap<String, Grant>,
    tweak: Option<Tweak>,
    authorizations: Vec<Authorization>,
    token_requests: usize,
    tokens_issued: usize,
    refusals: Vec<String>,
}

struct State {
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    key: TestKey,
    inner: Mutex<Inner>,
}

/// A running provider. Dropping it stops it.
pub struct Provider {
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
}

impl Provider {
    /// Starts a provider knowing one client (`secret` `None`: a public client) and
    /// the user `alice` (groups `admins`, `dev`).
    pub async fn start(client_id: &str, secret: Option<&str>) -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        let state = Arc::new(State {
            issuer: format!("http://{addr}"),
            client_id: client_id.to_owned(),
            client_secret: secret.map(str::to_owned),
            key: TestKey::generate(Algorithm::RS256, "idp-key-1"),
            inner: Mutex::new(Inner {
                user: json!({
                    "sub": "alice",
                    "name": "Alice Liddell",
                    "email": "alice@example.com",
                    "groups": ["admins", "dev"],
                }),
                ..Inner::default()
            }),
        });
        let (stop, mut stopped) = watch::channel(false);
        let served = state.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = stopped.changed() => break,
                };
                let state = served.clone();
                let mut stop_conn = stopped.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(state.clone(), req));
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop_conn.changed() => {}
                    }
                });
            }
        });
        Provider { addr, state, stop }
    }

    /// The issuer identifier: `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
    }

    /// Registers a `redirect_uri` the client may use (exact match, as providers do).
    pub fn allow_redirect_uri(&self, uri: &str) {
        self.inner().redirect_uris.push(uri.to_owned());
    }

    /// Replaces the claims of the user who logs in (`sub` and any others).
    pub fn set_user(&self, claims: Value) {
        self.inner().user = claims;
    }

    /// Changes every later ID token's claims before signing; `None` stops doing so.
    pub fn tweak_id_tokens(&self, tweak: Option<Tweak>) {
        self.inner().tweak = tweak;
    }

    /// The signing key (its JWK is served at `/jwks`).
    pub fn key(&self) -> &TestKey {
        &self.state.key
    }

    /// Every `/authorize` request so far.
    pub fn authorizations(&self) -> Vec<Authorization> {
        self.inner().authorizations.clone()
    }

    /// `/token` requests received so far.
    pub fn token_requests(&self) -> usize {
        self.inner().token_requests
    }

    /// ID tokens issued so far (token requests that passed every check).
    pub fn tokens_issued(&self) -> usize {
        self.inner().tokens_issued
    }

    /// Why token requests were refused, in order (`invalid_grant: …`).
    pub fn refusals(&self) -> Vec<String> {
        self.inner().refusals.clone()
    }

    /// Stops accepting and closes open connections.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.inner.lock().expect("provider lock")
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn answer(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let query = parse_form(parts.uri.query().unwrap_or(""));
    Ok(match (&parts.method, parts.uri.path()) {
        (&Method::GET, "/.well-known/openid-configuration") => json_response(
            StatusCode::OK,
            &json!({
                "issuer": state.issuer,
                "authorization_endpoint": format!("{}/authorize", state.issuer),
                "token_endpoint": format!("{}/token", state.issuer),
                "jwks_uri": format!("{}/jwks", state.issuer),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            }),
        ),
        (&Method::GET, "/jwks") => json_response(StatusCode::OK, &crate::jwt::jwks(&[&state.key])),
        (&Method::GET, "/authorize") => authorize(&state, query),
        (&Method::POST, "/token") => {
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let form = parse_form(&String::from_utf8_lossy(&body));
            let auth = parts.headers.get(header::AUTHORIZATION).cloned();
            token(&state, &form, auth.as_ref().and_then(|v| v.to_str().ok()))
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    async fn call(req: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, Value) {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build_http::<Full<Bytes>>();
        let resp = client.request(req).await.expect("provider answers");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (parts.status, parts.headers, json)
    }

    /// A code for `challenge`, through `/authorize`.
    async fn code_for(idp: &Provider, challenge: &str) -> String {
        let url = format!(
            "{}/authorize?response_type=code&client_id=app&redirect_uri={}&scope=openid&state=s1&code_challenge={challenge}&code_challenge_method=S256",
            idp.issuer(),
            encode("http://rp/cb")
        );
        let (status, headers, _) = call(Request::get(url).body(Full::default()).unwrap()).await;
        assert_eq!(status, StatusCode::FOUND);
        let location = headers[header::LOCATION].to_str().unwrap();
        let q = parse_form(location.split_once('?').unwrap().1);
        assert_eq!(q["state"], "s1");
        q["code"].clone()
    }

    fn token_request(idp: &Provider, code: &str, verifier: &str) -> Request<Full<Bytes>> {
        let body = format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={verifier}",
            encode("http://rp/cb")
        );
        Request::post(format!("{}/token", idp.issuer()))
            .header(
                header::AUTHORIZATION,
                format!("Basic {}", STANDARD.encode("app:s3cret")),
            )
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    }

    #[tokio::test]
    async fn pkce_verifier_is_checked_and_codes_are_single_use() {
        let idp = Provider::start("app", Some("s3cret")).await;
        idp.allow_redirect_uri("http://rp/cb");
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

        let code = code_for(&idp, challenge).await;
        let wrong = "x".repeat(43);
        let (status, _, json) = call(token_request(&idp, &code, &wrong)).await;
        assert_eq!(
            (status, &json["error"]),
            (StatusCode::BAD_REQUEST, &"invalid_grant".into())
        );

        let code = code_for(&idp, challenge).await;
        let (status, _, json) = call(token_request(&idp, &code, verifier)).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        let claims = jsonwebtoken::decode::<Value>(
            json["id_token"].as_str().unwrap(),
            &idp.key().decoding_key(),
            &{
                let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
                v.set_audience(&["app"]);
                v
            },
        )
        .unwrap()
        .claims;
        assert_eq!(
            (claims["sub"].as_str(), claims["iss"].as_str()),
            (Some("alice"), Some(idp.issuer().as_str()))
        );

        let (status, _, _) = call(token_request(&idp, &code, verifier)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "a code works once");
        assert_eq!(
            idp.refusals(),
            [
                "invalid_grant: code_verifier does not match the code_challenge",
                "invalid_grant: unknown or used code"
            ]
        );
    }

    #[tokio::test]
    async fn unregistered_redirects_and_bad_clients_are_refused() {
        let idp = Provider::start("app", Some("s3cret")).await;
        let url = format!(
            "{}/authorize?response_type=code&client_id=app&redirect_uri=http%3A%2F%2Fevil%2Fcb&scope=openid&state=s&code_challenge={}&code_challenge_method=S256",
            idp.issuer(),
            "a".repeat(43)
        );
        let (status, headers, _) = call(Request::get(url).body(Full::default()).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(headers.get(header::LOCATION).is_none());
        let req = Request::post(format!("{}/token", idp.issuer()))
            .body(Full::new(Bytes::from(
                "grant_type=authorization_code&client_id=app&client_secret=nope",
            )))
            .unwrap();
        assert_eq!(call(req).await.0, StatusCode::UNAUTHORIZED);
    }
}
