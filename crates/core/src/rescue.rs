//! The one place where failures become responses: every error the request path can
//! meet has a status and a machine-readable reason for the access log.

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::Body;

/// Why the gateway answered instead of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches the request")]
    NoRoute,
    #[error("the route's backends all have weight 0")]
    NoBackend,
    #[error("could not connect to the upstream")]
    ConnectFailure,
    #[error("the upstream closed or reset the connection")]
    UpstreamReset,
    #[error("the upstream did not answer within the per-try timeout")]
    PerTryTimeout,
    #[error("the request did not complete within the route's timeout")]
    RequestTimeout,
    #[error("the request has an invalid host or URI")]
    BadRequest,
    #[error("the request body could not be read")]
    ClientBody,
    #[error("the service is at a circuit-breaker limit")]
    Overflow,
    #[error("no endpoint of the service passes health checks")]
    NoHealthyUpstream,
    #[error("the request carries no credentials")]
    MissingCredentials,
    #[error("the credentials are not valid")]
    InvalidCredentials,
    #[error("the client address is not allowed")]
    IpDenied,
    #[error("the request URI is longer than allowed")]
    UriTooLong,
    #[error("the request headers are larger than allowed")]
    HeadersTooLarge,
    #[error("the request body is larger than allowed")]
    BodyTooLarge,
    #[error("the caller is not allowed to do this")]
    Forbidden,
    #[error("mesh authorization denies this caller")]
    MeshDenied,
    #[error("the request origin is not allowed")]
    CorsDenied,
    #[error("too many requests")]
    RateLimited,
    #[error("the rate-limit store is unavailable")]
    RateLimitUnavailable,
    #[error("the authorization service is unavailable")]
    AuthzUnavailable,
    #[error("the identity provider is unavailable")]
    IdpUnavailable,
}

impl ProxyError {
    pub fn status(self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoBackend
            | ProxyError::ConnectFailure
            | ProxyError::Overflow
            | ProxyError::NoHealthyUpstream => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamReset => StatusCode::BAD_GATEWAY,
            ProxyError::PerTryTimeout | ProxyError::RequestTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest | ProxyError::ClientBody => StatusCode::BAD_REQUEST,
            ProxyError::IpDenied
            | ProxyError::Forbidden
            | ProxyError::MeshDenied
            | ProxyError::CorsDenied => StatusCode::FORBIDDEN,
            ProxyError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::RateLimitUnavailable
            | ProxyError::AuthzUnavailable
            | ProxyError::IdpUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::MissingCredentials | ProxyError::InvalidCredentials => {
                StatusCode::UNAUTHORIZED
            }
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// Stable identifier used in access logs and response bodies.
    pub fn reason(self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no_route",
            ProxyError::NoBackend => "no_backend",
            ProxyError::ConnectFailure => "upstream_connect_failure",
            ProxyError::UpstreamReset => "upstream_reset",
            ProxyError::PerTryTimeout => "upstream_timeout",
            ProxyError::RequestTimeout => "request_timeout",
            ProxyError::BadRequest => "bad_request",
            ProxyError::ClientBody => "client_body_error",
            ProxyError::Overflow => "overflow",
            ProxyError::NoHealthyUpstream => "no_healthy_upstream",
            ProxyError::IpDenied => "ip_denied",
            ProxyError::MissingCredentials => "missing_credentials",
            ProxyError::InvalidCredentials => "invalid_credentials",
            ProxyError::UriTooLong => "uri_too_long",
            ProxyError::HeadersTooLarge => "headers_too_large",
            ProxyError::BodyTooLarge => "body_too_large",
            ProxyError::Forbidden => "forbidden",
            ProxyError::MeshDenied => "mesh_denied",
            ProxyError::CorsDenied => "cors_origin_denied",
            ProxyError::RateLimited => "rate_limited",
            ProxyError::RateLimitUnavailable => "rate_limit_unavailable",
            ProxyError::AuthzUnavailable => "authz_unavailable",
            ProxyError::IdpUnavailable => "idp_unavailable",
        }
    }
}

/// What a custom error body may mention about the request.
#[derive(Debug, Default, Clone, Copy)]
pub struct ErrorFacts<'a> {
    pub request_id: &'a str,
    pub route: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    /// The request is gRPC (`content-type: application/grpc…`): errors are answered
    /// the gRPC way, never with an HTML or JSON body a gRPC client cannot read.
    pub grpc: bool,
}

/// The response for `err`: the first matching custom body from `pages` (route's
/// first, then global), else the built-in JSON document
/// `{"error": reason, "message": …, "status": …, "requestId": …}`.
pub fn rescue(err: ProxyError, facts: &ErrorFacts<'_>, pages: &[&ErrorPages]) -> Response<Body> {
    if facts.grpc {
        return grpc_error(err);
    }
    if let Some(page) = pages.iter().find_map(|p| p.find(err.status())) {
        return page.render(err, facts);
    }
    let body = serde_json::json!({
        "error": err.reason(),
        "message": err.to_string(),
        "status": err.status().as_u16(),
        "requestId": facts.request_id,
    });
    let mut resp = Response::new(Body::full(body.to_string()));
    *resp.status_mut() = err.status();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A gRPC "trailers-only" answer: HTTP 200 with `grpc-status` and `grpc-message`
/// in the headers and no body, as gRPC clients expect for any failure.
fn grpc_error(err: ProxyError) -> Response<Body> {
    let mut resp = Response::new(Body::Empty);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(grpc_code(err)));
    // grpc-message is percent-encoded; our messages are plain ASCII, spaces allowed.
    if let Ok(v) = HeaderValue::from_str(&err.to_string()) {
        headers.insert("grpc-message", v);
    }
    resp
}

/// The gRPC status for a gateway failure (per gRPC's HTTP-to-status mapping, made
/// more precise where the gateway knows more, e.g. timeouts).
pub fn grpc_code(err: ProxyError) -> u16 {
    const INTERNAL: u16 = 13;
    const UNIMPLEMENTED: u16 = 12;
    const UNAUTHENTICATED: u16 = 16;
    const PERMISSION_DENIED: u16 = 7;
    const RESOURCE_EXHAUSTED: u16 = 8;
    const UNAVAILABLE: u16 = 14;
    const DEADLINE_EXCEEDED: u16 = 4;
    match err {
        ProxyError::NoRoute => UNIMPLEMENTED,
        ProxyError::MissingCredentials | ProxyError::InvalidCredentials => UNAUTHENTICATED,
        ProxyError::IpDenied
        | ProxyError::Forbidden
        | ProxyError::MeshDenied
        | ProxyError::CorsDenied => PERMISSION_DENIED,
        ProxyError::RateLimited
        | ProxyError::UriTooLong
        | ProxyError::HeadersTooLarge
        | ProxyError::BodyTooLarge => RESOURCE_EXHAUSTED,
        ProxyError::PerTryTimeout | ProxyError::RequestTimeout => DEADLINE_EXCEEDED,
        ProxyError::BadRequest | ProxyError::ClientBody => INTERNAL,
        _ => match err.status() {
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => UNAVAILABLE,
            _ => INTERNAL,
        },
    }
}

pub use crate::error_page::ErrorPages;
