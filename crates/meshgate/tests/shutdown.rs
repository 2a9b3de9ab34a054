//! Graceful drain of the gateway process: on SIGTERM or SIGINT it stops accepting at
//! once, lets the request in flight finish with its 200, and exits 0 within the
//! configured `drainTimeout`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Proc, TempDir, curl, gateway_yaml, refused, split_response, start_gateway};
use meshgate_testkit::Backend;
use serde_json::Value;

/// Bounded wait for `cond` to hold.
async fn eventually(within: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

async fn start(dir: &TempDir, backend: &Backend) -> (Proc, SocketAddr) {
    let log = dir.path("access.log");
    start_gateway(dir, |port| {
        gateway_yaml(
            port,
            backend.addr,
            &log,
            "{workerThreads: 2, drainTimeout: 5s}",
        )
    })
    .await
}

async fn drains_on(sig: &str) {
    let backend = Backend::start("slow").await;
    let dir = TempDir::new(&format!("shutdown-{sig}"));
    let (mut gw, addr) = start(&dir, &backend).await;

    let url = format!("http://{addr}/api/sleep/800");
    let in_flight = tokio::spawn(async move { curl(&["-i", &url]).await });
    // Signal while the request is with the backend (it sleeps 800 ms there): a
    // readiness check instead of a guessed delay.
    assert!(
        eventually(Duration::from_secs(5), async || backend.hits() == 1).await,
        "the request never reached the backend"
    );
    let signalled = Instant::now();
    gw.signal(sig);

    // Draining: new connections are refused while the old request is still running.
    assert!(
        eventually(Duration::from_secs(2), async || refused(addr).await).await,
        "still accepting connections after SIG{sig}"
    );
    assert!(
        !in_flight.is_finished(),
        "the in-flight request ended before the drain was observed"
    );
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "the process exited with a request in flight"
    );

    let out = in_flight.await.expect("curl task");
    assert!(out.status.success(), "{out:?}");
    let (status, _, body) = split_response(&out.stdout);
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let echo: Value = serde_json::from_str(&body).expect("echo JSON");
    assert_eq!(echo["path"], "/api/sleep/800");

    let exit = gw
        .wait_exit(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("no exit within the drain timeout:\n{}", gw.stderr_text()));
    let took = signalled.elapsed();
    println!("SIG{sig}: exited {exit} {took:?} after the signal");
    assert_eq!(exit.code(), Some(0), "{}", gw.stderr_text());
    assert!(
        took >= Duration::from_millis(300),
        "exited after {took:?}, before the 800 ms request could finish"
    );
    assert!(refused(addr).await, "something still listens on {addr}");
    assert_eq!(backend.hits(), 1);
    let stderr = gw.stderr_text();
    assert!(stderr.contains(&format!("SIG{sig}")), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    drains_on("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_in_flight_requests_and_exits_0() {
    drains_on("INT").await;
}

/// A request longer than the drain timeout does not hold the process hostage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_the_wait() {
    let backend = Backend::start("stuck").await;
    let dir = TempDir::new("shutdown-timeout");
    let log = dir.path("access.log");
    let (mut gw, addr) = start_gateway(&dir, |port| {
        gateway_yaml(
            port,
            backend.addr,
            &log,
            "{workerThreads: 2, drainTimeout: 300ms}",
        )
    })
    .await;
    let url = format!("http://{addr}/api/sleep/30000");
    let in_flight = tokio::spawn(async move { curl(&["-i", &url]).await });
    assert!(eventually(Duration::from_secs(5), async || backend.hits() == 1).await);
    let signalled = Instant::now();
    gw.signal("TERM");
    let exit = gw
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("exit after drain timeout");
    let took = signalled.elapsed();
    println!("drainTimeout 300ms: exited {exit} {took:?} after SIGTERM");
    assert_eq!(exit.code(), Some(0));
    assert!(
        (Duration::from_millis(250)..Duration::from_secs(2)).contains(&took),
        "exited after {took:?}; want about the 300 ms drain timeout"
    );
    // The stuck request was cut off, not answered.
    let out = in_flight.await.expect("curl task");
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}
