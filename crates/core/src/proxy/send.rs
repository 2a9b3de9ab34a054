//! Sending a request upstream: endpoint choice, per-try timeout, and the retry loop
//! with its budget. Only bodies the gateway holds, or streams it copies while they
//! fit `bodyBufferBytes` (`body::replay`), can be sent twice. Each try's
//! outcome feeds outlier detection; the circuit breaker's request, pending and
//! retry limits are taken here (the connection limit in the connector).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Limited};
use tower::retry::budget::Budget;

use super::retry::Failure;
use crate::balance::InFlight;
use crate::body::replay::Replay;
use crate::body::{Body, Inbound};
use crate::rescue::ProxyError;
use crate::route::Route;
use crate::upstream::{Endpoint, Outcome, OwnedPermit, Permit, SendError, Upstream, is_overflow};
use meshgate_observe::access_log::AccessRecord;

/// The request body: held (replayable), streamed through once, or streamed and
/// copied up to the retry policy's cap (replayable while the copy is whole).
pub enum RequestBody {
    Held(Option<Bytes>),
    Once(Option<Body>),
    Replay(Replay<Inbound>),
}

impl RequestBody {
    /// Holds small bodies of retryable routes (by `content-length`) and bodies
    /// without a length when a policy capped them (`unsized_limit`: read up to the cap,
    /// refused with 413 beyond it, never read further); streams the rest.
    pub async fn prepare(
        body: Inbound,
        parts: &http::request::Parts,
        route: &Route,
        unsized_limit: Option<u64>,
        record: &mut AccessRecord,
    ) -> Result<Self, ProxyError> {
        use http_body::Body as _;
        if body.is_end_stream() {
            return Ok(RequestBody::Held(None));
        }
        let length = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let (None, Some(limit)) = (length, unsized_limit) {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let collected = Limited::new(body, limit).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ProxyError::BodyTooLarge
                } else {
                    ProxyError::ClientBody
                }
            })?;
            let bytes = collected.to_bytes();
            record.bytes_in = bytes.len() as u64;
            return Ok(RequestBody::Held(Some(bytes)));
        }
        // Held for retries, and for a mirror (which never buffers a stream).
        let hold = (route.retry.as_ref().map(|p| p.body_buffer_bytes))
            .max(route.mirror.as_ref().map(|m| m.max_body_bytes));
        if let (Some(cap), Some(n)) = (hold, length)
            && n <= cap
        {
            let collected = Limited::new(body, n as usize)
                .collect()
                .await
                .map_err(|_| ProxyError::ClientBody)?;
            let bytes = collected.to_bytes();
            record.bytes_in = bytes.len() as u64;
            return Ok(RequestBody::Held(Some(bytes)));
        }
        let counter = Arc::new(AtomicU64::new(0));
        record.bytes_in_streamed = Some(counter.clone());
        // A retrying route streams the rest (unsized, or sized above the cap) and
        // copies it while it fits the cap. A known small length stays held above:
        // one `Bytes` per try, no lock per frame, and a mirror can use it.
        if let Some(policy) = route.retry.as_ref().filter(|p| p.attempts > 0) {
            return Ok(RequestBody::Replay(Replay::new(
                body,
                policy.body_buffer_bytes,
                counter,
            )));
        }
        Ok(RequestBody::Once(Some(Body::Counted(body, counter))))
    }

    /// Whether another try could carry the whole body (a peek, see `claim`).
    fn replayable(&self) -> bool {
        match self {
            RequestBody::Held(_) => true,
            RequestBody::Once(_) => false,
            RequestBody::Replay(r) => r.replayable(),
        }
    }

    /// Commits to another try: a streamed copy's previous try is cut off. False
    /// when the body can no longer be replayed (a try passed the cap meanwhile).
    fn claim(&self) -> bool {
        match self {
            RequestBody::Held(_) => true,
            RequestBody::Once(_) => false,
            RequestBody::Replay(r) => r.claim(),
        }
    }

    fn take(&mut self) -> Body {
        match self {
            RequestBody::Held(None) => Body::Empty,
            RequestBody::Held(Some(bytes)) => Body::Full(Some(bytes.clone())),
            RequestBody::Once(body) => body.take().unwrap_or_default(),
            RequestBody::Replay(r) => Body::Replay(Box::new(r.body())),
        }
    }
}

/// A response from the upstream, with its slots still held.
pub struct Sent {
    pub response: Response<Body>,
    pub held: Held,
}

/// What a forwarded request holds until its response body is finished or dropped:
/// the endpoint's in-flight count and the service's `maxRequests` slot.
#[derive(Debug)]
pub struct Held {
    pub in_flight: InFlight,
    pub permit: OwnedPermit,
}

/// What stays the same across tries.
pub struct Outgoing {
    pub parts: http::request::Parts,
    pub body: RequestBody,
    /// Host header to send; `None` means the endpoint's own `host:port`.
    pub host: Option<HeaderValue>,
    pub hash: Option<u64>,
}

