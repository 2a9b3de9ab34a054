//! A request's path through the gateway: route lookup in the current snapshot,
//! request filters, backend and endpoint choice, forwarding with retries and
//! timeouts, response filters, and the access log record.

mod decide;
mod explain;
pub mod forward;
mod logged_body;
pub(crate) mod mirror;
mod retry;
mod send;
mod spans;
mod upgrade;

pub use decide::{Decision, decide};
pub use explain::explain_request;
pub use logged_body::LoggedBody;
pub use retry::{Failure, RetryPolicy};
pub use send::Held;
pub use upgrade::Tunnels;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response};

use std::sync::Arc;

use crate::body::{Body, Inbound};
use crate::filter::RequestCx;
use crate::rescue::{ErrorFacts, ErrorPages, ProxyError, rescue};
use crate::route::Route;
use crate::snapshot::Snapshot;
use forward::X_REQUEST_ID;
use meshgate_observe::Metrics;
use meshgate_observe::access_log::{AccessLog, AccessRecord};
use meshgate_observe::metrics::KindLabels;
use meshgate_observe::trace::{Exporter, TraceContext};
use send::{Outgoing, RequestBody};

/// State shared by every connection of a gateway.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub log: AccessLog,
    pub metrics: Arc<Metrics>,
    /// Present when spans are exported (`tracing.otlp`).
    pub exporter: Option<Exporter>,
    /// Upgraded (WebSocket) connections being relayed.
    pub tunnels: upgrade::Tunnels,
    /// Turns true when the gateway shuts down: upgraded connections then close.
    pub closing: tokio::sync::watch::Sender<bool>,
}

/// Facts about the downstream connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Name of the listener; selects the snapshot's route table.
    pub listener: Arc<str>,
    pub client: SocketAddr,
    /// The listener's own address (the local end of the connection).
    pub local: SocketAddr,
    pub scheme: &'static str,
    /// The verified client certificate (mTLS on an `HTTPS` listener), if any.
    pub client_cert: Option<Arc<crate::server::tls::ClientCert>>,
}

/// Serves one request. Never fails: every error becomes a response (see `rescue`).
pub async fn handle(
    shared: &Arc<Shared>,
    conn: &ConnInfo,
    req: Request<Inbound>,
) -> Response<LoggedBody> {
    let started = Instant::now();
    // The request keeps the snapshot it started with, even if a reload swaps it.
    let snapshot = shared.snapshot.load_full();
    let (mut parts, body) = req.into_parts();
    let request_id = crate::request_id::take_or_make(&parts.headers);
    let authority = authority_of(&parts);
    let trace = TraceContext::from_headers(&parts.headers, snapshot.config.tracing.sample_ratio);
    let mut record = AccessRecord {
        trace_id: Some(trace.trace_id),
        client_cert: conn.client_cert.as_ref().map(|c| c.subject.clone()),
        mesh: snapshot.mesh_authz.edge(conn),
        ..AccessRecord::arriving(
            &parts,
            authority.clone(),
            conn.client.ip(),
            request_id.clone(),
        )
    };
    let grpc = is_grpc(&parts.headers);
    let authority_text = authority.as_ref().map(|a| a.to_str().map_err(drop));
    let mut cx = RequestCx::new(
        request_id.to_str().unwrap_or_default(),
        conn.scheme,
        authority_text.and_then(Result::ok).unwrap_or_default(),
        conn.local.port(),
        conn.client.ip(),
    );
    cx.client_cert = conn.client_cert.as_deref();
    if explain::requested(&snapshot, &mut parts.headers) {
        cx.explain = Some(Box::default());
    }
    let meta = RequestMeta {
        shared,
        conn,
        authority: authority.as_ref(),
        bad_authority: authority_text.is_some_and(|r| r.is_err()),
        request_id: &request_id,
        trace: &trace,
    };
    let mut matched = None;
    let forwarded = route_and_forward(
        &snapshot,
        &meta,
        &mut cx,
        &mut matched,
        &mut parts,
        body,
        &mut record,
    )
    .await;
    record.consumer = cx.consumer.as_ref().map(|c| c.name.clone());
    if forwarded
        .as_ref()
        .is_err_and(|e| *e == ProxyError::RequestTimeout)
        && let Some(service) = &record.service
    {
        shared
            .metrics
            .timeouts
            .get_or_create(&KindLabels {
                service: service.as_ref().into(),
                kind: "request_timeout",
            })
            .inc();
    }
    let (response, held) = match forwarded {
        Ok(done) => done,
        Err(err) => {
            record.reason = Some(err.reason());
            let facts = ErrorFacts {
                request_id: cx.request_id,
                route: record.route.as_deref(),
                method: record.method.as_str(),
                path: record.path.as_ref().map_or("", |p| p.path()),
                grpc,
            };
            let pages: &[&ErrorPages] = match matched {
                Some(route) => &[&route.error_pages, &snapshot.error_pages],
                None => &[&snapshot.error_pages],
            };
            (rescue(err, &facts, pages), None)
        }
    };
    let (mut head, body) = response.into_parts();
    head.headers
        .insert(X_REQUEST_ID.clone(), request_id.clone());
    for (name, value) in cx.response_headers.drain(..) {
        head.headers.append(name, value);
    }
    record.status = head.status.as_u16();
    if let Some(trace) = cx.explain.as_deref_mut() {
        explain::finish_live(trace, &record);
        explain::attach(trace, &mut head.headers);
    }
    Response::from_parts(
        head,
        LoggedBody::new(body, record, started, shared.clone(), Some(trace), held),
    )
}

