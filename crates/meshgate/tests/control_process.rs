//! The control plane and gateways as real processes: `meshgate control` (its
//! generated CA, tokens from files), `meshgate gateway --control` ×2 and the
//! operator CLI (`meshgate apply`, `meshgate status`) against a real backend.
//! A change reaches both gateways; they keep serving when the control plane is
//! killed, a gateway restarted meanwhile serves from its last-good snapshot, and
//! a restarted control plane (same data dir, same CA) pushes the next change.
//! With real etcd: two control-plane replicas, a gateway on each; a change
//! applied through one replica reaches the gateway of the other.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{BIN, Proc, TempDir};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshgate_testkit::Backend;
use meshgate_testkit::etcd::Etcd;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const OPERATOR_TOKEN: &str = "op-secret-0123456789";
const GATEWAY_TOKEN: &str = "gw-secret-0123456789";

/// The document applied: `/version` answers `v<version>`, `/app` goes to `backend`.
fn document(version: u32, backend: SocketAddr) -> String {
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
struct ControlDir {
    dir: TempDir,
    config: PathBuf,
    grpc: SocketAddr,
    admin: SocketAddr,
}

impl ControlDir {
    fn new(tag: &str, replica: &str, store: &str) -> ControlDir {
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

    fn url(&self) -> String {
        format!("https://{}", self.grpc)
    }

    fn ca(&self) -> PathBuf {
        self.dir.path("data/ca/ca.pem")
    }

    /// Starts `meshgate control` and waits until its gRPC port listens.
    async fn start(&self) -> Proc {
        let mut cp = Proc::spawn(&self.dir, &["control", "-c", path(&self.config)]);
        cp.wait_listening(self.grpc).await;
        assert!(
            cp.stdout_text().contains("--control-ca"),
            "the CA is announced:\n{}",
            cp.stdout_text()
        );
        cp
    }

    /// `meshgate <args> --control … --control-ca … --token-file <operator>`.
    async fn operator(&self, args: &[&str]) -> String {
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
    async fn apply(&self, version: u32, backend: SocketAddr) {
        let file = self
            .dir
            .write(&format!("v{version}.yaml"), &document(version, backend));
        let out = self.operator(&["apply", "-f", path(&file)]).await;
        assert!(out.contains(&format!("version {version}")), "{out}");
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// One `meshgate gateway` process fed by a control plane.
struct GatewayNode {
    dir: TempDir,
    node: String,
    addr: SocketAddr,
}

impl GatewayNode {
    fn new(node: &str) -> GatewayNode {
        GatewayNode {
            dir: TempDir::new(node),
            node: node.to_owned(),
            addr: ([127, 0, 0, 1], meshgate_testkit::free_port()).into(),
        }
    }

    fn start(&self, cp: &ControlDir) -> Proc {
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

async fn get(client: &HttpClient, url: &str) -> Option<String> {
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
async fn wait_serving(client: &HttpClient, gw: &mut Proc, addr: SocketAddr, version: u32) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_follow_the_control_plane_and_survive_its_outage() {
    let backend = Backend::start("app").await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let cp_dir = ControlDir::new("cp", "control-1", "{embedded: {keep: 5}}");
    let mut cp = cp_dir.start().await;
    let nodes = [GatewayNode::new("gw-1"), GatewayNode::new("gw-2")];
    let mut gws: Vec<Proc> = nodes.iter().map(|n| n.start(&cp_dir)).collect();

    // First config: both gateways start from it.
    let started = Instant::now();
    cp_dir.apply(1, backend.addr).await;
    for (gw, node) in gws.iter_mut().zip(&nodes) {
        wait_serving(&client, gw, node.addr, 1).await;
    }
    println!("version 1 reached both gateways in {:?}", started.elapsed());

    // A change reaches both.
    let started = Instant::now();
    cp_dir.apply(2, backend.addr).await;
    for (gw, node) in gws.iter_mut().zip(&nodes) {
        wait_serving(&client, gw, node.addr, 2).await;
    }
    println!("version 2 reached both gateways in {:?}", started.elapsed());
    let status = cp_dir.operator(&["status"]).await;
    for node in &nodes {
        let line = status.lines().find(|l| l.starts_with(&node.node));
        assert!(
            line.is_some_and(|l| l.contains("current")),
            "status:\n{status}"
        );
    }
    let proxies = get(&client, &format!("http://{}/proxies", cp_dir.admin))
        .await
        .expect("admin /proxies");
    assert!(proxies.contains("\"node_id\":\"gw-2\""), "{proxies}");
    let metrics = get(&client, &format!("http://{}/metrics", cp_dir.admin))
        .await
        .expect("admin /metrics");
    assert!(
        metrics.contains("meshgate_control_proxies{state=\"current\"} 2"),
        "{metrics}"
    );

    // The control plane dies: the gateways keep serving.
    cp.child.kill().expect("SIGKILL the control plane");
    cp.child.wait().expect("reap");
    for (gw, node) in gws.iter_mut().zip(&nodes) {
        wait_serving(&client, gw, node.addr, 2).await;
    }

    // A gateway restarted during the outage serves its last-good snapshot.
    gws[0].signal("TERM");
    let exit = gws[0].wait_exit(Duration::from_secs(30)).await;
    assert!(
        exit.is_some_and(|s| s.success()),
        "drained and exited: {exit:?}"
    );
    gws[0] = nodes[0].start(&cp_dir);
    wait_serving(&client, &mut gws[0], nodes[0].addr, 2).await;
    assert!(
        gws[0]
            .stderr_text()
            .contains("started from the last-good snapshot"),
        "{}",
        gws[0].stderr_text()
    );

    // The control plane returns on the same data dir (same CA): the next change
    // reaches both gateways once they have reconnected.
    let _cp = cp_dir.start().await;
    let started = Instant::now();
    cp_dir.apply(3, backend.addr).await;
    for (gw, node) in gws.iter_mut().zip(&nodes) {
        wait_serving(&client, gw, node.addr, 3).await;
    }
    println!(
        "version 3 reached both gateways {:?} after the control plane's restart",
        started.elapsed()
    );
    let history = cp_dir.operator(&["history"]).await;
    assert!(history.contains('3'), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_etcd_replica_reaches_the_gateway_of_another() {
    let etcd = Etcd::start().await;
    let backend = Backend::start("app").await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let store = format!(
        "{{etcd: {{endpoints: [\"{}\"], prefix: /meshgate-test}}}}",
        etcd.endpoint()
    );
    let replicas = [
        ControlDir::new("cp-a", "replica-a", &store),
        ControlDir::new("cp-b", "replica-b", &store),
    ];
    let _cps = [replicas[0].start().await, replicas[1].start().await];
    let nodes = [GatewayNode::new("gw-a"), GatewayNode::new("gw-b")];
    let mut gws = [nodes[0].start(&replicas[0]), nodes[1].start(&replicas[1])];

    for version in 1..=2 {
        let started = Instant::now();
        replicas[0].apply(version, backend.addr).await;
        for (gw, node) in gws.iter_mut().zip(&nodes) {
            wait_serving(&client, gw, node.addr, version).await;
        }
        println!(
            "version {version} applied through replica-a reached the gateways of both replicas in {:?}",
            started.elapsed()
        );
    }
    // Each replica shows every proxy, with the replica holding its stream.
    let status = replicas[1].operator(&["status"]).await;
    assert!(
        status.contains("gw-a") && status.contains("replica-a") && status.contains("replica-b"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_document_is_version_one_and_config_errors_are_located() {
    let backend = Backend::start("app").await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let cp_dir = ControlDir::new("cp-boot", "control-1", "{embedded: {}}");

    // A typo in control.yaml: refused with file:line:col, nothing starts.
    let broken = cp_dir.dir.write(
        "broken.yaml",
        "# meshgate control config\ndataDir: data\ntokens:\n  - {name: a, tokenFile: t, scope: admin}\n",
    );
    let out = tokio::process::Command::new(BIN)
        .args(["control", "-c", path(&broken)])
        .output()
        .await
        .expect("run meshgate control");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("broken.yaml:4:") && stderr.contains("tokens[0].scope"),
        "{stderr}"
    );

    let config = std::fs::read_to_string(&cp_dir.config).unwrap();
    cp_dir.dir.write("boot.yaml", &document(1, backend.addr));
    std::fs::write(&cp_dir.config, format!("{config}bootstrap: boot.yaml\n")).unwrap();
    let _cp = cp_dir.start().await;
    let node = GatewayNode::new("gw-boot");
    let mut gw = node.start(&cp_dir);
    wait_serving(&client, &mut gw, node.addr, 1).await;
    let history = cp_dir.operator(&["history"]).await;
    assert!(history.contains("bootstrap"), "{history}");
}
