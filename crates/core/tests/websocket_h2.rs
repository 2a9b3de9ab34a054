//! WebSocket over HTTP/2 (RFC 8441 extended CONNECT) through the gateway: a real
//! hyper h2 client (h2c, prior knowledge) sends `CONNECT` with `:protocol:
//! websocket`; the gateway forwards the HTTP/1.1 handshake to a real
//! tokio-tungstenite echo server and joins the h2 stream to it. Messages flow both
//! ways, the tunnel is counted, and several share one h2 connection.

mod common;
mod websocket_support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use websocket_support::{config, echo_server, upgraded_gauge};

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// An h2c connection to the gateway, once its SETTINGS allowed extended CONNECT
/// (the h2 client refuses `:protocol` before that).
async fn h2_connection(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let (enabled, is_enabled) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut conn = Box::pin(conn);
        let mut enabled = Some(enabled);
        // hyper reads frames in a task of its own, which does not wake this one
        // when SETTINGS arrive: look again every few milliseconds until they did.
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        let _ = std::future::poll_fn(|cx| {
            let polled = conn.as_mut().poll(cx);
            if enabled.is_some() {
                if conn.is_extended_connect_protocol_enabled() {
                    let _ = enabled.take().map(|tx| tx.send(()));
                } else {
                    while tick.poll_tick(cx).is_ready() {}
                }
            }
            polled
        })
        .await;
    });
    tokio::time::timeout(Duration::from_secs(5), is_enabled)
        .await
        .expect("the gateway's SETTINGS_ENABLE_CONNECT_PROTOCOL in time")
        .expect("the connection stays up");
    sender
}

/// Sends an extended CONNECT for `path`; the WebSocket when the gateway answered
/// 200, else the status.
async fn open(
    sender: &mut SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> Result<Ws, StatusCode> {
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{addr}{path}"))
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    sender.ready().await.unwrap();
    let mut resp = sender.send_request(req).await.unwrap();
    if resp.status() != StatusCode::OK {
        return Err(resp.status());
    }
    assert!(resp.headers().contains_key("x-request-id"));
    assert!(!resp.headers().contains_key("sec-websocket-accept"));
    let stream = hyper::upgrade::on(&mut resp).await.unwrap();
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(stream), Role::Client, None).await)
}

async fn echo(ws: &mut Ws, msg: Message) {
    ws.send(msg.clone()).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), msg);
}

#[tokio::test]
async fn websocket_over_h2_exchanges_messages_and_closes() {
    let echo_srv = echo_server().await;
    let h = common::start(&config(echo_srv.addr, "", "")).await;
    let mut sender = h2_connection(h.addr).await;
    let mut ws = open(&mut sender, h.addr, "/ws?room=1")
        .await
        .expect("tunnel");

    echo(&mut ws, Message::text("hello over h2")).await;
    echo(&mut ws, Message::binary(vec![1u8, 2, 3])).await;
    // Larger than the h2 stream windows' defaults: flow control both ways.
    echo(&mut ws, Message::binary(vec![7u8; 256 * 1024])).await;
    common::wait_for(
        "the gauge to count the tunnel",
        Duration::from_secs(5),
        || upgraded_gauge(&h) == 1,
    )
    .await;

    // The upstream saw the HTTP/1.1 handshake for the CONNECT's :path/:authority.
    let seen = echo_srv.handshakes();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, "/ws?room=1");
    // `preserveHost` (on by default): the CONNECT's :authority.
    assert_eq!(seen[0].host.as_deref(), Some(h.addr.to_string().as_str()));
    assert_eq!(seen[0].version.as_deref(), Some("13"));

    ws.close(None).await.unwrap();
    // The echo server closes after the close frame; the client sees the end.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the close handshake completed");
    common::wait_for("the gauge to drop", Duration::from_secs(5), || {
        upgraded_gauge(&h) == 0
    })
    .await;
    let log = h.log_lines(1).await;
    assert_eq!(log[0]["status"], 200);
    assert_eq!(log[0]["route"], "ws");
    assert_eq!(log[0]["method"], "CONNECT");
}

