//! Where a token is read (a header with an optional prefix such as `Bearer `, a
//! cookie, a query parameter) and how it is removed before forwarding. Reading
//! borrows from the request: the fast path copies nothing.

use http::HeaderName;
use http::header::COOKIE;
use meshgate_config as config;

use crate::identity::header_name;

/// One compiled place.
#[derive(Debug)]
enum Place {
    Header {
        name: HeaderName,
        prefix: Option<String>,
    },
    Cookie(String),
    Query(String),
}

/// The places of a policy, in the order they are tried.
#[derive(Debug)]
pub(super) struct TokenSource(Vec<Place>);

impl TokenSource {
    pub fn compile(locations: &[config::JwtTokenLocation]) -> Result<Self, String> {
        locations
            .iter()
            .map(|l| {
                Ok(match (&l.header, &l.cookie, &l.query_param) {
                    (Some(h), None, None) => Place::Header {
                        name: header_name(h)?,
                        prefix: l.prefix.clone().filter(|p| !p.is_empty()),
                    },
                    (None, Some(c), None) => Place::Cookie(c.clone()),
                    (None, None, Some(q)) => Place::Query(q.clone()),
                    _ => {
                        return Err(
                            "tokenFrom: set exactly one of header, cookie, queryParam".into()
                        );
                    }
                })
            })
            .collect::<Result<_, String>>()
            .map(TokenSource)
    }

    /// The token and the index of the place it was found in.
    pub fn find<'r>(&self, req: &'r http::request::Parts) -> Option<(&'r str, usize)> {
        self.0.iter().enumerate().find_map(|(i, place)| {
            let token = match place {
                Place::Header { name, prefix } => {
                    let v = req.headers.get(name)?.to_str().ok()?;
                    match prefix {
                        None => v.trim(),
                        Some(p) => {
                            let head = v.get(..p.len())?;
                            if !head.eq_ignore_ascii_case(p) {
                                return None;
                            }
                            v[p.len()..].trim()
                        }
                    }
                }
                Place::Cookie(name) => cookie(req, name)?,
                Place::Query(name) => req.uri.query()?.split('&').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    (k == name).then_some(v)
                })?,
            };
            (!token.is_empty()).then_some((token, i))
        })
    }

    /// Removes the token from place `at`, so it does not reach the upstream.
    pub fn remove(&self, req: &mut http::request::Parts, at: usize) {
        match self.0.get(at) {
            Some(Place::Header { name, .. }) => {
                req.headers.remove(name);
            }
            Some(Place::Cookie(name)) => remove_cookie(req, name),
            Some(Place::Query(name)) => {
                let Some(query) = req.uri.query() else { return };
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|p| p.split('=').next() != Some(name.as_str()))
                    .collect();
                let pq = if kept.is_empty() {
                    req.uri.path().to_owned()
                } else {
                    format!("{}?{}", req.uri.path(), kept.join("&"))
                };
                meshgate_core::filter::set_path_and_query(req, pq);
            }
            None => {}
        }
    }

    /// Where tokens are looked for, for `explain`.
    pub fn describe(&self) -> String {
        let places: Vec<String> = self
            .0
            .iter()
            .map(|p| match p {
                Place::Header {
                    name,
                    prefix: Some(p),
                } => format!("header {name} ({})", p.trim_end()),
                Place::Header { name, prefix: None } => format!("header {name}"),
                Place::Cookie(c) => format!("cookie {c}"),
                Place::Query(q) => format!("query parameter {q}"),
            })
            .collect();
        places.join(", ")
    }
}

/// The value of cookie `name` (RFC 6265 `name=value; name2=value2`).
fn cookie<'r>(req: &'r http::request::Parts, name: &str) -> Option<&'r str> {
    req.headers.get_all(COOKIE).iter().find_map(|h| {
        h.to_str().ok()?.split(';').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"'))
        })
    })
}

fn remove_cookie(req: &mut http::request::Parts, name: &str) {
    let kept: Vec<String> = req
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some(name))
        .map(str::to_owned)
        .collect();
    req.headers.remove(COOKIE);
    if !kept.is_empty()
        && let Ok(v) = http::HeaderValue::from_str(&kept.join("; "))
    {
        req.headers.insert(COOKIE, v);
    }
}
