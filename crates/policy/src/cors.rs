//! The `Cors` policy (Fetch standard, "CORS protocol"): preflights (`OPTIONS` with
//! `Origin` and `Access-Control-Request-Method`) are answered here with 204, or
//! refused with 403 when the origin, method or a requested header is not allowed;
//! actual requests from an allowed origin continue and get the CORS response
//! headers, on whatever response goes back (the upstream's or a later policy's
//! 401/429). Requests from other origins continue without them: the browser then
//! withholds the response, as the protocol intends.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method, Response, StatusCode, header};
use meshgate_config as config;
use meshgate_core::body::Body;
use meshgate_core::filter::{Filter, Flow, PolicyEnv, RequestCx};
use meshgate_core::rescue::ProxyError;
use meshgate_core::route::anchored;
use regex::Regex;

/// Compiles the policy.
pub fn compile(c: &config::CorsPolicy, _env: &PolicyEnv<'_>) -> Result<Arc<dyn Filter>, String> {
    Ok(Arc::new(Cors::compile(c)?))
}

/// `https://*.example.com[:port]`, split for matching.
#[derive(Debug)]
struct Wildcard {
    /// `https://`
    scheme: Box<str>,
    /// `.example.com`
    suffix: Box<str>,
    /// `:8443`, or empty for the scheme's default port.
    port: Box<str>,
}

impl Wildcard {
    /// Matches subdomains at any depth; never the bare domain.
    fn matches(&self, origin: &str) -> bool {
        let Some(rest) = strip_prefix_ci(origin, &self.scheme) else {
            return false;
        };
        let host = if self.port.is_empty() {
            rest
        } else {
            match rest.len().checked_sub(self.port.len()) {
                Some(i) if rest.is_char_boundary(i) && rest[i..] == *self.port => &rest[..i],
                _ => return false,
            }
        };
        let Some(sub) = host
            .len()
            .checked_sub(self.suffix.len())
            .filter(|&i| host.is_char_boundary(i) && host[i..].eq_ignore_ascii_case(&self.suffix))
            .map(|i| &host[..i])
        else {
            return false;
        };
        !sub.is_empty()
            && sub
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[derive(Debug)]
pub struct Cors {
    any_origin: bool,
    exact: Vec<Box<str>>,
    wildcards: Vec<Wildcard>,
    regexes: Vec<Regex>,
    credentials: bool,
    any_method: bool,
    methods: Vec<Method>,
    methods_value: Option<HeaderValue>,
    any_header: bool,
    /// Lower-case, as header names compare.
    headers: Vec<HeaderName>,
    headers_value: Option<HeaderValue>,
    expose_value: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
}

static PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);
static ORIGIN: HeaderValue = HeaderValue::from_static("Origin");
static TRUE: HeaderValue = HeaderValue::from_static("true");
static STAR: HeaderValue = HeaderValue::from_static("*");

fn joined(items: &[String]) -> Result<Option<HeaderValue>, String> {
    if items.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_str(&items.join(", "))
        .map(Some)
        .map_err(|e| format!("{items:?}: {e}"))
}

impl Cors {
    pub fn compile(c: &config::CorsPolicy) -> Result<Self, String> {
        let mut cors = Cors {
            any_origin: false,
            exact: Vec::new(),
            wildcards: Vec::new(),
            regexes: Vec::new(),
            credentials: c.allow_credentials,
            any_method: c.allow_methods.iter().any(|m| m == "*"),
            methods: Vec::new(),
            methods_value: None,
            any_header: c.allow_headers.iter().any(|h| h == "*"),
            headers: Vec::new(),
            headers_value: None,
            expose_value: joined(&c.expose_headers)?,
            max_age: c.max_age.map(|d| HeaderValue::from(d.get().as_secs())),
        };
        for o in &c.allow_origins {
            if o == "*" {
                cors.any_origin = true;
            } else if let Some((scheme, rest)) = o.split_once("://*.") {
                let (suffix, port) = match rest.rfind(':') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, ""),
                };
                cors.wildcards.push(Wildcard {
                    scheme: format!("{scheme}://").into(),
                    suffix: format!(".{suffix}").into(),
                    port: port.into(),
                });
            } else {
                cors.exact.push(o.as_str().into());
            }
        }
        for re in &c.allow_origin_regex {
            cors.regexes
                .push(anchored(re).map_err(|e| format!("allowOriginRegex {re:?}: {e}"))?);
        }
        if !cors.any_method {
            cors.methods = c
                .allow_methods
                .iter()
                .map(|m| Method::from_bytes(m.as_bytes()).map_err(|e| format!("method {m:?}: {e}")))
                .collect::<Result<_, _>>()?;
            cors.methods_value = joined(&c.allow_methods)?;
        }
        if !cors.any_header {
            cors.headers = c
                .allow_headers
                .iter()
                .map(|h| {
                    HeaderName::from_bytes(h.as_bytes()).map_err(|e| format!("header {h:?}: {e}"))
                })
                .collect::<Result<_, _>>()?;
            cors.headers_value = joined(&c.allow_headers)?;
        }
        Ok(cors)
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.any_origin
            || self.exact.iter().any(|o| o.eq_ignore_ascii_case(origin))
            || self.wildcards.iter().any(|w| w.matches(origin))
            || self.regexes.iter().any(|r| r.is_match(origin))
    }

    /// `*` only when every origin is allowed and no credentials are involved;
    /// otherwise the request's origin, echoed.
    fn allow_origin_value(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin && !self.credentials {
            STAR.clone()
        } else {
            origin.clone()
        }
    }

    /// Whether the answer depends on the request's origin (then caches must know).
    fn varies(&self) -> bool {
        !self.any_origin || self.credentials
    }

    fn preflight(
        &self,
        req: &http::request::Parts,
        origin: &HeaderValue,
        cx: &mut RequestCx<'_>,
    ) -> Flow {
        let origin_str = origin.to_str().unwrap_or_default();
        if !self.origin_allowed(origin_str) {
            cx.note(|| format!("preflight from origin {origin_str} which is not allowed"));
            return Flow::Reject(ProxyError::CorsDenied);
        }
        let Some(asked) = req.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD) else {
            return Flow::Reject(ProxyError::CorsDenied);
        };
        let method = Method::from_bytes(asked.as_bytes()).ok();
        // GET, HEAD and POST are CORS-safelisted: browsers allow them whatever the
        // preflight answer says, so refusing them here would only confuse.
        let method_ok = method.as_ref().is_some_and(|m| {
            self.any_method
                || self.methods.contains(m)
                || matches!(*m, Method::GET | Method::HEAD | Method::POST)
        });
        if !method_ok {
            cx.note(|| {
                format!(
                    "preflight for method {} which is not allowed",
                    String::from_utf8_lossy(asked.as_bytes())
                )
            });
            return Flow::Reject(ProxyError::CorsDenied);
        }
        let asked_headers = req.headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS);
        if !self.any_header
            && let Some(list) = asked_headers
        {
            let refused = String::from_utf8_lossy(list.as_bytes())
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .find(|h| {
                    !self
                        .headers
                        .iter()
                        .any(|a| a.as_str().eq_ignore_ascii_case(h))
                })
                .map(str::to_owned);
            if let Some(h) = refused {
                cx.note(|| format!("preflight for header {h} which is not allowed"));
                return Flow::Reject(ProxyError::CorsDenied);
            }
        }
        let mut resp = Response::new(Body::Empty);
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin_value(origin),
        );
        if self.credentials {
            h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
        }
        let methods = if self.any_method {
            Some(asked.clone())
        } else {
            self.methods_value.clone()
        };
        if let Some(v) = methods {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        let headers = if self.any_header {
            asked_headers.cloned()
        } else {
            self.headers_value.clone()
        };
        if let Some(v) = headers {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        if let Some(v) = &self.max_age {
            h.insert(header::ACCESS_CONTROL_MAX_AGE, v.clone());
        }
        h.insert(header::VARY, PREFLIGHT_VARY.clone());
        cx.note(|| {
            format!(
                "preflight from {origin_str} for {} answered",
                String::from_utf8_lossy(asked.as_bytes())
            )
        });
        Flow::Respond(resp)
    }
}

