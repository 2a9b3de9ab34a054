//! The etcd store against a real etcd (started on free ports by the testkit):
//! the shared store contract for both stores, then what only etcd does — two
//! replicas sharing one etcd, lease expiry by etcd, proxy records that vanish
//! with their replica, an etcd outage and its recovery, endpoint failover.

mod store_contract;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use meshgate_control::store::embedded::EmbeddedStore;
use meshgate_control::store::etcd::EtcdStore;
use meshgate_control::store::{Store, StoreError};
use meshgate_testkit::etcd::Etcd;
use store_contract::{doc, instance, names, record, wait_until};

async fn replica(etcd: &Etcd, prefix: &str, name: &str) -> Arc<EtcdStore> {
    EtcdStore::connect(&[etcd.endpoint()], prefix, 3, name)
        .await
        .unwrap_or_else(|e| panic!("replica {name}: {e}"))
}

/// Polls `check` (an etcd read) until it holds, at most `within`.
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn embedded_store_meets_the_contract() {
    let base = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    store_contract::check_all(|keep| {
        let dir = base
            .path()
            .join(n.fetch_add(1, Ordering::Relaxed).to_string());
        async move { EmbeddedStore::open(&dir, keep).unwrap() as Arc<dyn Store> }
    })
    .await;
}

#[tokio::test]
async fn etcd_store_meets_the_contract() {
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let n = AtomicUsize::new(0);
    store_contract::check_all(|keep| {
        let prefix = format!("/contract/{}", n.fetch_add(1, Ordering::Relaxed));
        let endpoints = [endpoint.clone()];
        async move {
            EtcdStore::connect(&endpoints, &prefix, keep, "r1")
                .await
                .unwrap() as Arc<dyn Store>
        }
    })
    .await;
}

#[tokio::test]
async fn commits_through_one_replica_reach_the_other() {
    let etcd = Etcd::start().await;
    let r1 = replica(&etcd, "/mg", "r1").await;
    let r2 = replica(&etcd, "/mg", "r2").await;
    let mut seen = r2.config();
    let started = Instant::now();
    r1.commit(0, doc(1)).await.unwrap();
    wait_until(&mut seen, "r2 sees version 1", |c| {
        c.as_ref().is_some_and(|r| r.version == 1)
    })
    .await;
    println!("a commit through r1 reached r2 in {:?}", started.elapsed());

    // Both replicas commit on top of version 1 at once: exactly one wins.
    let (a, b) = tokio::join!(r1.commit(1, doc(2)), r2.commit(1, doc(3)));
    let winner = match (&a, &b) {
        (
            Ok(won),
            Err(StoreError::Conflict {
                expected: 1,
                current: 2,
            }),
        )
        | (
            Err(StoreError::Conflict {
                expected: 1,
                current: 2,
            }),
            Ok(won),
        ) => won.clone(),
        _ => panic!("exactly one commit must win: {a:?} / {b:?}"),
    };
    assert_eq!(winner.version, 2);
    for store in [&r1, &r2] {
        let shown = wait_until(&mut store.config(), "both show the winner", |c| {
            c.as_ref().is_some_and(|r| r.version == 2)
        })
        .await;
        assert_eq!(shown.unwrap().yaml, winner.yaml);
    }

    // The kept history (3) is the same through both replicas.
    for v in 2..6 {
        let store = if v % 2 == 0 { &r1 } else { &r2 };
        store.commit(v, doc(v + 1)).await.unwrap();
    }
    let kept: Vec<u64> = r2
        .history()
        .await
        .unwrap()
        .iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(kept, [6, 5, 4]);
    assert!(matches!(
        r1.get(3).await,
        Err(StoreError::VersionNotFound(3))
    ));
    wait_until(&mut r1.config(), "r1 shows version 6", |c| {
        c.as_ref().is_some_and(|r| r.version == 6)
    })
    .await;

    // A replica that joins later starts from the current version.
    let r3 = replica(&etcd, "/mg", "r3").await;
    assert_eq!(r3.config().borrow().as_ref().unwrap().version, 6);
    // Another prefix is another, independent store.
    let other = replica(&etcd, "/elsewhere", "r1").await;
    assert!(other.config().borrow().is_none());
}

