//! `meshgate run` as a process in front of a real backend, driven by real `curl`
//! over HTTP/1.1 and h2c: echoes come back with `x-request-id` and `via`, and the
//! access log file gets one JSON line per request with every documented field.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{TempDir, curl, gateway_yaml, header, split_response, start_gateway};
use meshgate_testkit::Backend;
use serde_json::Value;

/// Reads the access log until it holds `n` lines (bounded wait), parsed as JSON.
async fn log_lines(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let complete: Vec<&str> = text.split_inclusive('\n').collect();
        if complete.len() >= n && text.ends_with('\n') || Instant::now() > deadline {
            return text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_h1_and_h2c_through_the_gateway_process_and_access_log() {
    let backend = Backend::start("echo-be").await;
    let dir = TempDir::new("proxy");
    let log = dir.path("access.log");
    let (_gw, addr) = start_gateway(&dir, |port| {
        gateway_yaml(port, backend.addr, &log, "{workerThreads: 2}")
    })
    .await;
    let base = format!("http://{addr}");

    // HTTP/1.1 with a body and a caller-chosen request id.
    let h1 = curl(&[
        "-i",
        "--http1.1",
        "-H",
        "x-request-id: test-h1",
        "--data-binary",
        "hello",
        &format!("{base}/api/h1?x=1"),
    ])
    .await;
    assert!(h1.status.success(), "{h1:?}");
    let (status, headers, body) = split_response(&h1.stdout);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(header(&headers, "x-request-id"), Some("test-h1"));
    assert_eq!(header(&headers, "via"), Some("1.1 meshgate"));
    assert_eq!(header(&headers, "x-backend"), Some("echo-be"));
    let echo: Value = serde_json::from_str(&body).expect("echo JSON");
    assert_eq!(echo["backend"], "echo-be");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/api/h1");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["bodyBytes"], 5);
    assert_eq!(echo["headers"]["x-request-id"], "test-h1");
    assert_eq!(echo["headers"]["via"], "1.1 meshgate");
    assert_eq!(echo["headers"]["x-forwarded-host"], addr.to_string());
    let h1_bytes_out = body.len() as u64;

    // h2c prior knowledge; the gateway makes up the request id.
    let h2 = curl(&["-i", "--http2-prior-knowledge", &format!("{base}/api/h2")]).await;
    assert!(h2.status.success(), "{h2:?}");
    let (status, headers, body) = split_response(&h2.stdout);
    assert_eq!(status, "HTTP/2 200");
    assert_eq!(header(&headers, "via"), Some("1.1 meshgate"));
    let h2_id = header(&headers, "x-request-id")
        .expect("x-request-id")
        .to_owned();
    assert!(!h2_id.is_empty());
    let echo: Value = serde_json::from_str(&body).expect("echo JSON");
    assert_eq!(echo["backend"], "echo-be");
    assert_eq!(echo["path"], "/api/h2");
    assert_eq!(echo["headers"]["x-request-id"], h2_id.as_str());
    assert_eq!(echo["headers"]["via"], "2 meshgate");
    let h2_bytes_out = body.len() as u64;

    // No route: answered by the gateway itself.
    let miss = curl(&["-i", &format!("{base}/nowhere")]).await;
    let (status, headers, body) = split_response(&miss.stdout);
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let miss_id = header(&headers, "x-request-id")
        .expect("x-request-id")
        .to_owned();
    let err: Value = serde_json::from_str(&body).expect("error JSON");
    assert_eq!(err["error"], "no_route");
    assert_eq!(err["requestId"], miss_id.as_str());
    assert_eq!(backend.hits(), 2, "the 404 must not reach the backend");

    let lines = log_lines(&log, 3).await;
    assert_eq!(lines.len(), 3, "one line per request: {lines:#?}");
    let fields = [
        "time",
        "method",
        "authority",
        "path",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "upstream",
        "route",
        "request_id",
        "retries",
        "reason",
    ];
    for line in &lines {
        for f in fields {
            assert!(line.get(f).is_some(), "no {f} in {line}");
        }
        assert!(
            line["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
        assert!(
            line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
            "{line}"
        );
        assert_eq!(line["authority"], addr.to_string());
        assert_eq!(line["retries"], 0);
    }
    let by_id = |id: &str| {
        lines
            .iter()
            .find(|l| l["request_id"] == id)
            .unwrap_or_else(|| panic!("no log line for {id}: {lines:#?}"))
    };
    let upstream = backend.addr.to_string();
    let l = by_id("test-h1");
    assert_eq!(
        (&l["method"], &l["path"], &l["status"], &l["protocol"]),
        (
            &"POST".into(),
            &"/api/h1?x=1".into(),
            &200.into(),
            &"HTTP/1.1".into()
        )
    );
    assert_eq!(
        (&l["bytes_in"], &l["bytes_out"]),
        (&5.into(), &h1_bytes_out.into())
    );
    assert_eq!(
        (&l["upstream"], &l["route"]),
        (&upstream.as_str().into(), &"api".into())
    );
    assert_eq!(l["reason"], Value::Null);
    let l = by_id(&h2_id);
    assert_eq!(
        (&l["method"], &l["path"], &l["status"]),
        (&"GET".into(), &"/api/h2".into(), &200.into())
    );
    assert_eq!(
        (&l["bytes_in"], &l["bytes_out"]),
        (&0.into(), &h2_bytes_out.into())
    );
    assert_eq!(l["protocol"], "HTTP/2.0");
    assert_eq!(l["upstream"], upstream.as_str());
    let l = by_id(&miss_id);
    assert_eq!(
        (&l["status"], &l["reason"]),
        (&404.into(), &"no_route".into())
    );
    assert_eq!((&l["route"], &l["upstream"]), (&Value::Null, &Value::Null));
}

/// CPU ticks (user + system) of each thread of `pid` named `mg-worker-*`.
fn worker_ticks(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir") {
        let dir = task.expect("task").path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let name = name.trim();
        if !name.starts_with("mg-worker") {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: utime is the 12th, stime the 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        out.push((
            name.to_owned(),
            f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0),
        ));
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_threads_each_serve_their_share_of_connections() {
    let backend = Backend::start("be").await;
    let dir = TempDir::new("workers");
    let log = dir.path("access.log");
    let (gw, addr) = start_gateway(&dir, |port| {
        gateway_yaml(port, backend.addr, &log, "{workerThreads: 2}")
    })
    .await;
    let before = worker_ticks(gw.pid());
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["mg-worker-0", "mg-worker-1"]);

    // Eight keep-alive connections, handed out round robin at accept: four each.
    let url = format!("http://{addr}/api/load");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut args = vec!["-o", "/dev/null", "-w", "%{http_code}\n"];
                let urls = vec![url.as_str(); 300];
                for u in &urls {
                    args.push(u);
                }
                curl(&args).await
            })
        })
        .collect();
    for t in tasks {
        let out = t.await.expect("curl task");
        let codes = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            codes.lines().filter(|c| *c == "200").count(),
            300,
            "{out:?}"
        );
    }
    let after = worker_ticks(gw.pid());
    for ((name, t0), (_, t1)) in before.iter().zip(&after) {
        assert!(t1 > t0, "{name} served nothing: {before:?} -> {after:?}");
    }
}
