//! The Operator service over real TLS gRPC (tonic server and client on
//! 127.0.0.1:0, certificates from a test CA) on the embedded store: apply refuses
//! invalid documents and stores nothing, identical documents are unchanged,
//! expected versions are enforced, rollback makes a new version with old content,
//! history and status, operator scope; and automatic rollback when too many
//! proxies (proxy records written as the discovery stream reports them) NACK.

use std::sync::Arc;
use std::time::{Duration, Instant};

use meshgate_control::proto::v1::operator_client::OperatorClient;
use meshgate_control::proto::v1::{ApplyRequest, Document, Empty, RollbackRequest};
use meshgate_control::server::rollback::{AutoRollback, Verdict};
use meshgate_control::server::{ControlPlane, Options, Scope, Token, Tokens};
use meshgate_control::store::embedded::EmbeddedStore;
use meshgate_control::store::{ProxyRecord, Store};
use meshgate_testkit::certs::TestCa;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request};

const OPS: &str = "ops-secret-token";
const PROXY: &str = "gateway-secret-token";

const V1: &str = "services:\n  - name: api\n    endpoints: [\"127.0.0.1:9001\"]\n";
const V2: &str = "services:\n  - name: api\n    endpoints: [\"127.0.0.1:9002\"]\n";
const V3: &str = "services:\n  - name: api\n    endpoints: [\"127.0.0.1:9003\"]\n";

struct Harness {
    store: Arc<EmbeddedStore>,
    client: OperatorClient<Channel>,
    _dir: tempfile::TempDir,
    _ca: TestCa,
}

async fn start(auto_rollback: Option<AutoRollback>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 10).unwrap();
    let tokens = Tokens(vec![
        Token {
            name: "ops".into(),
            secret: OPS.into(),
            scope: Scope::Operator,
        },
        Token {
            name: "gateways".into(),
            secret: PROXY.into(),
            scope: Scope::Proxy {
                role: "gateway".into(),
                services: vec![],
            },
        },
    ]);
    let options = Options {
        replica: "cp-1".into(),
        tokens,
        auto_rollback,
    };
    let cp = ControlPlane::start(store.clone(), options);
    let ca = TestCa::new("operator");
    let cert = ca.server_cert("control", &["localhost"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let identity = Identity::from_pem(&cert.cert_pem, &cert.key_pem);
    tokio::spawn(async move { cp.serve(listener, identity).await });
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.ca_pem()))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS connection to the control plane");
    Harness {
        store,
        client: OperatorClient::new(channel),
        _dir: dir,
        _ca: ca,
    }
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn doc(yaml: &str, source: &str) -> Document {
    Document {
        yaml: yaml.into(),
        source: source.into(),
    }
}

impl Harness {
    async fn apply(&self, yaml: &str, expected: u64) -> Result<(u64, bool), tonic::Status> {
        let request = ApplyRequest {
            document: Some(doc(yaml, "test.yaml")),
            expected_version: expected,
        };
        let r = self
            .client
            .clone()
            .apply(with_token(request, OPS))
            .await?
            .into_inner();
        Ok((r.version, r.unchanged))
    }

    async fn rollback(&self, version: u64) -> Result<u64, tonic::Status> {
        let r = self
            .client
            .clone()
            .rollback(with_token(RollbackRequest { version }, OPS))
            .await?;
        Ok(r.into_inner().version)
    }

    fn current(&self) -> u64 {
        self.store
            .config()
            .borrow()
            .as_ref()
            .map_or(0, |r| r.version)
    }
}

fn record(node: &str, acked: u64, nacked: u64, reason: &str) -> ProxyRecord {
    ProxyRecord {
        role: "gateway".into(),
        node_id: node.into(),
        service: String::new(),
        namespace: String::new(),
        connected: true,
        acked: format!("{acked}-00000000"),
        acked_config: acked,
        nacked: if nacked == 0 {
            String::new()
        } else {
            format!("{nacked}-00000000")
        },
        nacked_config: nacked,
        nack_reason: reason.into(),
        desired: format!("{}-00000000", acked.max(nacked)),
        last_seen_ms: meshgate_control::store::now_ms(),
        build: "test".into(),
        replica: "cp-1".into(),
    }
}