#[tokio::test]
async fn the_registry_is_shared_and_etcd_expires_leases() {
    let etcd = Etcd::start().await;
    let r1 = replica(&etcd, "/mg", "r1").await;
    let r2 = replica(&etcd, "/mg", "r2").await;
    let (mut on1, mut on2) = (r1.registry(), r2.registry());
    let long = r1
        .register(instance("orders", "a"), Duration::from_secs(30))
        .await
        .unwrap();
    let short = r1
        .register(instance("orders", "b"), Duration::from_secs(1))
        .await
        .unwrap();
    wait_until(&mut on2, "r2 sees both", |r| {
        names(r, "orders") == ["a", "b"]
    })
    .await;
    // Nobody heartbeats `b`: etcd drops it, and both replicas see that.
    for registry in [&mut on1, &mut on2] {
        wait_until(registry, "b expires", |r| names(r, "orders") == ["a"]).await;
    }
    let err = r2.heartbeat(&short).await;
    assert!(matches!(err, Err(StoreError::LeaseNotFound(_))), "{err:?}");
    // A lease granted through r1 is renewed and drained through r2.
    r2.heartbeat(&long).await.unwrap();
    r2.deregister(&long, true).await.unwrap();
    wait_until(&mut on1, "r1 sees a draining", |r| {
        r.get("orders").is_some_and(|s| s["a"].draining)
    })
    .await;
    r1.deregister(&long, false).await.unwrap();
    wait_until(&mut on2, "a is gone", |r| r.get("orders").is_none()).await;
}

#[tokio::test]
async fn proxy_records_are_shared_and_vanish_with_their_replica() {
    let etcd = Etcd::start().await;
    let r1 = replica(&etcd, "/mg", "r1").await;
    let r2 = replica(&etcd, "/mg", "r2").await;
    r1.report(record("gateway", "n1", "r1")).await.unwrap();
    r2.report(record("gateway", "n2", "r2")).await.unwrap();
    for store in [&r1, &r2] {
        let all = store.proxies().await.unwrap();
        let on: Vec<(String, String)> = all.iter().map(|p| (p.key(), p.replica.clone())).collect();
        assert_eq!(
            on,
            [
                ("gateway/n1".to_owned(), "r1".to_owned()),
                ("gateway/n2".to_owned(), "r2".to_owned())
            ]
        );
    }
    drop(r1);
    eventually(
        "r1's records go with it",
        Duration::from_secs(15),
        || async {
            let all = r2.proxies().await.unwrap();
            all.iter().map(|p| p.key()).collect::<Vec<_>>() == ["gateway/n2"]
        },
    )
    .await;
}

