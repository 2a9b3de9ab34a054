//! Custom bodies for gateway-generated errors (`errorResponses`), compiled once:
//! the template is split into literal text and variables, so rendering is a
//! concatenation with per-content-type escaping, never a re-parse.

use http::{HeaderValue, Response, StatusCode, header};
use meshgate_config::{self as config, TemplatePart, TemplateVar};

use crate::body::Body;
use crate::rescue::{ErrorFacts, ProxyError};

/// Compiled `errorResponses` of one scope (a route, or the whole config).
#[derive(Debug, Default)]
pub struct ErrorPages(Vec<Page>);

#[derive(Debug)]
pub(crate) struct Page {
    statuses: Vec<u16>,
    content_type: HeaderValue,
    escape: Escape,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, Copy)]
enum Escape {
    Json,
    Html,
    None,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Var(TemplateVar),
}

impl ErrorPages {
    pub fn compile(list: &[config::ErrorResponse]) -> Result<Self, String> {
        list.iter()
            .enumerate()
            .map(|(i, e)| Page::compile(e).map_err(|m| format!("errorResponses[{i}]: {m}")))
            .collect::<Result<_, _>>()
            .map(ErrorPages)
    }

    pub(crate) fn find(&self, status: StatusCode) -> Option<&Page> {
        self.0
            .iter()
            .find(|p| p.statuses.is_empty() || p.statuses.contains(&status.as_u16()))
    }
}

impl Page {
    fn compile(e: &config::ErrorResponse) -> Result<Self, String> {
        let content_type = HeaderValue::from_str(&e.content_type)
            .map_err(|_| format!("contentType {:?} is not a header value", e.content_type))?;
        let lower = e.content_type.to_ascii_lowercase();
        let escape = if lower.contains("json") {
            Escape::Json
        } else if lower.contains("html") {
            Escape::Html
        } else {
            Escape::None
        };
        Ok(Page {
            statuses: e.statuses.clone(),
            content_type,
            escape,
            parts: e
                .template()
                .map_err(|m| format!("body: {m}"))?
                .into_iter()
                .map(|p| match p {
                    TemplatePart::Text(t) => Part::Text(t.to_owned()),
                    TemplatePart::Var(v) => Part::Var(v),
                })
                .collect(),
        })
    }

    pub(crate) fn render(&self, err: ProxyError, facts: &ErrorFacts<'_>) -> Response<Body> {
        let mut out = String::with_capacity(256);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => {
                    let status;
                    let message;
                    let value: &str = match v {
                        TemplateVar::Status => {
                            status = err.status().as_u16().to_string();
                            &status
                        }
                        TemplateVar::Reason => err.reason(),
                        TemplateVar::Message => {
                            message = err.to_string();
                            &message
                        }
                        TemplateVar::RequestId => facts.request_id,
                        TemplateVar::Route => facts.route.unwrap_or(""),
                        TemplateVar::Method => facts.method,
                        TemplateVar::Path => facts.path,
                    };
                    escape_into(&mut out, value, self.escape);
                }
            }
        }
        let mut resp = Response::new(Body::full(out));
        *resp.status_mut() = err.status();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, self.content_type.clone());
        resp
    }
}

fn escape_into(out: &mut String, value: &str, escape: Escape) {
    match escape {
        Escape::None => out.push_str(value),
        Escape::Json => {
            // The string's JSON form without its surrounding quotes.
            let quoted = serde_json::Value::from(value).to_string();
            out.push_str(&quoted[1..quoted.len() - 1]);
        }
        Escape::Html => {
            for c in value.chars() {
                match c {
                    '&' => out.push_str("&amp;"),
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    '"' => out.push_str("&quot;"),
                    '\'' => out.push_str("&#39;"),
                    c => out.push(c),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(content_type: &str, body: &str) -> ErrorPages {
        ErrorPages::compile(&[config::ErrorResponse {
            statuses: vec![429],
            content_type: content_type.into(),
            body: body.into(),
        }])
        .expect("compiles")
    }

    fn body_of(resp: Response<Body>) -> String {
        match resp.into_body() {
            Body::Full(b) => String::from_utf8(b.unwrap_or_default().to_vec()).expect("utf-8"),
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[test]
    fn variables_are_escaped_for_the_content_type() {
        let facts = ErrorFacts {
            request_id: "r\"1",
            route: Some("<orders>"),
            method: "GET",
            path: "/a",
            grpc: false,
        };
        let json = page(
            "application/problem+json",
            r#"{"id":"{{requestId}}","s":{{status}}}"#,
        );
        let resp = json
            .find(StatusCode::TOO_MANY_REQUESTS)
            .unwrap()
            .render(ProxyError::RateLimited, &facts);
        assert_eq!(resp.status(), 429);
        assert_eq!(body_of(resp), r#"{"id":"r\"1","s":429}"#);
        let html = page("text/html", "<p>{{route}} {{reason}}</p>");
        let resp = html
            .find(StatusCode::TOO_MANY_REQUESTS)
            .unwrap()
            .render(ProxyError::RateLimited, &facts);
        assert_eq!(body_of(resp), "<p>&lt;orders&gt; rate_limited</p>");
        assert!(html.find(StatusCode::NOT_FOUND).is_none());
    }

    #[test]
    fn unknown_variables_and_open_braces_are_refused() {
        let bad = |body: &str| {
            ErrorPages::compile(&[config::ErrorResponse {
                statuses: vec![],
                content_type: "text/plain".into(),
                body: body.into(),
            }])
            .unwrap_err()
        };
        assert!(
            bad("{{nope}}").contains("unknown variable {{nope}}"),
            "{}",
            bad("{{nope}}")
        );
        assert!(bad("x {{status").contains("without a closing"));
    }
}
