//! Retries on gRPC statuses through a real gateway: a raw h2 server answers
//! trailers-only `grpc-status: 14` (UNAVAILABLE) the first N times, then a real
//! `HealthCheckResponse`; with `retryOn: [grpc-unavailable]` the client sees
//! SERVING and the access log counts the retries. Statuses not named (NOT_FOUND
//! from tonic-health) are not retried; bodies streamed without a length (tonic's)
//! are replayed from the copy kept while streaming.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// `HealthCheckRequest { service: "greeter" }`, gRPC-framed.
const REQUEST: &[u8] = b"\0\0\0\0\x09\x0a\x07greeter";
/// `HealthCheckResponse { status: SERVING }`, gRPC-framed.
const SERVING: &[u8] = &[0, 0, 0, 0, 2, 0x08, 1];

type Answer =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// An h2c server failing the first `failures` calls with a trailers-only
/// UNAVAILABLE; counts calls and checks every try carried the whole request.
async fn flaky_server(failures: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let calls = counter.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let calls = calls.clone();
                async move {
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(&body[..], REQUEST, "every try sends the whole message");
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    let resp = Response::builder().header("content-type", "application/grpc");
                    let frames: Vec<Result<Frame<Bytes>, Infallible>> = if n < failures {
                        return Ok::<_, Infallible>(
                            resp.header("grpc-status", "14")
                                .header("grpc-message", "try again")
                                .body(StreamBody::new(futures_util::stream::iter(Vec::new())))
                                .unwrap(),
                        );
                    } else {
                        let mut trailers = HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        vec![
                            Ok(Frame::data(Bytes::from_static(SERVING))),
                            Ok(Frame::trailers(trailers)),
                        ]
                    };
                    let body: Answer = StreamBody::new(futures_util::stream::iter(frames));
                    Ok(resp.body(body).unwrap())
                }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, calls)
}

fn config(upstream: SocketAddr, retry_on: &str) -> String {
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
routes:
  - name: health
    matches: [{{path: {{type: PathPrefix, value: /grpc.health.v1.Health}}}}]
    backendRefs: [{{name: grpc}}]
    retry: {{attempts: 3, retryOn: [{retry_on}], backoff: {{base: 1ms, max: 5ms}}}}
services:
  - name: grpc
    protocol: HTTP2
    endpoints: [\"{upstream}\"]
"
    )
}

/// A unary call with a `content-length` (so the gateway can hold and replay it):
/// the response's grpc-status (headers or trailers) and body.
async fn call(h: &common::Harness) -> (String, Bytes) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = Request::post(format!("http://{}/grpc.health.v1.Health/Check", h.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("content-length", REQUEST.len())
        .body(Full::new(Bytes::from_static(REQUEST)))
        .unwrap();
    let resp = client.request(req).await.expect("an answer");
    assert_eq!(resp.status(), 200);
    let in_headers = resp.headers().get("grpc-status").cloned();
    let collected = resp.into_body().collect().await.unwrap();
    let status = in_headers
        .or_else(|| collected.trailers()?.get("grpc-status").cloned())
        .expect("a grpc-status");
    (status.to_str().unwrap().to_owned(), collected.to_bytes())
}

#[tokio::test]
async fn unavailable_is_retried_until_serving() {
    let (upstream, calls) = flaky_server(2).await;
    let h = common::start(&config(upstream, "grpc-unavailable")).await;
    let (status, body) = call(&h).await;
    assert_eq!(status, "0");
    assert_eq!(&body[..], SERVING);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let log = h.log_lines(1).await;
    assert_eq!(log[0]["retries"], 2, "{}", log[0]);
    assert_eq!(log[0]["status"], 200);
}

#[tokio::test]
async fn retries_run_out_and_the_last_status_is_returned() {
    let (upstream, calls) = flaky_server(10).await;
    let h = common::start(&config(upstream, "grpc-unavailable")).await;
    let (status, _) = call(&h).await;
    assert_eq!(
        status, "14",
        "the upstream's own UNAVAILABLE after 3 retries"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(h.log_lines(1).await[0]["retries"], 3);
}

#[tokio::test]
async fn statuses_not_named_are_not_retried() {
    // grpc-internal is named, UNAVAILABLE is not.
    let (upstream, calls) = flaky_server(1).await;
    let h = common::start(&config(upstream, "grpc-internal")).await;
    let (status, _) = call(&h).await;
    assert_eq!(status, "14");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(h.log_lines(1).await[0]["retries"], 0);

    // tonic-health's NOT_FOUND for an unknown service is never retryable.
    let (reporter, service) = tonic_health::server::health_reporter();
    drop(reporter);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let all = "grpc-cancelled, grpc-deadline-exceeded, grpc-resource-exhausted, grpc-internal, grpc-unavailable";
    let h = common::start(&config(addr, all)).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", h.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let err = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(h.log_lines(1).await[0]["retries"], 0);
}

#[tokio::test]
async fn a_streamed_body_is_retried_from_its_copy() {
    // tonic streams its request bodies without a content-length: the gateway keeps a
    // copy while streaming (up to bodyBufferBytes) and replays it on the retry.
    let (upstream, calls) = flaky_server(1).await;
    let h = common::start(&config(upstream, "grpc-unavailable")).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", h.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "greeter".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status(), ServingStatus::Serving);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(h.log_lines(1).await[0]["retries"], 1);
}