#[tokio::test]
async fn an_etcd_outage_keeps_the_last_state_and_the_watch_resumes() {
    let mut etcd = Etcd::start().await;
    let r1 = replica(&etcd, "/mg", "r1").await;
    let r2 = replica(&etcd, "/mg", "r2").await;
    r1.commit(0, doc(1)).await.unwrap();
    r1.register(instance("orders", "a"), Duration::from_secs(60))
        .await
        .unwrap();
    wait_until(&mut r2.config(), "r2 sees version 1", |c| c.is_some()).await;
    wait_until(&mut r2.registry(), "r2 sees a", |r| !r.is_empty()).await;

    etcd.stop();
    let err = r1.commit(1, doc(2)).await.unwrap_err();
    assert!(matches!(err, StoreError::Etcd(_)), "{err:?}");
    println!("commit while etcd is down: {err}");
    assert!(err.to_string().contains(&etcd.endpoint()), "{err}");
    assert!(matches!(r2.history().await, Err(StoreError::Etcd(_))));
    assert!(matches!(r2.proxies().await, Err(StoreError::Etcd(_))));
    assert!(matches!(
        r1.register(instance("orders", "b"), Duration::from_secs(5))
            .await,
        Err(StoreError::Etcd(_))
    ));
    // What the replicas serve stays in place.
    assert_eq!(r2.config().borrow().as_ref().unwrap().version, 1);
    assert_eq!(names(&r2.registry().borrow(), "orders"), ["a"]);

    etcd.restart().await;
    let started = Instant::now();
    // The first calls may still meet the connection etcd's crash broke.
    let mut committed = None;
    while committed.is_none() {
        match r1.commit(1, doc(2)).await {
            Ok(revision) => committed = Some(revision),
            Err(StoreError::Etcd(e)) if started.elapsed() < Duration::from_secs(10) => {
                println!("after restart: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("commit after etcd came back: {e}"),
        }
    }
    wait_until(&mut r2.config(), "r2's watch resumes", |c| {
        c.as_ref().is_some_and(|r| r.version == 2)
    })
    .await;
    println!(
        "r2 saw the commit {:?} after etcd restarted",
        started.elapsed()
    );
    // The registration survived (its lease is etcd's), and r2 writes again.
    assert_eq!(names(&r2.registry().borrow(), "orders"), ["a"]);
    r2.report(record("gateway", "n2", "r2")).await.unwrap();
    assert_eq!(r1.proxies().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_over_to_the_next() {
    let etcd = Etcd::start().await;
    let dead = format!("http://127.0.0.1:{}", meshgate_testkit::free_port());
    let store = EtcdStore::connect(&[dead.clone(), etcd.endpoint()], "/mg", 3, "r1")
        .await
        .unwrap();
    let other = replica(&etcd, "/mg", "r2").await;
    other.commit(0, doc(1)).await.unwrap();
    wait_until(
        &mut store.config(),
        "the watch runs on the live endpoint",
        |c| c.is_some(),
    )
    .await;
    store.commit(1, doc(2)).await.unwrap();
    // Only dead endpoints: a clear error, not a hang.
    let err = EtcdStore::connect(std::slice::from_ref(&dead), "/mg", 3, "r3")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, StoreError::Etcd(m) if m.contains("unreachable") && m.contains(&dead)),
        "{err}"
    );
}

#[tokio::test]
async fn a_replica_that_lost_its_session_puts_its_records_back() {
    use meshgate_control::proto::etcd::etcdserverpb::{
        LeaseRevokeRequest, RangeRequest, kv_client::KvClient, lease_client::LeaseClient,
    };
    let etcd = Etcd::start().await;
    let r1 = replica(&etcd, "/mg", "r1").await;
    let r2 = replica(&etcd, "/mg", "r2").await;
    r1.report(record("gateway", "n1", "r1")).await.unwrap();
    // As if r1 had been cut off from etcd for a whole TTL: its lease ends.
    let channel = tonic::transport::Endpoint::from_shared(etcd.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let found = KvClient::new(channel.clone())
        .range(RangeRequest {
            key: b"/mg/proxies/gateway/n1".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let lease = found.kvs[0].lease;
    assert_ne!(lease, 0, "proxy records hang on the session lease");
    LeaseClient::new(channel)
        .lease_revoke(LeaseRevokeRequest { id: lease })
        .await
        .unwrap();
    assert!(r2.proxies().await.unwrap().is_empty());
    // r1's keep-alive notices, takes a new lease and restores its record.
    eventually(
        "r1 restores its record",
        Duration::from_secs(15),
        || async { r2.proxies().await.unwrap().len() == 1 },
    )
    .await;
    // Writing works on the new lease.
    r1.report(record("gateway", "n3", "r1")).await.unwrap();
    assert_eq!(r2.proxies().await.unwrap().len(), 2);
}
