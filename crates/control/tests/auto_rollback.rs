//! Automatic rollback end to end: a control plane with `auto_rollback` (real
//! TLS gRPC) and three real gateways fed by it. Version 2 adds a listener on a
//! port the test holds, so a gateway that must bind it NACKs; a gateway given a
//! node-local transform (`client::start_gateway_with`, what `meshgate gateway
//! --listen` uses) binds elsewhere and ACKs. Two NACKs of three: the control
//! plane commits version 3 with version 1's content and the automatic-rollback
//! note, every gateway ends on 3 serving version 1's routes, and the counter is
//! 1. One NACK of three: version 2 stays.

mod discovery_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use discovery_support::{
    GATEWAY_TOKEN, PATIENCE, doc, gateway_identity, get, public, wait_for_config,
};
use meshgate_config::Config;
use meshgate_control::client::{self, Backoff, FedGateway, Settings, Transform};
use meshgate_control::proto::v1::Document;
use meshgate_control::server::rollback::{AutoRollback, Verdict};
use meshgate_control::server::{ControlPlane, Options, Scope, Token, Tokens, metrics, operator};
use meshgate_control::store::NewRevision;
use meshgate_control::store::embedded::EmbeddedStore;
use meshgate_testkit::Backend;
use meshgate_testkit::certs::TestCa;
use tonic::transport::Identity;

/// A control plane with automatic rollback, serving on 127.0.0.1:0.
struct Plane {
    cp: Arc<ControlPlane>,
    url: String,
    ca: TestCa,
    dir: tempfile::TempDir,
}

impl Plane {
    async fn start() -> Plane {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("control"), 10).unwrap();
        let options = Options {
            replica: "cp-1".into(),
            tokens: Tokens(vec![Token {
                name: "gateways".into(),
                secret: GATEWAY_TOKEN.into(),
                scope: Scope::Proxy {
                    role: "gateway".into(),
                    services: vec![],
                },
            }]),
            // The verdict comes as soon as all three answered; the window only
            // bounds a test that goes wrong.
            auto_rollback: Some(AutoRollback {
                window: PATIENCE,
                ..AutoRollback::default()
            }),
        };
        let cp = ControlPlane::start(store, options);
        let ca = TestCa::new("auto-rollback");
        let cert = ca.server_cert("control", &["localhost", "127.0.0.1"]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let identity = Identity::from_pem(&cert.cert_pem, &cert.key_pem);
        let serving = cp.clone();
        tokio::spawn(async move { serving.serve(listener, identity).await });
        Plane { cp, url, ca, dir }
    }

    /// Commits v1 straight to the store (no rollout watch: nothing to judge).
    async fn first_version(&self, yaml: String) {
        let next = NewRevision {
            yaml,
            source: "v1.yaml".into(),
            note: String::new(),
        };
        self.cp.store.commit(0, next).await.unwrap();
    }

    /// Applies `yaml` as an operator would (validation, commit, rollout watch).
    async fn apply(&self, yaml: String) -> u64 {
        let document = Document {
            yaml,
            source: "v2.yaml".into(),
        };
        operator::apply_document(&self.cp, document, 0, "test")
            .await
            .unwrap()
            .version
    }

    /// A gateway named `node`; `elsewhere` moves its listener `extra` to a free
    /// port (a node-local override), so only the others need the held port.
    async fn gateway(&self, node: &str, elsewhere: bool) -> FedGateway {
        let settings = Settings {
            control: self.url.clone(),
            ca_pem: self.ca.ca_pem().into_bytes(),
            token: GATEWAY_TOKEN.into(),
            identity: gateway_identity(node),
            data_dir: self.dir.path().join(node),
            build: "test".into(),
            backoff: Backoff {
                initial: Duration::from_millis(50),
                cap: Duration::from_millis(500),
            },
        };
        let transform: Transform = Arc::new(move |config: &mut Config| {
            if let Some(extra) = config.listeners.iter_mut().find(|l| l.name == "extra")
                && elsewhere
            {
                extra.address = "127.0.0.1:0".parse().unwrap();
            }
            Ok(())
        });
        let compiler = Arc::new(meshgate_core::filter::NoPolicies);
        tokio::time::timeout(
            PATIENCE,
            client::start_gateway_with(settings, compiler, transform),
        )
        .await
        .expect("gateway started in time")
        .expect("gateway settings are valid")
    }

