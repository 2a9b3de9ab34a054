//! The `Oidc` policy end to end: a real gateway, a real OIDC provider
//! (`meshgate_testkit::oidc::Provider`) and a test browser that follows redirects
//! itself and keeps cookies. The whole login (app → provider → callback → app),
//! then what must not work: a wrong state, an injected code (PKCE), tampered and
//! expired sessions, forged identity headers, scripts expecting a redirect, a
//! provider that is down.

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshgate_policy::oidc::session::{CookieKey, Session};
use meshgate_testkit::Backend;
use meshgate_testkit::oidc::{Provider, parse_form};

const COOKIE_SECRET: &str = "test-only-cookie-key-material-0123456789";

/// A browser, as far as logins go: cookies (by name, with their path), manual redirects.
struct Browser {
    client: Client<HttpConnector, Full<Bytes>>,
    jar: HashMap<String, (String, String)>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
    url: String,
}

impl Page {
    fn location(&self) -> String {
        let loc = self.headers[header::LOCATION].to_str().unwrap();
        if loc.starts_with('/') {
            let origin: String = self
                .url
                .splitn(4, '/')
                .take(3)
                .collect::<Vec<_>>()
                .join("/");
            format!("{origin}{loc}")
        } else {
            loc.to_owned()
        }
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

impl Browser {
    fn new() -> Self {
        Browser {
            client: Client::builder(TokioExecutor::new()).build_http(),
            jar: HashMap::new(),
        }
    }

    /// A navigation (`Accept: text/html`) plus `extra` headers; cookies sent and kept.
    async fn get(&mut self, url: &str, extra: &[(&str, &str)]) -> Page {
        let path = url
            .splitn(4, '/')
            .nth(3)
            .map_or("/".into(), |p| format!("/{p}"));
        let cookies: Vec<String> = self
            .jar
            .iter()
            .filter(|(_, (_, cookie_path))| path.starts_with(cookie_path.as_str()))
            .map(|(n, (v, _))| format!("{n}={v}"))
            .collect();
        let mut req = Request::get(url).header(header::ACCEPT, "text/html,application/xhtml+xml");
        if !cookies.is_empty() {
            req = req.header(header::COOKIE, cookies.join("; "));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let resp = self
            .client
            .request(req.body(Full::default()).unwrap())
            .await
            .expect("server answers");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        let page = Page {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            url: url.to_owned(),
        };
        for c in page.set_cookies() {
            let mut attrs = c.split(';').map(str::trim);
            let (name, value) = attrs.next().unwrap().split_once('=').unwrap();
            let attrs: Vec<&str> = attrs.collect();
            let path = attrs
                .iter()
                .find_map(|a| a.strip_prefix("Path="))
                .unwrap_or("/");
            if attrs.contains(&"Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar
                    .insert(name.to_owned(), (value.to_owned(), path.to_owned()));
            }
        }
        page
    }

    /// Follows redirects from `url` until an answer that is not one.
    async fn visit(&mut self, url: &str) -> Page {
        let mut page = self.get(url, &[]).await;
        for _ in 0..5 {
            if page.status != StatusCode::FOUND {
                return page;
            }
            page = self.get(&page.location(), &[]).await;
        }
        panic!("too many redirects, last {}", page.url)
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.jar.get(name).map(|(v, _)| v.clone())
    }
}

fn config(issuer: &str, svc: &str) -> String {
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
admin: {{enabled: false, token: t0ken, liveExplain: true}}
policies:
  - name: login
    type: Oidc
    oidc:
      issuer: {issuer}
      clientId: app
      clientSecret: s3cret
      cookieSecret: {COOKIE_SECRET}
      sessionTtl: 1h
routes:
  - {{name: app, policies: [login], backendRefs: [{{name: svc}}]}}
services:
{svc}"
    )
}

/// A provider, an upstream and a gateway whose callback the provider accepts.
async fn setup() -> (Provider, Backend, common::Harness) {
    let idp = Provider::start("app", Some("s3cret")).await;
    let b = Backend::start("svc").await;
    let h = common::start(&config(&idp.issuer(), &common::service("svc", &[b.addr]))).await;
    idp.allow_redirect_uri(&format!("http://{}/oauth2/callback", h.addr));
    (idp, b, h)
}

/// Logs `browser` in through the whole flow.
async fn log_in(browser: &mut Browser, h: &common::Harness) {
    let page = browser.visit(&h.url("/app")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
}

#[tokio::test]
async fn the_whole_login_flow_ends_at_the_app_as_the_user() {
    let (idp, b, h) = setup().await;
    let mut browser = Browser::new();
    browser
        .jar
        .insert("theme".into(), ("dark".into(), "/".into()));

    // 1. No session: off to the provider, with a login cookie only the callback gets.
    let to_idp = browser.get(&h.url("/app/orders?page=2"), &[]).await;
    assert_eq!(to_idp.status, StatusCode::FOUND);
    let location = to_idp.location();
    assert!(
        location.starts_with(&format!("{}/authorize?", idp.issuer())),
        "{location}"
    );
    let login_cookie = &to_idp.set_cookies()[0];
    assert!(
        login_cookie.starts_with("meshgate_session_login_"),
        "{login_cookie}"
    );
    assert!(
        login_cookie.ends_with("; Path=/oauth2/callback; Max-Age=600; HttpOnly; SameSite=Lax"),
        "{login_cookie}"
    );
    assert_eq!(b.hits(), 0);

    // 2. The provider approves and sends the browser to the gateway's callback.
    let to_callback = browser.get(&location, &[]).await;
    assert_eq!(to_callback.status, StatusCode::FOUND);
    let callback = to_callback.location();
    assert!(
        callback.starts_with(&h.url("/oauth2/callback?code=")),
        "{callback}"
    );
    let asked = &idp.authorizations()[0];
    assert_eq!(asked["response_type"], "code");
    assert_eq!(asked["scope"], "openid profile email");
    assert_eq!(asked["code_challenge_method"], "S256");
    assert_eq!(asked["nonce"].len(), 43);
    assert_eq!(asked["redirect_uri"], h.url("/oauth2/callback"));

    // 3. The callback exchanges the code and sets the session, back to the page asked for.
    let back = browser.get(&callback, &[]).await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    assert_eq!(back.location(), h.url("/app/orders?page=2"));
    let cookies = back.set_cookies();
    assert!(
        cookies.iter().any(|c| c.starts_with("meshgate_session=")
            && c.ends_with("; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax")),
        "{cookies:?}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("meshgate_session_login_") && c.contains("Max-Age=0"))
    );
    assert_eq!((idp.tokens_issued(), idp.refusals().len()), (1, 0));
    assert!(
        browser.jar.keys().all(|k| !k.contains("_login_")),
        "login cookie cleared"
    );

    // 4. Logged in: the upstream learns who, forged copies do not survive, the
    //    gateway's cookie stays at the gateway, the app's own cookies go through.
    let app = browser
        .get(
            &back.location(),
            &[
                ("x-consumer", "mallory"),
                ("x-consumer-groups", "root"),
                ("x-meshgate-explain", "t0ken"),
            ],
        )
        .await;
    assert_eq!(app.status, StatusCode::OK, "{}", app.body);
    let seen = &app.json()["headers"];
    assert_eq!(seen["x-consumer"], "alice");
    assert_eq!(seen["x-consumer-groups"], "admins,dev");
    assert_eq!(seen["cookie"], "theme=dark");
    assert_eq!(app.json()["query"], "page=2");
    let trace = String::from_utf8(app.headers["x-meshgate-explain"].as_bytes().to_vec()).unwrap();
    assert!(
        trace.contains("login [Oidc]: continue - session of alice, 3"),
        "{trace}"
    );

    // 5. Logout clears the session; the next visit starts a new login.
    let out = browser.get(&h.url("/oauth2/logout"), &[]).await;
    assert_eq!(
        (out.status, out.location()),
        (StatusCode::FOUND, h.url("/"))
    );
    assert_eq!(browser.cookie("meshgate_session"), None);
    let again = browser.get(&h.url("/app"), &[]).await;
    assert_eq!(again.status, StatusCode::FOUND);
    assert!(again.location().starts_with(&idp.issuer()));

    let log = h.log_lines(5).await;
    let summary: Vec<_> = log
        .iter()
        .map(|l| {
            (
                l["status"].as_u64().unwrap(),
                l["consumer"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (302, None),
            (302, Some("alice".into())),
            (200, Some("alice".into())),
            (302, None),
            (302, None)
        ]
    );
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn wrong_state_and_injected_codes_are_refused() {
    let (idp, b, h) = setup().await;

    // A callback whose state matches no login in this browser.
    let mut browser = Browser::new();
    let to_idp = browser.get(&h.url("/app"), &[]).await;
    let callback = browser.get(&to_idp.location(), &[]).await.location();
    let (base, query) = callback.split_once('?').unwrap();
    let q = parse_form(query);
    let forged = format!("{base}?code={}&state=not-the-state", q["code"]);
    let r = browser.get(&forged, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "invalid_credentials");
    assert_eq!(idp.token_requests(), 0, "the code is never exchanged");

    // Code injection: the victim's browser is made to finish a login with a code
    // minted for the attacker's login. The state is the victim's own, so only
    // PKCE can tell: the victim's verifier does not match the code's challenge.
    let mut attacker = Browser::new();
    let attacker_code = {
        let to_idp = attacker.get(&h.url("/app"), &[]).await;
        let cb = attacker.get(&to_idp.location(), &[]).await.location();
        parse_form(cb.split_once('?').unwrap().1)["code"].clone()
    };
    let mut victim = Browser::new();
    let to_idp = victim.get(&h.url("/app"), &[]).await;
    let victim_state = parse_form(to_idp.location().split_once('?').unwrap().1)["state"].clone();
    let injected = h.url(&format!(
        "/oauth2/callback?code={attacker_code}&state={victim_state}"
    ));
    let r = victim
        .get(&injected, &[("x-meshgate-explain", "t0ken")])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        idp.refusals(),
        ["invalid_grant: code_verifier does not match the code_challenge"]
    );
    let trace = String::from_utf8(r.headers["x-meshgate-explain"].as_bytes().to_vec()).unwrap();
    assert!(
        trace.contains("token endpoint refused the code (400): invalid_grant"),
        "{trace}"
    );
    assert_eq!(victim.cookie("meshgate_session"), None);

    // An ID token for the wrong login (nonce) or another client (aud) is refused.
    for (what, tweak) in [
        ("nonce", serde_json::json!("someone-elses")),
        ("aud", serde_json::json!("other-app")),
    ] {
        idp.tweak_id_tokens(Some(std::sync::Arc::new(
            move |c: &mut serde_json::Value| {
                c[what] = tweak.clone();
            },
        )));
        let page = Browser::new().visit(&h.url("/app")).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{what}");
    }
    idp.tweak_id_tokens(None);
    assert_eq!(b.hits(), 0);
    let log = h.log_lines(9).await;
    let reasons: Vec<_> = log
        .iter()
        .map(|l| l["reason"].as_str().unwrap_or("-"))
        .collect();
    // Login start and forged state; attacker's and victim's starts and the injected
    // code; then a start and a refused callback for each tweaked ID token.
    let refused = "invalid_credentials";
    assert_eq!(
        reasons,
        ["-", refused, "-", "-", refused, "-", refused, "-", refused]
    );
}

#[tokio::test]
async fn tampered_and_expired_sessions_count_as_none() {
    let (idp, b, h) = setup().await;
    let mut browser = Browser::new();
    log_in(&mut browser, &h).await;
    let good = browser.cookie("meshgate_session").unwrap();

    // One character changed: a new login for a browser, 401 for a script.
    let mut tampered = good.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    browser
        .jar
        .insert("meshgate_session".into(), (tampered, "/".into()));
    let r = browser.get(&h.url("/app"), &[]).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(r.location().starts_with(&idp.issuer()));
    let r = browser
        .get(&h.url("/app"), &[("x-requested-with", "XMLHttpRequest")])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "invalid_credentials");

    // Sessions sealed with the policy's key: accepted while current, not after.
    let key = CookieKey::new(
        COOKIE_SECRET.as_bytes(),
        &idp.issuer(),
        "app",
        "meshgate_session",
    )
    .unwrap();
    let now = meshgate_testkit::jwt::now();
    let session = |expires| Session {
        name: "bob".into(),
        groups: vec![],
        claims: Default::default(),
        expires,
    };
    let current = key.seal_session(&session(now + 60)).unwrap();
    browser
        .jar
        .insert("meshgate_session".into(), (current, "/".into()));
    let r = browser.get(&h.url("/app"), &[]).await;
    assert_eq!(
        (r.status, r.json()["headers"]["x-consumer"].clone()),
        (StatusCode::OK, "bob".into())
    );
    let expired = key.seal_session(&session(now - 1)).unwrap();
    browser
        .jar
        .insert("meshgate_session".into(), (expired, "/".into()));
    let r = browser
        .get(&h.url("/app"), &[("x-meshgate-explain", "t0ken")])
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(r.location().starts_with(&idp.issuer()));
    let trace = String::from_utf8(r.headers["x-meshgate-explain"].as_bytes().to_vec()).unwrap();
    assert!(trace.contains("the session has expired"), "{trace}");

    // And the original session still works: nothing server-side was invalidated.
    browser
        .jar
        .insert("meshgate_session".into(), (good, "/".into()));
    let r = browser.get(&h.url("/app"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(b.hits(), 3, "login landing, bob, alice again");
}

#[tokio::test]
async fn scripts_get_401_and_a_down_provider_503() {
    let (idp, b, h) = setup().await;

    // Not a browser navigation: 401, no redirect, upstream untouched.
    for headers in [
        &[("accept", "application/json")][..],
        &[
            ("accept", "text/html"),
            ("x-requested-with", "XMLHttpRequest"),
        ][..],
    ] {
        let r = h
            .send(
                http::Method::GET,
                &h.addr.to_string(),
                "/app",
                headers,
                Bytes::new(),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(r.json()["error"], "missing_credentials");
        assert!(r.headers.get(header::LOCATION).is_none());
    }
    let r = h
        .send(
            http::Method::POST,
            &h.addr.to_string(),
            "/app",
            &[("accept", "text/html")],
            Bytes::from_static(b"form=1"),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a redirect would lose the body"
    );

    // The provider goes away before its metadata was ever read: 503.
    idp.stop();
    let r = Browser::new().get(&h.url("/app"), &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"], "idp_unavailable");
    assert_eq!(b.hits(), 0);
}
