//! L4 listeners end to end: a real TCP echo server behind a `TCP` listener (round
//! trip, 10 MB intact, idle timeout, upstream down, drain), and two real rustls
//! servers behind a `TLS` passthrough listener, reached by a rustls client whose SNI
//! picks the backend and who sees that backend's own certificate (so the gateway
//! did not terminate TLS); unknown or missing SNI is refused; a reload changes the
//! routes for new connections while an open one carries on.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meshgate_testkit::certs::{Issued, TestCa};
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const LIMIT: Duration = Duration::from_secs(10);

/// A TCP server echoing every byte back, half-closing when the client does.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A TLS server presenting `cert`: says `<tag>\n`, then echoes.
async fn tls_backend(cert: &Issued, tag: &'static str) -> SocketAddr {
    let acceptor = TlsAcceptor::from(cert.server_config(&[]));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                if tls.write_all(format!("{tag}\n").as_bytes()).await.is_err() {
                    return;
                }
                let (mut r, mut w) = tokio::io::split(tls);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A TLS connection through the gateway at `addr` with server name `sni` (an IP
/// address sends no SNI), trusting only `ca`.
async fn tls_connect(
    addr: SocketAddr,
    ca: &TestCa,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let connector = TlsConnector::from(ca.client_config(None));
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    tokio::time::timeout(LIMIT, connector.connect(name, tcp))
        .await
        .expect("handshake ends")
}

/// The first certificate the server presented on `tls`.
fn peer_cert(tls: &TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref()
        .1
        .peer_certificates()
        .expect("server certificate")[0]
        .to_vec()
}

/// Reads one `\n`-terminated line.
async fn read_line<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        let n = tokio::time::timeout(LIMIT, s.read(&mut byte))
            .await
            .expect("line in time")
            .expect("read");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&line));
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap().trim_end().to_owned()
}

/// Writes `msg` and reads the same number of bytes back.
async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(LIMIT, s.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("echo");
    back
}

