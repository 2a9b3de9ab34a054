//! Registry discovery against the embedded store: which services are published,
//! draining instances, config changes, and a stored config that does not parse.

use std::time::Duration;

use super::*;
use crate::store::embedded::EmbeddedStore;
use crate::store::{Instance, NewRevision};

const DOC: &str = "services:
  - name: orders
    discovery: {registry: {}}
  - name: static
    endpoints: ['10.0.0.9:80']
";

fn instance(service: &str, name: &str, address: &str, weight: u32) -> Instance {
    Instance {
        service: service.into(),
        instance: name.into(),
        address: address.into(),
        weight,
        draining: false,
    }
}

async fn commit(store: &EmbeddedStore, yaml: &str) {
    let current = store.config().borrow().as_ref().map_or(0, |r| r.version);
    let next = NewRevision {
        yaml: yaml.into(),
        source: "t".into(),
        note: String::new(),
    };
    store.commit(current, next).await.unwrap();
}

/// The next published value that satisfies `ok`.
async fn until(
    rx: &mut watch::Receiver<Arc<Discovered>>,
    ok: impl Fn(&Discovered) -> bool,
) -> Arc<Discovered> {
    let got = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|d| ok(d)))
        .await
        .expect("published in time")
        .expect("discovery runs");
    got.clone()
}

fn addresses(d: &Discovered, service: &str) -> Vec<(String, u32)> {
    d.get(service)
        .map(|e| e.iter().map(|e| (e.address.clone(), e.weight)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn registered_instances_of_registry_services_are_published() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 5).unwrap();
    let mut rx = start_with(store.clone(), Options::default());
    assert!(rx.borrow().is_empty(), "no config: nothing discovered");

    commit(&store, DOC).await;
    let d = until(&mut rx, |d| d.contains_key("orders")).await;
    assert_eq!(addresses(&d, "orders"), [], "published even when empty");
    assert!(
        !d.contains_key("static"),
        "static services are not discovered"
    );

    store
        .register(
            instance("orders", "b", "10.0.0.2:80", 0),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    store
        .register(
            instance("orders", "a", "10.0.0.1:80", 3),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let lease = store
        .register(
            instance("orders", "c", "10.0.0.3:80", 1),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    // An instance of a service that does not ask for registry discovery.
    store
        .register(
            instance("static", "x", "10.0.0.8:80", 1),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let d = until(&mut rx, |d| addresses(d, "orders").len() == 3).await;
    assert_eq!(
        addresses(&d, "orders"),
        [
            ("10.0.0.1:80".into(), 3),
            ("10.0.0.2:80".into(), 1),
            ("10.0.0.3:80".into(), 1)
        ],
        "sorted, weight at least 1"
    );
    assert!(!d.contains_key("static"));

    store.deregister(&lease, true).await.unwrap();
    let d = until(&mut rx, |d| addresses(d, "orders").len() == 2).await;
    assert!(
        !addresses(&d, "orders")
            .iter()
            .any(|(a, _)| a == "10.0.0.3:80"),
        "draining excluded"
    );

    // A stored config that does not parse changes nothing.
    commit(&store, "services: [{name: orders}]\n").await;
    store
        .register(
            instance("orders", "d", "10.0.0.4:80", 1),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let d = until(&mut rx, |d| addresses(d, "orders").len() == 3).await;
    assert!(d.contains_key("orders"));

    // The service no longer asks for discovery: it leaves the map.
    commit(
        &store,
        "services: [{name: orders, endpoints: ['10.0.0.9:80']}]\n",
    )
    .await;
    until(&mut rx, |d| d.is_empty()).await;
}

#[tokio::test]
async fn an_unchanged_result_is_not_published_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 5).unwrap();
    commit(&store, DOC).await;
    let mut rx = start_with(store.clone(), Options::default());
    assert_eq!(
        addresses(&rx.borrow_and_update(), "orders"),
        [],
        "known at start"
    );
    // Registry changes of other services, and a new config version with the same
    // discovery, publish nothing.
    store
        .register(
            instance("other", "x", "10.0.0.8:80", 1),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    commit(&store, &format!("{DOC}# v2\n")).await;
    store
        .register(
            instance("orders", "a", "10.0.0.1:80", 1),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    rx.changed().await.unwrap();
    assert_eq!(
        addresses(&rx.borrow_and_update(), "orders"),
        [("10.0.0.1:80".into(), 1)]
    );
}

#[test]
fn an_address_registered_twice_is_listed_once_with_the_larger_weight() {
    let mut all = Instances::new();
    let of = all.entry("s".into()).or_default();
    of.insert("a".into(), instance("s", "a", "10.0.0.1:80", 2));
    of.insert("b".into(), instance("s", "b", "10.0.0.1:80", 7));
    of.insert("c".into(), instance("s", "c", "10.0.0.0:80", 50_000));
    let got: Vec<(String, u32)> = registered(&all, "s")
        .into_iter()
        .map(|e| (e.address, e.weight))
        .collect();
    assert_eq!(
        got,
        [("10.0.0.0:80".into(), 10_000), ("10.0.0.1:80".into(), 7)]
    );
    assert!(registered(&all, "nope").is_empty());
}
