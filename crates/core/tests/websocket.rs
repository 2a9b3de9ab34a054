//! WebSocket through the gateway with real clients and servers (tokio-tungstenite):
//! the upgrade handshake is proxied, messages flow both ways, the connection
//! survives a config reload, is counted while open, is closed on shutdown and
//! after the route's `timeouts.upgradeIdle` without traffic.

mod common;
mod websocket_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use websocket_support::{echo_server, upgraded_gauge};

fn config(echo: SocketAddr, extra_route: &str) -> String {
    websocket_support::config(echo, "", extra_route)
}

#[tokio::test]
async fn messages_flow_and_the_connection_survives_a_reload() {
    let echo = echo_server().await.addr;
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
    let echo = echo_server().await.addr;
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

/// Reads until the connection ends (close frame, end of stream or error).
async fn until_closed<S>(ws: &mut S)
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await {
            None | Some(Err(_)) => return,
            Some(Ok(m)) if m.is_close() => return,
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_upgrade_idle_and_a_busy_one_is_not() {
    let echo = echo_server().await.addr;
    let idle = Duration::from_millis(300);
    let h = common::start(&websocket_support::config(
        echo,
        "    timeouts: {upgradeIdle: 300ms}\n",
        "",
    ))
    .await;
    let url = format!("ws://{}/ws", h.addr);
    let (mut quiet, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut busy, _) = tokio_tungstenite::connect_async(&url).await.unwrap();

    quiet.send(Message::text("once")).await.unwrap();
    assert_eq!(quiet.next().await.unwrap().unwrap(), Message::text("once"));
    let last_byte = Instant::now();
    let quiet_side = async {
        tokio::time::timeout(Duration::from_secs(5), until_closed(&mut quiet))
            .await
            .expect("the gateway closes the idle connection");
        last_byte.elapsed()
    };
    // Talks every 100ms for four idle periods: never quiet for 300ms.
    let busy_side = async {
        for i in 0..12 {
            let text = format!("tick {i}");
            busy.send(Message::text(text.clone())).await.unwrap();
            assert_eq!(busy.next().await.unwrap().unwrap(), Message::text(text));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (quiet_for, ()) = tokio::join!(quiet_side, busy_side);
    assert!(
        quiet_for >= idle,
        "closed only after the idle timeout, got {quiet_for:?}"
    );
    // Still open after 1.2s with a 300ms idle timeout.
    busy.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        busy.next().await.unwrap().unwrap(),
        Message::text("still here")
    );
    common::wait_for(
        "only the busy tunnel to remain",
        Duration::from_secs(5),
        || upgraded_gauge(&h) == 1,
    )
    .await;
    busy.close(None).await.unwrap();
    until_closed(&mut busy).await;
    common::wait_for("the gauge to drop", Duration::from_secs(5), || {
        upgraded_gauge(&h) == 0
    })
    .await;
}