impl Filter for Cors {
    fn name(&self) -> &'static str {
        "Cors"
    }

    fn on_request(&self, req: &mut http::request::Parts, cx: &mut RequestCx<'_>) -> Flow {
        let Some(origin) = req.headers.get(header::ORIGIN) else {
            // Not a CORS request. When the answer would depend on the origin, caches
            // must still not serve this response to a cross-origin request.
            if self.varies() {
                cx.response_headers.push((header::VARY, ORIGIN.clone()));
            }
            return Flow::Continue;
        };
        let origin = origin.clone();
        if req.method == Method::OPTIONS
            && req
                .headers
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return self.preflight(req, &origin, cx);
        }
        if self.varies() {
            cx.response_headers.push((header::VARY, ORIGIN.clone()));
        }
        let origin_str = origin.to_str().unwrap_or_default();
        if !self.origin_allowed(origin_str) {
            cx.note(|| format!("origin {origin_str} is not allowed: no CORS headers (the browser will withhold the response)"));
            return Flow::Continue;
        }
        cx.response_headers.push((
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin_value(&origin),
        ));
        if self.credentials {
            cx.response_headers
                .push((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone()));
        }
        if let Some(v) = &self.expose_value {
            cx.response_headers
                .push((header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone()));
        }
        cx.note(|| format!("origin {origin_str} allowed"));
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(pattern: &str) -> Wildcard {
        let c = config::CorsPolicy {
            allow_origins: vec![pattern.into()],
            ..Default::default()
        };
        Cors::compile(&c).unwrap().wildcards.remove(0)
    }

    #[test]
    fn wildcards_match_subdomains_at_any_depth() {
        let any = w("https://*.example.com");
        for ok in [
            "https://a.example.com",
            "https://a.b.example.com",
            "HTTPS://A.Example.COM",
        ] {
            assert!(any.matches(ok), "{ok}");
        }
        for no in [
            "https://example.com",
            "https://.example.com",
            "https://evil-example.com",
            "https://a.example.com.evil.net",
            "http://a.example.com",
            "https://a.example.com:8443",
            "https://a..example.com",
            "https://a/b.example.com",
        ] {
            assert!(!any.matches(no), "{no}");
        }
        let port = w("https://*.example.com:8443");
        assert!(port.matches("https://a.example.com:8443"));
        assert!(!port.matches("https://a.example.com"));
        assert!(!port.matches("https://a.example.com:443"));
    }
}