/// Waits until the peer closes `s` (end of stream or reset); how long that took.
async fn closed<S: AsyncRead + Unpin>(s: &mut S) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(LIMIT, s.read(&mut buf)).await {
            Err(_) => panic!("connection still open after {LIMIT:?}"),
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

/// The access log's connection lines (those with a `listener` field), once there
/// are at least `n`.
async fn connection_lines(h: &common::Harness, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let lines: Vec<Value> = h
            .log_lines(0)
            .await
            .into_iter()
            .filter(|l| l.get("listener").is_some())
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tcp_config(extra_l4: &str, endpoints: &[SocketAddr]) -> String {
    format!(
        "listeners:
  - {{name: tcp, address: \"127.0.0.1:0\", protocol: TCP, l4: {{service: echo{extra_l4}}}}}
services:
{}",
        common::service("echo", endpoints)
    )
}

#[tokio::test]
async fn tcp_bytes_round_trip_and_are_logged_and_counted() {
    let echo = echo_server().await;
    let h = common::start(&tcp_config("", &[echo])).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    assert_eq!(round_trip(&mut c, b"ping").await, b"ping");
    assert_eq!(round_trip(&mut c, b"pong!").await, b"pong!");
    // Half-close: the echo server sees the end and closes its side too.
    c.shutdown().await.unwrap();
    closed(&mut c).await;

    let lines = connection_lines(&h, 1).await;
    let line = &lines[0];
    assert_eq!(line["protocol"], "tcp");
    assert_eq!(line["listener"], "tcp");
    assert_eq!(line["client"], "127.0.0.1");
    assert_eq!(line["service"], "echo");
    assert_eq!(line["upstream"], echo.to_string());
    assert_eq!(line["bytes_in"], 9);
    assert_eq!(line["bytes_out"], 9);
    assert_eq!(line["reason"], Value::Null);
    assert!(line["connect_ms"].as_f64().is_some(), "{line}");

    let metrics = h.gateway.metrics().encode();
    for want in [
        "meshgate_l4_connections_total{listener=\"tcp\",service=\"echo\"} 1",
        "meshgate_l4_bytes_total{listener=\"tcp\",direction=\"in\"} 9",
        "meshgate_l4_bytes_total{listener=\"tcp\",direction=\"out\"} 9",
        "meshgate_connections_total{listener=\"tcp\"} 1",
    ] {
        assert!(metrics.contains(want), "missing {want} in\n{metrics}");
    }
    let metrics = h.gateway.metrics().clone();
    common::wait_for("no active connections", LIMIT, || {
        metrics
            .encode()
            .contains("meshgate_active_connections{listener=\"tcp\"} 0")
    })
    .await;
}

#[tokio::test]
async fn ten_megabytes_arrive_intact() {
    let echo = echo_server().await;
    let h = common::start(&tcp_config("", &[echo])).await;
    let mut rng = fastrand::Rng::with_seed(42);
    let data: Vec<u8> = (0..10 * 1024 * 1024).map(|_| rng.u8(..)).collect();
    let c = TcpStream::connect(h.addr).await.unwrap();
    let (mut r, mut w) = c.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::with_capacity(data.len());
    tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut back))
        .await
        .expect("echo of 10 MB in time")
        .unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "echoed bytes differ");
    let line = &connection_lines(&h, 1).await[0];
    assert_eq!(line["bytes_in"], data.len());
    assert_eq!(line["bytes_out"], data.len());
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let echo = echo_server().await;
    let h = common::start(&tcp_config(", idleTimeout: 300ms", &[echo])).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    assert_eq!(round_trip(&mut c, b"hi").await, b"hi");
    closed(&mut c).await;
    let line = &connection_lines(&h, 1).await[0];
    assert_eq!(line["reason"], "idle_timeout");
    assert!(line["duration_ms"].as_f64().unwrap() >= 300.0, "{line}");
}

#[tokio::test]
async fn upstream_down_closes_the_client_connection() {
    let dead = common::dead_addr();
    let h = common::start(&tcp_config("", &[dead])).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    closed(&mut c).await;
    let line = &connection_lines(&h, 1).await[0];
    assert_eq!(line["reason"], "upstream_connect_failure");
    assert_eq!(line["service"], "echo");
    assert_eq!(line["upstream"], dead.to_string());
    assert_eq!(line["bytes_out"], 0);
}

#[tokio::test]
async fn connect_failure_tries_another_endpoint() {
    let echo = echo_server().await;
    let dead = common::dead_addr();
    let h = common::start(&tcp_config("", &[dead, echo])).await;
    // Round robin sends every other connection to the dead endpoint first.
    for i in 0..4 {
        let mut c = TcpStream::connect(h.addr).await.unwrap();
        assert_eq!(round_trip(&mut c, b"x").await, b"x", "connection {i}");
    }
}

#[tokio::test]
async fn drain_lets_open_connections_run_then_closes_them() {
    let echo = echo_server().await;
    let config = format!("runtime: {{drainTimeout: 1s}}\n{}", tcp_config("", &[echo]));
    let h = common::start(&config).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    assert_eq!(round_trip(&mut c, b"before").await, b"before");
    let client = async {
        // New connections are refused once the listener has stopped.
        let deadline = Instant::now() + LIMIT;
        while TcpStream::connect(h.addr).await.is_ok() {
            assert!(Instant::now() < deadline, "listener still accepting");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The open connection still works during the drain.
        assert_eq!(round_trip(&mut c, b"during").await, b"during");
        closed(&mut c).await
    };
    let ((), _) = tokio::join!(h.gateway.shutdown(), client);
    let lines = connection_lines(&h, 1).await;
    let drained: Vec<&Value> = lines
        .iter()
        .filter(|l| l["reason"] == "drain_timeout")
        .collect();
    assert_eq!(drained.len(), 1, "{lines:?}");
    assert_eq!(drained[0]["bytes_in"], 12);
}

/// A CA, two backends (A: a.test, B: b.test; both also *.shared.test), and the
/// config of a TLS listener routing a.test → a, b.test → b and `shared` → `to`.
struct TlsSetup {
    ca: TestCa,
    a: Issued,
    b: Issued,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
}

impl TlsSetup {
    async fn new() -> Self {
        let ca = TestCa::new("l4");
        let a = ca.server_cert("a", &["a.test", "*.shared.test"]);
        let b = ca.server_cert("b", &["b.test", "*.shared.test"]);
        let a_addr = tls_backend(&a, "A").await;
        let b_addr = tls_backend(&b, "B").await;
        TlsSetup {
            ca,
            a,
            b,
            a_addr,
            b_addr,
        }
    }

    fn config(&self, shared_to: &str, extra_l4: &str) -> String {
        format!(
            "listeners:
  - name: tls
    address: \"127.0.0.1:0\"
    protocol: TLS
    l4:
      routes:
        - {{hostnames: [a.test], service: a}}
        - {{hostnames: [b.test], service: b}}
        - {{hostnames: [x.shared.test], service: {shared_to}}}
{extra_l4}services:
{}{}",
            common::service("a", &[self.a_addr]),
            common::service("b", &[self.b_addr]),
        )
    }
}

#[tokio::test]
async fn tls_passthrough_routes_by_sni_without_terminating() {
    let s = TlsSetup::new().await;
    let h = common::start(&s.config("a", "")).await;

    let mut to_a = tls_connect(h.addr, &s.ca, "a.test").await.expect("a.test");
    assert_eq!(peer_cert(&to_a), s.a.cert_der, "A's own certificate");
    assert_eq!(read_line(&mut to_a).await, "A");
    assert_eq!(round_trip(&mut to_a, b"secret").await, b"secret");

    let mut to_b = tls_connect(h.addr, &s.ca, "B.TEST").await.expect("b.test");
    assert_eq!(peer_cert(&to_b), s.b.cert_der, "B's own certificate");
    assert_eq!(read_line(&mut to_b).await, "B");

    let unknown = tls_connect(h.addr, &s.ca, "c.test").await;
    assert!(unknown.is_err(), "unknown SNI must be refused");
    let no_sni = tls_connect(h.addr, &s.ca, "127.0.0.1").await;
    assert!(no_sni.is_err(), "a hello without SNI must be refused");

    to_a.shutdown().await.unwrap();
    closed(&mut to_a).await;
    to_b.shutdown().await.unwrap();
    closed(&mut to_b).await;
    let lines = connection_lines(&h, 4).await;
    let find = |reason: Value, sni: Value| {
        lines
            .iter()
            .find(|l| l["reason"] == reason && l["server_name"] == sni)
            .unwrap_or_else(|| panic!("no line with {reason} {sni} in {lines:?}"))
    };
    let a = find(Value::Null, "a.test".into());
    assert_eq!(a["protocol"], "tls");
    assert_eq!(a["service"], "a");
    assert_eq!(a["upstream"], s.a_addr.to_string());
    // The ClientHello and the encrypted records all count, so more than the payload.
    assert!(a["bytes_in"].as_u64().unwrap() > 6, "{a}");
    assert_eq!(find(Value::Null, "b.test".into())["service"], "b");
    let c = find("unknown_sni".into(), "c.test".into());
    assert_eq!(c["service"], Value::Null);
    assert_eq!(c["upstream"], Value::Null);
    find("no_sni".into(), Value::Null);
    let metrics = h.gateway.metrics().encode();
    let want = "meshgate_l4_connections_total{listener=\"tls\",service=\"none\"} 2";
    assert!(metrics.contains(want), "missing {want} in\n{metrics}");
}

#[tokio::test]
async fn tls_default_service_takes_unmatched_and_missing_names() {
    let s = TlsSetup::new().await;
    let h = common::start(&s.config("a", "      service: b\n")).await;
    let mut other = tls_connect(h.addr, &s.ca, "y.shared.test").await.unwrap();
    assert_eq!(peer_cert(&other), s.b.cert_der);
    assert_eq!(read_line(&mut other).await, "B");
    // No SNI goes to the default too (where the client rejects B's certificate, which
    // has no IP address SAN: the handshake did reach B).
    let no_sni = tls_connect(h.addr, &s.ca, "127.0.0.1").await;
    assert!(
        no_sni.is_err(),
        "B's certificate is not valid for 127.0.0.1"
    );
    other.shutdown().await.unwrap();
    closed(&mut other).await;
    let lines = connection_lines(&h, 2).await;
    for sni in [Value::from("y.shared.test"), Value::Null] {
        let line = lines.iter().find(|l| l["server_name"] == sni).unwrap();
        assert_eq!(line["service"], "b", "{line}");
        assert_eq!(line["upstream"], s.b_addr.to_string(), "{line}");
    }
}

#[tokio::test]
async fn bad_or_slow_client_hellos_are_closed() {
    let s = TlsSetup::new().await;
    let h = common::start(&s.config("a", "      clientHelloTimeout: 300ms\n")).await;
    let mut http = TcpStream::connect(h.addr).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nhost: a.test\r\n\r\n")
        .await
        .unwrap();
    closed(&mut http).await;
    let mut silent = TcpStream::connect(h.addr).await.unwrap();
    let took = closed(&mut silent).await;
    assert!(took >= Duration::from_millis(250), "{took:?}");
    let lines = connection_lines(&h, 2).await;
    let reasons: Vec<&Value> = lines.iter().map(|l| &l["reason"]).collect();
    assert!(reasons.contains(&&"bad_client_hello".into()), "{lines:?}");
    assert!(
        reasons.contains(&&"client_hello_timeout".into()),
        "{lines:?}"
    );
}

#[tokio::test]
async fn reload_changes_sni_routes_for_new_connections() {
    let s = TlsSetup::new().await;
    let h = common::start(&s.config("a", "")).await;
    let mut before = tls_connect(h.addr, &s.ca, "x.shared.test").await.unwrap();
    assert_eq!(peer_cert(&before), s.a.cert_der);
    assert_eq!(read_line(&mut before).await, "A");

    let next = meshgate_config::parse_str(&s.config("b", ""), "t.yaml").unwrap();
    h.gateway.apply(next).await.unwrap();
    assert_eq!(h.gateway.local_addr("tls"), Some(h.addr), "same socket");

    let mut after = tls_connect(h.addr, &s.ca, "x.shared.test").await.unwrap();
    assert_eq!(peer_cert(&after), s.b.cert_der);
    assert_eq!(read_line(&mut after).await, "B");
    // The connection opened before the reload carries on, still to A.
    assert_eq!(round_trip(&mut before, b"still A").await, b"still A");
}
