//! The HTTP health check: one `GET path` per check on a fresh connection, HTTP/1.1
//! (cleartext, or TLS with ALPN `http/1.1` or none) or HTTP/2 (TLS with ALPN
//! `h2`, as an `HTTP2` service over TLS negotiates).
//!
//! HTTP/1.1 sends `Host` = `http.host` or the endpoint's `host:port` and
//! `connection: close`; HTTP/2 sends the same as `:authority`. Both send
//! `user-agent: meshgate-health`. The check passes when the status is in
//! `expectedStatuses` (empty: 200–399); the body is not read.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Uri};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshgate_config as config;

use super::{AbortOnDrop, Io};

/// A compiled HTTP check.
#[derive(Debug, Clone)]
pub(super) struct HttpProbe {
    path: PathAndQuery,
    host: Option<HeaderValue>,
    /// `host` as an authority, for HTTP/2's `:authority` (when it is one).
    host_authority: Option<Authority>,
    expected: Arc<[u16]>,
}

impl HttpProbe {
    pub(super) fn new(cfg: &config::HttpCheck) -> Result<Self, String> {
        let path = cfg
            .path
            .parse()
            .map_err(|e| format!("healthCheck.http.path {:?}: {e}", cfg.path))?;
        let host = cfg
            .host
            .as_deref()
            .map(HeaderValue::from_str)
            .transpose()
            .map_err(|e| format!("healthCheck.http.host: {e}"))?;
        let host_authority = cfg.host.as_deref().and_then(|h| h.parse().ok());
        Ok(HttpProbe {
            path,
            host,
            host_authority,
            expected: cfg.expected_statuses.iter().copied().collect(),
        })
    }

    /// One check over `io`, connected to `endpoint`; `h2` when ALPN chose HTTP/2.
    pub(super) async fn check(
        &self,
        io: impl Io,
        endpoint: &Authority,
        scheme: Scheme,
        h2: bool,
    ) -> Result<(), String> {
        let status = if h2 {
            self.get_h2(io, endpoint, scheme).await?
        } else {
            self.get_h1(io, endpoint).await?
        };
        let pass = if self.expected.is_empty() {
            (200..400).contains(&status)
        } else {
            self.expected.contains(&status)
        };
        if pass {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    }

    async fn get_h1(&self, io: impl Io, endpoint: &Authority) -> Result<u16, String> {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let _driver = AbortOnDrop::drive(conn);
        let host = match &self.host {
            Some(h) => h.clone(),
            None => HeaderValue::from_str(endpoint.as_str()).map_err(|e| e.to_string())?,
        };
        let req = Request::get(Uri::from(self.path.clone()))
            .header(HOST, host)
            .header(USER_AGENT, "meshgate-health")
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        Ok(resp.status().as_u16())
    }

    async fn get_h2(
        &self,
        io: impl Io,
        endpoint: &Authority,
        scheme: Scheme,
    ) -> Result<u16, String> {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
        let _driver = AbortOnDrop::drive(conn);
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(
                self.host_authority
                    .clone()
                    .unwrap_or_else(|| endpoint.clone()),
            )
            .path_and_query(self.path.clone())
            .build()
            .map_err(|e| e.to_string())?;
        let req = Request::get(uri)
            .header(USER_AGENT, "meshgate-health")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        Ok(resp.status().as_u16())
    }
}
