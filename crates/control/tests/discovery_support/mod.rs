//! Test support for the config stream: a control plane served over real TLS gRPC
//! in its own tokio runtime (so "killing" it drops every connection it held, as a
//! dead process would), gateways fed by it, config documents, raw discovery
//! streams and a tiny HTTP client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshgate_control::client::{self, Backoff, FedGateway, Settings};
use meshgate_control::proto::v1::config_discovery_client::ConfigDiscoveryClient;
use meshgate_control::proto::v1::proxy_message::Kind;
use meshgate_control::proto::v1::{Hello, ProxyIdentity, ProxyMessage, Snapshot};
use meshgate_control::server::{ControlPlane, Options, Scope, Token, Tokens};
use meshgate_control::store::embedded::EmbeddedStore;
use meshgate_control::store::{NewRevision, ProxyRecord, Store};
use meshgate_testkit::certs::{Issued, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub const GATEWAY_TOKEN: &str = "gateway-secret";
pub const REGISTRAR_TOKEN: &str = "registrar-secret";
pub const SIDECAR_TOKEN: &str = "sidecar-orders-secret";

/// How long any awaited condition may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A store in a temp dir, a CA, and a control plane serving on a fixed address
/// (so it can come back on the same port).
pub struct Harness {
    pub store: Arc<dyn Store>,
    pub ca: TestCa,
    cert: Issued,
    pub addr: SocketAddr,
    server: Option<ControlServer>,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = EmbeddedStore::open(&dir.path().join("control"), 50).unwrap();
        let ca = TestCa::new("control");
        let cert = ca.server_cert("control", &["localhost", "127.0.0.1"]);
        let mut harness = Harness {
            store,
            ca,
            cert,
            addr: "127.0.0.1:0".parse().unwrap(),
            server: None,
            dir,
        };
        harness.start_server().await;
        harness
    }

    /// (Re)starts the control plane on `self.addr`, on the same store.
    pub async fn start_server(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        let server = loop {
            match ControlServer::start(self.store.clone(), self.addr, &self.cert) {
                Ok(s) => break s,
                // A killed runtime closes its listener on its own thread, soon.
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebinding {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot listen on {}: {e}", self.addr),
            }
        };
        self.addr = server.addr;
        self.server = Some(server);
    }

    /// Kills the control plane: its runtime and every connection go away at once.
    pub fn kill_server(&mut self) {
        if let Some(s) = self.server.take() {
            s.kill();
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// Commits `yaml` as the next version; returns its number.
    pub async fn commit(&self, yaml: String) -> u64 {
        let current = self
            .store
            .config()
            .borrow()
            .as_ref()
            .map_or(0, |r| r.version);
        let next = NewRevision {
            yaml,
            source: "test".into(),
            note: String::new(),
        };
        self.store.commit(current, next).await.unwrap().version
    }

    pub fn settings(&self, node: &str, data_dir: &Path) -> Settings {
        Settings {
            control: self.url(),
            ca_pem: self.ca.ca_pem().into_bytes(),
            token: GATEWAY_TOKEN.into(),
            identity: gateway_identity(node),
            data_dir: data_dir.to_owned(),
            build: "test".into(),
            // Short, so tests that wait for a reconnect do not wait long.
            backoff: Backoff {
                initial: Duration::from_millis(50),
                cap: Duration::from_millis(500),
            },
        }
    }

    /// A gateway fed by this control plane, its data in `data_dir`.
    pub fn gateway(&self, node: &str, data_dir: &Path) -> impl Future<Output = FedGateway> + use<> {
        let started = client::start_gateway(
            self.settings(node, data_dir),
            Arc::new(meshgate_core::filter::NoPolicies),
        );
        async move {
            tokio::time::timeout(PATIENCE, started)
                .await
                .expect("gateway started in time")
                .expect("gateway settings are valid")
        }
    }

    /// The proxy record of `node`, once `ready` holds for it.
    pub async fn proxy_where(
        &self,
        node: &str,
        ready: impl Fn(&ProxyRecord) -> bool,
    ) -> ProxyRecord {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let all = self.store.proxies().await.unwrap();
            if let Some(r) = all.iter().find(|r| r.node_id == node && ready(r)) {
                return r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "proxy {node} never matched; records: {all:#?}"
            );
            // The store has no watch of proxy records: poll.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A raw client for the discovery service (`small_window`: a 64 KiB HTTP/2
    /// receive window, so a stream that is not read fills up quickly).
    pub async fn raw_client(&self, small_window: bool) -> ConfigDiscoveryClient<Channel> {
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(self.ca.ca_pem()));
        let mut endpoint = Endpoint::from_shared(self.url())
            .unwrap()
            .tls_config(tls)
            .unwrap();
        if small_window {
            endpoint = endpoint
                .initial_stream_window_size(65_535)
                .initial_connection_window_size(65_535);
        }
        ConfigDiscoveryClient::new(endpoint.connect().await.unwrap())
            .max_decoding_message_size(64 * 1024 * 1024)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.kill_server();
    }
}

pub fn gateway_identity(node: &str) -> ProxyIdentity {
    ProxyIdentity {
        role: "gateway".into(),
        node_id: node.into(),
        ..Default::default()
    }
}

/// Opens a discovery stream saying Hello as `identity`; the sender keeps the
/// request side open (drop it to end the stream).
pub async fn open_stream(
    client: &mut ConfigDiscoveryClient<Channel>,
    token: Option<&str>,
    identity: ProxyIdentity,
) -> Result<(tonic::Streaming<Snapshot>, mpsc::Sender<ProxyMessage>), tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    let hello = Hello {
        identity: Some(identity),
        running: String::new(),
        build: "raw".into(),
    };
    tx.send(ProxyMessage {
        kind: Some(Kind::Hello(hello)),
    })
    .await
    .unwrap();
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let stream = client.stream(request).await?.into_inner();
    Ok((stream, tx))
}

/// A control plane in its own single-threaded-worker runtime.
struct ControlServer {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
}

impl ControlServer {
    fn start(
        store: Arc<dyn Store>,
        addr: SocketAddr,
        cert: &Issued,
    ) -> std::io::Result<ControlServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("control-plane")
            .enable_all()
            .build()?;
        let bound = {
            let _in_runtime = runtime.enter();
            bind(addr)
        };
        let listener = match bound {
            Ok(l) => l,
            Err(e) => {
                // A runtime may not be dropped (blocking) inside the test's runtime.
                runtime.shutdown_background();
                return Err(e);
            }
        };
        let addr = listener.local_addr()?;
        let cp = {
            let _in_runtime = runtime.enter();
            ControlPlane::start(store, options())
        };
        let identity = Identity::from_pem(&cert.cert_pem, &cert.key_pem);
        runtime.spawn(async move {
            if let Err(e) = cp.serve(listener, identity).await {
                eprintln!("control plane stopped: {e}");
            }
        });
        Ok(ControlServer { runtime, addr })
    }

    fn kill(self) {
        self.runtime.shutdown_background();
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    // The port may have TIME_WAIT connections from the previous run.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn options() -> Options {
    let token = |name: &str, secret: &str, scope| Token {
        name: name.into(),
        secret: secret.into(),
        scope,
    };
    Options {
        replica: "cp-1".into(),
        auto_rollback: None,
        tokens: Tokens(vec![
            token(
                "gateways",
                GATEWAY_TOKEN,
                Scope::Proxy {
                    role: "gateway".into(),
                    services: vec![],
                },
            ),
            token(
                "registrar",
                REGISTRAR_TOKEN,
                Scope::Registrar { services: vec![] },
            ),
            token(
                "orders-sidecars",
                SIDECAR_TOKEN,
                Scope::Proxy {
                    role: "sidecar".into(),
                    services: vec!["orders".into()],
                },
            ),
        ]),
    }
}

/// A gateway config: listener `public` on port 0, one PathPrefix route per path
/// to the backend, optionally a listener `extra` on a fixed port, and `padding`
/// bytes of comments (to make snapshots big).
pub fn doc(backend: SocketAddr, paths: &[&str], extra_port: Option<u16>, padding: usize) -> String {
    let mut yaml = String::from(
        "accessLog: {path: \"off\"}\nruntime: {drainTimeout: 1s}\nlisteners:\n  - name: public\n    address: 127.0.0.1:0\n",
    );
    if let Some(port) = extra_port {
        yaml += &format!("  - name: extra\n    address: 127.0.0.1:{port}\n");
    }
    yaml += "routes:\n";
    for path in paths {
        let name = path.trim_start_matches('/');
        yaml += &format!(
            "  - name: r-{name}\n    matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    backendRefs: [{{name: app}}]\n"
        );
    }
    yaml += &format!("services:\n  - name: app\n    endpoints: [\"{backend}\"]\n");
    let line = format!("# {}\n", "x".repeat(77));
    while padding > 0 && yaml.len() < padding {
        yaml += &line;
    }
    yaml
}

/// The status of `GET path` on `addr` (a fresh connection, closed after).
pub async fn get(addr: SocketAddr, path: &str) -> u16 {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    conn.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}

/// The address of a gateway's `public` listener.
pub fn public(g: &FedGateway) -> SocketAddr {
    g.gateway.local_addr("public").expect("listener public")
}

/// Waits until the gateway serves a snapshot of config version `config`.
pub async fn wait_for_config(g: &FedGateway, config: u64) -> String {
    let prefix = format!("{config}-");
    let mut applied: watch::Receiver<Option<String>> = g.applied.clone();
    let seen = tokio::time::timeout(
        PATIENCE,
        applied.wait_for(|v| v.as_deref().is_some_and(|v| v.starts_with(&prefix))),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "config {config} not applied; serving {:?}",
            g.applied.borrow()
        )
    })
    .expect("client running");
    seen.clone().unwrap_or_default()
}
