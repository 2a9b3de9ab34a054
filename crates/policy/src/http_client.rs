//! The HTTP client policies use to talk to other services (a JWKS endpoint, an
//! OIDC provider, an external authorization service): bounded in time and in
//! response size, so a slow or hostile service cannot hold a request or memory.
//! Plain `http://` only until the gateway gains its TLS client (issue 5).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
    #[error("response body larger than {0} bytes")]
    TooLarge(usize),
    #[error("invalid URL {0:?}: only http:// URLs are supported")]
    BadUrl(String),
}

/// A complete response.
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A pooled client; cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
    max_body: usize,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new(1 << 20)
    }
}

impl HttpClient {
    /// A client accepting response bodies up to `max_body` bytes.
    pub fn new(max_body: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        HttpClient {
            inner: Client::builder(TokioExecutor::new()).build(connector),
            max_body,
        }
    }

    /// Sends `req` and reads the whole response, all within `timeout`.
    pub async fn send(
        &self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Fetched, FetchError> {
        let max = self.max_body;
        let call = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| FetchError::Transport(transport_message(&e)))?;
            let (head, body) = resp.into_parts();
            let body = Limited::new(body, max)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        FetchError::TooLarge(max)
                    } else {
                        FetchError::Transport(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(Fetched {
                status: head.status,
                headers: head.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| FetchError::Timeout(timeout))?
    }

    /// `GET url`.
    pub async fn get(&self, url: &str, timeout: Duration) -> Result<Fetched, FetchError> {
        let uri = parse_url(url)?;
        let req = Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        self.send(req, timeout).await
    }
}

/// An `http://` URL as a URI.
pub fn parse_url(url: &str) -> Result<http::Uri, FetchError> {
    let uri: http::Uri = url.parse().map_err(|_| FetchError::BadUrl(url.into()))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(FetchError::BadUrl(url.into()));
    }
    Ok(uri)
}

/// The innermost cause: hyper-util's top-level message alone ("client error
/// (Connect)") says too little.
fn transport_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}
