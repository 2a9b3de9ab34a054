//! Request mirroring (shadowing): a copy of a share of a route's requests goes to a
//! shadow service on its own task, with its own timeout, fire-and-forget. Nothing
//! about the shadow (slow, down, failing) reaches the primary request: the primary
//! never waits for it and never sees its errors.
//!
//! Only bodies the gateway already holds are mirrored (`RequestBody::Held`, up to
//! `maxBodyBytes`); a streaming body is never buffered for a mirror. The shadow gets
//! the same method, path, headers (`x-request-id` included) and body, with its Host
//! suffixed `-shadow` (before any port), as Envoy does.
//!
//! In diff mode (`diff`), the primary's response is captured as it streams to the
//! client (`tee`), and compared with the shadow's once both are complete (`diff`).

mod diff;
mod json;
mod tee;

pub use tee::Tee;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::uri::PathAndQuery;
use http::{HeaderValue, Response};
use http_body_util::BodyExt;
use meshgate_config as config;
use meshgate_observe::Metrics;
use meshgate_observe::metrics::{MirrorResultLabels, Name};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::oneshot;

use super::send::{RequestBody, upstream_request};
use crate::body::Body;
use crate::upstream::{Outcome, Upstream};
use diff::{Captured, Differ};

/// A route's compiled `mirror` settings.
#[derive(Debug)]
pub struct Mirror {
    route: Arc<str>,
    upstream: Arc<Upstream>,
    /// Mirrored share out of 1,000,000; `None`: every request.
    threshold: Option<u32>,
    timeout: Duration,
    /// Largest request body mirrored, and largest response body compared.
    pub max_body_bytes: u64,
    diff: Option<Differ>,
    counters: Results,
}

/// `meshgate_mirror_requests_total` handles, by result.
#[derive(Debug)]
struct Results {
    sent: Counter,
    skipped: Counter,
    failed: Counter,
    timeout: Counter,
}

/// How one shadow exchange ended, short of its timeout.
enum Exchange {
    Answered(Captured),
    Failed,
}

impl Mirror {
    pub fn compile(
        cfg: &config::Mirror,
        route: &Arc<str>,
        upstreams: &std::collections::HashMap<String, Arc<Upstream>>,
        metrics: &Metrics,
    ) -> Result<Self, String> {
        let upstream = upstreams
            .get(&cfg.service)
            .ok_or_else(|| format!("mirror: unknown service {:?}", cfg.service))?
            .clone();
        let result = |result| {
            metrics
                .mirror_requests
                .get_or_create(&MirrorResultLabels {
                    route: Name(route.clone()),
                    result,
                })
                .clone()
        };
        let share = (cfg.percent.clamp(0.0, 100.0) * 10_000.0).round() as u32;
        Ok(Mirror {
            route: route.clone(),
            upstream,
            threshold: (share < 1_000_000).then_some(share),
            timeout: cfg.timeout.get(),
            max_body_bytes: cfg.max_body_bytes,
            diff: match &cfg.diff {
                Some(d) => Some(Differ::compile(d, route, metrics)?),
                None => None,
            },
            counters: Results {
                sent: result("sent"),
                skipped: result("skipped"),
                failed: result("failed"),
                timeout: result("timeout"),
            },
        })
    }

