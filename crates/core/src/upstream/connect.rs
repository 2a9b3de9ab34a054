//! Connecting to a service's endpoints: the HTTP client of a service, and TLS
//! origination (`tls`).
//!
//! - [`UpstreamClient`] is one per service. HTTP/1.1 services keep their
//!   connections in an [`Http1Pool`] (`pool`). A plain service dials through the
//!   [`LimitedConnector`] (nothing added per request or per read); a TLS service
//!   uses [`TlsConnector`], which connects through the same
//!   `LimitedConnector` (so the connect timeout applies and `maxConnections` counts
//!   TLS connections, the slot held until the TLS connection is dropped) and then
//!   runs a rustls handshake with SNI, verification against `caFile`, an optional
//!   client certificate and ALPN from the service's protocol.
//! - `protocol: HTTP2` uses hyper-util's client, HTTP/2 only (prior knowledge over
//!   cleartext, ALPN `h2` over TLS), one multiplexed connection per endpoint.
//!
//! - `services[].mesh` ([`MeshClient`]) originates mTLS with the workload identity
//!   through the same [`TlsConnector`] (its verification is the SPIFFE ID).
//!
//! Certificate and key files are read once, when the service is built (config
//! apply); a bad file fails the build, naming the setting and the file.

mod mesh;
mod pool;
mod tls;

pub use mesh::MeshClient;
pub use pool::{Http1Pool, PooledBody, SendError};
pub use tls::{TlsConnector, TlsHandshakeError, TlsOrigin, is_tls_failure};

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::HOST;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper_util::client::legacy::{Builder, Client};
use meshgate_config as config;
use tower::Service;

use super::LimitedConnector;
use crate::body::Body;

/// A service's pooled HTTP client.
#[derive(Debug)]
pub enum UpstreamClient {
    /// HTTP/1.1 over TCP: the pool is keyed by endpoint.
    Plain(Http1Pool<LimitedConnector>),
    /// HTTP/1.1 over TLS.
    Tls(Http1Pool<TlsConnector>),
    /// HTTP/2: one client per endpoint (see [`H2Endpoint`]); the first endpoint,
    /// then the others.
    Http2(Box<H2Endpoint>, Box<[H2Endpoint]>),
}

/// An HTTP/2 endpoint's own client. Its connector always dials the endpoint, so
/// the request URI can carry the request's authority: HTTP/2 sends it as
/// `:authority`, which is what the upstream reads as the host (there is no Host
/// header in HTTP/2). Its pool is keyed by that authority: one multiplexed
/// connection per endpoint and authority (usually one per endpoint).
#[derive(Debug)]
pub struct H2Endpoint {
    authority: Authority,
    client: H2Client,
}

#[derive(Debug)]
enum H2Client {
    Plain(Client<Pinned<LimitedConnector>, Body>),
    Tls(Client<Pinned<TlsConnector>, Body>),
}

