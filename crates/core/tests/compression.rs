//! Response compression against real clients: curl decodes what the gateway
//! sends (gzip, brotli, zstd), negotiation honours q-values, responses that must
//! not change (small, images, already encoded, HEAD, 304, no-transform) pass
//! untouched, and a 5 MB streamed body is compressed while it streams.

mod common;

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Harness, one_route, service, start};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

/// Text that compresses well but is not one repeated byte.
fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!("line {i}: the quick brown fox jumps over the lazy dog\n").as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

const STREAM_BYTES: usize = 5 * 1024 * 1024;
const STREAM_CHUNK: usize = 64 * 1024;

type Out = BoxBody<Bytes, Infallible>;

/// The test's own upstream. `/stream` sends its first chunk, then waits for
/// `release` before sending the rest of its 5 MB.
struct Upstream {
    addr: SocketAddr,
    release: Arc<Notify>,
}

impl Upstream {
    async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let release = Arc::new(Notify::new());
        let gate = release.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let gate = gate.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let gate = gate.clone();
                        async move { Ok::<_, Infallible>(answer(req, gate)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream { addr, release }
    }
}

fn full(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> Response<Out> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
        .unwrap()
}

fn answer(req: Request<Incoming>, gate: Arc<Notify>) -> Response<Out> {
    let json = [("content-type", "application/json; charset=utf-8")];
    match req.uri().path() {
        "/json" => full(200, &json, text(20_000)),
        "/small" => full(200, &json, text(100)),
        "/png" => full(200, &[("content-type", "image/png")], text(20_000)),
        "/etag" => full(
            200,
            &[("content-type", "text/html"), ("etag", "\"v1\"")],
            text(20_000),
        ),
        "/not-modified" => full(
            304,
            &[("content-type", "text/html"), ("etag", "\"v1\"")],
            vec![],
        ),
        "/no-transform" => full(
            200,
            &[
                ("content-type", "text/plain"),
                ("cache-control", "public, no-transform"),
            ],
            text(20_000),
        ),
        "/pre" => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&text(20_000)).unwrap();
            let gz = enc.finish().unwrap();
            full(
                200,
                &[("content-type", "text/plain"), ("content-encoding", "gzip")],
                gz,
            )
        }
        "/stream" => {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
            tokio::spawn(async move {
                let all = Bytes::from(text(STREAM_BYTES));
                for (i, start) in (0..STREAM_BYTES).step_by(STREAM_CHUNK).enumerate() {
                    if i == 1 {
                        // Nothing more until the client has seen compressed bytes.
                        gate.notified().await;
                    }
                    let end = (start + STREAM_CHUNK).min(STREAM_BYTES);
                    if tx
                        .send(Ok(Frame::data(all.slice(start..end))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|f| (f, rx))
            });
            Response::builder()
                .header("content-type", "text/plain")
                .body(StreamBody::new(stream).boxed())
                .unwrap()
        }
        _ => full(404, &[], vec![]),
    }
}

async fn gateway(up: &Upstream, settings: &str) -> Harness {
    start(&one_route(
        &format!("    compression: {settings}"),
        &service("svc", &[up.addr]),
    ))
    .await
}

/// A raw hyper request; the body is returned as bytes, undecoded.
async fn fetch(
    h: &Harness,
    method: Method,
    path: &str,
    ae: Option<&str>,
) -> (StatusCode, HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder().method(method).uri(h.url(path));
    if let Some(ae) = ae {
        req = req.header("accept-encoding", ae);
    }
    let resp = client
        .request(req.body(Full::default()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn decode(encoding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .map(|_| ()),
        "br" => brotli::Decompressor::new(data, 4096)
            .read_to_end(&mut out)
            .map(|_| ()),
        "zstd" => zstd::stream::read::Decoder::new(data)
            .and_then(|mut d| d.read_to_end(&mut out))
            .map(|_| ()),
        other => panic!("unexpected encoding {other}"),
    }
    .unwrap_or_else(|e| panic!("{encoding} body does not decode: {e}"));
    out
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

/// Splits curl `-i` output into lowercased header text and body.
fn split(out: &str) -> (String, &str) {
    let (head, body) = out.split_once("\r\n\r\n").expect("headers and body");
    (head.to_ascii_lowercase(), body)
}

#[tokio::test]
async fn curl_compressed_decodes_for_each_encoding() {
    let up = Upstream::start().await;
    let want = String::from_utf8(text(20_000)).unwrap();
    let h = gateway(&up, "{}").await;
    // curl --compressed offers deflate, gzip, br, zstd: the route's first choice wins.
    let out = h.curl(&["--compressed", &h.url("/json")]).await;
    let (head, body) = split(&out);
    assert!(head.contains("content-encoding: zstd"), "{head}");
    assert!(head.contains("vary: accept-encoding"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert_eq!(body, want);
    for enc in ["gzip", "br", "zstd"] {
        let h = gateway(&up, &format!("{{algorithms: [{enc}]}}")).await;
        let out = h.curl(&["--compressed", &h.url("/json")]).await;
        let (head, body) = split(&out);
        assert!(head.contains(&format!("content-encoding: {enc}")), "{head}");
        assert_eq!(body, want, "{enc}");
        // The raw bytes, decoded here with the same codec crates.
        let (status, headers, raw) = fetch(&h, Method::GET, "/json", Some(enc)).await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-encoding"), Some(enc));
        assert!(raw.len() < 20_000 / 4, "{enc}: {} bytes", raw.len());
        assert_eq!(decode(enc, &raw), want.as_bytes(), "{enc}");
    }
}

#[tokio::test]
async fn curl_zstd_header_decoded_in_process() {
    let up = Upstream::start().await;
    let h = gateway(&up, "{}").await;
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-D",
            "-",
            "-H",
            "accept-encoding: zstd",
            &h.url("/json"),
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let sep = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout[..sep]).to_ascii_lowercase();
    assert!(head.contains("content-encoding: zstd"), "{head}");
    assert_eq!(decode("zstd", &out.stdout[sep + 4..]), text(20_000));
}

#[tokio::test]
async fn negotiation() {
    let up = Upstream::start().await;
    let h = gateway(&up, "{}").await;
    let cases: &[(Option<&str>, Option<&str>)] = &[
        (None, None),
        (Some("gzip;q=0, br"), Some("br")),
        (Some("gzip, br;q=0.5"), Some("gzip")),
        (Some("identity"), None),
        (Some("*;q=0"), None),
        (Some("deflate"), None),
        (Some("*"), Some("zstd")),
    ];
    for (ae, want) in cases {
        let (status, headers, body) = fetch(&h, Method::GET, "/json", *ae).await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-encoding"), *want, "{ae:?}");
        // Identity answers to a compressible type still vary, for caches.
        assert_eq!(header(&headers, "vary"), Some("accept-encoding"), "{ae:?}");
        match want {
            Some(enc) => assert_eq!(decode(enc, &body), text(20_000)),
            None => {
                assert_eq!(body, text(20_000));
                assert_eq!(header(&headers, "content-length"), Some("20000"));
            }
        }
    }
}

#[tokio::test]
async fn untouched_responses() {
    let up = Upstream::start().await;
    let h = gateway(&up, "{minBytes: 1024}").await;
    let ae = Some("gzip, br, zstd");
    // Below minBytes, and a type not on the list.
    for path in ["/small", "/png"] {
        let (_, headers, body) = fetch(&h, Method::GET, path, ae).await;
        assert_eq!(header(&headers, "content-encoding"), None, "{path}");
        assert_eq!(header(&headers, "vary"), None, "{path}");
        assert_eq!(body.len(), if path == "/small" { 100 } else { 20_000 });
    }
    // Already encoded by the upstream: passed as is, not encoded twice.
    let (_, headers, body) = fetch(&h, Method::GET, "/pre", ae).await;
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &body), text(20_000));
    // no-transform.
    let (_, headers, body) = fetch(&h, Method::GET, "/no-transform", ae).await;
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(body, text(20_000));
    // HEAD keeps the identity length and no encoding.
    let (status, headers, body) = fetch(&h, Method::HEAD, "/json", ae).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(header(&headers, "content-length"), Some("20000"));
    assert!(body.is_empty());
    // 304 has no body to encode.
    let (status, headers, _) = fetch(&h, Method::GET, "/not-modified", ae).await;
    assert_eq!(status, 304);
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(header(&headers, "etag"), Some("\"v1\""));
}

#[tokio::test]
async fn strong_etag_becomes_weak() {
    let up = Upstream::start().await;
    let h = gateway(&up, "{}").await;
    let (_, headers, body) = fetch(&h, Method::GET, "/etag", Some("br")).await;
    assert_eq!(header(&headers, "content-encoding"), Some("br"));
    assert_eq!(header(&headers, "etag"), Some("W/\"v1\""));
    assert_eq!(decode("br", &body), text(20_000));
    let (_, headers, _) = fetch(&h, Method::GET, "/etag", None).await;
    assert_eq!(header(&headers, "etag"), Some("\"v1\""));
}

/// The upstream holds back everything after its first 64 KiB until the client
/// has decoded compressed bytes: a gateway that buffered the body would never
/// answer, and the test would time out.
#[tokio::test]
async fn streamed_body_is_compressed_while_it_streams() {
    let up = Upstream::start().await;
    let h = gateway(&up, "{algorithms: [gzip]}").await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::get(h.url("/stream"))
        .header("accept-encoding", "gzip")
        .body(Full::default())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(header(resp.headers(), "content-encoding"), Some("gzip"));
    assert_eq!(header(resp.headers(), "content-length"), None);
    let mut body = resp.into_body();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    let mut released = false;
    let limit = Duration::from_secs(30);
    while let Some(frame) = tokio::time::timeout(limit, body.frame())
        .await
        .expect("compressed bytes arrive while the upstream is held")
    {
        let Ok(data) = frame.unwrap().into_data() else {
            continue;
        };
        decoder.write_all(&data).unwrap();
        if !released && !decoder.get_ref().is_empty() {
            // Decodable output before the upstream sent its second chunk: the
            // gateway flushed the first frame instead of waiting for more.
            assert!(decoder.get_ref().len() <= STREAM_CHUNK);
            released = true;
            up.release.notify_one();
        }
    }
    assert!(released);
    assert_eq!(decoder.finish().unwrap(), text(STREAM_BYTES));
}
