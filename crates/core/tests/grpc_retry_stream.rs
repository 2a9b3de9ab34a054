//! Retries of request bodies the gateway streams (no `content-length`): a real tonic
//! client (which never sends a length) through the gateway to real tonic backends
//! answering trailers-only UNAVAILABLE, and real curl sending a chunked HTTP/1.1 POST
//! to backends answering 503. The body is copied while it streams, up to
//! `bodyBufferBytes`; within the cap a failed try is replayed whole (the upstream that
//! answers sees the identical body), past it the failure reaches the client.

mod common;
#[path = "grpc_support/raw.rs"]
mod raw;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use meshgate_testkit::{Backend, Behaviour};
use raw::{RawBackend, Received, message};
use tonic::Code;

/// One gRPC route retrying UNAVAILABLE, to an HTTP/2 service of `endpoints`.
fn grpc_config(endpoints: &[SocketAddr], buffer: u64) -> String {
    let eps: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
routes:
  - name: raw
    matches: [{{path: {{type: PathPrefix, value: /test.Raw}}}}]
    backendRefs: [{{name: raw}}]
    retry: {{attempts: 3, retryOn: [grpc-unavailable], bodyBufferBytes: {buffer}, backoff: {{base: 1ms, max: 5ms}}}}
services:
  - name: raw
    protocol: HTTP2
    endpoints: [{}]
",
        eps.join(", ")
    )
}

fn ok(messages: &[Bytes]) -> Received {
    Received {
        failed: false,
        messages: messages.to_vec(),
    }
}

fn failed(messages: &[Bytes]) -> Received {
    Received {
        failed: true,
        messages: messages.to_vec(),
    }
}

#[tokio::test]
async fn a_tonic_unary_call_is_replayed_until_it_succeeds() {
    let backend = RawBackend::start(2, false).await;
    let h = common::start(&grpc_config(&[backend.addr], 65536)).await;
    let mut client = raw::client(h.addr).await;
    let msg = message(1, 3000);
    let answer = raw::unary(&mut client, msg.clone())
        .await
        .expect("retried to success");
    assert_eq!(answer, msg);
    let m = std::slice::from_ref(&msg);
    assert_eq!(
        backend.received(),
        vec![failed(m), failed(m), ok(m)],
        "every try carried the whole message"
    );
    let log = h.log_lines(1).await;
    assert_eq!(log[0]["retries"], 2, "{}", log[0]);
    assert_eq!(log[0]["status"], 200);
    assert_eq!(
        log[0]["bytes_in"], 3005,
        "5-byte gRPC frame header + message"
    );
}

#[tokio::test]
async fn a_failing_backend_is_left_for_the_other_one() {
    let down = RawBackend::start(usize::MAX, false).await;
    let up = RawBackend::start(0, false).await;
    let h = common::start(&grpc_config(&[down.addr, up.addr], 65536)).await;
    let mut client = raw::client(h.addr).await;
    let sent: Vec<Bytes> = (0..4)
        .map(|i| message(10 + i, 500 + 100 * i as usize))
        .collect();
    for msg in &sent {
        let answer = raw::unary(&mut client, msg.clone())
            .await
            .expect("answered");
        assert_eq!(&answer, msg);
    }
    let seen: Vec<Bytes> = up
        .received()
        .into_iter()
        .flat_map(|r| {
            assert!(!r.failed);
            r.messages
        })
        .collect();
    assert_eq!(
        seen, sent,
        "the healthy backend got each whole message once"
    );
    let log = h.log_lines(4).await;
    let retries: u64 = log.iter().map(|l| l["retries"].as_u64().unwrap()).sum();
    assert!(
        down.calls() >= 1,
        "round robin sends some first tries to it"
    );
    assert_eq!(retries as usize, down.calls());
    for r in down.received() {
        assert!(r.failed && r.messages.len() == 1 && sent.contains(&r.messages[0]));
    }
}

#[tokio::test]
async fn a_client_stream_within_the_buffer_is_replayed() {
    let backend = RawBackend::start(1, false).await;
    let h = common::start(&grpc_config(&[backend.addr], 4096)).await;
    let mut client = raw::client(h.addr).await;
    let sent: Vec<Bytes> = (0..3).map(|i| message(i, 100)).collect();
    let answer = raw::collect(&mut client, futures_util::stream::iter(sent.clone()))
        .await
        .expect("retried to success");
    assert_eq!(answer, sent.concat());
    assert_eq!(backend.received(), vec![failed(&sent), ok(&sent)]);
    assert_eq!(h.log_lines(1).await[0]["retries"], 1);
}

