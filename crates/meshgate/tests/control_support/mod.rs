//! Shared by the control-plane process tests (`control_process`,
//! `control_admin`): a `meshgate control` directory (config, token files, data
//! dir with its generated CA) and process, the operator CLI against it,
//! `meshgate gateway --control` nodes, and an HTTP client to watch what the
//! gateways serve.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::common::{BIN, Proc, TempDir};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub const OPERATOR_TOKEN: &str = "op-secret-0123456789";
pub const GATEWAY_TOKEN: &str = "gw-secret-0123456789";

/// The document applied: `/version` answers `v<version>`, `/app` goes to `backend`.
pub fn document(version: u32, backend: SocketAddr) -> String {
    format!(
        "accessLog: {{path: \"off\"}}
admin: {{enabled: false}}
listeners: [{{name: public, address: \"127.0.0.1:1\"}}]
routes:
  - name: version
    matches: [{{path: {{type: Exact, value: /version}}}}]
    filters: [{{type: DirectResponse, directResponse: {{status: 200, body: \"v{version}\"}}}}]
  - name: app
    matches: [{{path: {{type: PathPrefix, value: /app}}}}]
    backendRefs: [{{name: svc}}]
services:
  - {{name: svc, endpoints: [\"{backend}\"]}}
"
    )
}

/// A control plane's directory: its config, token files, data dir, logs.
pub struct ControlDir {
    pub dir: TempDir,
    pub config: PathBuf,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
}

impl ControlDir {
    pub fn new(tag: &str, replica: &str, store: &str) -> ControlDir {
        let dir = TempDir::new(tag);
        dir.write("operator.token", &format!("{OPERATOR_TOKEN}\n"));
        dir.write("gateway.token", GATEWAY_TOKEN);
        let grpc: SocketAddr = ([127, 0, 0, 1], meshgate_testkit::free_port()).into();
        let admin: SocketAddr = ([127, 0, 0, 1], meshgate_testkit::free_port()).into();
        let config = dir.write(
            "control.yaml",
            &format!(
                "# meshgate control config
listen: {grpc}
dataDir: data
replica: {replica}
store: {store}
tokens:
  - {{name: ops, tokenFile: operator.token, scope: operator}}
  - {{name: edge, tokenFile: gateway.token, scope: gateway}}
admin: {{listen: {admin}}}
"
            ),
        );
        ControlDir {
            dir,
            config,
            grpc,
            admin,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.grpc)
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path("data/ca/ca.pem")
    }

    /// Starts `meshgate control` and waits until its gRPC port listens.
    pub async fn start(&self) -> Proc {
        let mut cp = Proc::spawn(&self.dir, &["control", "-c", path(&self.config)]);
        // Both listeners: the admin API binds after the gRPC one, and a test's
        // first call may be to it.
        cp.wait_listening(self.grpc).await;
        cp.wait_listening(self.admin).await;
        assert!(
            cp.stdout_text().contains("--control-ca"),
            "the CA is announced:\n{}",
            cp.stdout_text()
        );
        cp
    }

    /// `meshgate <args> --control … --control-ca … --token-file <operator>`.
    pub async fn operator(&self, args: &[&str]) -> String {
        let token = self.dir.path("operator.token");
        let out = tokio::process::Command::new(BIN)
            .args(args)
            .args(["--control", &self.url(), "--control-ca", path(&self.ca())])
            .args(["--token-file", path(&token)])
            .output()
            .await
            .expect("run the operator CLI");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "meshgate {args:?}: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// Writes version `version` of the document and applies it with the CLI.
    pub async fn apply(&self, version: u32, backend: SocketAddr) {
        let file = self
            .dir
            .write(&format!("v{version}.yaml"), &document(version, backend));
        let out = self.operator(&["apply", "-f", path(&file)]).await;
        assert!(out.contains(&format!("version {version}")), "{out}");
    }
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// One `meshgate gateway` process fed by a control plane.
pub struct GatewayNode {
    pub dir: TempDir,
    pub node: String,
    pub addr: SocketAddr,
}

impl GatewayNode {
    pub fn new(node: &str) -> GatewayNode {
        GatewayNode {
            dir: TempDir::new(node),
            node: node.to_owned(),
            addr: ([127, 0, 0, 1], meshgate_testkit::free_port()).into(),
        }
    }

    pub fn start(&self, cp: &ControlDir) -> Proc {
        let listen = format!("public={}", self.addr);
        let data = self.dir.path("data");
        let token = cp.dir.path("gateway.token");
        Proc::spawn(
            &self.dir,
            &[
                "gateway",
                "--control",
                &cp.url(),
                "--control-ca",
                path(&cp.ca()),
                "--token-file",
                path(&token),
                "--node-id",
                &self.node,
                "--data-dir",
                path(&data),
                "--listen",
                &listen,
                "--admin",
                "off",
            ],
        )
    }
}

pub async fn get(client: &HttpClient, url: &str) -> Option<String> {
    let resp = client
        .request(Request::get(url).body(Full::new(Bytes::new())).ok()?)
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// Waits (bounded) until `gw` answers `/version` with `v<version>` and proxies
/// `/app` to the backend.
pub async fn wait_serving(client: &HttpClient, gw: &mut Proc, addr: SocketAddr, version: u32) {
    let want = format!("v{version}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if get(client, &format!("http://{addr}/version"))
            .await
            .as_deref()
            == Some(&want)
        {
            let app = get(client, &format!("http://{addr}/app/x")).await;
            assert!(
                app.as_deref()
                    .is_some_and(|b| b.contains("\"backend\":\"app\"")),
                "{app:?}"
            );
            return;
        }
        if let Some(status) = gw.child.try_wait().expect("try_wait") {
            panic!("gateway exited ({status}):\n{}", gw.stderr_text());
        }
        assert!(
            Instant::now() < deadline,
            "{addr} never served {want}:\n{}",
            gw.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A plain HTTP/1 client (no TLS: gateways and the admin endpoint).
pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}
