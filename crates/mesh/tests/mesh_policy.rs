//! The issue-7 "must show" items about policy and rotation, in process (control
//! plane with the mesh CA, real apps, real sidecars speaking mTLS on 127.0.0.1):
//!
//! - a `mesh.authorization` document allowing A→B but not A→C is enforced
//!   (`403 mesh_denied` at C's sidecar, in its access log and metric), then changed
//!   live (A→C allowed, A→B denied, after the sidecars ACK), and an open keep-alive
//!   connection of A to B is closed once A is denied on identity (live re-check);
//! - workload certificates rotating every ~2 s (TTL 4 s) under steady traffic of
//!   four concurrent clients: zero failed requests;
//! - a CA rotation with overlap (prepare, activate, finish) under the same traffic:
//!   the sidecars follow the bundle stream and renew, zero failed requests.

mod mesh_support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mesh_support::*;
use meshgate_mesh::sidecar::{Sidecar, SidecarSettings};
use meshgate_testkit::Backend;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const SERVICES: &str = "mesh:
  services:
    - {name: a, ports: [{port: 80}]}
    - {name: b, ports: [{port: 80}]}
    - {name: c, ports: [{port: 80}]}
";

/// A allowed to B (B allows only A), denied every request to C.
const V1: &str = "  authorization:
    - service: b
      rules: [{name: a-may-call-b, action: ALLOW, from: [{service: a}]}]
    - service: c
      rules: [{name: a-may-not-call-c, action: DENY, from: [{service: a}], to: [{paths: ['*']}]}]
";

/// The other way round: A allowed to C, denied every request to B.
const V2: &str = "  authorization:
    - service: b
      rules: [{name: a-may-not-call-b, action: DENY, from: [{service: a}], to: [{paths: ['*']}]}]
    - service: c
      rules: [{name: a-may-call-c, action: ALLOW, from: [{service: a}]}]
";

/// A denied at B on identity alone: its connections are closed.
const V3: &str = "  authorization:
    - service: b
      rules: [{name: a-cut-off, action: DENY, from: [{service: a}]}]
";

/// The value of the metric line naming `name` and every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn denied(sidecar: &Sidecar, rule: &str, stage: &str) -> f64 {
    let m = sidecar.gateway().metrics().encode();
    metric(
        &m,
        "meshgate_mesh_authz_denied_total",
        &[&format!("rule=\"{rule}\""), &format!("stage=\"{stage}\"")],
    )
}

fn status(answer: &str) -> &str {
    answer.get(9..12).unwrap_or("")
}

/// Sends one keep-alive GET on `stream` and reads its answer (status line,
/// headers, `content-length` body); "" when the connection is closed.
async fn keep_alive_get<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> String {
    let request = b"GET /hello HTTP/1.1\r\nhost: b\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return String::from_utf8_lossy(&buf).into_owned();
            }
        }
        match tokio::time::timeout(PATIENCE, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return String::from_utf8_lossy(&buf).into_owned(),
        }
    }
}

