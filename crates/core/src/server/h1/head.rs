//! Reading a request head out of the connection's buffer: the common case (an
//! HTTP/1.1 request without a body, or with a `content-length` body that arrived
//! with it) becomes an `http::Request`; anything else is left to hyper, which gets
//! the connection with every byte read so far (see `super::serve`).

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

use crate::body::Inbound;

/// More headers than this is unusual enough to leave to hyper (which takes 100).
const MAX_HEADERS: usize = 64;

/// What the buffer holds.
pub(super) enum Parsed {
    /// A request, its head and body taken out of the buffer.
    Request(Box<Request<Inbound>>, Keep),
    /// Not a whole head yet.
    Partial,
    /// A head httparse accepted but `http` refuses (a URI or header value it does
    /// not allow): answered 400, then the connection closes.
    Invalid,
    /// Not for this server: HTTP/1.0, HTTP/2's preface, upgrades and `CONNECT`,
    /// `transfer-encoding` or `expect`, a body still arriving, a malformed head.
    Handoff,
}

/// Whether the connection stays open after this request's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keep {
    Alive,
    Close,
}

/// Byte ranges of one header inside the head (httparse borrows the buffer, the
/// request's values share it once frozen).
struct Span {
    name: (usize, usize),
    value: (usize, usize),
}

/// Parses the head at the start of `buf`; a request takes its bytes out of it.
pub(super) fn parse(buf: &mut BytesMut) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Handoff,
    };
    if req.version != Some(1) {
        return Parsed::Handoff;
    }
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Parsed::Handoff;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Handoff;
    };
    if method == Method::CONNECT {
        return Parsed::Handoff;
    }
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
    let path = offset(path.as_bytes());
    let mut spans = [const {
        Span {
            name: (0, 0),
            value: (0, 0),
        }
    }; MAX_HEADERS];
    let count = req.headers.len();
    let mut body_len: Option<usize> = None;
    let mut keep = Keep::Alive;
    for (header, span) in req.headers.iter().zip(spans.iter_mut()) {
        let name = header.name.as_bytes();
        // The framing and connection-handling headers decide here; unusual ones
        // (a second length, chunked bodies, upgrades, 100-continue) go to hyper.
        if name.eq_ignore_ascii_case(CONTENT_LENGTH.as_str().as_bytes()) {
            // Digits only (`str::parse` would take "+5"), and only one length
            // header: anything else is for hyper to refuse, never to guess at.
            match (length(header.value), body_len) {
                (Some(n), None) => body_len = Some(n),
                _ => return Parsed::Handoff,
            }
        } else if name.eq_ignore_ascii_case(CONNECTION.as_str().as_bytes()) {
            if has_token(header.value, b"upgrade") {
                return Parsed::Handoff;
            }
            if has_token(header.value, b"close") {
                keep = Keep::Close;
            }
        } else if name.eq_ignore_ascii_case(TRANSFER_ENCODING.as_str().as_bytes())
            || name.eq_ignore_ascii_case(UPGRADE.as_str().as_bytes())
            || name.eq_ignore_ascii_case(EXPECT.as_str().as_bytes())
        {
            return Parsed::Handoff;
        }
        *span = Span {
            name: offset(name),
            value: offset(header.value),
        };
    }
    let body_len = body_len.unwrap_or(0);
    if buf.len() - head_len < body_len {
        return Parsed::Handoff;
    }
    let head = buf.split_to(head_len).freeze();
    let body = (body_len > 0).then(|| buf.split_to(body_len).freeze());
    match build(method, &head, path, &spans[..count], body) {
        Some(request) => Parsed::Request(Box::new(request), keep),
        None => Parsed::Invalid,
    }
}

fn build(
    method: Method,
    head: &Bytes,
    path: (usize, usize),
    spans: &[Span],
    body: Option<Bytes>,
) -> Option<Request<Inbound>> {
    let slice = |(at, len): (usize, usize)| head.slice(at..at + len);
    let uri = Uri::from_maybe_shared(slice(path)).ok()?;
    let mut headers = HeaderMap::with_capacity(spans.len());
    for span in spans {
        let name = HeaderName::from_bytes(&slice(span.name)).ok()?;
        let value = HeaderValue::from_maybe_shared(slice(span.value)).ok()?;
        headers.append(name, value);
    }
    let mut request = Request::new(Inbound::Held(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some(request)
}

/// A `content-length` value: 1*DIGIT, within `usize`.
fn length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Whether a comma-separated header value lists `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|part| part.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