/// Waits (bounded) for a condition only the server's background work makes true.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn invalid_apply_is_refused_with_positions_and_nothing_is_stored() {
    let h = start(None).await;
    let bad = "services:\n  - name: api\n    endpoints: [\"127.0.0.1:9001\"]\n    bogus: 1\n";
    let err = h.apply(bad, 0).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("test.yaml:4:"), "{}", err.message());
    assert!(h.store.history().await.unwrap().is_empty());
    assert_eq!(h.current(), 0);

    let err = h
        .client
        .clone()
        .plan(with_token(doc(bad, "plan.yaml"), OPS))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("plan.yaml:4:"), "{}", err.message());
}

#[tokio::test]
async fn identical_apply_is_unchanged_and_expected_version_is_enforced() {
    let h = start(None).await;
    assert_eq!(h.apply(V1, 0).await.unwrap(), (1, false));
    let reformatted = format!("# same content\n{V1}");
    assert_eq!(h.apply(&reformatted, 0).await.unwrap(), (1, true));
    assert_eq!(h.store.history().await.unwrap().len(), 1);

    let err = h.apply(V2, 7).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("version 1 is running"),
        "{}",
        err.message()
    );
    assert_eq!(h.current(), 1);
    assert_eq!(h.apply(V2, 1).await.unwrap(), (2, false));
}

#[tokio::test]
async fn rollback_commits_old_content_as_a_new_version_and_history_lists_it() {
    let h = start(None).await;
    h.apply(V1, 0).await.unwrap();
    h.apply(V2, 0).await.unwrap();
    assert_eq!(h.rollback(1).await.unwrap(), 3);
    let v3 = h.store.get(3).await.unwrap();
    assert_eq!(v3.yaml, V1);
    assert_eq!(v3.note, "rollback to 1");
    // 0: the version before the current one.
    assert_eq!(h.rollback(0).await.unwrap(), 4);
    assert_eq!(h.store.get(4).await.unwrap().yaml, V2);
    let err = h.rollback(99).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let history = h
        .client
        .clone()
        .history(with_token(Empty {}, OPS))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.current, 4);
    let listed: Vec<(u64, &str)> = history
        .versions
        .iter()
        .map(|v| (v.version, v.note.as_str()))
        .collect();
    assert_eq!(
        listed,
        [(4, "rollback to 2"), (3, "rollback to 1"), (2, ""), (1, "")]
    );
    assert!(history.versions.iter().all(|v| v.source == "test.yaml"));
    assert!(
        history.versions[0].applied_at.ends_with('Z'),
        "{}",
        history.versions[0].applied_at
    );
}

