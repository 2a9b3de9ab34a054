//! The `Filter` trait every policy implements, and the built-in Gateway API filters.
//! A route's filters run in declared order: `on_request` before forwarding (any may
//! answer instead, ending the chain), `on_response` on the way back.

mod chain;
mod compiler;
mod direct;
mod explain;
mod headers;
mod redirect;
mod rewrite;

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Response};
use meshgate_config as config;

use crate::body::Body;

pub use chain::{FilterChain, Step};
pub use compiler::{NoPolicies, PolicyCompiler, PolicyEnv, PolicySet, compile_policies};
pub use explain::{Explain, ExplainStep, RouteCheck};

/// What a request filter decided.
#[derive(Debug)]
pub enum Flow {
    /// Go on to the next filter, then upstream.
    Continue,
    /// Answer with this response; later filters and the upstream are skipped.
    Respond(Response<Body>),
    /// Refuse the request; the rescue path answers and logs the reason.
    Reject(crate::rescue::ProxyError),
    /// The answer needs I/O (a JWKS fetch, Redis, an authorization service): the
    /// chain awaits `Filter::on_request_async`. Returned only off the fast path, so
    /// requests that need no I/O never allocate a future.
    Defer,
}

/// A future a deferred filter returns.
pub type FlowFuture<'a> = std::pin::Pin<Box<dyn Future<Output = Flow> + Send + 'a>>;

/// Who the caller is, once an authentication policy has said so.
#[derive(Debug, Clone, Default)]
pub struct Consumer {
    pub name: Arc<str>,
    pub groups: Vec<String>,
    /// Token claims (JWT, OIDC ID token), for authorization rules on claims.
    pub claims: Option<serde_json::Value>,
}

/// Facts about the request that filters read and may refine.
#[derive(Debug)]
pub struct RequestCx<'a> {
    pub request_id: &'a str,
    /// `http` or `https`, as the client connected.
    pub scheme: &'static str,
    /// The client's Host (or `:authority`) as sent, port included.
    pub authority: &'a str,
    /// Port of the listener the request came in on.
    pub listener_port: u16,
    /// Name of the matched route, once routing has run (listener policies run before).
    pub route: Option<Arc<str>>,
    /// Bytes of the path matched by the route's `PathPrefix`, if that is how it matched.
    pub matched_prefix_len: Option<usize>,
    /// Host to send upstream instead of the client's (set by `URLRewrite`).
    pub host_override: Option<http::HeaderValue>,
    /// The client's address (the TCP peer).
    pub client: std::net::IpAddr,
    /// The client certificate the listener verified (mTLS at the edge), if any.
    pub client_cert: Option<&'a crate::server::tls::ClientCert>,
    /// Who the caller is, once an authentication policy has said so.
    pub consumer: Option<Arc<Consumer>>,
    /// Headers added to whatever response goes back (upstream's or the gateway's
    /// own): CORS, `RateLimit-*`, `Retry-After`, challenges.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// Present when the request asked for an explanation (`explain`).
    pub explain: Option<Box<Explain>>,
    /// Cap for a request body that has no `content-length` (HTTP/2, chunked): it is
    /// read up to this many bytes before forwarding and refused with 413 beyond.
    pub unsized_body_limit: Option<u64>,
}

impl<'a> RequestCx<'a> {
    /// A context for a request from `client` with the given request id and authority.
    pub fn new(
        request_id: &'a str,
        scheme: &'static str,
        authority: &'a str,
        listener_port: u16,
        client: std::net::IpAddr,
    ) -> Self {
        RequestCx {
            request_id,
            scheme,
            authority,
            listener_port,
            route: None,
            matched_prefix_len: None,
            host_override: None,
            client,
            client_cert: None,
            consumer: None,
            response_headers: Vec::new(),
            explain: None,
            unsized_body_limit: None,
        }
    }

    /// Records why the current filter decided as it did, for `explain`. The text is
    /// built only when someone asked for an explanation.
    pub fn note(&mut self, detail: impl FnOnce() -> String) {
        if let Some(e) = self.explain.as_mut() {
            e.pending = Some(detail());
        }
    }
}

/// One policy step of a route.
pub trait Filter: Send + Sync + std::fmt::Debug {
    /// The kind, for logs and `explain` (`ApiKey`, `RequestHeaderModifier`…).
    fn name(&self) -> &'static str;
    fn on_request(&self, _req: &mut http::request::Parts, _cx: &mut RequestCx<'_>) -> Flow {
        Flow::Continue
    }
    /// Called when `on_request` returned `Flow::Defer`.
    fn on_request_async<'a>(
        &'a self,
        _req: &'a mut http::request::Parts,
        _cx: &'a mut RequestCx<'_>,
    ) -> FlowFuture<'a> {
        Box::pin(std::future::ready(Flow::Continue))
    }
    fn on_response(&self, _resp: &mut http::response::Parts, _cx: &RequestCx<'_>) {}
}

