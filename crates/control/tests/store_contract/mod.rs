//! The behaviour every `Store` must have, as checks run against each
//! implementation (embedded and etcd): compare-and-set commits, kept history,
//! lease expiry, deregistration with and without drain, proxy records. Registry
//! changes are awaited, not assumed immediate: the etcd store learns them
//! through its watch.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use meshgate_control::store::{Instance, Instances, NewRevision, ProxyRecord, Store, StoreError};
use tokio::sync::watch;

/// Runs every check, each on a fresh, empty store from `make(keep)`.
pub async fn check_all<F, Fut>(mut make: F)
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    commits_are_numbered_and_compare_and_set(make(3).await).await;
    keeps_the_newest_versions(make(3).await).await;
    leases_expire_without_heartbeats(make(3).await).await;
    deregistration_removes_or_drains(make(3).await).await;
    unknown_leases_are_not_found(make(3).await).await;
    proxy_records_are_listed_by_key(make(3).await).await;
}

pub fn doc(n: u64) -> NewRevision {
    NewRevision {
        yaml: format!("# version {n}\n"),
        source: format!("file{n}.yaml"),
        note: String::new(),
    }
}

pub fn instance(service: &str, name: &str) -> Instance {
    Instance {
        service: service.into(),
        instance: name.into(),
        address: format!("{name}:80"),
        weight: 1,
        draining: false,
    }
}

pub fn record(role: &str, node: &str, replica: &str) -> ProxyRecord {
    ProxyRecord {
        role: role.into(),
        node_id: node.into(),
        service: String::new(),
        namespace: String::new(),
        connected: true,
        acked: "3-abc".into(),
        acked_config: 3,
        nacked: String::new(),
        nacked_config: 0,
        nack_reason: String::new(),
        desired: "3-abc".into(),
        last_seen_ms: 1,
        build: "test".into(),
        replica: replica.into(),
    }
}

/// Waits (at most 10 s) until the watched value satisfies `ok`.
pub async fn wait_until<T: Clone>(
    rx: &mut watch::Receiver<T>,
    what: &str,
    ok: impl Fn(&T) -> bool,
) -> T {
    let wait = rx.wait_for(|v| ok(v));
    match tokio::time::timeout(Duration::from_secs(10), wait).await {
        Ok(Ok(v)) => v.clone(),
        Ok(Err(_)) => panic!("{what}: the store closed its watch"),
        Err(_) => panic!("{what}: not within 10 s"),
    }
}

/// Instances of `service`, by name (empty if none).
pub fn names(all: &Instances, service: &str) -> Vec<String> {
    all.get(service)
        .map(|s| s.keys().cloned().collect())
        .unwrap_or_default()
}

async fn commits_are_numbered_and_compare_and_set(store: Arc<dyn Store>) {
    let mut follow = store.config();
    assert!(follow.borrow_and_update().is_none());
    assert_eq!(store.commit(0, doc(1)).await.unwrap().version, 1);
    let conflict = store.commit(0, doc(2)).await;
    assert!(
        matches!(
            conflict,
            Err(StoreError::Conflict {
                expected: 0,
                current: 1
            })
        ),
        "{conflict:?}"
    );
    assert_eq!(store.commit(1, doc(2)).await.unwrap().version, 2);
    let shown = wait_until(&mut follow, "config shows version 2", |c| {
        c.as_ref().is_some_and(|r| r.version == 2)
    })
    .await
    .unwrap();
    assert_eq!(shown.yaml, "# version 2\n");
    assert_eq!(store.get(1).await.unwrap().source, "file1.yaml");
    assert!(matches!(
        store.commit(1, doc(3)).await,
        Err(StoreError::Conflict {
            expected: 1,
            current: 2
        })
    ));
}

async fn keeps_the_newest_versions(store: Arc<dyn Store>) {
    for v in 0..5 {
        store.commit(v, doc(v + 1)).await.unwrap();
    }
    let kept: Vec<u64> = store
        .history()
        .await
        .unwrap()
        .iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(kept, [5, 4, 3]);
    assert!(matches!(
        store.get(1).await,
        Err(StoreError::VersionNotFound(1))
    ));
    assert_eq!(store.get(4).await.unwrap().yaml, "# version 4\n");
    assert_eq!(store.config().borrow().as_ref().unwrap().version, 5);
}

