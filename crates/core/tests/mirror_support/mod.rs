//! What the mirroring integration tests share: a test server that records what it
//! received and answers per path, configs with a mirror, and metric readers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::common::{Harness, Reply};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What a test server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub host: String,
    pub request_id: String,
    pub body: Bytes,
}

type Answer = fn(&str) -> (StatusCode, String);

/// A small HTTP/1.1 server of the test's own: records every request and answers
/// `answer(path)` as JSON after `delay` (the testkit echo names its backend, so two
/// of them never answer alike).
pub struct Server {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    pub async fn start(answer: Answer, delay: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes();
                            let header = |n: &str| {
                                parts.headers.get(n).map_or(String::new(), |v| {
                                    v.to_str().unwrap_or_default().to_owned()
                                })
                            };
                            log.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                path: parts.uri.path_and_query().unwrap().to_string(),
                                host: header("host"),
                                request_id: header("x-request-id"),
                                body,
                            });
                            tokio::time::sleep(delay).await;
                            let (status, json) = answer(parts.uri.path());
                            Ok::<_, hyper::Error>(
                                Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(json)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Server { addr, seen }
    }

    pub fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

pub fn echo_ok(_: &str) -> (StatusCode, String) {
    (StatusCode::OK, r#"{"ok":true}"#.into())
}

/// One listener; route `r` to `svc` mirrored to `shadow` with the given mirror
/// settings (a YAML flow mapping's inner part).
pub fn mirrored(primary: SocketAddr, shadow: SocketAddr, mirror: &str) -> String {
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
routes:
  - name: r
    backendRefs: [{{name: svc}}]
    mirror: {{service: shadow, {mirror}}}
services:
  - {{name: svc, endpoints: [\"{primary}\"]}}
  - {{name: shadow, endpoints: [\"{shadow}\"], preserveHost: true}}
"
    )
}

/// A counter's value in the metrics text (0 when absent).
pub fn counter(h: &Harness, name: &str, labels: &str) -> u64 {
    let text = h.gateway.metrics().encode();
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

pub fn mirror_result(h: &Harness, route: &str, result: &str) -> u64 {
    counter(
        h,
        "meshgate_mirror_requests_total",
        &format!("route=\"{route}\",result=\"{result}\""),
    )
}

pub async fn post(h: &Harness, path: &str, body: &'static str, id: &str) -> Reply {
    h.send(
        Method::POST,
        "api.test",
        path,
        &[("content-type", "application/json"), ("x-request-id", id)],
        Bytes::from_static(body.as_bytes()),
    )
    .await
}
