//! RequestRedirect: answer 3xx with a Location built from the request and the rule.

use http::{HeaderValue, Response, StatusCode, header};
use meshgate_config as config;

use super::{Filter, Flow, RequestCx, modify_path};
use crate::body::Body;

#[derive(Debug)]
pub struct Redirect {
    scheme: Option<String>,
    hostname: Option<String>,
    port: Option<u16>,
    path: Option<config::PathModifier>,
    status: StatusCode,
}

impl Redirect {
    pub fn compile(r: &config::RequestRedirect) -> Result<Self, String> {
        let status = match r.status_code {
            301 | 302 | 303 | 307 | 308 => {
                StatusCode::from_u16(r.status_code).map_err(|e| e.to_string())?
            }
            other => {
                return Err(format!(
                    "redirect status {other} is not 301, 302, 303, 307 or 308"
                ));
            }
        };
        Ok(Redirect {
            scheme: r.scheme.clone(),
            hostname: r.hostname.clone(),
            port: r.port,
            path: r.path.clone(),
            status,
        })
    }

    fn location(&self, req: &http::request::Parts, cx: &RequestCx<'_>) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(cx.scheme);
        let (req_host, _) = split_port(cx.authority);
        let host = self.hostname.as_deref().unwrap_or(req_host);
        // Gateway API: an explicit port wins; with a scheme set, that scheme's
        // well-known port; otherwise the listener's port.
        let port = match (self.port, &self.scheme) {
            (Some(p), _) => Some(p),
            (None, Some(_)) => None,
            (None, None) => Some(cx.listener_port),
        };
        let default = if scheme == "https" { 443 } else { 80 };
        let path = match &self.path {
            Some(m) => modify_path(m, req.uri.path(), cx.matched_prefix_len),
            None => req.uri.path().to_owned(),
        };
        let mut loc = format!("{scheme}://{host}");
        if let Some(p) = port.filter(|p| *p != default) {
            loc.push_str(&format!(":{p}"));
        }
        loc.push_str(&path);
        if let Some(q) = req.uri.query() {
            loc.push('?');
            loc.push_str(q);
        }
        loc
    }
}

fn split_port(authority: &str) -> (&str, Option<u16>) {
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(']') => (h, p.parse().ok()),
        _ => (authority, None),
    }
}

impl Filter for Redirect {
    fn name(&self) -> &'static str {
        "RequestRedirect"
    }
    fn on_request(&self, req: &mut http::request::Parts, cx: &mut RequestCx<'_>) -> Flow {
        let mut resp = Response::new(Body::Empty);
        *resp.status_mut() = self.status;
        if let Ok(v) = HeaderValue::from_str(&self.location(req, cx)) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Flow::Respond(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_port_handles_ipv6_and_plain_hosts() {
        assert_eq!(split_port("example.com:8080"), ("example.com", Some(8080)));
        assert_eq!(split_port("example.com"), ("example.com", None));
        assert_eq!(split_port("[::1]:80"), ("[::1]", Some(80)));
        assert_eq!(split_port("[::1]"), ("[::1]", None));
    }
}
