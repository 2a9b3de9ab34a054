//! meshgate's own HTTP/1.1 server (`server::h1`), seen from raw sockets: keep-alive
//! and pipelining, the headers it adds (`date`, framing), `HEAD`, a streamed
//! response flushed as it comes (over TLS too), the requests it leaves to hyper on the same
//! connection (HTTP/1.0, chunked and late bodies, huge and malformed heads), a
//! client that goes away cancelling its request upstream, and the drain.

mod common;
mod tls_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshgate_testkit::Backend;
use meshgate_testkit::certs::TestCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// One response read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// Reads one response (`content-length` or chunked; `head_request`: no body).
async fn read_response(sock: &mut TcpStream, buf: &mut Vec<u8>, head_request: bool) -> Raw {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(sock, buf).await;
    };
    let head = String::from_utf8(buf.drain(..end).collect()).unwrap();
    let status = head[9..12].parse().unwrap();
    let mut raw = Raw {
        status,
        head,
        body: Vec::new(),
    };
    // Interim (1xx) answers have no body either.
    if head_request || status < 200 {
        return raw;
    }
    if let Some(n) = raw.header("content-length") {
        let n: usize = n.parse().unwrap();
        while buf.len() < n {
            fill(sock, buf).await;
        }
        raw.body = buf.drain(..n).collect();
    } else {
        assert_eq!(raw.header("transfer-encoding"), Some("chunked"), "{raw:?}");
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                fill(sock, buf).await;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16).unwrap();
            while buf.len() < line_end + 2 + size + 2 {
                fill(sock, buf).await;
            }
            raw.body
                .extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    }
    raw
}

async fn fill<S: tokio::io::AsyncRead + Unpin>(sock: &mut S, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut chunk))
        .await
        .expect("the gateway answers within 10 s")
        .unwrap();
    assert!(
        n > 0,
        "connection closed early; got {:?}",
        String::from_utf8_lossy(buf)
    );
    buf.extend_from_slice(&chunk[..n]);
}

/// Whether the gateway closes `sock` within 5 s (EOF or reset).
async fn closes(sock: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

async fn gateway_to(backend: SocketAddr) -> common::Harness {
    common::start(&common::one_route("", &common::service("svc", &[backend]))).await
}

#[tokio::test]
async fn keep_alive_and_pipelined_requests_are_answered_in_order() {
    let backend = Backend::start("b").await;
    let h = gateway_to(backend.addr).await;
    let mut sock = TcpStream::connect(h.addr).await.unwrap();
    let mut buf = Vec::new();
    sock.write_all(b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let first = read_response(&mut sock, &mut buf, false).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["path"], "/one");
    // Every response has a date and a length the client can frame it by.
    assert!(
        first.header("date").is_some_and(|d| d.ends_with(" GMT")),
        "{first:?}"
    );
    assert_eq!(
        first.header("content-length"),
        Some(&*first.body.len().to_string())
    );
    // Three requests in one write, one with a body that came along.
    sock.write_all(
        b"GET /two HTTP/1.1\r\nhost: x\r\n\r\n\
          POST /three HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello\
          GET /four HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await
    .unwrap();
    for (path, body_bytes) in [("/two", 0), ("/three", 5), ("/four", 0)] {
        let reply = read_response(&mut sock, &mut buf, false).await;
        assert_eq!(reply.json()["path"], path);
        assert_eq!(reply.json()["bodyBytes"], body_bytes);
    }
    assert_eq!(backend.hits(), 4);
}

#[tokio::test]
async fn head_answers_carry_the_length_but_no_body() {
    let backend = Backend::start("b").await;
    let h = gateway_to(backend.addr).await;
    let mut sock = TcpStream::connect(h.addr).await.unwrap();
    let mut buf = Vec::new();
    sock.write_all(b"HEAD /h HTTP/1.1\r\nhost: x\r\n\r\nGET /g HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_response(&mut sock, &mut buf, true).await;
    assert_eq!(head.status, 200);
    assert!(head.header("content-length").is_some(), "{head:?}");
    // Had a body followed the HEAD answer, this would not parse as the next one.
    let get = read_response(&mut sock, &mut buf, false).await;
    assert_eq!(get.json()["path"], "/g");
}

/// An upstream that streams a chunked response in two parts, the second only once
/// the test has seen the first arrive through the gateway.
async fn two_part_upstream(first_seen: Arc<Notify>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            fill(&mut sock, &mut buf).await;
        }
        sock.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            .await
            .unwrap();
        first_seen.notified().await;
        sock.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await.unwrap();
    });
    addr
}

#[tokio::test]
async fn a_streamed_response_reaches_the_client_as_it_comes() {
    let first_seen = Arc::new(Notify::new());
    let upstream = two_part_upstream(first_seen.clone()).await;
    let h = gateway_to(upstream).await;
    let sock = TcpStream::connect(h.addr).await.unwrap();
    streams_in_two_parts(sock, &first_seen).await;
}

