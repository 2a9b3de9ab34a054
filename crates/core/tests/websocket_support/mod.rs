//! Helpers shared by the WebSocket tests (`websocket`, `websocket_h2`): a real
//! tokio-tungstenite echo server that records the handshakes it accepted, the
//! gateway config in front of it, and the upgraded-connections gauge.

// Each test crate uses a subset of these.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use crate::common;

/// What the echo server saw of one accepted handshake.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    pub version: Option<String>,
}

/// A running WebSocket echo server: every text or binary message comes back
/// unchanged.
pub struct Echo {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Handshake>>>,
}

impl Echo {
    pub fn handshakes(&self) -> Vec<Handshake> {
        self.seen.lock().unwrap().clone()
    }
}

pub async fn echo_server() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Handshake>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                // The callback's error type is tungstenite's, not ours to shrink.
                #[allow(clippy::result_large_err)]
                let callback = |req: &Request, resp: Response| {
                    let header = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    record.lock().unwrap().push(Handshake {
                        method: req.method().to_string(),
                        path: req.uri().to_string(),
                        host: header("host"),
                        version: header("sec-websocket-version"),
                    });
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        if ws.send(msg).await.is_err() {
                            return;
                        }
                    } else if msg.is_close() {
                        return;
                    }
                }
            });
        }
    });
    Echo { addr, seen }
}

/// One listener `l`, route `ws` (`/ws`, with `route_extra` lines appended to it)
/// to service `echo` at `echo`, then `extra_route` (more routes).
pub fn config(echo: SocketAddr, route_extra: &str, extra_route: &str) -> String {
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
routes:
  - name: ws
    matches: [{{path: {{value: /ws}}}}]
    backendRefs: [{{name: echo}}]
{route_extra}{extra_route}services:
{}",
        common::service("echo", &[echo])
    )
}

/// The `meshgate_upgraded_connections` gauge.
pub fn upgraded_gauge(h: &common::Harness) -> i64 {
    let text = h.gateway.metrics().encode();
    text.lines()
        .find(|l| l.starts_with("meshgate_upgraded_connections "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(-1)
}
