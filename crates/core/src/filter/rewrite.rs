//! URLRewrite: change the Host and/or path sent upstream.

use http::HeaderValue;
use meshgate_config as config;

use super::{Filter, Flow, RequestCx, modify_path};

#[derive(Debug)]
pub struct Rewrite {
    hostname: Option<HeaderValue>,
    path: Option<config::PathModifier>,
}

impl Rewrite {
    pub fn compile(r: &config::UrlRewrite) -> Result<Self, String> {
        let hostname = match &r.hostname {
            Some(h) => Some(HeaderValue::from_str(h).map_err(|e| format!("hostname {h:?}: {e}"))?),
            None => None,
        };
        Ok(Rewrite {
            hostname,
            path: r.path.clone(),
        })
    }
}

impl Filter for Rewrite {
    fn name(&self) -> &'static str {
        "URLRewrite"
    }
    fn on_request(&self, req: &mut http::request::Parts, cx: &mut RequestCx<'_>) -> Flow {
        if let Some(h) = &self.hostname {
            cx.host_override = Some(h.clone());
        }
        if let Some(m) = &self.path {
            let new_path = modify_path(m, req.uri.path(), cx.matched_prefix_len);
            let pq = match req.uri.query() {
                Some(q) => format!("{new_path}?{q}"),
                None => new_path,
            };
            super::set_path_and_query(req, pq);
        }
        Flow::Continue
    }
}