#[tokio::test]
async fn two_websockets_share_one_h2_connection() {
    let echo_srv = echo_server().await;
    let h = common::start(&config(echo_srv.addr, "", "")).await;
    let mut sender = h2_connection(h.addr).await;
    let mut a = open(&mut sender, h.addr, "/ws")
        .await
        .expect("first tunnel");
    let mut b = open(&mut sender.clone(), h.addr, "/ws")
        .await
        .expect("second tunnel");
    common::wait_for("both tunnels counted", Duration::from_secs(5), || {
        upgraded_gauge(&h) == 2
    })
    .await;
    // Interleaved, and concurrently: each stream gets its own messages back.
    for i in 0..10 {
        let (ma, mb) = (format!("a{i}"), format!("b{i}"));
        tokio::join!(
            echo(&mut a, Message::text(ma)),
            echo(&mut b, Message::binary(mb.into_bytes()))
        );
    }
    assert_eq!(echo_srv.handshakes().len(), 2);
    let connections = h
        .gateway
        .metrics()
        .encode()
        .lines()
        .find(|l| l.starts_with("meshgate_connections_total{"))
        .map(str::to_owned);
    assert!(
        connections.as_deref().is_some_and(|l| l.ends_with(" 1")),
        "one downstream connection: {connections:?}"
    );
    a.close(None).await.unwrap();
    while let Some(Ok(_)) = a.next().await {}
    common::wait_for("one tunnel left", Duration::from_secs(5), || {
        upgraded_gauge(&h) == 1
    })
    .await;
    // Closing one stream leaves the other (and the connection) working.
    echo(&mut b, Message::text("still here")).await;
    b.close(None).await.unwrap();
    while let Some(Ok(_)) = b.next().await {}
    common::wait_for("no tunnel left", Duration::from_secs(5), || {
        upgraded_gauge(&h) == 0
    })
    .await;
}

#[tokio::test]
async fn an_upstream_that_does_not_switch_is_not_a_tunnel() {
    // A plain HTTP backend answers the handshake 200 (not 101): to an h2 client a
    // 200 would mean "tunnel open", so the gateway answers 502. A 4xx passes
    // through. An HTTP/2 service gets the handshake without its hop-by-hop upgrade
    // headers (HTTP/2 has none), so it cannot switch either: 502 again.
    let plain = meshgate_testkit::Backend::start("plain").await;
    let routes = "  - name: missing
    matches: [{path: {value: /status/404}}]
    backendRefs: [{name: echo}]
  - name: h2
    matches: [{path: {value: /h2}}]
    backendRefs: [{name: h2}]
";
    let mut yaml = config(plain.addr, "", routes);
    yaml.push_str(&format!(
        "  - name: h2\n    protocol: HTTP2\n    endpoints: [\"{}\"]\n",
        plain.addr
    ));
    let h = common::start(&yaml).await;
    let mut sender = h2_connection(h.addr).await;
    for (path, want) in [
        ("/ws", StatusCode::BAD_GATEWAY),
        ("/status/404", StatusCode::NOT_FOUND),
        ("/h2", StatusCode::BAD_GATEWAY),
    ] {
        let got = open(&mut sender, h.addr, path).await.err();
        assert_eq!(got, Some(want), "{path}");
    }
    assert_eq!(upgraded_gauge(&h), 0);
}

#[tokio::test]
async fn other_connects_are_refused() {
    // A catch-all route to a backend that would answer 200 to anything: a CONNECT
    // that is not a WebSocket (plain h2 CONNECT, another :protocol, HTTP/1.1
    // CONNECT) is refused with 400 and never reaches it (a 2xx would tell the
    // client a tunnel is open to nothing).
    let plain = meshgate_testkit::Backend::start("plain").await;
    let yaml = format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]\nroutes:\n  - name: all\n    backendRefs: [{{name: p}}]\nservices:\n{}",
        common::service("p", &[plain.addr])
    );
    let h = common::start(&yaml).await;
    let mut sender = h2_connection(h.addr).await;
    let plain_connect = Request::builder()
        .method(Method::CONNECT)
        .uri(h.addr.to_string())
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(plain_connect).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let mut udp = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{}/x", h.addr))
        .body(Empty::new())
        .unwrap();
    udp.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("connect-udp"));
    let resp = sender.send_request(udp).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // HTTP/1.1 CONNECT, from real curl used as a proxy client (it exits with an
    // error when the tunnel is refused; the code it got is what matters).
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_connect}",
            "--max-time",
            "20",
        ])
        .args([
            "-p",
            "-x",
            &format!("http://{}", h.addr),
            "http://example.com/",
        ])
        .output()
        .await
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400");
    assert_eq!(plain.hits(), 0);
    // Ordinary requests on the same route still go through.
    let resp = h.get("a.example", "/anything").await;
    assert_eq!(resp.status, 200);
    assert_eq!(plain.hits(), 1);
}
