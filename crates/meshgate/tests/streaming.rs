//! Bodies stream through the gateway process: a 100 MB download and a 100 MB upload,
//! over HTTP/1.1 and over h2c, on a route with a retry policy (so the "hold small
//! bodies for replay" path must step aside for big ones), must leave the gateway's
//! peak RSS (`VmHWM`) within 16 MB of where it was before. A proxy that buffered
//! either body would grow by 100 MB.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{TempDir, curl, gateway_yaml, start_gateway};
use meshgate_testkit::Backend;
use serde_json::Value;

const SIZE: u64 = 100 * 1024 * 1024;
const LIMIT_KIB: u64 = 16 * 1024;

/// Peak resident set size of `pid` in KiB (`VmHWM` in `/proc/PID/status`).
fn hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("a VmHWM line")
}

fn write_file(path: &Path, size: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create upload"));
    let chunk = vec![b'u'; 1 << 20];
    for _ in 0..size / chunk.len() as u64 {
        f.write_all(&chunk).expect("write upload");
    }
    f.flush().expect("flush upload");
    assert_eq!(std::fs::metadata(path).unwrap().len(), size);
}

/// The access log line whose path is `path` (bounded wait for it to appear).
async fn log_line(log: &Path, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["path"] == path);
        match found {
            Some(v) => return v,
            None if Instant::now() > deadline => panic!("no log line for {path}:\n{text}"),
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_each_way_stream_without_buffering() {
    let backend = Backend::start("bulk").await;
    let dir = TempDir::new("streaming");
    let log = dir.path("access.log");
    let upload = dir.path("upload.bin");
    write_file(&upload, SIZE);
    let (gw, addr) = start_gateway(&dir, |port| {
        gateway_yaml(port, backend.addr, &log, "{workerThreads: 2}").replace(
            "    backendRefs: [{name: svc}]\n",
            "    backendRefs: [{name: svc}]\n    retry: {attempts: 2}\n",
        )
    })
    .await;
    let base = format!("http://{addr}/api");
    let pid = gw.pid();

    // Warm up both directions so pools and buffers exist before the baseline.
    let small = dir.path("small.bin");
    write_file(&small, 1 << 20);
    let warm = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{base}/bytes/1048576"),
    ])
    .await;
    assert_eq!(String::from_utf8_lossy(&warm.stdout), "200");
    let warm = curl(&["-T", small.to_str().unwrap(), &format!("{base}/warm-up")]).await;
    let echo: Value = serde_json::from_slice(&warm.stdout).expect("echo JSON");
    assert_eq!(echo["bodyBytes"], 1 << 20);
    let before = hwm_kib(pid);
    let mib = |kib: u64| kib as f64 / 1024.0;

    for (proto, flag) in [
        ("HTTP/1.1", "--http1.1"),
        ("h2c", "--http2-prior-knowledge"),
    ] {
        let started = Instant::now();
        let down = curl(&[
            flag,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            &format!("{base}/bytes/{SIZE}"),
        ])
        .await;
        let down_secs = started.elapsed().as_secs_f64();
        assert!(down.status.success(), "{proto}: {down:?}");
        assert_eq!(String::from_utf8_lossy(&down.stdout), format!("200 {SIZE}"));
        let after_down = hwm_kib(pid);

        let started = Instant::now();
        let url = format!("{base}/upload/{}", proto.replace('/', "-"));
        let up = curl(&[flag, "-T", upload.to_str().unwrap(), &url]).await;
        let up_secs = started.elapsed().as_secs_f64();
        assert!(up.status.success(), "{proto}: {up:?}");
        let echo: Value = serde_json::from_slice(&up.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&up.stdout)));
        assert_eq!(echo["method"], "PUT");
        assert_eq!(
            echo["bodyBytes"], SIZE,
            "{proto}: the backend got every byte"
        );
        let after_up = hwm_kib(pid);

        println!(
            "{proto}: gateway VmHWM before {:.1} MiB; after 100 MB download {:.1} MiB \
             (+{:.1}, {down_secs:.2}s); after 100 MB upload {:.1} MiB (+{:.1}, {up_secs:.2}s)",
            mib(before),
            mib(after_down),
            mib(after_down - before),
            mib(after_up),
            mib(after_up - before),
        );
        for (what, after) in [("download", after_down), ("upload", after_up)] {
            assert!(
                after - before < LIMIT_KIB,
                "{proto} {what} grew the peak RSS by {} KiB (limit {LIMIT_KIB})",
                after - before
            );
        }
    }

    // The access log counted the bytes it streamed.
    let l = log_line(&log, &format!("/api/bytes/{SIZE}")).await;
    assert_eq!((&l["status"], &l["bytes_out"]), (&200.into(), &SIZE.into()));
    for path in ["/api/upload/HTTP-1.1", "/api/upload/h2c"] {
        let l = log_line(&log, path).await;
        let got = (&l["status"], &l["bytes_in"], &l["retries"]);
        assert_eq!(got, (&200.into(), &SIZE.into(), &0.into()), "{path}");
    }
}
