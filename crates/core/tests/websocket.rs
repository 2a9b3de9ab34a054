//! WebSocket through the gateway with real clients and servers (tokio-tungstenite):
//! the upgrade handshake is proxied, messages flow both ways, the connection
//! survives a config reload, is counted while open, and is closed on shutdown.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket echo server: every text or binary message comes back unchanged.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
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
    addr
}

fn config(echo: SocketAddr, extra_route: &str) -> String {
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
routes:
  - name: ws
    matches: [{{path: {{value: /ws}}}}]
    backendRefs: [{{name: echo}}]
{extra_route}services:
{}",
        common::service("echo", &[echo])
    )
}

fn upgraded_gauge(h: &common::Harness) -> i64 {
    let text = h.gateway.metrics().encode();
    text.lines()
        .find(|l| l.starts_with("meshgate_upgraded_connections "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(-1)
}

#[tokio::test]
async fn messages_flow_and_the_connection_survives_a_reload() {
    let echo = echo_server().await;
    let h = common::start(&config(echo, "")).await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", h.addr))
        .await
        .expect("handshake through the gateway");
    assert_eq!(resp.status(), 101);
    assert!(resp.headers().contains_key("x-request-id"));

    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    let big = vec![7u8; 256 * 1024];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
    common::wait_for(
        "the gauge to count the tunnel",
        Duration::from_secs(5),
        || upgraded_gauge(&h) == 1,
    )
    .await;

    // A reload (a route added) leaves the open connection alone.
    let extra = "  - name: other\n    matches: [{path: {value: /other}}]\n    backendRefs: [{name: echo}]\n";
    let next = meshgate_config::parse_str(&config(echo, extra), "t.yaml").unwrap();
    h.gateway.apply(next).await.unwrap();
    ws.send(Message::text("after reload")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("after reload")
    );

    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    common::wait_for("the gauge to drop", Duration::from_secs(5), || {
        upgraded_gauge(&h) == 0
    })
    .await;
    let log = h.log_lines(1).await;
    assert_eq!(log[0]["status"], 101);
    assert_eq!(log[0]["route"], "ws");
}

#[tokio::test]
async fn shutdown_closes_upgraded_connections() {
    let echo = echo_server().await;
    let h = common::start(&config(echo, "")).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", h.addr))
        .await
        .unwrap();
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ping"));
    tokio::time::timeout(Duration::from_secs(10), h.gateway.shutdown())
        .await
        .expect("shutdown does not wait for the tunnel's idle timeout");
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(m)) if m.is_close() => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the client saw its connection end");
}

#[tokio::test]
async fn a_refused_upgrade_is_an_ordinary_response() {
    // The upstream is a plain HTTP echo: it answers 200, not 101; the client gets
    // that answer and no tunnel is opened.
    let plain = meshgate_testkit::Backend::start("plain").await;
    let h = common::start(&config(plain.addr, "")).await;
    let err = tokio_tungstenite::connect_async(format!("ws://{}/ws", h.addr))
        .await
        .expect_err("no switch");
    assert!(err.to_string().contains("200"), "{err}");
    assert_eq!(upgraded_gauge(&h), 0);
}