    fn current(&self) -> u64 {
        self.cp
            .store
            .config()
            .borrow()
            .as_ref()
            .map_or(0, |r| r.version)
    }

    /// Waits until the rollout watcher has reached `verdict` once.
    async fn verdict(&self, verdict: Verdict) {
        let deadline = Instant::now() + PATIENCE;
        while self.cp.metrics.rollbacks().verdicts(verdict) == 0 {
            assert!(Instant::now() < deadline, "no verdict {verdict:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nacks_of_three_roll_back_and_every_gateway_ends_on_the_old_content() {
    let plane = Plane::start().await;
    let app = Backend::start("app").await;
    let v1_yaml = doc(app.addr, &["/one"], None, 0);
    plane.first_version(v1_yaml.clone()).await;
    let gateways = [
        plane.gateway("gw-1", false).await,
        plane.gateway("gw-2", false).await,
        plane.gateway("gw-3", true).await,
    ];
    for g in &gateways {
        wait_for_config(g, 1).await;
    }

    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let v2 = plane.apply(doc(app.addr, &["/two"], Some(port), 0)).await;
    assert_eq!(v2, 2);
    plane.verdict(Verdict::RolledBack).await;

    assert_eq!(plane.current(), 3);
    let v3 = plane.cp.store.get(3).await.unwrap();
    assert_eq!(v3.yaml, v1_yaml, "v3 has v1's content");
    assert!(
        v3.note
            .starts_with("automatic rollback: 2 of 3 proxies refused v2: ")
            && v3.note.contains("cannot listen"),
        "{}",
        v3.note
    );
    for g in &gateways {
        wait_for_config(g, 3).await;
        assert_eq!(get(public(g), "/one").await, 200);
        assert_eq!(get(public(g), "/two").await, 404);
        assert!(g.gateway.local_addr("extra").is_none());
    }
    let m = &plane.cp.metrics;
    assert_eq!(m.rollbacks().rollbacks(), 1);
    assert_eq!(m.answers(false), 2, "two NACKs of v2");
    let text = metrics::render(&plane.cp).await.unwrap();
    assert!(
        text.contains("meshgate_control_auto_rollbacks_total 1"),
        "{text}"
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_nack_of_three_keeps_the_version() {
    let plane = Plane::start().await;
    let app = Backend::start("app").await;
    plane.first_version(doc(app.addr, &["/one"], None, 0)).await;
    let gateways = [
        plane.gateway("gw-1", false).await,
        plane.gateway("gw-2", true).await,
        plane.gateway("gw-3", true).await,
    ];
    for g in &gateways {
        wait_for_config(g, 1).await;
    }

    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    plane.apply(doc(app.addr, &["/two"], Some(port), 0)).await;
    plane.verdict(Verdict::Kept).await;

    assert_eq!(plane.current(), 2);
    assert_eq!(plane.cp.metrics.rollbacks().rollbacks(), 0);
    for g in &gateways[1..] {
        wait_for_config(g, 2).await;
        assert_eq!(get(public(g), "/two").await, 200);
    }
    // The refusing gateway keeps serving version 1.
    let refusing = &gateways[0];
    assert!(
        refusing
            .applied
            .borrow()
            .as_deref()
            .is_some_and(|v| v.starts_with("1-"))
    );
    assert_eq!(get(public(refusing), "/one").await, 200);
    assert_eq!(get(public(refusing), "/two").await, 404);
    drop(held);
}
