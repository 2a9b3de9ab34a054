//! gRPC through the gateway with a real tonic client and server (the standard
//! `grpc.health.v1` service): unary and server-streaming calls over h2c to an
//! `HTTP2` service, a bidirectional stream (tonic-reflection's
//! `ServerReflectionInfo`), trailers passed through, and the gateway's own failures
//! answered as gRPC statuses (UNAVAILABLE, UNIMPLEMENTED, DEADLINE_EXCEEDED).

mod common;
mod grpc_support;

use std::net::SocketAddr;
use std::time::Duration;

use tonic::Code;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// An h2c server that accepts gRPC calls and never answers within `delay`.
async fn slow_server(delay: Duration) -> SocketAddr {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(move |_req| async move {
                tokio::time::sleep(delay).await;
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                    bytes::Bytes,
                >::new()))
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

fn config(upstream: SocketAddr) -> String {
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
routes:
  - name: health
    matches: [{{path: {{type: PathPrefix, value: /grpc.health.v1.Health}}}}]
    backendRefs: [{{name: grpc}}]
services:
  - name: grpc
    protocol: HTTP2
    endpoints: [\"{upstream}\"]
"
    )
}

async fn client(h: &common::Harness) -> HealthClient<tonic::transport::Channel> {
    grpc_support::health_client(h.addr).await
}

#[tokio::test]
async fn unary_and_streaming_calls_pass_through() {
    let (upstream, reporter) = grpc_support::health_server(&["greeter"]).await;
    let h = common::start(&config(upstream)).await;
    let mut c = client(&h).await;

    let resp = c
        .check(HealthCheckRequest {
            service: "greeter".into(),
        })
        .await
        .expect("unary call");
    assert_eq!(resp.into_inner().status, ServingStatus::Serving as i32);

    // An unknown service is the upstream's own NOT_FOUND, carried in trailers.
    let err = c
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Server streaming: the first status, then a change pushed by the server.
    let mut stream = c
        .watch(HealthCheckRequest {
            service: "greeter".into(),
        })
        .await
        .expect("streaming call")
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    reporter
        .set_service_status("greeter", ServingStatus::NotServing)
        .await;
    let next = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the change arrives")
        .unwrap()
        .unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);

    let log = h.log_lines(2).await;
    assert_eq!(log[0]["route"], "health");
    assert_eq!(log[0]["protocol"], "HTTP/2.0");
}

#[tokio::test]
async fn gateway_failures_are_grpc_statuses() {
    // Upstream down → UNAVAILABLE (not an HTTP 503 a gRPC client cannot read).
    let h = common::start(&config(common::dead_addr())).await;
    let mut c = client(&h).await;
    let err = c
        .check(HealthCheckRequest {
            service: "greeter".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(err.message(), "could not connect to the upstream");
    let log = h.log_lines(1).await;
    assert_eq!(log[0]["reason"], "upstream_connect_failure");
    assert_eq!(log[0]["status"], 200, "gRPC errors travel in a 200");

    // No route for the method → UNIMPLEMENTED.
    let other_routes = config(common::dead_addr()).replace("/grpc.health.v1.Health", "/some.Other");
    let h = common::start(&other_routes).await;
    let err = client(&h)
        .await
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
}

#[tokio::test]
async fn grpc_timeout_bounds_the_call() {
    let upstream = slow_server(Duration::from_secs(5)).await;
    let h = common::start(&config(upstream)).await;
    // A raw HTTP/2 gRPC request: tonic's client would enforce the deadline itself
    // and race the gateway; here only the gateway can answer.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = http::Request::post(format!("http://{}/grpc.health.v1.Health/Check", h.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "300m")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ])))
        .unwrap();
    let started = std::time::Instant::now();
    let resp = client.request(req).await.expect("an answer");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED");
    let log = h.log_lines(1).await;
    assert_eq!(log[0]["reason"], "request_timeout");
}

/// Bidirectional streaming (tonic-reflection's `ServerReflectionInfo`): each
/// request is answered before the next is sent, so the two directions interleave
/// on one stream through the gateway; closing the request side ends the call.
#[tokio::test]
async fn bidi_streaming_interleaves_both_ways() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let reflection = tonic_reflection::server::Builder::configure()
        .build_v1()
        .expect("reflection service");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(reflection)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let yaml = config(upstream).replace(
        "/grpc.health.v1.Health",
        "/grpc.reflection.v1.ServerReflection",
    );
    let h = common::start(&yaml).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", h.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = ServerReflectionClient::new(channel);

    let (tx, rx) = tokio::sync::mpsc::channel::<ServerReflectionRequest>(1);
    let requests =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let ask = |host: &str, request: MessageRequest| ServerReflectionRequest {
        host: host.into(),
        message_request: Some(request),
    };
    // The first message goes out before the call's response headers can arrive.
    let first = ask("one", MessageRequest::ListServices(String::new()));
    tx.send(first.clone()).await.unwrap();
    let mut responses = c
        .server_reflection_info(requests)
        .await
        .expect("bidi call")
        .into_inner();
    let r = next(&mut responses).await;
    assert_eq!(r.original_request.as_ref(), Some(&first));
    let Some(MessageResponse::ListServicesResponse(list)) = r.message_response else {
        panic!("{r:?}");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "grpc.reflection.v1.ServerReflection"),
        "{list:?}"
    );

    // Three more round trips on the same stream, each answer awaited before the
    // next request is sent.
    for (i, symbol) in [
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1.ServerReflectionRequest",
        "grpc.reflection.v1.ServerReflectionResponse",
    ]
    .into_iter()
    .enumerate()
    {
        let req = ask(
            &format!("round-{i}"),
            MessageRequest::FileContainingSymbol(symbol.into()),
        );
        tx.send(req.clone()).await.unwrap();
        let r = next(&mut responses).await;
        assert_eq!(r.original_request.as_ref(), Some(&req), "answers in order");
        let Some(MessageResponse::FileDescriptorResponse(f)) = r.message_response else {
            panic!("{symbol}: {r:?}");
        };
        assert!(!f.file_descriptor_proto.is_empty());
    }

    // Closing the request side ends the call cleanly (grpc-status 0 in trailers).
    drop(tx);
    let end = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("the call ends");
    assert!(matches!(end, Ok(None)), "{end:?}");
    let log = h.log_lines(1).await;
    assert_eq!(log[0]["route"], "health");
    assert_eq!(log[0]["status"], 200);
}

/// The next message of a stream that must still be open, within 5 s.
async fn next<T>(responses: &mut tonic::codec::Streaming<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("an answer in time")
        .expect("no error")
        .expect("the stream is still open")
}
