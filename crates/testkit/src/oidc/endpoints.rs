//! The provider's endpoints that check and issue: `/authorize` (auto-approval of
//! the test user after checking client, redirect URI and PKCE challenge) and
//! `/token` (client authentication, single-use codes, the PKCE verifier), plus the
//! form encoding both speak.

use std::collections::HashMap;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use super::{Grant, Inner, State};
use crate::jwt::now;

/// Auto-approves the login and sends the browser back with a code.
pub(super) fn authorize(state: &State, q: HashMap<String, String>) -> Response<Full<Bytes>> {
    let mut inner = state.inner.lock().expect("provider lock");
    inner.authorizations.push(q.clone());
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    // Errors about the client or the redirect are shown, never redirected (RFC 6749 §4.1.2.1).
    if get("client_id") != state.client_id {
        return text(StatusCode::BAD_REQUEST, "unknown client_id");
    }
    let redirect_uri = get("redirect_uri").to_owned();
    if !inner.redirect_uris.contains(&redirect_uri) {
        return text(StatusCode::BAD_REQUEST, "redirect_uri not registered");
    }
    let back = |params: &[(&str, &str)]| {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        Response::builder()
            .status(StatusCode::FOUND)
            .header(
                header::LOCATION,
                format!("{redirect_uri}?{}", query.join("&")),
            )
            .body(Full::default())
            .expect("redirect")
    };
    let state_param = get("state");
    if get("response_type") != "code" {
        return back(&[
            ("error", "unsupported_response_type"),
            ("state", state_param),
        ]);
    }
    if !get("scope").split(' ').any(|s| s == "openid") {
        return back(&[("error", "invalid_scope"), ("state", state_param)]);
    }
    let challenge = get("code_challenge");
    if get("code_challenge_method") != "S256" || challenge.len() != 43 {
        return back(&[("error", "invalid_request"), ("state", state_param)]);
    }
    let code = random();
    inner.codes.insert(
        code.clone(),
        Grant {
            redirect_uri: redirect_uri.clone(),
            challenge: challenge.to_owned(),
            nonce: q.get("nonce").cloned(),
        },
    );
    back(&[("code", &code), ("state", state_param)])
}

/// Exchanges a code for an ID token, checking everything RFC 6749 and 7636 require.
pub(super) fn token(
    state: &State,
    form: &HashMap<String, String>,
    authorization: Option<&str>,
) -> Response<Full<Bytes>> {
    let mut inner = state.inner.lock().expect("provider lock");
    inner.token_requests += 1;
    match issue(state, &mut inner, form, authorization) {
        Ok(answer) => {
            inner.tokens_issued += 1;
            json_response(StatusCode::OK, &answer)
        }
        Err((status, error, why)) => {
            inner.refusals.push(format!("{error}: {why}"));
            json_response(status, &json!({"error": error, "error_description": why}))
        }
    }
}

/// A refused token request: status, OAuth error code, description.
type Refusal = (StatusCode, &'static str, &'static str);

fn issue(
    state: &State,
    inner: &mut Inner,
    form: &HashMap<String, String>,
    authorization: Option<&str>,
) -> Result<Value, Refusal> {
    // Client authentication: Basic (form-encoded parts) or in the body.
    let basic = authorization
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            Some((decode(id), Some(decode(secret))))
        });
    let (id, secret) = basic.unwrap_or_else(|| {
        (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned(),
        )
    });
    if id != state.client_id || secret != state.client_secret {
        return Err((
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        ));
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return Err((
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "expected authorization_code",
        ));
    }
    let code = form.get("code").cloned().unwrap_or_default();
    // Single use: taken out whether or not the rest checks out.
    let Some(grant) = inner.codes.remove(&code) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "unknown or used code",
        ));
    };
    if form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return Err((
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "redirect_uri differs from the authorization request",
        ));
    }
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let hashed = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()));
    if hashed != grant.challenge {
        return Err((
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "code_verifier does not match the code_challenge",
        ));
    }
    let mut claims = inner.user.clone();
    let issued = now();
    claims["iss"] = state.issuer.clone().into();
    claims["aud"] = state.client_id.clone().into();
    claims["iat"] = issued.into();
    claims["exp"] = (issued + 300).into();
    if let Some(n) = grant.nonce {
        claims["nonce"] = n.into();
    }
    if let Some(tweak) = &inner.tweak {
        tweak(&mut claims);
    }
    Ok(json!({
        "access_token": random(),
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": state.key.sign(&claims),
    }))
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

pub(super) fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("response")
}

fn random() -> String {
    let mut b = [0u8; 24];
    aws_lc_rs::rand::fill(&mut b).expect("random");
    URL_SAFE_NO_PAD.encode(b)
}

/// Form/query encoding of one value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Form/query decoding of one value (`+` is a space).
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%')
            .then(|| b.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], hex) {
            (_, Some(v)) => {
                out.push(v);
                i += 2;
            }
            (b'+', None) => out.push(b' '),
            (c, None) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b=2` as a map (later duplicates win).
pub fn parse_form(s: &str) -> HashMap<String, String> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}
