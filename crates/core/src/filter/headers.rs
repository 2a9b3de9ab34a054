//! RequestHeaderModifier and ResponseHeaderModifier: set, add, remove.

use http::{HeaderMap, HeaderName, HeaderValue};
use meshgate_config as config;

use super::{Filter, Flow, RequestCx, header_pair};

/// Header edits with names and values parsed once.
#[derive(Debug)]
pub struct Edits {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl Edits {
    pub fn compile(m: &config::HeaderModifier) -> Result<Self, String> {
        Ok(Edits {
            set: m.set.iter().map(header_pair).collect::<Result<_, _>>()?,
            add: m.add.iter().map(header_pair).collect::<Result<_, _>>()?,
            remove: m
                .remove
                .iter()
                .map(|n| {
                    HeaderName::from_bytes(n.as_bytes())
                        .map_err(|e| format!("header name {n:?}: {e}"))
                })
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            headers.append(n.clone(), v.clone());
        }
        for n in &self.remove {
            headers.remove(n);
        }
    }
}

#[derive(Debug)]
pub struct RequestHeaders(pub Edits);

impl Filter for RequestHeaders {
    fn name(&self) -> &'static str {
        "RequestHeaderModifier"
    }
    fn on_request(&self, req: &mut http::request::Parts, _: &mut RequestCx<'_>) -> Flow {
        self.0.apply(&mut req.headers);
        Flow::Continue
    }
}

#[derive(Debug)]
pub struct ResponseHeaders(pub Edits);

impl Filter for ResponseHeaders {
    fn name(&self) -> &'static str {
        "ResponseHeaderModifier"
    }
    fn on_response(&self, resp: &mut http::response::Parts, _: &RequestCx<'_>) {
        self.0.apply(&mut resp.headers);
    }
}