/// What the request path knows about a request besides its head and body.
struct RequestMeta<'a> {
    shared: &'a Shared,
    conn: &'a ConnInfo,
    authority: Option<&'a HeaderValue>,
    /// The authority is not visible ASCII: refused with 400 before anything runs.
    bad_authority: bool,
    request_id: &'a HeaderValue,
    trace: &'a TraceContext,
}

async fn route_and_forward<'s>(
    snapshot: &'s Snapshot,
    meta: &RequestMeta<'_>,
    cx: &mut RequestCx<'_>,
    matched: &mut Option<&'s Route>,
    parts: &mut http::request::Parts,
    body: Inbound,
    record: &mut AccessRecord,
) -> Result<(Response<Body>, Option<Held>), ProxyError> {
    let RequestMeta {
        shared: _,
        conn,
        authority,
        bad_authority,
        request_id,
        trace,
    } = *meta;
    if bad_authority {
        return Err(ProxyError::BadRequest);
    }
    // Before routing: an HTTP/2 WebSocket (extended CONNECT) becomes the HTTP/1.1
    // handshake `GET` here, so routes and policies see it as they would over h1;
    // any other CONNECT is refused.
    let upgrade = upgrade::requested(parts)?;
    let decision = decide::decide(snapshot, &conn.listener, parts, cx, matched).await;
    if let Some(route) = *matched {
        record.route = Some(route.name.clone());
        record.route_metrics = Some(route.metrics.clone());
    }
    let upstream = match decision? {
        Decision::Respond(resp) => {
            let resp = match *matched {
                Some(route) => with_response_filters(resp, route, cx),
                None => resp,
            };
            return Ok((resp, None));
        }
        Decision::Forward(upstream) => upstream,
    };
    let route = matched.ok_or(ProxyError::NoRoute)?;
    record.service = Some(upstream.name.clone());

    let grpc_deadline = forward::grpc_timeout(&parts.headers);
    let encoding = (route.compression.as_ref()).map(|c| c.negotiate(parts));
    let mut headers = std::mem::take(&mut parts.headers);
    let trailers_ok = forward::accepts_trailers(&headers);
    forward::strip_hop_by_hop(&mut headers);
    if let Some(u) = &upgrade {
        u.restore(&mut headers);
    }
    if trailers_ok {
        // `te: trailers` is the one TE value HTTP/2 allows, and gRPC needs it.
        headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
    // hyper already answered `100-continue` to the client when the body was polled;
    // the upstream must not wait for a second one.
    headers.remove(http::header::EXPECT);
    if let Some(authority) = authority {
        forward::add_forwarding(&mut headers, conn.client, conn.scheme, authority);
    }
    forward::append_via(&mut headers, parts.version);
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    trace.inject(&mut headers);
    parts.headers = headers;

    let host = cx.host_override.clone().or_else(|| {
        if upstream.preserve_host {
            authority.cloned()
        } else {
            None
        }
    });
    let hash = upstream.hash_for(&parts.headers, conn.client.ip());
    let body = RequestBody::prepare(body, parts, route, cx.unsized_body_limit, record).await?;
    let compare = (route.mirror.as_ref())
        .and_then(|m| m.start(parts, &body, cx.host_override.as_ref(), authority));
    let outgoing = Outgoing {
        parts: take_parts(parts),
        body,
        host,
        hash,
    };
    let sending = send::send(upstream, route, outgoing, record);
    // A gRPC client's deadline (`grpc-timeout`) bounds the request like the route's
    // own timeout; the shorter wins.
    let limit = match (route.request_timeout, grpc_deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let sent = match limit {
        Some(limit) => tokio::time::timeout(limit, sending)
            .await
            .map_err(|_| ProxyError::RequestTimeout)??,
        None => sending.await?,
    };
    let mut response = match compare {
        Some(compare) => compare.tee(sent.response),
        None => sent.response,
    };
    forward::strip_hop_by_hop(response.headers_mut());
    forward::append_via(response.headers_mut(), http::Version::HTTP_11);
    if let Some(u) = upgrade {
        u.finish(
            &mut response,
            snapshot,
            route,
            &meta.shared.tunnels,
            meta.shared.closing.subscribe(),
        );
    }
    let response = with_response_filters(response, route, cx);
    let response = match (&route.compression, encoding) {
        (Some(c), Some(e)) => c.apply(e, response),
        _ => response,
    };
    Ok((response, Some(sent.held)))
}

fn with_response_filters(
    resp: Response<Body>,
    route: &Route,
    cx: &RequestCx<'_>,
) -> Response<Body> {
    if route.filters.response.is_empty() {
        return resp;
    }
    let (mut head, body) = resp.into_parts();
    route.filters.on_response(&mut head, cx);
    Response::from_parts(head, body)
}

/// A gRPC request: `content-type: application/grpc` or `application/grpc+proto`…
fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Moves the request head out, leaving an empty one (the original is no longer used).
fn take_parts(parts: &mut http::request::Parts) -> http::request::Parts {
    let (empty, _) = Request::new(()).into_parts();
    std::mem::replace(parts, empty)
}

/// The request's authority: `:authority` for HTTP/2 (and absolute-form URIs), else Host.
fn authority_of(parts: &http::request::Parts) -> Option<HeaderValue> {
    match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(http::header::HOST).cloned(),
    }
}

/// Lower-case host without port or trailing dot, borrowed when already normal.
pub(crate) fn normalise_host(authority: &str) -> Cow<'_, str> {
    let host = if authority.starts_with('[') {
        authority.split_inclusive(']').next().unwrap_or(authority)
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::normalise_host;

    #[test]
    fn hosts_normalise() {
        assert_eq!(normalise_host("API.Example.com:8080"), "api.example.com");
        assert_eq!(normalise_host("example.com."), "example.com");
        assert_eq!(normalise_host("[::1]:80"), "[::1]");
        assert_eq!(normalise_host(""), "");
    }
}
