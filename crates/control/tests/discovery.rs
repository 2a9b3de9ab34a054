//! The config stream end to end, in one process: a control plane on the embedded
//! store serving real TLS gRPC, real gateways (meshgate-core) fed by it through
//! the proxy client, real HTTP backends. Changes reach every gateway; a snapshot
//! that cannot apply is NACKed while the old one keeps serving; gateways outlive
//! the control plane, restart from their last-good cache and resync; tokens
//! decide who may stream; a stream nobody reads delays nobody else.

mod discovery_support;

use std::time::{Duration, Instant};

use discovery_support::*;
use futures_util::future::join_all;
use meshgate_control::client;
use meshgate_control::proto::v1::ProxyIdentity;
use meshgate_testkit::Backend;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reaches_three_gateways() {
    let h = Harness::start().await;
    let app = Backend::start("app").await;
    let v1 = h.commit(doc(app.addr, &["/a"], None, 0)).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let gateways = join_all(
        dirs.iter()
            .enumerate()
            .map(|(i, d)| h.gateway(&format!("gw-{i}"), d.path())),
    )
    .await;
    for g in &gateways {
        wait_for_config(g, v1).await;
        assert_eq!(get(public(g), "/a").await, 200);
        assert_eq!(get(public(g), "/b").await, 404);
    }

    let committed = Instant::now();
    let v2 = h.commit(doc(app.addr, &["/a", "/b"], None, 0)).await;
    for g in &gateways {
        wait_for_config(g, v2).await;
    }
    let propagation = committed.elapsed();
    println!("config v{v2} reached 3 gateways {propagation:?} after the commit");
    for g in &gateways {
        assert_eq!(get(public(g), "/b").await, 200);
    }
    for i in 0..3 {
        let record = h
            .proxy_where(&format!("gw-{i}"), |r| r.acked_config == v2)
            .await;
        assert!(record.connected, "{record:?}");
        assert_eq!(record.replica, "cp-1");
        assert_eq!(record.desired, record.acked);
        assert_eq!(record.build, "test");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_cannot_apply_is_nacked_and_the_old_one_keeps_serving() {
    let h = Harness::start().await;
    let app = Backend::start("app").await;
    h.commit(doc(app.addr, &["/a"], None, 0)).await;
    let dir = tempfile::tempdir().unwrap();
    let g = h.gateway("gw-nack", dir.path()).await;
    let v2 = h.commit(doc(app.addr, &["/a", "/b"], None, 0)).await;
    let serving = wait_for_config(&g, v2).await;

    // v3 wants a port this machine already uses.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let v3 = h
        .commit(doc(app.addr, &["/a", "/b", "/c"], Some(port), 0))
        .await;
    let record = h.proxy_where("gw-nack", |r| r.nacked_config == v3).await;
    assert_eq!(record.acked, serving, "{record:?}");
    assert_eq!(record.acked_config, v2);
    assert!(
        record.nack_reason.contains("cannot listen")
            && record.nack_reason.contains(&port.to_string()),
        "{record:?}"
    );
    assert!(record.desired.starts_with(&format!("{v3}-")), "{record:?}");

    assert_eq!(g.applied.borrow().as_deref(), Some(serving.as_str()));
    assert_eq!(get(public(&g), "/b").await, 200);
    assert_eq!(get(public(&g), "/c").await, 404);
    assert!(g.gateway.local_addr("extra").is_none());
    let (cached, _) = client::last_good(dir.path()).expect("last-good cache");
    assert_eq!(
        cached.version, serving,
        "the cache keeps the last ACKed version"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_outlive_the_control_plane_restart_from_cache_and_resync() {
    let mut h = Harness::start().await;
    let app = Backend::start("app").await;
    h.commit(doc(app.addr, &["/a"], None, 0)).await;
    let v2 = h.commit(doc(app.addr, &["/a", "/b"], None, 0)).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = h.gateway("gw-a", dir_a.path()).await;
    let b = h.gateway("gw-b", dir_b.path()).await;
    wait_for_config(&a, v2).await;
    let serving = wait_for_config(&b, v2).await;
    // The cache is written before the Ack.
    h.proxy_where("gw-a", |r| r.acked_config == v2).await;

    h.kill_server();
    assert_eq!(get(public(&a), "/b").await, 200);
    assert_eq!(get(public(&b), "/b").await, 200);

    // Gateway a restarts while the control plane is still down: it serves its
    // last-good snapshot.
    a.shutdown().await;
    let a = tokio::time::timeout(Duration::from_secs(5), h.gateway("gw-a", dir_a.path()))
        .await
        .expect("a restart from cache does not wait for the control plane");
    assert_eq!(a.applied.borrow().as_deref(), Some(serving.as_str()));
    assert_eq!(get(public(&a), "/b").await, 200);
    assert_eq!(get(public(&b), "/b").await, 200);

    // A change made while the control plane is down reaches both once it is back.
    let v3 = h.commit(doc(app.addr, &["/a", "/b", "/c"], None, 0)).await;
    let down_since = Instant::now();
    h.start_server().await;
    wait_for_config(&a, v3).await;
    wait_for_config(&b, v3).await;
    println!(
        "resynced to v{v3} {:?} after the control plane came back",
        down_since.elapsed()
    );
    assert_eq!(get(public(&a), "/c").await, 200);
    assert_eq!(get(public(&b), "/c").await, 200);
    let record = h.proxy_where("gw-a", |r| r.acked_config == v3).await;
    assert!(record.connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_usable_cache_a_gateway_waits_for_its_first_snapshot() {
    let h = Harness::start().await;
    let app = Backend::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(client::cache::path(dir.path()), b"{\"version\": \"1-").unwrap();
    // No config applied yet: the gateway cannot start until one is.
    let starting = tokio::spawn(h.gateway("gw-late", dir.path()));
    h.proxy_where("gw-late", |r| r.connected).await;
    assert!(!starting.is_finished());

    let v1 = h.commit(doc(app.addr, &["/a"], None, 0)).await;
    let g = starting.await.unwrap();
    wait_for_config(&g, v1).await;
    assert_eq!(get(public(&g), "/a").await, 200);
    h.proxy_where("gw-late", |r| r.acked_config == v1).await;
    let (cached, _) = client::last_good(dir.path()).expect("the corrupt cache was replaced");
    assert_eq!(cached.config_version, v1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_decides_who_may_stream() {
    let h = Harness::start().await;
    let app = Backend::start("app").await;
    let v1 = h.commit(doc(app.addr, &["/a"], None, 0)).await;
    let mut raw = h.raw_client(false).await;

    let status = open_stream(&mut raw, None, gateway_identity("anon"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = open_stream(&mut raw, Some("wrong"), gateway_identity("x"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // A registrar token, or a sidecar token, may not claim a gateway.
    let status = open_stream(&mut raw, Some(REGISTRAR_TOKEN), gateway_identity("x"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = open_stream(&mut raw, Some(SIDECAR_TOKEN), gateway_identity("x"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // Nor a sidecar of a service outside its scope.
    let sidecar = |service: &str| ProxyIdentity {
        role: "sidecar".into(),
        node_id: "pod-1".into(),
        service: service.into(),
        namespace: "default".into(),
    };
    let status = open_stream(&mut raw, Some(SIDECAR_TOKEN), sidecar("payments"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // Allowed, but the config declares no mesh service `orders` to generate for.
    let status = open_stream(&mut raw, Some(SIDECAR_TOKEN), sidecar("orders"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    // The right token gets the current snapshot at once.
    let (mut stream, _keep_open) =
        open_stream(&mut raw, Some(GATEWAY_TOKEN), gateway_identity("ok"))
            .await
            .unwrap();
    let first = stream.message().await.unwrap().expect("a snapshot");
    assert_eq!(first.config_version, v1);
    assert!(
        h.store
            .proxies()
            .await
            .unwrap()
            .iter()
            .all(|r| r.node_id == "ok")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_is_not_read_delays_nobody_and_gets_only_the_latest() {
    const VERSIONS: u64 = 20;
    const PADDING: usize = 64 * 1024;
    let h = Harness::start().await;
    let app = Backend::start("app").await;
    let first = h.commit(doc(app.addr, &["/a"], None, PADDING)).await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let gateways = join_all(
        dirs.iter()
            .enumerate()
            .map(|(i, d)| h.gateway(&format!("gw-{i}"), d.path())),
    )
    .await;
    let mut raw = h.raw_client(true).await;
    let (mut stalled, _keep_open) =
        open_stream(&mut raw, Some(GATEWAY_TOKEN), gateway_identity("stalled"))
            .await
            .unwrap();

    let started = Instant::now();
    let mut last = first;
    for i in 0..VERSIONS {
        let path = format!("/v{i}");
        last = h.commit(doc(app.addr, &["/a", &path], None, PADDING)).await;
    }
    for g in &gateways {
        wait_for_config(g, last).await;
        assert_eq!(get(public(g), &format!("/v{}", VERSIONS - 1)).await, 200);
    }
    println!(
        "{VERSIONS} versions committed and taken by 2 gateways in {:?} beside a stalled stream",
        started.elapsed()
    );

    // Now read the stalled stream: what was already in flight, then the latest.
    let mut received = Vec::new();
    loop {
        let s = tokio::time::timeout(PATIENCE, stalled.message())
            .await
            .expect("the stalled stream catches up")
            .unwrap()
            .expect("a snapshot");
        received.push(s.config_version);
        if s.config_version == last {
            break;
        }
    }
    println!("the stalled stream received versions {received:?}");
    assert_eq!(received[0], first, "the current version comes first");
    assert!(
        received.len() < (last - first + 1) as usize,
        "versions it could not take were skipped, not queued: {received:?}"
    );
    assert!(received.windows(2).all(|w| w[0] < w[1]), "{received:?}");
}