impl UpstreamClient {
    /// The client for `svc`, connecting through `connector` (which holds the
    /// connect timeout and the `maxConnections` limit); `authorities` are its
    /// endpoints', already parsed by `Upstream::build`, in config order. `mesh`:
    /// the service's mesh mTLS (`services[].mesh`), which originates TLS like `tls`.
    pub fn build(
        svc: &config::Service,
        authorities: &[Authority],
        connector: LimitedConnector,
        builder: &mut Builder,
        mesh: Option<&MeshClient>,
    ) -> Result<Self, String> {
        let origin = match (&svc.tls, mesh) {
            (Some(tls), _) => Some(Arc::new(TlsOrigin::load(&svc.name, tls, svc.protocol)?)),
            (None, Some(mesh)) => Some(Arc::new(mesh.http_origin(svc.protocol)?)),
            (None, None) => None,
        };
        let (idle_timeout, max_idle) =
            (svc.pool.idle_timeout.get(), svc.pool.max_idle_per_endpoint);
        if svc.protocol == config::UpstreamProtocol::HTTP1 {
            return Ok(match origin {
                None => UpstreamClient::Plain(Http1Pool::new(connector, idle_timeout, max_idle)),
                Some(origin) => UpstreamClient::Tls(Http1Pool::new(
                    TlsConnector {
                        inner: connector,
                        origin,
                    },
                    idle_timeout,
                    max_idle,
                )),
            });
        }
        let h2 = svc.http2.clone().unwrap_or_default();
        builder
            .http2_only(true)
            .http2_initial_stream_window_size(h2.initial_stream_window_size)
            .http2_initial_connection_window_size(h2.initial_connection_window_size)
            .http2_keep_alive_interval(
                h2.keep_alive_interval
                    .map(|d| d.get())
                    .filter(|d| !d.is_zero()),
            )
            .http2_keep_alive_timeout(h2.keep_alive_timeout.get())
            .http2_keep_alive_while_idle(true);
        let scheme = if origin.is_some() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let mut endpoints: Vec<H2Endpoint> = authorities
            .iter()
            .map(|authority| {
                let authority = authority.clone();
                let dst = Uri::builder()
                    .scheme(scheme.clone())
                    .authority(authority.clone())
                    .path_and_query("/")
                    .build()
                    .map_err(|err| format!("endpoint {:?}: {err}", authority.as_str()))?;
                let client = match &origin {
                    None => H2Client::Plain(builder.build(Pinned {
                        inner: connector.clone(),
                        dst,
                    })),
                    Some(origin) => H2Client::Tls(builder.build(Pinned {
                        inner: TlsConnector {
                            inner: connector.clone(),
                            origin: origin.clone(),
                        },
                        dst,
                    })),
                };
                Ok(H2Endpoint { authority, client })
            })
            .collect::<Result<_, String>>()?;
        if endpoints.is_empty() {
            // No endpoints (discovery found none): `Upstream::pick` fails before any
            // request reaches a client, so an unused plain one stands in.
            return Ok(UpstreamClient::Plain(Http1Pool::new(
                connector,
                idle_timeout,
                max_idle,
            )));
        }
        let first = endpoints.remove(0);
        Ok(UpstreamClient::Http2(Box::new(first), endpoints.into()))
    }

    /// Sends `req` (absolute URI `http://endpoint/…`, Host set). HTTP/1.1 goes out
    /// in origin form. For HTTP/2 over TLS the scheme becomes `https` (`:scheme`)
    /// and the Host header becomes the URI's authority (`:authority`).
    pub async fn request(&self, req: Request<Body>) -> Result<Response<Body>, SendError> {
        match self {
            UpstreamClient::Plain(pool) => pool.send(req).await,
            // Sent in origin form: the scheme would only be rewritten to be dropped.
            UpstreamClient::Tls(pool) => pool.send(req).await,
            UpstreamClient::Http2(first, others) => {
                let target = req.uri().authority();
                // The URI is always one of the endpoints (send builds it so).
                let ep = others
                    .iter()
                    .find(|e| Some(&e.authority) == target)
                    .unwrap_or(first);
                let mut req = req;
                let authority = match req.headers_mut().remove(HOST) {
                    Some(host) => match Authority::try_from(host.as_bytes()) {
                        Ok(a) => Some(a),
                        Err(_) => {
                            // Not an authority: keep the endpoint's, and the header.
                            req.headers_mut().insert(HOST, host);
                            None
                        }
                    },
                    None => None,
                };
                let sent = match &ep.client {
                    H2Client::Plain(c) => c.request(with_uri(req, None, authority)).await,
                    H2Client::Tls(c) => {
                        c.request(with_uri(req, Some(Scheme::HTTPS), authority))
                            .await
                    }
                };
                Ok(sent?.map(|b| Body::Stream(b.into())))
            }
        }
    }
}

/// `req` with its URI's scheme and/or authority replaced.
fn with_uri(
    req: Request<Body>,
    scheme: Option<Scheme>,
    authority: Option<Authority>,
) -> Request<Body> {
    if scheme.is_none() && authority.is_none() {
        return req;
    }
    let (mut head, body) = req.into_parts();
    let mut uri = std::mem::take(&mut head.uri).into_parts();
    if scheme.is_some() {
        uri.scheme = scheme;
    }
    if authority.is_some() {
        uri.authority = authority;
    }
    head.uri = Uri::from_parts(uri).unwrap_or_default();
    Request::from_parts(head, body)
}

/// A connector that dials one fixed endpoint, whatever the URI says.
#[derive(Debug, Clone)]
pub struct Pinned<C> {
    inner: C,
    dst: Uri,
}

impl<C: Service<Uri>> Service<Uri> for Pinned<C> {
    type Response = C::Response;
    type Error = C::Error;
    type Future = C::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, _dst: Uri) -> C::Future {
        self.inner.call(self.dst.clone())
    }
}