/// The same over TLS (ALPN http/1.1), where a write may sit in the TLS layer
/// until flushed.
#[tokio::test]
async fn a_streamed_response_over_tls_reaches_the_client_as_it_comes() {
    let ca = TestCa::new("h1-stream");
    let cert = ca.server_cert("s", &["s.test"]);
    let first_seen = Arc::new(Notify::new());
    let upstream = two_part_upstream(first_seen.clone()).await;
    let tls = format!("{{certificates: [{}]}}", tls_support::cert_entry(&cert));
    let yaml = tls_support::https_config(&tls, upstream);
    let h = common::start(&yaml).await;
    let mut config = (*ca.client_config(None)).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(h.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("s.test").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    streams_in_two_parts(tls, &first_seen).await;
}

/// Asks for `/stream` on `sock` and checks the first part arrives while the
/// upstream still holds back the second.
async fn streams_in_two_parts<S>(mut sock: S, first_seen: &Notify)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    sock.write_all(b"GET /stream HTTP/1.1\r\nhost: s.test\r\n\r\n")
        .await
        .unwrap();
    sock.flush().await.unwrap();
    let mut buf = Vec::new();
    while !buf.windows(7).any(|w| w == b"\r\nfirst") {
        fill(&mut sock, &mut buf).await;
    }
    first_seen.notify_one();
    while !buf.ends_with(b"0\r\n\r\n") {
        fill(&mut sock, &mut buf).await;
    }
    let text = String::from_utf8_lossy(&buf);
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(text.contains("\r\n6\r\nsecond\r\n"), "{text}");
}

#[tokio::test]
async fn requests_it_leaves_to_hyper_are_served_on_the_same_connection() {
    let backend = Backend::start("b").await;
    let h = gateway_to(backend.addr).await;
    let big = "v".repeat(20_000);
    let cases: Vec<(&str, Vec<Vec<u8>>, u16, u64)> = vec![
        (
            "a chunked body",
            vec![b"POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec()],
            200,
            3,
        ),
        (
            "a body sent after its head",
            vec![
                b"POST /late HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\n".to_vec(),
                b"data".to_vec(),
            ],
            200,
            4,
        ),
        (
            "a head over 16 KB",
            vec![format!("GET /big HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n").into_bytes()],
            200,
            0,
        ),
        (
            "expect: 100-continue",
            vec![b"POST /e HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\nok".to_vec()],
            200,
            2,
        ),
    ];
    for (what, writes, status, body_bytes) in cases {
        let mut sock = TcpStream::connect(h.addr).await.unwrap();
        let mut buf = Vec::new();
        // A first request served by meshgate's server, then the one for hyper.
        sock.write_all(b"GET /first HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut sock, &mut buf, false).await.status, 200);
        for (i, bytes) in writes.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            sock.write_all(bytes).await.unwrap();
        }
        let mut reply = read_response(&mut sock, &mut buf, false).await;
        if reply.status == 100 {
            reply = read_response(&mut sock, &mut buf, false).await;
        }
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        assert_eq!(reply.json()["bodyBytes"], body_bytes, "{what}");
        // hyper keeps serving the connection.
        sock.write_all(b"GET /after HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let after = read_response(&mut sock, &mut buf, false).await;
        assert_eq!(after.json()["path"], "/after", "{what}");
    }
    // HTTP/1.0 and a malformed head: hyper's answers, as before this server.
    let mut sock = TcpStream::connect(h.addr).await.unwrap();
    sock.write_all(b"GET /old HTTP/1.0\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    sock.read_to_end(&mut rest).await.unwrap();
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    // The upstream hears of the client's version through `via`.
    assert!(text.contains("\"via\":\"1.0 meshgate\""), "{text}");
    let mut sock = TcpStream::connect(h.addr).await.unwrap();
    sock.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut sock, &mut buf, false).await.status, 400);
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_request_upstream() {
    // An upstream that never answers and reports when its connection closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let closed = Arc::new(Notify::new());
    let notify = closed.clone();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut chunk = [0u8; 4096];
        while sock.read(&mut chunk).await.is_ok_and(|n| n > 0) {}
        notify.notify_one();
    });
    let h = gateway_to(upstream).await;
    let mut sock = TcpStream::connect(h.addr).await.unwrap();
    sock.write_all(b"GET /wait HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(sock);
    tokio::time::timeout(Duration::from_secs(5), closed.notified())
        .await
        .expect("the gateway drops the upstream request when its client goes away");
}

#[tokio::test]
async fn the_drain_closes_idle_connections_and_ends_busy_ones_after_their_answer() {
    let backend = Backend::start("b").await;
    let yaml = format!(
        "runtime: {{drainTimeout: 5s}}\n{}",
        common::one_route("", &common::service("svc", &[backend.addr]))
    );
    let h = common::start(&yaml).await;
    let (mut idle, mut busy) = (
        TcpStream::connect(h.addr).await.unwrap(),
        TcpStream::connect(h.addr).await.unwrap(),
    );
    let (mut idle_buf, mut busy_buf) = (Vec::new(), Vec::new());
    idle.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    read_response(&mut idle, &mut idle_buf, false).await;
    busy.write_all(b"GET /sleep/500 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let gateway = Arc::new(h);
    let stopping = gateway.clone();
    let shutdown = tokio::spawn(async move { stopping.gateway.shutdown().await });
    assert!(
        closes(&mut idle).await,
        "an idle connection closes at the drain"
    );
    let reply = read_response(&mut busy, &mut busy_buf, false).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(closes(&mut busy).await);
    shutdown.await.unwrap();
}
