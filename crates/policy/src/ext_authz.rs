//! The `ExtAuthz` policy: an external HTTP service decides, in the style of
//! Envoy's HTTP ext_authz. The service gets the original method, its own path
//! prefix followed by the original path and query, the allowed request headers and
//! `x-forwarded-*` facts, never the body. 2xx allows (copying `headersToUpstream`
//! onto the request); any other status is the answer the client gets, body and
//! all; no answer in time applies `failureMode`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body_util::Full;
use meshgate_config as config;
use meshgate_core::body::Body;
use meshgate_core::filter::{Consumer, Filter, Flow, FlowFuture, PolicyEnv, RequestCx};
use meshgate_core::rescue::ProxyError;

use crate::http_client::{Fetched, HttpClient, parse_url};
use crate::identity::header_name;

/// Largest answer read from the service: a deny body is passed to the client, and
/// nothing bigger belongs in one.
const MAX_ANSWER: usize = 64 * 1024;

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A compiled `ExtAuthz` policy.
#[derive(Debug)]
pub struct ExtAuthz {
    /// `http://host:port` of the service, as sent in the request target.
    origin: String,
    /// The URL's path without its trailing `/`, put before the original path.
    prefix: String,
    timeout: Duration,
    fail_open: bool,
    allowed: Vec<HeaderName>,
    to_upstream: Vec<HeaderName>,
    to_client: Vec<HeaderName>,
    consumer_from: Option<HeaderName>,
    groups_from: Option<HeaderName>,
    client: HttpClient,
}

/// Compiles the policy.
pub fn compile(
    c: &config::ExtAuthzPolicy,
    _env: &PolicyEnv<'_>,
) -> Result<Arc<dyn Filter>, String> {
    Ok(Arc::new(ExtAuthz::compile(c)?))
}

fn names(list: &[String]) -> Result<Vec<HeaderName>, String> {
    list.iter().map(|n| header_name(n)).collect()
}

impl ExtAuthz {
    pub fn compile(c: &config::ExtAuthzPolicy) -> Result<Self, String> {
        let uri = parse_url(&c.url).map_err(|e| e.to_string())?;
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let mut to_client = names(&c.headers_to_client)?;
        if !to_client.contains(&http::header::CONTENT_TYPE) {
            // The body is passed through; its type goes with it.
            to_client.push(http::header::CONTENT_TYPE);
        }
        Ok(ExtAuthz {
            origin: format!("http://{authority}"),
            prefix: uri.path().trim_end_matches('/').to_owned(),
            timeout: c.timeout.get(),
            fail_open: c.failure_mode == config::FailureMode::Open,
            allowed: names(&c.allowed_headers)?,
            to_upstream: names(&c.headers_to_upstream)?,
            to_client,
            consumer_from: c.consumer_from.as_deref().map(header_name).transpose()?,
            groups_from: c.groups_from.as_deref().map(header_name).transpose()?,
            client: HttpClient::new(MAX_ANSWER),
        })
    }