/// Builds a route's chain. Validation has already checked the settings; anything
/// that still cannot compile is reported, never panicked on.
pub fn compile(filters: &[config::Filter]) -> Result<FilterChain, String> {
    let mut chain = FilterChain::default();
    for (i, f) in filters.iter().enumerate() {
        let missing = || {
            format!(
                "filters[{i}].{}: required when type is {:?}",
                f.kind.field(),
                f.kind
            )
        };
        match f.kind {
            config::FilterType::RequestHeaderModifier => {
                let m = f.request_header_modifier.as_ref().ok_or_else(missing)?;
                chain.push_request(Arc::new(headers::RequestHeaders(headers::Edits::compile(
                    m,
                )?)));
            }
            config::FilterType::ResponseHeaderModifier => {
                let m = f.response_header_modifier.as_ref().ok_or_else(missing)?;
                chain
                    .response
                    .push(Arc::new(headers::ResponseHeaders(headers::Edits::compile(
                        m,
                    )?)));
            }
            config::FilterType::RequestRedirect => {
                let r = f.request_redirect.as_ref().ok_or_else(missing)?;
                chain.push_request(Arc::new(redirect::Redirect::compile(r)?));
            }
            config::FilterType::URLRewrite => {
                let r = f.url_rewrite.as_ref().ok_or_else(missing)?;
                chain.push_request(Arc::new(rewrite::Rewrite::compile(r)?));
            }
            config::FilterType::DirectResponse => {
                let d = f.direct_response.as_ref().ok_or_else(missing)?;
                chain.push_request(Arc::new(direct::Direct::compile(d)?));
            }
        }
    }
    Ok(chain)
}

/// Replaces the request's path and query (`pq`, e.g. `/a/b?x=1`); an invalid one
/// leaves the URI as it was.
pub fn set_path_and_query(req: &mut http::request::Parts, pq: String) {
    if let Ok(pq) = http::uri::PathAndQuery::try_from(pq) {
        let mut parts = std::mem::take(&mut req.uri).into_parts();
        parts.path_and_query = Some(pq);
        // Only the path and query changed, so rebuilding cannot fail.
        req.uri = http::Uri::from_parts(parts).unwrap_or_default();
    }
}

/// A configured header name and value, parsed once at compile time.
pub(crate) fn header_pair(
    h: &config::HeaderValue,
) -> Result<(http::HeaderName, http::HeaderValue), String> {
    let name = http::HeaderName::from_bytes(h.name.as_bytes())
        .map_err(|e| format!("header name {:?}: {e}", h.name))?;
    let value = http::HeaderValue::from_str(&h.value)
        .map_err(|e| format!("header value {:?}: {e}", h.value))?;
    Ok((name, value))
}

/// Applies a `PathModifier` to `path`; shared by redirects and rewrites.
pub(crate) fn modify_path(
    m: &config::PathModifier,
    path: &str,
    matched_prefix_len: Option<usize>,
) -> String {
    match m.kind {
        config::PathModifierType::ReplaceFullPath => {
            m.replace_full_path.clone().unwrap_or_else(|| "/".into())
        }
        config::PathModifierType::ReplacePrefixMatch => {
            let replacement = m.replace_prefix_match.as_deref().unwrap_or("/");
            let rest = &path[matched_prefix_len.unwrap_or(0).min(path.len())..];
            let joined = format!("{}{}", replacement.trim_end_matches('/'), rest);
            if joined.is_empty() {
                "/".into()
            } else {
                joined
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(to: &str) -> config::PathModifier {
        config::PathModifier {
            kind: config::PathModifierType::ReplacePrefixMatch,
            replace_full_path: None,
            replace_prefix_match: Some(to.into()),
        }
    }

    #[test]
    fn replace_prefix_match_follows_gateway_api() {
        assert_eq!(
            modify_path(&prefix("/xyz"), "/foo/bar", Some(4)),
            "/xyz/bar"
        );
        assert_eq!(
            modify_path(&prefix("/xyz/"), "/foo/bar", Some(4)),
            "/xyz/bar"
        );
        assert_eq!(modify_path(&prefix("/"), "/foo/bar", Some(4)), "/bar");
        assert_eq!(modify_path(&prefix("/"), "/foo", Some(4)), "/");
        assert_eq!(modify_path(&prefix("/xyz"), "/foo", Some(4)), "/xyz");
        assert_eq!(
            modify_path(&prefix("/v2"), "/anything", Some(0)),
            "/v2/anything"
        );
    }
}
