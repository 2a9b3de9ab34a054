//! `httpsRedirect` listeners: every request is answered `301` to the same host and
//! path over HTTPS (`400` without a usable host), without routing. The answer
//! carries an `x-request-id` and is logged and counted like any other response:
//! one access-log line with `reason: "https_redirect"` (or `bad_request`) and no
//! route or service, and the request metrics under route and service `none`
//! (the labels of requests no route took). Only these listeners run this code.

use std::time::Instant;

use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use meshgate_observe::access_log::AccessRecord;

use crate::body::Body;
use crate::proxy::forward::X_REQUEST_ID;
use crate::proxy::{ConnInfo, LoggedBody, Shared};

/// Answers `req` on an `httpsRedirect` listener whose HTTPS port is `port`; the
/// access-log record is written when the response has been sent.
pub(super) fn answer(
    shared: &std::sync::Arc<Shared>,
    conn: &ConnInfo,
    port: u16,
    req: Request<Incoming>,
) -> Response<LoggedBody> {
    let started = Instant::now();
    // The body is not read: dropping it lets hyper close or drain the connection.
    let (parts, _) = req.into_parts();
    let request_id = crate::request_id::take_or_make(&parts.headers);
    let (status, location, reason) = match location(&parts, port) {
        Some(l) => (StatusCode::MOVED_PERMANENTLY, Some(l), "https_redirect"),
        None => (StatusCode::BAD_REQUEST, None, "bad_request"),
    };
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = status;
    if let Some(location) = location {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    resp.headers_mut()
        .insert(X_REQUEST_ID.clone(), request_id.clone());
    let authority = match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };
    let record = AccessRecord {
        status: status.as_u16(),
        reason: Some(reason),
        ..AccessRecord::arriving(&parts, authority, conn.client.ip(), request_id)
    };
    let (head, body) = resp.into_parts();
    Response::from_parts(
        head,
        LoggedBody::new(body, record, started, shared.clone(), None, None),
    )
}

/// `https://host[:port]/path?query` for the request, `host` without its port;
/// `None` without a usable host.
fn location(parts: &Parts, port: u16) -> Option<HeaderValue> {
    let host = parts
        .uri
        .authority()
        .map(|a| a.host().to_owned())
        .or_else(|| {
            let value = parts.headers.get(header::HOST)?.to_str().ok()?;
            let authority: http::uri::Authority = value.parse().ok()?;
            Some(authority.host().to_owned())
        })?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let location = if port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    };
    HeaderValue::try_from(location).ok()
}
