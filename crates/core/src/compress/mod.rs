//! Response compression (`routes[].compression`): the route's compiled settings,
//! `accept-encoding` negotiation (`negotiate`), the rules that decide whether a
//! response is worth compressing, and the streaming encoder body (`body`).
//!
//! The request's choice is made before the request head is handed to the upstream
//! call (it is a `Copy` value); the response is rewritten when it comes back.

mod body;
mod negotiate;

pub use body::Encoded;
pub use negotiate::negotiate;

use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, HeaderValue, VARY,
};
use http::{Method, Response, StatusCode};
use meshgate_config::model::{CompressionAlgorithm as Algorithm, CompressionLevel};

use crate::body::Body;

/// What a request negotiated, carried from the request to its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    /// HEAD: the response has no body to compress (and its headers must match a
    /// GET's only as far as identity goes).
    Skip,
    /// Identity, but the response still gets `vary: accept-encoding` when it is of
    /// a compressible kind, so caches keep the encodings apart.
    Identity,
    Encode(Algorithm),
}

/// A route's compression settings, compiled.
#[derive(Debug)]
pub struct Compression {
    algorithms: Vec<Algorithm>,
    min_bytes: u64,
    /// Lowercased `type/subtype`, or `type/` for `type/*`.
    types: Vec<Box<str>>,
    level: CompressionLevel,
}

impl Compression {
    pub fn compile(c: &meshgate_config::model::Compression) -> Self {
        Compression {
            algorithms: c.algorithms.clone(),
            min_bytes: c.min_bytes,
            types: (c.content_types.iter())
                .map(|t| {
                    let t = t.to_ascii_lowercase();
                    t.strip_suffix('*').unwrap_or(&t).into()
                })
                .collect(),
            level: c.level,
        }
    }

    /// Reads the request's `accept-encoding`; call before the head is moved away.
    pub fn negotiate(&self, parts: &http::request::Parts) -> Negotiated {
        if parts.method == Method::HEAD {
            return Negotiated::Skip;
        }
        match negotiate(&parts.headers, &self.algorithms) {
            Some(a) => Negotiated::Encode(a),
            None => Negotiated::Identity,
        }
    }

    /// Compresses `resp` if it qualifies and the client accepted an encoding.
    pub fn apply(&self, negotiated: Negotiated, resp: Response<Body>) -> Response<Body> {
        if negotiated == Negotiated::Skip || !self.qualifies(&resp) {
            return resp;
        }
        let (mut head, body) = resp.into_parts();
        add_vary(&mut head.headers);
        let Negotiated::Encode(algorithm) = negotiated else {
            return Response::from_parts(head, body);
        };
        let h = &mut head.headers;
        h.remove(CONTENT_LENGTH);
        // Byte ranges of the compressed form are not offered.
        h.remove(ACCEPT_RANGES);
        h.insert(
            CONTENT_ENCODING,
            HeaderValue::from_static(algorithm.token()),
        );
        weaken_etag(h);
        let body = Body::Compressed(Box::new(Encoded::new(body, algorithm, self.level)));
        Response::from_parts(head, body)
    }

    /// Status, headers, type and size all allow compression.
    fn qualifies(&self, resp: &Response<Body>) -> bool {
        let status = resp.status();
        if status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status == StatusCode::PARTIAL_CONTENT
        {
            return false;
        }
        let h = resp.headers();
        if h.contains_key(CONTENT_ENCODING) || h.contains_key(CONTENT_RANGE) {
            return false;
        }
        if (h.get_all(CACHE_CONTROL).iter())
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        {
            return false;
        }
        if let Some(len) = h.get(CONTENT_LENGTH) {
            match len.to_str().ok().and_then(|l| l.parse::<u64>().ok()) {
                Some(len) if len >= self.min_bytes && len > 0 => {}
                _ => return false,
            }
        }
        let Some(ct) = h.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let essence = ct.split(';').next().unwrap_or("").trim();
        // gRPC has its own per-message compression; its framing must not change.
        if starts_with_ignore_case(essence, "application/grpc") {
            return false;
        }
        self.types.iter().any(|t| {
            if t.ends_with('/') {
                starts_with_ignore_case(essence, t)
            } else {
                essence.eq_ignore_ascii_case(t)
            }
        })
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Adds `accept-encoding` to `vary` unless it is there already (or `vary: *`).
fn add_vary(h: &mut http::HeaderMap) {
    let present = (h.get_all(VARY).iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| {
            let f = f.trim();
            f == "*" || f.eq_ignore_ascii_case("accept-encoding")
        });
    if !present {
        h.append(VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// A strong validator names exact bytes; the compressed bytes differ, so it
/// becomes weak (`"x"` → `W/"x"`), which still serves `if-none-match`.
fn weaken_etag(h: &mut http::HeaderMap) {
    let Some(tag) = h.get(ETAG) else { return };
    if tag.as_bytes().starts_with(b"W/") {
        return;
    }
    let mut weak = Vec::with_capacity(tag.len() + 2);
    weak.extend_from_slice(b"W/");
    weak.extend_from_slice(tag.as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&weak) {
        h.insert(ETAG, v);
    }
}