async fn start_mesh(
    plane: &Plane,
    dir: &std::path::Path,
    apps: &[Backend],
) -> Vec<(SidecarSettings, Sidecar)> {
    let settings = apps
        .iter()
        .map(|app| plane.settings(&app.name, app.addr.port(), dir))
        .collect();
    start_sidecars(settings).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_allowing_a_to_b_but_not_c_is_enforced_then_changed_live() {
    let plane = Plane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let apps = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let v1 = plane
        .commit(format!(
            "{}{V1}",
            SERVICES.replace("{name: b,", "{name: b, defaultDeny: true,")
        ))
        .await;
    let sidecars = start_mesh(&plane, dir.path(), &apps).await;
    let [(a_set, a), (b_set, b), (_, c)] = &sidecars[..] else {
        unreachable!()
    };
    for s in [a, b, c] {
        until_version(s, v1).await;
    }
    until_endpoints(a, &["b.default", "c.default"]).await;

    // v1: A→B allowed, A→C denied by C's sidecar.
    let answer = get_via(a_set.ports.outbound, "b").await;
    assert!(answer.contains("\"backend\":\"b\""), "{answer}");
    let answer = get_via(a_set.ports.outbound, "c").await;
    assert_eq!(status(&answer), "403", "{answer}");
    until_logged(&log_path(dir.path(), "c"), "mesh_denied").await;
    assert!(denied(c, "a-may-not-call-c", "request") >= 1.0);
    println!("v1: A→B 200, A→C 403 mesh_denied");

    // A keep-alive connection of A (its mesh certificate) straight to B's inbound.
    let tcp = TcpStream::connect(("127.0.0.1", b_set.ports.inbound))
        .await
        .unwrap();
    let name = ServerName::try_from("b.default").unwrap();
    let mut kept = mtls_connector(a.identity().certified_key())
        .connect(name, tcp)
        .await
        .unwrap();
    let answer = keep_alive_get(&mut kept).await;
    assert_eq!(status(&answer), "200", "{answer}");

    // v2, applied live: A→C allowed, A→B denied (per request).
    let v2 = plane
        .commit(format!("{SERVICES}{V2}").replace("{name: c,", "{name: c, defaultDeny: true,"))
        .await;
    for s in [a, b, c] {
        until_version(s, v2).await;
    }
    let answer = get_via(a_set.ports.outbound, "c").await;
    assert!(answer.contains("\"backend\":\"c\""), "{answer}");
    let answer = get_via(a_set.ports.outbound, "b").await;
    assert_eq!(status(&answer), "403", "{answer}");
    until_logged(&log_path(dir.path(), "b"), "mesh_denied").await;
    assert!(denied(b, "a-may-not-call-b", "request") >= 1.0);
    // The kept connection is still open (a request could still be allowed on
    // identity), and its next request is judged by the new rules.
    let answer = keep_alive_get(&mut kept).await;
    assert_eq!(status(&answer), "403", "{answer}");
    println!("v2: A→C 200, A→B 403 mesh_denied, kept connection judged by the new rules");

    // v3: A denied at B on identity alone: the kept connection is closed.
    let v3 = plane.commit(format!("{SERVICES}{V3}")).await;
    until_version(b, v3).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, kept.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "A's keep-alive connection to B not closed");
    assert!(denied(b, "a-cut-off", "recheck") >= 1.0);
    // New connections of A are closed right after the handshake: A's sidecar
    // answers 502 (the connection was reset) or 503 once B is ejected. A request
    // may first go out on A's pooled connection to B if B's close has not reached
    // A yet (HTTP/1.1's keep-alive race): B then judges it under the new rules, 403.
    until_version(a, v3).await;
    let refused = tokio::time::timeout(PATIENCE, async {
        loop {
            let answer = get_via(a_set.ports.outbound, "b").await;
            match status(&answer) {
                "502" | "503" => return,
                "403" => assert!(answer.contains("mesh_denied"), "{answer}"),
                _ => panic!("after v3, A answered neither 403 nor 502/503: {answer:?}"),
            }
        }
    })
    .await;
    assert!(refused.is_ok(), "A's new connections to B never refused");
    assert!(denied(b, "a-cut-off", "connection") >= 1.0);
    println!("v3: A's open connection to B closed by the live re-check; new ones refused");

    for (_, s) in sidecars {
        s.shutdown().await;
    }
}

/// Four clients calling A→B (through both sidecars) until stopped.
struct Traffic {
    ok: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    fn start(outbound: u16) -> Traffic {
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..4)
            .map(|_| {
                let (ok, failures, stop) = (ok.clone(), failures.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let answer = get_via(outbound, "b").await;
                        if answer.starts_with("HTTP/1.1 200")
                            && answer.contains("\"backend\":\"b\"")
                        {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failures.lock().unwrap().push(answer);
                        }
                    }
                })
            })
            .collect();
        Traffic {
            ok,
            failures,
            stop,
            tasks,
        }
    }

    /// Stops the clients; (successful requests, failed answers).
    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        (self.ok.load(Ordering::Relaxed), failures)
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests succeeded.
    async fn until_more(&self, n: u64) {
        let target = self.ok() + n;
        let done = tokio::time::timeout(PATIENCE, async {
            while self.ok() < target {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            done.is_ok(),
            "traffic stalled: {:?}",
            self.failures.lock().unwrap()
        );
    }
}

/// The leaf certificate each sidecar serves now.
fn leaves(sidecars: &[(SidecarSettings, Sidecar)]) -> Vec<Vec<u8>> {
    sidecars
        .iter()
        .map(|(_, s)| s.identity().certified_key().cert[0].to_vec())
        .collect()
}

/// Polls every sidecar's leaf certificate until each has served `rotations` new
/// ones (after `since`) and at least `min` has passed; the distinct leaves seen.
async fn until_rotated(
    sidecars: &[(SidecarSettings, Sidecar)],
    rotations: usize,
    min: Duration,
) -> Vec<usize> {
    let start = Instant::now();
    let mut seen: Vec<HashSet<Vec<u8>>> = leaves(sidecars)
        .into_iter()
        .map(|l| HashSet::from([l]))
        .collect();
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            for (set, leaf) in seen.iter_mut().zip(leaves(sidecars)) {
                set.insert(leaf);
            }
            if start.elapsed() >= min && seen.iter().all(|s| s.len() > rotations) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "certificates not rotated {rotations} times");
    seen.iter().map(|s| s.len() - 1).collect()
}

