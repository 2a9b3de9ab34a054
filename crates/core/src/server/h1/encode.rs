//! Writing a response: the status line and headers (with the framing headers the
//! body calls for, and `date` when the response has none), then the body as
//! `content-length` bytes or chunks, flushed whenever the body has nothing ready so
//! a streamed response reaches the client as it comes.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::Write as _;
use std::pin::pin;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::response::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body::Body;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Data frames up to this size are copied next to the head (one write); larger
/// ones are written from their own buffer.
const COALESCE: usize = 16 * 1024;

/// How the body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body may be sent (`HEAD`, 204, 304).
    Bodiless,
    Length(u64),
    Chunked,
}

/// Why a response could not be written whole: the connection must close.
#[derive(Debug, thiserror::Error)]
pub(super) enum WriteError {
    #[error("writing to the client: {0}")]
    Io(#[from] std::io::Error),
    #[error("response body failed: {0}")]
    Body(String),
    #[error("response body ended after {sent} of {length} bytes")]
    Short { sent: u64, length: u64 },
}

/// Writes `head` and `body` to `io`. `head_request`: the request was `HEAD`;
/// `close`: this is the connection's last response; `trailers`: the client asked
/// for them (`te: trailers`), so a chunked body carries the upstream's.
pub(super) async fn write_response<IO, B>(
    io: &mut IO,
    mut head: Parts,
    body: B,
    head_request: bool,
    close: bool,
    trailers: bool,
) -> Result<(), WriteError>
where
    IO: AsyncWrite + Unpin,
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let framing = framing(&mut head, &body, head_request);
    if close {
        head.headers
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    let mut out = Vec::with_capacity(256);
    encode_head(&head, &mut out);
    if framing == Framing::Bodiless {
        io.write_all(&out).await?;
        io.flush().await?;
        return Ok(());
    }
    let mut body = pin!(body);
    let mut sent = 0u64;
    // Written but not flushed (a TLS stream may still hold it).
    let mut unflushed = false;
    loop {
        // Pending with bytes waiting: send them before waiting for more.
        let next = poll_fn(|cx| match body.as_mut().poll_frame(cx) {
            Poll::Pending if !out.is_empty() || unflushed => Poll::Ready(Next::Flush),
            Poll::Pending => Poll::Pending,
            Poll::Ready(frame) => Poll::Ready(Next::Frame(frame)),
        })
        .await;
        let frame = match next {
            Next::Flush => {
                io.write_all(&out).await?;
                io.flush().await?;
                out.clear();
                unflushed = false;
                continue;
            }
            Next::Frame(None) => break,
            Next::Frame(Some(Err(e))) => return Err(WriteError::Body(e.to_string())),
            Next::Frame(Some(Ok(frame))) => frame,
        };
        match frame.into_data() {
            Ok(data) => {
                sent += data.len() as u64;
                if let Framing::Length(length) = framing
                    && sent > length
                {
                    return Err(WriteError::Body(format!(
                        "response body longer than its content-length {length}"
                    )));
                }
                if framing == Framing::Chunked {
                    if data.is_empty() {
                        continue;
                    }
                    // Writing into a Vec cannot fail.
                    let _ = write!(out, "{:x}\r\n", data.len());
                }
                if out.len() + data.len() <= COALESCE {
                    out.extend_from_slice(&data);
                } else {
                    io.write_all(&out).await?;
                    out.clear();
                    io.write_all(&data).await?;
                    unflushed = true;
                }
                if framing == Framing::Chunked {
                    out.extend_from_slice(b"\r\n");
                }
            }
            Err(frame) => {
                if let (Framing::Chunked, true, Ok(fields)) =
                    (framing, trailers, frame.into_trailers())
                {
                    out.extend_from_slice(b"0\r\n");
                    encode_fields(&fields, &mut out);
                    out.extend_from_slice(b"\r\n");
                    io.write_all(&out).await?;
                    io.flush().await?;
                    return Ok(());
                }
            }
        }
    }
    match framing {
        Framing::Length(length) if sent < length => return Err(WriteError::Short { sent, length }),
        Framing::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
        _ => {}
    }
    if !out.is_empty() {
        io.write_all(&out).await?;
    }
    io.flush().await?;
    Ok(())
}

enum Next<F> {
    Flush,
    Frame(Option<F>),
}

/// Decides the framing and sets its headers: a `content-length` the response has
/// or its body knows, else chunked; none for bodies HTTP forbids.
fn framing<B: Body>(head: &mut Parts, body: &B, head_request: bool) -> Framing {
    let status = head.status;
    // `transfer-encoding` is hop-by-hop: the proxy strips it, locally made
    // responses never set it; the framing chosen here is the only one.
    head.headers.remove(TRANSFER_ENCODING);
    if !head.headers.contains_key(DATE) {
        head.headers.insert(DATE, now());
    }
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        head.headers.remove(CONTENT_LENGTH);
        return Framing::Bodiless;
    }
    if head_request {
        return Framing::Bodiless;
    }
    let declared = head
        .headers
        .get(CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|s| s.parse::<u64>().ok()));
    match (declared, body.size_hint().exact()) {
        (Some(Some(n)), _) => Framing::Length(n),
        (_, Some(n)) => {
            head.headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
            Framing::Length(n)
        }
        _ => {
            head.headers.remove(CONTENT_LENGTH);
            head.headers
                .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            Framing::Chunked
        }
    }
}

fn encode_head(head: &Parts, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(head.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    encode_fields(&head.headers, out);
    out.extend_from_slice(b"\r\n");
}

fn encode_fields(fields: &HeaderMap, out: &mut Vec<u8>) {
    for (name, value) in fields {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// The `date` header value, formatted once per second per thread.
fn now() -> HeaderValue {
    thread_local! {
        static CACHED: RefCell<(u64, HeaderValue)> =
            const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(at, value)| {
        if *at != secs {
            *at = secs;
            *value = HeaderValue::from_str(&httpdate::fmt_http_date(now))
                .unwrap_or_else(|_| HeaderValue::from_static(""));
        }
        value.clone()
    })
}