pub async fn send(
    upstream: &Upstream,
    route: &Route,
    mut out: Outgoing,
    record: &mut AccessRecord,
) -> Result<Sent, ProxyError> {
    let permit = upstream.breaker.request()?;
    let policy = route.retry.as_ref();
    if policy.is_some() {
        upstream.budget.deposit();
    }
    let max_retries = policy.map_or(0, |p| p.attempts);
    let pq = out
        .parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut last_failed = None;
    let mut retries = 0;
    let mut retry_slot = None;
    let first_try = Instant::now();
    record.upstream_started = Some(std::time::SystemTime::now());
    loop {
        let idx = upstream.pick(out.hash, last_failed)?;
        let endpoint = &upstream.endpoints[idx];
        record.upstream = Some(endpoint.address.clone());
        let may_retry = retries < max_retries && out.body.replayable();
        let headers = if may_retry {
            out.parts.headers.clone()
        } else {
            std::mem::take(&mut out.parts.headers)
        };
        let req = upstream_request(
            &out.parts.method,
            &pq,
            endpoint,
            headers,
            out.host.as_ref(),
            out.body.take(),
        )?;
        let in_flight = endpoint.load.start();
        let pending = upstream.breaker.pending()?;
        let started = Instant::now();
        let call = upstream.client.request(req);
        let result = match route.per_try_timeout {
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(e)) => Err(classify(e)?),
                Err(_elapsed) => Err(Failure::Timeout),
            },
            None => match call.await {
                Ok(resp) => Ok(resp),
                Err(e) => Err(classify(e)?),
            },
        };
        drop(pending);
        upstream.observe_try(started.elapsed(), result.as_ref().err());
        upstream.record(
            idx,
            match &result {
                Ok(resp) if resp.status().is_server_error() => Outcome::Status5xx,
                Ok(_) => Outcome::Success,
                Err(_) => Outcome::LocalFailure,
            },
        );
        record.upstream_elapsed = Some(first_try.elapsed());
        let failure = match result {
            Ok(resp) => {
                endpoint.load.observe_latency(started.elapsed());
                let status = resp.status();
                let failure = if status.is_server_error() {
                    Some(Failure::Status(status))
                } else if policy.is_some_and(|p| p.grpc) {
                    grpc_failure(&resp)
                } else {
                    None
                };
                let wanted = failure.filter(|&f| {
                    policy.is_some_and(|p| p.wants(f, &out.parts.method))
                        && may_retry
                        && out.body.replayable()
                        && may_send_again(upstream, &mut retry_slot)
                        && out.body.claim()
                });
                let Some(failure) = wanted else {
                    return Ok(Sent {
                        response: resp,
                        held: Held { in_flight, permit },
                    });
                };
                failure
            }
            Err(failure) => {
                let wanted = policy.is_some_and(|p| p.wants(failure, &out.parts.method));
                if !(wanted
                    && may_retry
                    && out.body.replayable()
                    && may_send_again(upstream, &mut retry_slot)
                    && out.body.claim())
                {
                    return Err(failure.into());
                }
                failure
            }
        };
        tracing::debug!(service = %upstream.name, endpoint = %endpoint.address, ?failure, retry = retries + 1, "retrying");
        drop(in_flight);
        upstream
            .metrics
            .retries
            .get_or_create(&upstream.label)
            .inc();
        last_failed = Some(idx);
        let wait = policy.map(|p| p.backoff(retries)).unwrap_or_default();
        retries += 1;
        record.retries = retries;
        tokio::time::sleep(wait).await;
    }
}

/// A trailers-only gRPC answer's non-zero `grpc-status` (in the headers; a status
/// in real trailers arrives after the response has started and is not seen here).
fn grpc_failure(resp: &Response<Body>) -> Option<Failure> {
    let code: u8 = resp
        .headers()
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    (code != 0).then_some(Failure::Grpc(code))
}

/// Whether a wanted retry may go out: it needs a `maxRetries` slot (taken at the
/// first retry and kept for the rest of the request, so one request holds at most
/// one) and the retry budget. Over `maxRetries` the try's own answer is returned.
fn may_send_again<'a>(upstream: &'a Upstream, slot: &mut Option<Permit<'a>>) -> bool {
    if slot.is_none() {
        *slot = upstream.breaker.retry();
        if slot.is_none() {
            return false;
        }
    }
    upstream.budget.withdraw()
}

pub(super) fn upstream_request(
    method: &http::Method,
    pq: &PathAndQuery,
    endpoint: &Endpoint,
    headers: http::HeaderMap,
    host: Option<&HeaderValue>,
    body: Body,
) -> Result<Request<Body>, ProxyError> {
    let uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(endpoint.authority.clone())
        .path_and_query(pq.clone())
        .build()
        .map_err(|_| ProxyError::BadRequest)?;
    let mut req = Request::new(body);
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    req.headers_mut().insert(
        HOST,
        host.cloned()
            .unwrap_or_else(|| endpoint.host_header.clone()),
    );
    Ok(req)
}

/// A client error as a try failure, or `Overflow` when the connection limit
/// refused to connect (that is not the endpoint's fault and is not retried).
fn classify(e: SendError) -> Result<Failure, ProxyError> {
    if e.is_connect() {
        if is_overflow(&e) {
            return Err(ProxyError::Overflow);
        }
        Ok(Failure::ConnectFailure)
    } else {
        Ok(Failure::Reset)
    }
}

impl From<Failure> for ProxyError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::ConnectFailure => ProxyError::ConnectFailure,
            Failure::Reset | Failure::Status(_) | Failure::Grpc(_) => ProxyError::UpstreamReset,
            Failure::Timeout => ProxyError::PerTryTimeout,
        }
    }
}