/// Waits until every sidecar trusts exactly `roots` roots.
async fn until_roots(sidecars: &[(SidecarSettings, Sidecar)], roots: usize) {
    let done = tokio::time::timeout(PATIENCE, async {
        while !sidecars
            .iter()
            .all(|(_, s)| s.identity().roots().len() == roots)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "sidecars never trusted {roots} roots");
}

/// A and B with their sidecars (the apps first: they stop when dropped).
async fn two_sidecars(
    plane: &Plane,
    dir: &std::path::Path,
) -> (Vec<Backend>, Vec<(SidecarSettings, Sidecar)>) {
    let apps = [Backend::start("a").await, Backend::start("b").await];
    plane
        .commit(SERVICES.replace("    - {name: c, ports: [{port: 80}]}\n", ""))
        .await;
    let sidecars = start_mesh(plane, dir, &apps).await;
    until_endpoints(&sidecars[0].1, &["b.default"]).await;
    (apps.into(), sidecars)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_steady_traffic_with_zero_failures() {
    let plane = Plane::start_with_ttl(Duration::from_secs(4)).await;
    let dir = tempfile::tempdir().unwrap();
    let (_apps, sidecars) = two_sidecars(&plane, dir.path()).await;
    let traffic = Traffic::start(sidecars[0].0.ports.outbound);
    // TTL 4 s, renewal at half-life: at least two rotations of each in ~10 s.
    let rotations = until_rotated(&sidecars, 2, Duration::from_secs(10)).await;
    let (ok, failures) = traffic.finish().await;
    println!(
        "certificate rotation: {ok} requests A→B, {} failed; rotations a={} b={}",
        failures.len(),
        rotations[0],
        rotations[1]
    );
    assert!(failures.is_empty(), "failed answers: {failures:?}");
    assert!(ok > 0);
    for (_, s) in sidecars {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rotation_with_overlap_under_traffic_with_zero_failures() {
    let plane = Plane::start_with_ttl(Duration::from_secs(4)).await;
    let dir = tempfile::tempdir().unwrap();
    let (_apps, sidecars) = two_sidecars(&plane, dir.path()).await;
    until_roots(&sidecars, 1).await;
    let traffic = Traffic::start(sidecars[0].0.ports.outbound);
    traffic.until_more(50).await;

    plane.ca.prepare_rotation().unwrap();
    until_roots(&sidecars, 2).await;
    traffic.until_more(50).await;
    let prepared = traffic.ok();
    plane.ca.activate_rotation().unwrap();
    // Two renewals after activation: the second is surely signed by the new root.
    until_rotated(&sidecars, 2, Duration::ZERO).await;
    let activated = traffic.ok();
    plane.ca.finish_rotation().unwrap();
    until_roots(&sidecars, 1).await;
    let finished = traffic.ok();
    // A fresh handshake with A's current certificate, judged by B against the
    // new root alone.
    let b_inbound = ("127.0.0.1", sidecars[1].0.ports.inbound);
    let answer = mtls_get(b_inbound, sidecars[0].1.identity().certified_key()).await;
    assert!(answer.contains("\"backend\":\"b\""), "{answer}");
    // Traffic keeps flowing with only the new root trusted (and renewing).
    until_rotated(&sidecars, 1, Duration::from_secs(2)).await;
    let (ok, failures) = traffic.finish().await;
    println!(
        "CA rotation: {prepared} requests A→B by the end of prepare, {activated} by activate \
         and two renewals, {finished} by finish, {ok} in all; {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "failed answers: {failures:?}");
    assert!(ok > finished && activated > prepared);
    for (_, s) in sidecars {
        s.shutdown().await;
    }
}
