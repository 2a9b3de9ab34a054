//! Shared harness for the in-process integration tests: a real gateway on
//! 127.0.0.1:0 built from YAML, a real hyper client, real curl, and the access log.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshgate_core::Gateway;
use meshgate_core::access_log::AccessLog;

pub struct Harness {
    pub gateway: Gateway,
    pub addr: SocketAddr,
    pub log_path: PathBuf,
    client: Client<HttpConnector, Full<Bytes>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// Which testkit backend answered.
    pub fn backend(&self) -> String {
        self.json()["backend"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Starts a gateway from `yaml`; its first listener is the one requests go to.
/// Listener addresses in tests are `127.0.0.1:0`.
pub async fn start(yaml: &str) -> Harness {
    start_with(yaml, std::sync::Arc::new(meshgate_core::filter::NoPolicies)).await
}

/// Like `start`, compiling `policies:` with `compiler`.
pub async fn start_with(
    yaml: &str,
    compiler: std::sync::Arc<dyn meshgate_core::filter::PolicyCompiler>,
) -> Harness {
    let config = meshgate_config::parse_str(yaml, "test.yaml")
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
    let log_path = std::env::temp_dir().join(format!(
        "meshgate-test-{}-{}.log",
        std::process::id(),
        fastrand_id()
    ));
    let log =
        AccessLog::open(log_path.to_str().expect("utf-8 temp path")).expect("open access log");
    let first = config.listeners[0].name.clone();
    let gateway = Gateway::start_with_policies(config, log, compiler)
        .await
        .expect("gateway starts");
    let addr = gateway.local_addr(&first).expect("listener bound");
    let client = Client::builder(TokioExecutor::new()).build_http();
    Harness {
        gateway,
        addr,
        log_path,
        client,
    }
}

fn fastrand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64)
}

impl Harness {
    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.send(Method::GET, host, path, &[], Bytes::new()).await
    }

    pub async fn send(
        &self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        self.send_to(self.addr, method, host, path, headers, body)
            .await
    }

    pub async fn send_to(
        &self,
        addr: SocketAddr,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .client
            .request(req.body(Full::new(body)).unwrap())
            .await
            .expect("gateway answers");
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// Access log lines once at least `n` are written (bounded wait).
    pub async fn log_lines(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs curl against the gateway; returns (status line code, headers+body text).
    /// Async so the in-process gateway keeps running on the test's runtime meanwhile.
    pub async fn curl(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "-i", "--max-time", "20"])
            .args(args)
            .output()
            .await
            .expect("curl runs (apt-get install curl)");
        assert!(
            out.status.success(),
            "curl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// A `services:` entry for a list of backend addresses.
pub fn service(name: &str, addrs: &[SocketAddr]) -> String {
    let eps: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!("  - name: {name}\n    endpoints: [{}]\n", eps.join(", "))
}

/// An address nothing listens on (bound, then released).
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// One listener, one route `r` to service `svc` with `route_extra` lines appended
/// to the route, and the `services` entries given.
pub fn one_route(route_extra: &str, services: &str) -> String {
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
routes:
  - name: r
    backendRefs: [{{name: svc}}]
{route_extra}
services:
{services}"
    )
}

/// Polls `cond` every 5 ms; the time it took, or a panic after `limit`.
pub async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}