    /// Rolls the dice and, if this request is mirrored, spawns its shadow exchange.
    /// The request head is the one about to be forwarded (forwarding headers and
    /// `x-request-id` set). In diff mode, returns the handle that captures the
    /// primary's response for the comparison.
    pub(super) fn start(
        self: &Arc<Self>,
        parts: &http::request::Parts,
        body: &RequestBody,
        host_override: Option<&HeaderValue>,
        authority: Option<&HeaderValue>,
    ) -> Option<Compare> {
        if self
            .threshold
            .is_some_and(|t| fastrand::u32(0..1_000_000) >= t)
        {
            return None;
        }
        let body = match body {
            RequestBody::Held(b)
                if b.as_ref()
                    .is_none_or(|b| b.len() as u64 <= self.max_body_bytes) =>
            {
                b.clone()
            }
            _ => {
                self.counters.skipped.inc();
                return None;
            }
        };
        let host = host_override
            .or(authority.filter(|_| self.upstream.preserve_host))
            .cloned();
        let (tx, rx) = match &self.diff {
            Some(_) => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let shadow = Shadow {
            method: parts.method.clone(),
            pq: parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            headers: parts.headers.clone(),
            body,
            host,
        };
        tokio::spawn(self.clone().run(shadow, rx));
        let differ = self.diff.as_ref()?;
        Some(Compare {
            tx: tx?,
            names: differ.header_names(),
            cap: self.max_body_bytes as usize,
        })
    }

    /// The shadow exchange and, in diff mode, the comparison; records the outcome.
    async fn run(self: Arc<Self>, shadow: Shadow, primary: Option<oneshot::Receiver<Captured>>) {
        let request_id = shadow
            .headers
            .get(super::forward::X_REQUEST_ID.clone())
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        match tokio::time::timeout(self.timeout, self.exchange(shadow)).await {
            Err(_elapsed) => {
                self.counters.timeout.inc();
            }
            Ok(Exchange::Failed) => {
                self.counters.failed.inc();
            }
            Ok(Exchange::Answered(answer)) => {
                self.counters.sent.inc();
                // The primary's capture arrives when its body has been sent in full;
                // an abandoned or failed primary drops the sender: nothing to compare.
                if let (Some(differ), Some(rx)) = (&self.diff, primary)
                    && let Ok(primary) = rx.await
                {
                    differ.compare(&self.route, &request_id, &primary, &answer);
                }
            }
        }
    }

    async fn exchange(&self, shadow: Shadow) -> Exchange {
        let up = &self.upstream;
        let Ok(_permit) = up.breaker.request() else {
            return Exchange::Failed;
        };
        let Ok(idx) = up.pick(None, None) else {
            return Exchange::Failed;
        };
        let endpoint = &up.endpoints[idx];
        let host = shadow_host(shadow.host.as_ref().unwrap_or(&endpoint.host_header));
        let body = shadow.body.map_or(Body::Empty, |b| Body::Full(Some(b)));
        let Ok(req) = upstream_request(
            &shadow.method,
            &shadow.pq,
            endpoint,
            shadow.headers,
            Some(&host),
            body,
        ) else {
            return Exchange::Failed;
        };
        let _in_flight = endpoint.load.start();
        let started = std::time::Instant::now();
        let result = up.client.request(req).await;
        up.observe_try(started.elapsed(), None);
        let resp = match result {
            Ok(resp) => resp,
            Err(_) => {
                up.record(idx, Outcome::LocalFailure);
                return Exchange::Failed;
            }
        };
        up.record(
            idx,
            if resp.status().is_server_error() {
                Outcome::Status5xx
            } else {
                Outcome::Success
            },
        );
        let (head, body) = resp.into_parts();
        // The body is read to its end either way, so the connection goes back to
        // the pool; only diff mode keeps it (up to the cap).
        let keep = self.diff.as_ref().map(|_| self.max_body_bytes as usize);
        let Some(body) = read_capped(body, keep).await else {
            return Exchange::Failed;
        };
        let headers = match &self.diff {
            Some(d) => d.select(&head.headers),
            None => Vec::new(),
        };
        Exchange::Answered(Captured {
            status: head.status,
            headers,
            body,
        })
    }
}

/// The copy of a request that goes to the shadow.
struct Shadow {
    method: http::Method,
    pq: PathAndQuery,
    headers: http::HeaderMap,
    body: Option<Bytes>,
    /// The Host the shadow service would get as the primary (before the suffix);
    /// `None`: the endpoint's own `host:port`.
    host: Option<HeaderValue>,
}

/// Reads a body to its end, keeping up to `keep` bytes: `Some(Some(bytes))` when it
/// all fit, `Some(None)` when it was larger (or not kept), `None` on a read error.
async fn read_capped(mut body: Body, keep: Option<usize>) -> Option<Option<Bytes>> {
    let mut kept = keep.map(|_| BytesMut::new());
    while let Some(frame) = body.frame().await {
        let frame = frame.ok()?;
        if let (Some(data), Some(buf), Some(cap)) = (frame.data_ref(), kept.as_mut(), keep) {
            if buf.len() + data.len() > cap {
                kept = None;
            } else {
                buf.extend_from_slice(data);
            }
        }
    }
    Some(kept.map(BytesMut::freeze))
}

/// `host-shadow`, keeping any port: `api.example.com:8080` → `api.example.com-shadow:8080`.
fn shadow_host(host: &HeaderValue) -> HeaderValue {
    let text = host.to_str().unwrap_or_default();
    let (name, port) = match text.rsplit_once(':') {
        // An IPv6 literal's colons are inside the brackets.
        Some((h, p)) if !p.contains(']') && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (text, None),
    };
    let value = match port {
        Some(p) => format!("{name}-shadow:{p}"),
        None => format!("{name}-shadow"),
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| host.clone())
}

/// The diff-mode handle of one mirrored request: wraps the primary's response body.
pub(super) struct Compare {
    tx: oneshot::Sender<Captured>,
    names: Arc<[http::HeaderName]>,
    cap: usize,
}

impl Compare {
    /// Wraps the primary's response body in a tee that hands a copy (status,
    /// compared headers, body up to the cap) to the comparison when it ends.
    pub(super) fn tee(self, resp: Response<Body>) -> Response<Body> {
        let (head, body) = resp.into_parts();
        let headers = diff::select_headers(&self.names, &head.headers);
        let tee = Tee::new(body, head.status, headers, self.cap, self.tx);
        Response::from_parts(head, Body::Tee(Box::new(tee)))
    }
}

#[cfg(test)]
mod tests {
    use super::shadow_host;
    use http::HeaderValue;

    #[test]
    fn shadow_hosts() {
        let h = |s| shadow_host(&HeaderValue::from_static(s));
        assert_eq!(h("api.example.com"), "api.example.com-shadow");
        assert_eq!(h("api.example.com:8080"), "api.example.com-shadow:8080");
        assert_eq!(h("10.0.0.1:80"), "10.0.0.1-shadow:80");
        assert_eq!(h("[::1]:80"), "[::1]-shadow:80");
        assert_eq!(h("[::1]"), "[::1]-shadow");
    }
}
