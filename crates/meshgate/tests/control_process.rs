//! The control plane and gateways as real processes: `meshgate control` (its
//! generated CA, tokens from files), `meshgate gateway --control` ×2 and the
//! operator CLI (`meshgate apply`, `meshgate status`) against a real backend.
//! A change reaches both gateways; they keep serving when the control plane is
//! killed, a gateway restarted meanwhile serves from its last-good snapshot, and
//! a restarted control plane (same data dir, same CA) pushes the next change.
//! With real etcd: two control-plane replicas, a gateway on each; a change
//! applied through one replica reaches the gateway of the other.

mod common;
mod control_support;

use std::time::{Duration, Instant};

use common::{BIN, Proc};
use control_support::{
    ControlDir, GatewayNode, HttpClient, document, get, http_client, path, wait_serving,
};
use meshgate_testkit::Backend;
use meshgate_testkit::etcd::Etcd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_follow_the_control_plane_and_survive_its_outage() {
    let backend = Backend::start("app").await;
    let client: HttpClient = http_client();
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
    let client: HttpClient = http_client();
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
    let client: HttpClient = http_client();
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