    /// The check request for the original request `req`.
    fn check_request(
        &self,
        req: &http::request::Parts,
        cx: &RequestCx<'_>,
    ) -> Result<Request<Full<Bytes>>, String> {
        let original = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let target = format!("{}{}{original}", self.origin, self.prefix);
        let mut check = Request::builder()
            .method(req.method.clone())
            .uri(target)
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("check request: {e}"))?;
        let headers = check.headers_mut();
        for name in &self.allowed {
            for v in req.headers.get_all(name) {
                headers.append(name.clone(), v.clone());
            }
        }
        let facts = [
            (
                &X_FORWARDED_METHOD,
                HeaderValue::from_str(req.method.as_str()),
            ),
            (&X_FORWARDED_URI, HeaderValue::from_str(original)),
            (&X_FORWARDED_HOST, HeaderValue::from_str(cx.authority)),
            (&X_FORWARDED_PROTO, Ok(HeaderValue::from_static(cx.scheme))),
            (
                &X_FORWARDED_FOR,
                HeaderValue::from_str(&forwarded_for(req, cx)),
            ),
            (&X_REQUEST_ID, HeaderValue::from_str(cx.request_id)),
        ];
        for (name, value) in facts {
            if let Ok(v) = value {
                headers.insert(name.clone(), v);
            }
        }
        Ok(check)
    }

    /// Applies an allowing answer to the request.
    fn allow(&self, answer: &Fetched, req: &mut http::request::Parts, cx: &mut RequestCx<'_>) {
        copy(&answer.headers, &mut req.headers, &self.to_upstream);
        let consumer = self
            .consumer_from
            .as_ref()
            .and_then(|h| answer.headers.get(h)?.to_str().ok())
            .filter(|n| !n.is_empty())
            .map(|name| {
                let groups = self
                    .groups_from
                    .as_ref()
                    .and_then(|h| answer.headers.get(h)?.to_str().ok())
                    .map(split_groups)
                    .unwrap_or_default();
                Arc::new(Consumer {
                    name: name.into(),
                    groups,
                    claims: None,
                })
            });
        let status = answer.status.as_u16();
        match consumer {
            Some(c) => {
                cx.note(|| format!("allowed by the service ({status}), consumer {}", c.name));
                cx.consumer = Some(c);
            }
            None => cx.note(|| format!("allowed by the service ({status})")),
        }
    }

    /// The client's answer for a refusing service answer: its status, body and
    /// `headersToClient`.
    fn deny(&self, answer: Fetched, cx: &mut RequestCx<'_>) -> Flow {
        let status = answer.status;
        cx.note(|| format!("denied by the service ({})", status.as_u16()));
        let mut resp = Response::new(Body::full(answer.body));
        *resp.status_mut() = status;
        copy(&answer.headers, resp.headers_mut(), &self.to_client);
        Flow::Respond(resp)
    }

    /// The service could not answer: `failureMode` decides.
    fn unavailable(&self, why: String, cx: &mut RequestCx<'_>) -> Flow {
        tracing::debug!(service = %self.origin, "ext_authz unavailable: {why}");
        if self.fail_open {
            cx.note(|| format!("service unavailable ({why}); failureMode open: let through"));
            Flow::Continue
        } else {
            cx.note(|| format!("service unavailable ({why}); failureMode closed"));
            Flow::Reject(ProxyError::AuthzUnavailable)
        }
    }
}

impl Filter for ExtAuthz {
    fn name(&self) -> &'static str {
        "ExtAuthz"
    }

    fn on_request(&self, req: &mut http::request::Parts, _cx: &mut RequestCx<'_>) -> Flow {
        // Whatever the service says, the client's own copies never go upstream.
        for name in &self.to_upstream {
            req.headers.remove(name);
        }
        Flow::Defer
    }

    fn on_request_async<'a>(
        &'a self,
        req: &'a mut http::request::Parts,
        cx: &'a mut RequestCx<'_>,
    ) -> FlowFuture<'a> {
        Box::pin(async move {
            let check = match self.check_request(req, cx) {
                Ok(c) => c,
                Err(e) => return self.unavailable(e, cx),
            };
            match self.client.send(check, self.timeout).await {
                Ok(answer) if answer.status.is_success() => {
                    self.allow(&answer, req, cx);
                    Flow::Continue
                }
                Ok(answer) => self.deny(answer, cx),
                Err(e) => self.unavailable(e.to_string(), cx),
            }
        })
    }
}

/// `x-forwarded-for` as the upstream will see it: the client's list, then the peer.
fn forwarded_for(req: &http::request::Parts, cx: &RequestCx<'_>) -> String {
    let mut xff = String::new();
    for prev in req
        .headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        xff.push_str(prev);
        xff.push_str(", ");
    }
    xff.push_str(&cx.client.to_canonical().to_string());
    xff
}

fn copy(from: &HeaderMap, to: &mut HeaderMap, names: &[HeaderName]) {
    for name in names {
        for v in from.get_all(name) {
            to.append(name.clone(), v.clone());
        }
    }
}

fn split_groups(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(String::from)
        .collect()
}
