//! Everything that happens to a request before it is forwarded: the listener's
//! policies, the route lookup, the route's policies and filters, and the choice of
//! backend service. `handle` forwards what this decides; `explain` reports it.

use std::sync::Arc;

use http::Response;

use crate::body::Body;
use crate::filter::{Flow, RequestCx};
use crate::rescue::ProxyError;
use crate::route::{RequestView, Route};
use crate::snapshot::Snapshot;
use crate::upstream::Upstream;

/// What to do with a request that passed (or was answered by) the pipeline.
#[derive(Debug)]
pub enum Decision<'s> {
    /// A filter or policy answered (redirect, direct response, CORS preflight…).
    Respond(Response<Body>),
    /// Send it to this service.
    Forward(&'s Arc<Upstream>),
}

/// Runs the pipeline of listener `listener` over the request. `matched` is set as
/// soon as a route matches, so callers know the route even when a later step fails.
pub async fn decide<'s>(
    snapshot: &'s Snapshot,
    listener: &str,
    parts: &mut http::request::Parts,
    cx: &mut RequestCx<'_>,
    matched: &mut Option<&'s Route>,
) -> Result<Decision<'s>, ProxyError> {
    // Mesh authorization of the verified caller, then the listener's policies:
    // every request, before routing.
    snapshot.mesh_authz.check_request(listener, parts, cx)?;
    if let Some(policies) = snapshot.listener_policies(listener)
        && let Some(answer) = settle(policies.on_request(parts, cx).await)?
    {
        return Ok(Decision::Respond(answer));
    }
    let table = snapshot.table(listener).ok_or(ProxyError::NoRoute)?;
    let host = super::normalise_host(cx.authority);
    let view = RequestView {
        host: &host,
        path: parts.uri.path(),
        query: parts.uri.query(),
        method: &parts.method,
        headers: &parts.headers,
    };
    if let Some(explain) = cx.explain.as_mut() {
        explain.routes = table.explain(&view);
    }
    let rule = table.find(&view).ok_or(ProxyError::NoRoute)?;
    let route: &'s Route = &rule.route;
    *matched = Some(route);
    cx.route = Some(route.name.clone());
    cx.matched_prefix_len = rule.matched_prefix_len();
    if let Some(answer) = settle(route.filters.on_request(parts, cx).await)? {
        return Ok(Decision::Respond(answer));
    }
    let upstream = route
        .backends
        .pick(&parts.headers, cx.client)
        .ok_or(ProxyError::NoBackend)?;
    Ok(Decision::Forward(upstream))
}

/// A chain's verdict as "go on" (`None`), an answer, or an error.
fn settle(flow: Flow) -> Result<Option<Response<Body>>, ProxyError> {
    match flow {
        Flow::Continue => Ok(None),
        Flow::Respond(resp) => Ok(Some(resp)),
        Flow::Reject(err) => Err(err),
        // The chain awaits deferred filters; one that defers again decided nothing,
        // and a policy that cannot decide must not let the request through.
        Flow::Defer => Err(ProxyError::Forbidden),
    }
}