#[tokio::test]
async fn a_client_stream_past_the_buffer_is_not_retried() {
    // The backend reads all 8000 bytes before failing: the gateway has streamed them
    // and dropped its copy at 4096, so the UNAVAILABLE is passed on as it came.
    let backend = RawBackend::start(1, false).await;
    let h = common::start(&grpc_config(&[backend.addr], 4096)).await;
    let mut client = raw::client(h.addr).await;
    let sent: Vec<Bytes> = (0..8).map(|i| message(i, 1000)).collect();
    let err = raw::collect(&mut client, futures_util::stream::iter(sent.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(err.message(), "try again");
    assert_eq!(backend.received(), vec![failed(&sent)]);
    let log = h.log_lines(1).await;
    assert_eq!(log[0]["retries"], 0, "{}", log[0]);
    assert_eq!(log[0]["bytes_in"], 8 * 1005);
}

#[tokio::test]
async fn a_retry_replays_what_was_sent_and_streams_the_rest() {
    // The backend fails after the first message while the client still has two to
    // send: the retry replays the first and then carries on with the live stream.
    let backend = RawBackend::start(1, true).await;
    let h = common::start(&grpc_config(&[backend.addr], 65536)).await;
    let mut client = raw::client(h.addr).await;
    let sent: Vec<Bytes> = (0..3).map(|i| message(20 + i, 700)).collect();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let call = tokio::spawn(async move { raw::collect(&mut client, stream).await });
    tx.send(sent[0].clone()).unwrap();
    common::wait_for("the first try's failure", Duration::from_secs(5), || {
        backend.received().len() == 1
    })
    .await;
    tx.send(sent[1].clone()).unwrap();
    tx.send(sent[2].clone()).unwrap();
    drop(tx);
    let answer = call.await.unwrap().expect("retried to success");
    assert_eq!(answer, sent.concat());
    assert_eq!(backend.received(), vec![failed(&sent[..1]), ok(&sent)]);
    assert_eq!(h.log_lines(1).await[0]["retries"], 1);
}

/// An HTTP/1.1 server recording each request body; answers 503 to the first
/// `fail_first` requests after reading their body.
async fn recording_server(fail_first: usize) -> (SocketAddr, Arc<Mutex<Vec<Bytes>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let seen = seen.clone();
                async move {
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(body);
                        seen.len()
                    };
                    let status = if n <= fail_first {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    };
                    let mut resp = Response::new(Full::new(Bytes::from(format!("try {n}\n"))));
                    *resp.status_mut() = status;
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, bodies)
}

fn h1_config(upstream: SocketAddr, buffer: u64) -> String {
    common::one_route(
        &format!(
            "    retry: {{attempts: 2, retryNonIdempotent: true, bodyBufferBytes: {buffer}, backoff: {{base: 1ms, max: 2ms}}}}"
        ),
        &common::service("svc", &[upstream]),
    )
}

/// A body file for curl, removed when dropped.
struct BodyFile(std::path::PathBuf, Bytes);

impl BodyFile {
    fn new(len: usize) -> Self {
        let bytes: Bytes = (0..len)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into();
        let path = std::env::temp_dir().join(format!(
            "meshgate-retry-body-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::write(&path, &bytes).unwrap();
        BodyFile(path, bytes)
    }

    fn arg(&self) -> String {
        format!("@{}", self.0.display())
    }
}

impl Drop for BodyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn curl_chunked(h: &common::Harness, file: &BodyFile) -> String {
    h.curl(&[
        "-X",
        "POST",
        "-H",
        "Transfer-Encoding: chunked",
        // No `100 Continue` interim answer in the output to skip.
        "-H",
        "Expect:",
        "--data-binary",
        &file.arg(),
        &h.url("/upload"),
    ])
    .await
}

#[tokio::test]
async fn a_chunked_post_is_replayed_identically_after_a_503() {
    let (upstream, bodies) = recording_server(1).await;
    let h = common::start(&h1_config(upstream, 65536)).await;
    let file = BodyFile::new(40_000);
    let out = curl_chunked(&h, &file).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("try 2\n"), "{out}");
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    assert!(
        bodies.iter().all(|b| *b == file.1),
        "both tries got the identical body"
    );
    let log = h.log_lines(1).await;
    assert_eq!(log[0]["retries"], 1, "{}", log[0]);
    assert_eq!(log[0]["bytes_in"], 40_000);
}

#[tokio::test]
async fn a_chunked_post_past_the_buffer_gets_the_503() {
    let (upstream, bodies) = recording_server(1).await;
    let h = common::start(&h1_config(upstream, 1024)).await;
    let file = BodyFile::new(40_000);
    let out = curl_chunked(&h, &file).await;
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert_eq!(bodies.lock().unwrap().len(), 1, "not retried");
    assert_eq!(h.log_lines(1).await[0]["retries"], 0);
}

#[tokio::test]
async fn an_upstream_answering_before_reading_gets_a_replay() {
    // The testkit backend answers 503 without reading the body, possibly while the
    // gateway is still streaming it: the retry replays what was sent, then the rest.
    let b = Backend::start_with(
        "early",
        Behaviour {
            fail_first: 1,
            ..Default::default()
        },
    )
    .await;
    let h = common::start(&h1_config(b.addr, 65536)).await;
    let file = BodyFile::new(50_000);
    let out = curl_chunked(&h, &file).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["bodyBytes"], 50_000);
    assert_eq!(b.hits(), 2);
    assert_eq!(h.log_lines(1).await[0]["retries"], 1);
}
