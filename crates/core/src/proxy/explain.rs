//! `explain`: the same pipeline a request goes through, reported step by step.
//! Offline for `meshgate explain` (nothing is forwarded), or live for a request
//! carrying `x-meshgate-explain: <admin token>` when `admin.liveExplain` is on.

use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::decide::{Decision, decide};
use crate::filter::{Explain, RequestCx};
use crate::snapshot::Snapshot;
use meshgate_observe::access_log::AccessRecord;

/// Request and response header of live explanations.
pub static X_MESHGATE_EXPLAIN: HeaderName = HeaderName::from_static("x-meshgate-explain");

/// Whether the request asked for (and may have) its trace; the header never goes upstream.
pub(super) fn requested(snapshot: &Snapshot, headers: &mut HeaderMap) -> bool {
    let Some(token) = snapshot.explain_token.as_deref() else {
        return false;
    };
    let Some(presented) = headers.remove(&X_MESHGATE_EXPLAIN) else {
        return false;
    };
    aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), token).is_ok()
}

/// Puts the trace on the response, one line.
pub(super) fn attach(trace: &Explain, headers: &mut HeaderMap) {
    // from_bytes accepts UTF-8 (obs-text); only control characters could fail.
    if let Ok(v) = HeaderValue::from_bytes(trace.one_line().as_bytes()) {
        headers.insert(X_MESHGATE_EXPLAIN.clone(), v);
    }
}

/// Completes a live trace from what the request path recorded.
pub(super) fn finish_live(trace: &mut Explain, record: &AccessRecord) {
    trace.consumer = record.consumer.as_deref().map(str::to_owned);
    trace.outcome = Some(match (record.reason, &record.service) {
        (Some(reason), _) => format!("refused: {} {reason}", record.status),
        (None, Some(service)) => format!(
            "forwarded to service {service} ({}): {}",
            record.upstream.as_deref().unwrap_or("no endpoint"),
            record.status
        ),
        (None, None) => format!("answered by the gateway: {}", record.status),
    });
}

/// Runs listener `listener`'s pipeline over `parts` as if it came from `client`,
/// without forwarding, and reports every step and where the request would go.
pub async fn explain_request(
    snapshot: &Snapshot,
    listener: &str,
    client: SocketAddr,
    mut parts: http::request::Parts,
) -> Explain {
    let scheme = if parts.uri.scheme_str() == Some("https") {
        "https"
    } else {
        "http"
    };
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            let host = parts.headers.get(http::header::HOST)?;
            host.to_str().ok().map(str::to_owned)
        })
        .unwrap_or_default();
    let port = parts
        .uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let mut cx = RequestCx::new("explain", scheme, &authority, port, client.ip());
    cx.explain = Some(Box::default());
    let mut matched = None;
    let outcome = match decide(snapshot, listener, &mut parts, &mut cx, &mut matched).await {
        Ok(Decision::Forward(up)) => {
            let endpoints: Vec<&str> = up.endpoints.iter().map(|e| &*e.address).collect();
            format!("forward to service {} ({})", up.name, endpoints.join(", "))
        }
        Ok(Decision::Respond(resp)) => format!("answered by the gateway: {}", resp.status()),
        Err(e) => format!("refused: {} {}", e.status().as_u16(), e.reason()),
    };
    let mut trace = *cx.explain.take().unwrap_or_default();
    if let Some(c) = &cx.consumer {
        trace.consumer = Some(c.name.to_string());
    }
    trace.outcome = Some(outcome);
    trace
}
