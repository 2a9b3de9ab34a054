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
    #[error("a content-length is required for request bodies here")]
    LengthRequired,
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
            ProxyError::IpDenied => StatusCode::FORBIDDEN,
            ProxyError::MissingCredentials | ProxyError::InvalidCredentials => {
                StatusCode::UNAUTHORIZED
            }
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::LengthRequired => StatusCode::LENGTH_REQUIRED,
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
            ProxyError::LengthRequired => "length_required",
        }
    }
}

/// A JSON error response: `{"error": reason, "message": …, "status": …, "requestId": …}`.
pub fn rescue(err: ProxyError, request_id: &str) -> Response<Body> {
    let body = serde_json::json!({
        "error": err.reason(),
        "message": err.to_string(),
        "status": err.status().as_u16(),
        "requestId": request_id,
    });
    let mut resp = Response::new(Body::full(body.to_string()));
    *resp.status_mut() = err.status();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
