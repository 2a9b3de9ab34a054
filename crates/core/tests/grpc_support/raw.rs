//! A real tonic server and client speaking a bytes-in, bytes-out service (no protobuf
//! code generation): `test.Raw/Unary` echoes its message, `test.Raw/Collect` (client
//! streaming) answers with the messages it received, joined. A backend can fail its
//! first calls with a trailers-only UNAVAILABLE, and records what every call received,
//! so tests can check that a retried call reached the upstream whole.
//!
//! Included by tests with `#[path = "grpc_support/raw.rs"] mod raw;`.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, Streaming};
use tonic::server::{ClientStreamingService, NamedService, UnaryService};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

pub const UNARY: &str = "/test.Raw/Unary";
pub const COLLECT: &str = "/test.Raw/Collect";

/// Messages are their bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// What one call received, and whether it was answered UNAVAILABLE.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub failed: bool,
    pub messages: Vec<Bytes>,
}

/// A running backend (the tonic server runs until the test's runtime ends).
#[derive(Clone)]
pub struct RawBackend {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

struct Inner {
    /// Answer UNAVAILABLE to this many calls first.
    fail_first: usize,
    /// Failing `Collect` calls answer after the first message (the client may still
    /// be sending), not after the whole stream.
    fail_early: bool,
    calls: AtomicUsize,
    received: Mutex<Vec<Received>>,
}

impl Inner {
    fn record(&self, failed: bool, messages: Vec<Bytes>) {
        self.received
            .lock()
            .unwrap()
            .push(Received { failed, messages });
    }
}

impl RawBackend {
    /// Starts a tonic server on 127.0.0.1:0 failing its first `fail_first` calls.
    pub async fn start(fail_first: usize, fail_early: bool) -> RawBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = RawBackend {
            addr: listener.local_addr().unwrap(),
            inner: Arc::new(Inner {
                fail_first,
                fail_early,
                calls: AtomicUsize::new(0),
                received: Mutex::new(Vec::new()),
            }),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(backend.clone())
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        backend
    }

    /// Calls started so far.
    pub fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }

    /// What the calls received, in the order they were answered.
    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }
}

impl NamedService for RawBackend {
    const NAME: &'static str = "test.Raw";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for RawBackend {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok(match req.uri().path() {
                UNARY => grpc.unary(Unary(inner), req).await,
                COLLECT => grpc.client_streaming(Collect(inner), req).await,
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

struct Unary(Arc<Inner>);

impl UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = BoxFuture<Result<Response<Bytes>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move {
            let failing = inner.calls.fetch_add(1, Ordering::SeqCst) < inner.fail_first;
            let message = request.into_inner();
            inner.record(failing, vec![message.clone()]);
            if failing {
                return Err(Status::unavailable("try again"));
            }
            Ok(Response::new(message))
        })
    }
}

struct Collect(Arc<Inner>);

impl ClientStreamingService<Bytes> for Collect {
    type Response = Bytes;
    type Future = BoxFuture<Result<Response<Bytes>, Status>>;

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move {
            let failing = inner.calls.fetch_add(1, Ordering::SeqCst) < inner.fail_first;
            let mut stream = request.into_inner();
            let mut messages = Vec::new();
            while let Some(message) = stream.message().await? {
                messages.push(message);
                if failing && inner.fail_early {
                    break;
                }
            }
            let joined: Vec<u8> = messages.iter().flat_map(|m| m.iter().copied()).collect();
            inner.record(failing, messages);
            if failing {
                return Err(Status::unavailable("try again"));
            }
            Ok(Response::new(Bytes::from(joined)))
        })
    }
}

/// A tonic client for `addr` (the gateway) over h2c.
pub async fn client(addr: SocketAddr) -> tonic::client::Grpc<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid URI")
        .connect()
        .await
        .expect("h2c connection to the gateway");
    tonic::client::Grpc::new(channel)
}

/// A unary call: tonic streams the message with no `content-length`.
pub async fn unary(
    client: &mut tonic::client::Grpc<Channel>,
    message: Bytes,
) -> Result<Bytes, Status> {
    client
        .ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let path = PathAndQuery::from_static(UNARY);
    let response = client.unary(Request::new(message), path, RawCodec).await?;
    Ok(response.into_inner())
}

/// A client-streaming call sending what `messages` yields.
pub async fn collect(
    client: &mut tonic::client::Grpc<Channel>,
    messages: impl futures_util::Stream<Item = Bytes> + Send + 'static,
) -> Result<Bytes, Status> {
    client
        .ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let path = PathAndQuery::from_static(COLLECT);
    let response = client
        .client_streaming(Request::new(messages), path, RawCodec)
        .await?;
    Ok(response.into_inner())
}

/// A message of `len` bytes that differs with `seed` (so a mixed-up replay shows).
pub fn message(seed: u8, len: usize) -> Bytes {
    (0..len)
        .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
        .collect::<Vec<u8>>()
        .into()
}