#[tokio::test]
async fn every_call_needs_an_operator_token() {
    let h = start(None).await;
    let mut c = h.client.clone();
    let err = c.status(with_token(Empty {}, PROXY)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = c
        .apply(with_token(
            ApplyRequest {
                document: Some(doc(V1, "x.yaml")),
                expected_version: 0,
            },
            PROXY,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(h.current(), 0);
    let err = c.history(Request::new(Empty {})).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = c.plan(with_token(doc(V1, "x"), "wrong")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn plan_and_status_show_the_proxies() {
    let h = start(None).await;
    h.apply(V1, 0).await.unwrap();
    h.store.report(record("gw-1", 1, 0, "")).await.unwrap();
    h.store
        .report(record("gw-2", 0, 1, "bad cert"))
        .await
        .unwrap();
    let plan = h
        .client
        .clone()
        .plan(with_token(doc(V2, "next.yaml"), OPS))
        .await
        .unwrap()
        .into_inner();
    assert!(plan.changes);
    assert_eq!(plan.running_version, 1);
    assert!(
        plan.text
            .contains("services[api].endpoints[127.0.0.1:9002]"),
        "{}",
        plan.text
    );
    assert!(
        plan.text.contains("affects: 2 gateways (gw-1, gw-2)"),
        "{}",
        plan.text
    );
    let same = h
        .client
        .clone()
        .plan(with_token(doc(V1, "same.yaml"), OPS))
        .await
        .unwrap()
        .into_inner();
    assert!(!same.changes);
    assert_eq!(same.text, "No changes.\n");

    let status = h
        .client
        .clone()
        .status(with_token(Empty {}, OPS))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.current, 1);
    let states: Vec<(String, String, String)> = status
        .proxies
        .iter()
        .map(|p| {
            let id = p.identity.clone().unwrap_or_default();
            (id.node_id, p.state.clone(), p.nack_reason.clone())
        })
        .collect();
    assert_eq!(
        states,
        [
            ("gw-1".into(), "current".into(), "".into()),
            ("gw-2".into(), "rejected".into(), "bad cert".into())
        ]
    );
    assert_eq!(status.proxies[0].replica, "cp-1");
}

fn auto(window: Duration) -> AutoRollback {
    AutoRollback {
        window,
        ..AutoRollback::default()
    }
}

/// Applies V1 (all three gateways serve it), then V2, which the gateways answer
/// as `answers` says (true: NACK).
async fn roll_out(h: &Harness, answers: [bool; 3]) {
    h.apply(V1, 0).await.unwrap();
    for node in ["gw-a", "gw-b", "gw-c"] {
        h.store.report(record(node, 1, 0, "")).await.unwrap();
    }
    assert_eq!(h.apply(V2, 1).await.unwrap(), (2, false));
    for (node, nack) in ["gw-a", "gw-b", "gw-c"].into_iter().zip(answers) {
        let r = if nack {
            record(node, 1, 2, &format!("{node}: endpoint refused"))
        } else {
            record(node, 2, 0, "")
        };
        h.store.report(r).await.unwrap();
    }
}

#[tokio::test]
async fn two_of_three_nacks_roll_back_automatically() {
    let settings = auto(Duration::from_secs(60));
    let metrics = settings.metrics.clone();
    let h = start(Some(settings)).await;
    roll_out(&h, [true, true, false]).await;
    // The window is long: the verdict comes from all three having answered.
    let mut config = h.store.config();
    tokio::time::timeout(
        Duration::from_secs(15),
        config.wait_for(|r| r.as_ref().is_some_and(|r| r.version == 3)),
    )
    .await
    .expect("automatic rollback within 15 s")
    .unwrap();
    let v3 = h.store.get(3).await.unwrap();
    assert_eq!(v3.yaml, V1);
    assert_eq!(
        v3.note,
        "automatic rollback: 2 of 3 proxies refused v2: gw-a: endpoint refused"
    );
    until("the rollback to be counted", || metrics.rollbacks() == 1).await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.registry()).unwrap();
    assert!(
        text.contains("meshgate_control_auto_rollbacks_total 1"),
        "{text}"
    );
    // A new apply is not rolled back by the old watcher.
    assert_eq!(h.apply(V3, 3).await.unwrap(), (4, false));
}

#[tokio::test]
async fn one_of_three_nacks_keeps_the_version() {
    let settings = auto(Duration::from_secs(60));
    let metrics = settings.metrics.clone();
    let h = start(Some(settings)).await;
    roll_out(&h, [false, true, false]).await;
    // Two verdicts: v1's (kept, or superseded by v2) and v2's.
    const ALL: [Verdict; 6] = [
        Verdict::Kept,
        Verdict::RolledBack,
        Verdict::NoPrevious,
        Verdict::TooFewAnswers,
        Verdict::Superseded,
        Verdict::Failed,
    ];
    let total = || ALL.iter().map(|v| metrics.verdicts(*v)).sum::<u64>();
    until("both rollout verdicts", || total() == 2).await;
    assert_eq!(
        metrics.verdicts(Verdict::Kept) + metrics.verdicts(Verdict::Superseded),
        2
    );
    assert!(metrics.verdicts(Verdict::Kept) >= 1);
    assert_eq!(h.current(), 2);
    assert_eq!(metrics.rollbacks(), 0);
}

#[tokio::test]
async fn a_silent_proxy_does_not_hold_the_verdict_past_the_window() {
    let settings = auto(Duration::from_millis(500));
    let metrics = settings.metrics.clone();
    let h = start(Some(settings)).await;
    h.apply(V1, 0).await.unwrap();
    for node in ["gw-a", "gw-b", "gw-c"] {
        h.store.report(record(node, 1, 0, "")).await.unwrap();
    }
    // gw-c never answers v2; two NACKs of two answers is a full refusal. The
    // answers are recorded before the apply so that even a slow machine cannot
    // reach the end of the short window before they are there.
    h.store.report(record("gw-a", 1, 2, "no")).await.unwrap();
    h.store.report(record("gw-b", 1, 2, "no")).await.unwrap();
    h.apply(V2, 1).await.unwrap();
    until("the window to end in a rollback", || {
        metrics.rollbacks() == 1
    })
    .await;
    assert_eq!(h.current(), 3);
    assert_eq!(h.store.get(3).await.unwrap().yaml, V1);
}
