//! Hot reload of the real process under steady load: 100 config changes applied
//! by SIGHUP (one invalid in the middle), then changes picked up by the file
//! watcher, including an editor-style replace by rename. No request may fail.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Proc, TempDir};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshgate_testkit::Backend;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn config(port: u16, version: u32, backend: SocketAddr, reload: &str) -> String {
    format!(
        "accessLog: {{path: \"off\"}}
admin: {{enabled: false}}
reload: {reload}
listeners: [{{name: public, address: \"127.0.0.1:{port}\"}}]
routes:
  - name: version
    matches: [{{path: {{type: Exact, value: /version}}}}]
    filters: [{{type: DirectResponse, directResponse: {{status: 200, body: \"v{version}\"}}}}]
  - name: app-{version}
    matches: [{{path: {{type: PathPrefix, value: /app}}}}]
    backendRefs: [{{name: svc, weight: {weight}}}]
services:
  - {{name: svc, endpoints: [\"{backend}\"]}}
",
        weight = 1 + version % 5
    )
}

async fn get(client: &HttpClient, url: &str) -> Option<(StatusCode, String)> {
    let resp = client
        .request(Request::get(url).body(Full::new(Bytes::new())).unwrap())
        .await
        .ok()?;
    let status = resp.status();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Polls `/version` until it says `want` (bounded).
async fn wait_version(client: &HttpClient, addr: SocketAddr, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if get(client, &format!("http://{addr}/version"))
            .await
            .is_some_and(|(_, v)| v == want)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{want} never served");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn start_load(addr: SocketAddr, clients: usize) -> Load {
    let (stop, sent, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let tasks = (0..clients)
        .map(|_| {
            let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
            tokio::spawn(async move {
                let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
                while !stop.load(Ordering::Relaxed) {
                    let ok = get(&client, &format!("http://{addr}/app/x"))
                        .await
                        .is_some_and(|(s, _)| s == StatusCode::OK);
                    sent.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    Load {
        stop,
        sent,
        failed,
        tasks,
    }
}

impl Load {
    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_sighup_reloads_under_load_drop_nothing() {
    let backend = Backend::start("app").await;
    let dir = TempDir::new("sighup");
    let port = meshgate_testkit::free_port();
    let file = dir.write(
        "meshgate.yaml",
        &config(port, 1, backend.addr, "{watch: false}"),
    );
    let mut gw = Proc::spawn(&dir, &["run", "-c", file.to_str().unwrap()]);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    gw.wait_listening(addr).await;
    let check: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    wait_version(&check, addr, "v1").await;

    let load = start_load(addr, 4);
    let started = Instant::now();
    for version in 2..=101u32 {
        if version == 51 {
            std::fs::write(
                &file,
                "routes:\n  - name: broken\n    backendRefs: [{name: nowhere}]\n",
            )
            .unwrap();
            gw.signal("HUP");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !gw.stderr_text().contains("config rejected") {
                assert!(
                    Instant::now() < deadline,
                    "the invalid config was never reported:\n{}",
                    gw.stderr_text()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(
                gw.stderr_text().contains("meshgate.yaml:3:"),
                "error names file:line:col"
            );
            assert_eq!(
                get(&check, &format!("http://{addr}/version"))
                    .await
                    .unwrap()
                    .1,
                "v50"
            );
            continue;
        }
        std::fs::write(&file, config(port, version, backend.addr, "{watch: false}")).unwrap();
        gw.signal("HUP");
        wait_version(&check, addr, &format!("v{version}")).await;
    }
    let took = started.elapsed();
    let (sent, failed) = load.finish().await;
    println!(
        "100 SIGHUP reloads (1 invalid) in {took:?}: {sent} requests under load, {failed} failed"
    );
    assert!(sent > 200, "the load ran throughout: {sent}");
    assert_eq!(failed, 0, "{}", gw.stderr_text());
    assert!(gw.child.try_wait().unwrap().is_none(), "still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_are_picked_up_by_the_watcher() {
    let backend = Backend::start("app").await;
    let dir = TempDir::new("watch");
    let port = meshgate_testkit::free_port();
    let reload = "{watch: true, debounce: 50ms}";
    let file = dir.write("meshgate.yaml", &config(port, 1, backend.addr, reload));
    let mut gw = Proc::spawn(&dir, &["run", "-c", file.to_str().unwrap()]);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    gw.wait_listening(addr).await;
    let check: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let load = start_load(addr, 2);
    for version in 2..=6u32 {
        let text = config(port, version, backend.addr, reload);
        if version % 2 == 0 {
            std::fs::write(&file, text).unwrap();
        } else {
            // The way editors save: write aside, then rename over the file.
            let aside = dir.write("meshgate.yaml.tmp", &text);
            std::fs::rename(aside, &file).unwrap();
        }
        wait_version(&check, addr, &format!("v{version}")).await;
    }
    let (sent, failed) = load.finish().await;
    assert_eq!(failed, 0, "{sent} sent");
    assert!(gw.stderr_text().contains("config reloaded"));
}
