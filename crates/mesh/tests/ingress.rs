//! Mesh ingress, in process: a gateway fed by the control plane joins the mesh
//! (`meshgate_mesh::ingress::start`, what `meshgate gateway --mesh` runs). An edge
//! request passes the gateway's ApiKey policy, then goes over mTLS with the
//! gateway's mesh identity (`…/sa/gateway`) to B's sidecar, found in the registry,
//! and on to B's app; without the key the edge answers 401 and nothing enters.

mod mesh_support;

use std::sync::Arc;

use mesh_support::*;
use meshgate_config::Config;
use meshgate_control::client::Settings;
use meshgate_control::proto::v1::ProxyIdentity;
use meshgate_mesh::ingress;
use meshgate_testkit::Backend;
use tokio::net::TcpStream;

/// The public demo key of examples/api-keys.yaml and its hash.
const KEY: &str = "mgk_demo-only-never-use-this-key";
const KEY_HASH: &str = "sha256:3816bfd85359f05e6717dd94197a52e8022444df734395e539e26bab6095b3e5";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_request_enters_the_mesh_with_the_gateways_identity() {
    let plane = Plane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = Backend::start("b").await;
    let edge = meshgate_testkit::free_port();
    let doc = format!(
        "accessLog: {{path: 'off'}}
consumers:
  - {{name: acme, apiKeys: ['{KEY_HASH}']}}
policies:
  - {{name: keys, type: ApiKey, apiKey: {{header: x-api-key}}}}
listeners: [{{name: edge, address: '127.0.0.1:{edge}'}}]
routes:
  - name: to-b
    policies: [keys]
    backendRefs: [{{name: b}}]
services:
  - name: b                     # B's sidecars register their inbound address as b
    discovery: {{registry: {{}}}}
    mesh: {{spiffeId: spiffe://cluster.local/ns/default/sa/b}}
mesh:
  services:
    - {{name: b, ports: [{{port: 80}}]}}
"
    );
    plane.commit(doc).await;
    let b = start_sidecars(vec![plane.settings("b", app.addr.port(), dir.path())]).await;

    let settings = Settings {
        control: plane.url.clone(),
        ca_pem: plane.tls_ca.ca_pem().into_bytes(),
        token: GATEWAY_TOKEN.into(),
        identity: ProxyIdentity {
            role: "gateway".into(),
            node_id: "edge-1".into(),
            service: String::new(),
            namespace: String::new(),
        },
        data_dir: dir.path().join("gateway"),
        build: "test".into(),
        backoff: fast_backoff(),
    };
    let started = ingress::start(
        settings,
        "",
        meshgate_policy::Policies::compiler(),
        Arc::new(|_: &mut Config| Ok(())),
    );
    let gateway = tokio::time::timeout(PATIENCE, started)
        .await
        .expect("mesh gateway started in time")
        .unwrap();
    let gateway_id = "spiffe://cluster.local/ns/default/sa/gateway";
    assert_eq!(gateway.identity().spiffe_id().as_str(), gateway_id);
    // The registry lists B's sidecar in the gateway's config.
    let mut applied = gateway.fed.applied.clone();
    let has_b = || {
        let config = gateway.fed.gateway.snapshot().config.clone();
        config
            .services
            .iter()
            .any(|s| s.name == "b" && !s.endpoints.is_empty())
    };
    tokio::time::timeout(PATIENCE, async {
        while !has_b() {
            applied.changed().await.unwrap();
        }
    })
    .await
    .expect("B's sidecar in the gateway's config");

    // With the key: through the gateway, over mTLS to B's sidecar, to B's app.
    let answer = get_with(
        TcpStream::connect(("127.0.0.1", edge)).await.unwrap(),
        "shop.example",
        &format!("x-api-key: {KEY}\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"backend\":\"b\""), "{answer}");
    // B's sidecar verified the gateway's mesh identity.
    until_logged(&log_path(dir.path(), "b"), gateway_id).await;
    // B's app saw the consumer the edge policy identified.
    assert!(answer.to_lowercase().contains("acme"), "{answer}");
    let served = app.hits();

    // Without the key: 401 at the edge, nothing reaches B.
    let answer = get(
        TcpStream::connect(("127.0.0.1", edge)).await.unwrap(),
        "shop.example",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert_eq!(app.hits(), served);

    gateway.shutdown().await;
    for (_, s) in b {
        s.shutdown().await;
    }
}
