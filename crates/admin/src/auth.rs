//! Bearer-token authentication of admin requests: where the token comes from
//! (`admin.token`, else the variable `admin.tokenEnv` names), a constant-time check
//! of what the client presents, and the 401 answer. `/healthz` and `/readyz` stay
//! open for probes.

use std::io;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::AdminState;
use crate::handlers::error;

/// Paths answered without a token (process and readiness probes).
pub(crate) const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// The configured token, if any. A `tokenEnv` naming an unset or empty variable is
/// an error: the operator asked for authentication, so it must not silently go away.
pub(crate) fn resolve_token(cfg: &meshgate_config::Admin) -> io::Result<Option<String>> {
    cfg.resolved_token()
        .map_err(|msg| io::Error::new(io::ErrorKind::InvalidInput, msg))
}

/// Middleware: lets a request through when no token is configured, when its path
/// is open, or when it carries the right bearer token; answers 401 otherwise.
pub(crate) async fn require_token(
    State(state): State<AdminState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.token else {
        return next.run(req).await;
    };
    let open = OPEN_PATHS.contains(&req.uri().path());
    if open || presented(req.headers()).is_some_and(|p| ct_eq(p.as_bytes(), token.as_bytes())) {
        return next.run(req).await;
    }
    let mut resp = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong bearer token (authorization: Bearer <admin token>)",
    );
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// The token of an `authorization: Bearer <token>` header (scheme case-insensitive).
fn presented(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"s3cret", b"s3cret"));
        assert!(!ct_eq(b"s3cret", b"s3creT"));
        assert!(!ct_eq(b"s3cret", b"s3cret!"));
        assert!(!ct_eq(b"", b"x"));
        assert!(!ct_eq(&[0; 256], b""));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn bearer_header_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(presented(&h), Some("abc"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer  abc"));
        assert_eq!(presented(&h), Some("abc"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(presented(&h), None);
    }

    #[test]
    fn token_sources() {
        let mut cfg = meshgate_config::Admin::default();
        assert_eq!(resolve_token(&cfg).unwrap(), None);
        cfg.token_env = Some("MESHGATE_ADMIN_TEST_SURELY_UNSET".into());
        assert!(resolve_token(&cfg).is_err());
        // PATH is set in any test environment; reading it stands for any variable.
        cfg.token_env = Some("PATH".into());
        assert_eq!(resolve_token(&cfg).unwrap(), std::env::var("PATH").ok());
        cfg.token = Some("direct".into());
        assert_eq!(resolve_token(&cfg).unwrap().as_deref(), Some("direct"));
        cfg.token = Some(String::new());
        assert!(resolve_token(&cfg).is_err());
    }
}
