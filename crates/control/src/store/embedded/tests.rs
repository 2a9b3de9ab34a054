//! The embedded store: compare-and-set commits, history, reopening, leases.

use std::time::Duration;

use super::*;

fn doc(n: u32) -> NewRevision {
    NewRevision {
        yaml: format!("# version {n}\n"),
        source: format!("file{n}.yaml"),
        note: String::new(),
    }
}

fn instance(name: &str) -> Instance {
    Instance {
        service: "orders".into(),
        instance: name.into(),
        address: format!("{name}:80"),
        weight: 1,
        draining: false,
    }
}

#[tokio::test]
async fn commits_are_numbered_and_compare_and_set() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 3).unwrap();
    let mut follow = store.config();
    assert!(follow.borrow().is_none());
    assert_eq!(store.commit(0, doc(1)).await.unwrap().version, 1);
    assert!(matches!(
        store.commit(0, doc(2)).await,
        Err(StoreError::Conflict {
            expected: 0,
            current: 1
        })
    ));
    assert_eq!(store.commit(1, doc(2)).await.unwrap().version, 2);
    follow.changed().await.unwrap();
    assert_eq!(follow.borrow().as_ref().unwrap().version, 2);
    assert_eq!(store.get(1).await.unwrap().source, "file1.yaml");
}

#[tokio::test]
async fn keeps_the_newest_versions_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path(), 3).unwrap();
        for v in 0..5 {
            store.commit(v, doc(v as u32 + 1)).await.unwrap();
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
    }
    // An interrupted write leaves a temporary file: ignored on open.
    std::fs::write(
        dir.path().join("config/00000000000000000006.tmp"),
        b"{ half",
    )
    .unwrap();
    let store = EmbeddedStore::open(dir.path(), 3).unwrap();
    let current = store.config().borrow().clone().unwrap();
    assert_eq!(
        (current.version, current.yaml.as_str()),
        (5, "# version 5\n")
    );
    assert_eq!(store.commit(5, doc(6)).await.unwrap().version, 6);
}

#[tokio::test]
async fn a_corrupt_version_file_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/00000000000000000001.json"),
        b"not json",
    )
    .unwrap();
    let err = EmbeddedStore::open(dir.path(), 3).err().unwrap();
    assert!(
        err.to_string().contains("00000000000000000001.json"),
        "{err}"
    );
}

#[tokio::test]
async fn leases_expire_without_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 3).unwrap();
    let mut registry = store.registry();
    let kept = store
        .register(instance("a"), Duration::from_millis(600))
        .await
        .unwrap();
    let lapsed = store
        .register(instance("b"), Duration::from_millis(600))
        .await
        .unwrap();
    assert_eq!(registry.borrow_and_update()["orders"].len(), 2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while registry.borrow()["orders"].len() == 2 {
        store.heartbeat(&kept).await.unwrap();
        tokio::time::timeout_at(deadline, async {
            tokio::select! {
                _ = registry.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        })
        .await
        .expect("b never expired");
    }
    let now = registry.borrow().clone();
    assert_eq!(now["orders"].keys().collect::<Vec<_>>(), ["a"]);
    assert!(matches!(
        store.heartbeat(&lapsed).await,
        Err(StoreError::LeaseNotFound(_))
    ));
}

#[tokio::test]
async fn deregistration_removes_or_drains() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 3).unwrap();
    let a = store
        .register(instance("a"), Duration::from_secs(30))
        .await
        .unwrap();
    let b = store
        .register(instance("b"), Duration::from_secs(30))
        .await
        .unwrap();
    store.deregister(&a, true).await.unwrap();
    store.deregister(&b, false).await.unwrap();
    let now = store.registry().borrow().clone();
    assert!(now["orders"]["a"].draining);
    assert!(!now["orders"].contains_key("b"));
    // Re-registering replaces the old lease.
    let a2 = store
        .register(instance("a"), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(matches!(
        store.heartbeat(&a).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    store.heartbeat(&a2).await.unwrap();
    assert!(!store.registry().borrow()["orders"]["a"].draining);
}