async fn leases_expire_without_heartbeats(store: Arc<dyn Store>) {
    let mut registry = store.registry();
    let ttl = Duration::from_secs(1);
    let kept = store.register(instance("orders", "a"), ttl).await.unwrap();
    let lapsed = store.register(instance("orders", "b"), ttl).await.unwrap();
    wait_until(&mut registry, "both registered", |r| {
        names(r, "orders").len() == 2
    })
    .await;
    // Heartbeat `a` only, until `b` is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while names(&registry.borrow_and_update(), "orders").len() == 2 {
        store.heartbeat(&kept).await.unwrap();
        tokio::time::timeout_at(deadline, async {
            tokio::select! {
                _ = registry.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        })
        .await
        .expect("b never expired");
    }
    assert_eq!(names(&registry.borrow(), "orders"), ["a"]);
    let err = store.heartbeat(&lapsed).await;
    assert!(matches!(err, Err(StoreError::LeaseNotFound(_))), "{err:?}");
    store.heartbeat(&kept).await.unwrap();
}

async fn deregistration_removes_or_drains(store: Arc<dyn Store>) {
    let mut registry = store.registry();
    let ttl = Duration::from_secs(30);
    let a = store.register(instance("orders", "a"), ttl).await.unwrap();
    let b = store.register(instance("orders", "b"), ttl).await.unwrap();
    wait_until(&mut registry, "both registered", |r| {
        names(r, "orders").len() == 2
    })
    .await;
    store.deregister(&a, true).await.unwrap();
    store.deregister(&b, false).await.unwrap();
    let now = wait_until(&mut registry, "a drains, b leaves", |r| {
        names(r, "orders") == ["a"] && r["orders"]["a"].draining
    })
    .await;
    assert_eq!(now["orders"]["a"].address, "a:80");
    // A draining instance still heartbeats on its lease.
    store.heartbeat(&a).await.unwrap();
    // Re-registering replaces the old lease.
    let a2 = store.register(instance("orders", "a"), ttl).await.unwrap();
    assert_ne!(a, a2);
    let err = store.heartbeat(&a).await;
    assert!(matches!(err, Err(StoreError::LeaseNotFound(_))), "{err:?}");
    store.heartbeat(&a2).await.unwrap();
    wait_until(&mut registry, "a serves again", |r| {
        r.get("orders")
            .and_then(|s| s.get("a"))
            .is_some_and(|a| !a.draining)
    })
    .await;
    // A lease deregistered once is gone.
    let err = store.deregister(&b, false).await;
    assert!(matches!(err, Err(StoreError::LeaseNotFound(_))), "{err:?}");
}

async fn unknown_leases_are_not_found(store: Arc<dyn Store>) {
    for lease in ["", "nope", "12345"] {
        let err = store.heartbeat(lease).await;
        assert!(
            matches!(err, Err(StoreError::LeaseNotFound(_))),
            "{lease}: {err:?}"
        );
        for drain in [false, true] {
            let err = store.deregister(lease, drain).await;
            assert!(
                matches!(err, Err(StoreError::LeaseNotFound(_))),
                "{lease}: {err:?}"
            );
        }
    }
}

async fn proxy_records_are_listed_by_key(store: Arc<dyn Store>) {
    assert!(store.proxies().await.unwrap().is_empty());
    store.report(record("sidecar", "n2", "r1")).await.unwrap();
    store.report(record("gateway", "n9", "r1")).await.unwrap();
    store.report(record("gateway", "n1", "r1")).await.unwrap();
    let mut again = record("gateway", "n9", "r1");
    again.acked = "4-def".into();
    store.report(again).await.unwrap();
    let all = store.proxies().await.unwrap();
    let keys: Vec<String> = all.iter().map(ProxyRecord::key).collect();
    assert_eq!(keys, ["gateway/n1", "gateway/n9", "sidecar/n2"]);
    assert_eq!(all[1].acked, "4-def");
}
