//! The `RequestLimits` policy: caps on URI (414), header (431) and body (413)
//! sizes, checked before anything is forwarded.

use meshgate_config as config;
use meshgate_core::filter::{Filter, Flow, RequestCx};
use meshgate_core::rescue::ProxyError;

#[derive(Debug)]
pub struct RequestLimits(pub config::RequestLimitsPolicy);

impl Filter for RequestLimits {
    fn name(&self) -> &'static str {
        "RequestLimits"
    }
    fn on_request(&self, req: &mut http::request::Parts, cx: &mut RequestCx<'_>) -> Flow {
        let l = &self.0;
        if let Some(max) = l.max_uri_bytes {
            let len = req.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
            if len > max as usize {
                cx.note(|| format!("URI is {len} bytes, more than {max}"));
                return Flow::Reject(ProxyError::UriTooLong);
            }
        }
        if let Some(max) = l.max_header_bytes {
            let total: usize = req
                .headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len())
                .sum();
            if total > max as usize {
                cx.note(|| format!("headers are {total} bytes, more than {max}"));
                return Flow::Reject(ProxyError::HeadersTooLarge);
            }
        }
        if let Some(max) = l.max_body_bytes {
            let length = req
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            match length {
                Some(n) if n > max => {
                    cx.note(|| format!("content-length {n} is more than {max}"));
                    return Flow::Reject(ProxyError::BodyTooLarge);
                }
                // No length to check up front: the body is read up to the cap
                // before anything is forwarded, and refused once it goes past it.
                None => cx.unsized_body_limit = Some(max),
                Some(_) => {}
            }
        }
        cx.note(|| "within limits".into());
        Flow::Continue
    }
}
