//! What the TLS integration tests share: configs with certificates from the test
//! CA, a rustls client handshake that reports what the server chose, and curl.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::common::Harness;
use meshgate_testkit::certs::{Issued, TestCa};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTPS listener with `tls` (YAML flow mapping) and one route to `backend`.
pub fn https_config(tls: &str, backend: SocketAddr) -> String {
    format!(
        "listeners: [{{name: web, address: \"127.0.0.1:0\", protocol: HTTPS, tls: {tls}}}]
routes:
  - name: r
    backendRefs: [{{name: svc}}]
services:
  - {{name: svc, endpoints: [\"{backend}\"]}}
"
    )
}

pub fn cert_entry(c: &Issued) -> String {
    format!(
        "{{certFile: \"{}\", keyFile: \"{}\"}}",
        c.cert.display(),
        c.key.display()
    )
}

/// What a rustls client saw in the handshake.
pub struct Seen {
    pub leaf: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
}

/// Handshakes with `addr` sending SNI `sni`, and completes one HTTP/1.1 request so
/// errors the server raises after the client's last flight (TLS 1.3 client auth)
/// surface too.
pub async fn handshake(
    addr: SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Seen, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, session) = tls.get_ref();
    let seen = Seen {
        leaf: session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default(),
        alpn: session.alpn_protocol().map(<[u8]>::to_vec),
    };
    tls.write_all(format!("GET / HTTP/1.1\r\nhost: {sni}\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    tls.read_to_end(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    if !reply.starts_with(b"HTTP/1.1 ") {
        return Err(format!(
            "no HTTP reply: {}",
            String::from_utf8_lossy(&reply)
        ));
    }
    Ok(seen)
}

/// Runs curl; returns (success, stdout, stderr).
pub async fn curl(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .await
        .expect("curl runs (apt-get install curl)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--resolve host:port:127.0.0.1` and the URL `https://host:port/path`.
pub fn resolve_url(h: &Harness, host: &str, path: &str) -> (String, String) {
    let port = h.addr.port();
    (
        format!("{host}:{port}:127.0.0.1"),
        format!("https://{host}:{port}{path}"),
    )
}

/// Handshakes until the server presents `want` (bounded wait).
pub async fn wait_for_cert(addr: SocketAddr, ca: &TestCa, want: &Issued) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(seen) = handshake(addr, "a.test", ca.client_config(None)).await
            && seen.leaf == want.cert_der
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
