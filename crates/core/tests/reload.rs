//! Hot reload under steady load: 100 config changes (routes added and removed,
//! weights changed, a listener added and removed, one invalid config in the
//! middle) while clients keep sending requests. Zero failures allowed, and every
//! valid change must be visible right after its reload returns.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshgate_core::access_log::AccessLog;
use meshgate_core::{Gateway, ReloadError, Reloader};
use meshgate_testkit::Backend;

fn config(version: u32, a: &Backend, b: &Backend) -> String {
    let extra_route = if version.is_multiple_of(2) {
        format!(
            "  - name: extra-{version}\n    matches: [{{path: {{type: Exact, value: /extra}}}}]\n    filters: [{{type: DirectResponse, directResponse: {{status: 200, body: \"extra-{version}\"}}}}]\n"
        )
    } else {
        String::new()
    };
    let extra_listener = if version.is_multiple_of(10) {
        "  - {name: extra, address: \"127.0.0.1:0\"}\n"
    } else {
        ""
    };
    format!(
        "listeners:
  - {{name: main, address: \"127.0.0.1:0\"}}
{extra_listener}routes:
  - name: version
    matches: [{{path: {{type: Exact, value: /version}}}}]
    filters: [{{type: DirectResponse, directResponse: {{status: 200, body: \"v{version}\"}}}}]
  - name: app
    matches: [{{path: {{type: PathPrefix, value: /app}}}}]
    backendRefs: [{{name: a, weight: {wa}}}, {{name: b, weight: {wb}}}]
{extra_route}services:
{sa}{sb}",
        wa = version % 4,
        wb = 1 + version % 3,
        sa = common::service("a", &[a.addr]),
        sb = common::service("b", &[b.addr]),
    )
}

async fn body_of(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &str,
) -> (StatusCode, String) {
    let req = Request::get(url).body(Full::new(Bytes::new())).unwrap();
    let resp = client.request(req).await.expect("gateway answers");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_under_load_drop_nothing() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let dir = std::env::temp_dir().join(format!("meshgate-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("meshgate.yaml");
    let first = config(1, &a, &b);
    std::fs::write(&file, &first).unwrap();
    let cfg = meshgate_config::parse_str(&first, "meshgate.yaml").unwrap();
    let gateway = Arc::new(
        Gateway::start_with_log(cfg, AccessLog::off())
            .await
            .unwrap(),
    );
    let main = gateway.local_addr("main").unwrap();
    let reloader = Reloader::new(gateway.clone(), file.clone(), &first);

    // Steady load: 8 clients on keep-alive connections, each request checked.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            while !stop.load(Ordering::Relaxed) {
                let req = Request::get(format!("http://{main}/app"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let ok = match client.request(req).await {
                    Ok(resp) => {
                        resp.status() == StatusCode::OK && resp.into_body().collect().await.is_ok()
                    }
                    Err(_) => false,
                };
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    let check = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let started = Instant::now();
    let mut applied = 1;
    for version in 2..=101u32 {
        if version == 51 {
            // One invalid config in the middle: rejected whole, the old one keeps serving.
            std::fs::write(
                &file,
                "routes:\n  - name: broken\n    backendRefs: [{name: nowhere}]\n",
            )
            .unwrap();
            let err = reloader
                .reload("test")
                .await
                .expect_err("invalid config is refused");
            assert!(matches!(err, ReloadError::Invalid(_)));
            assert!(err.to_string().contains("meshgate.yaml:3:"), "{err}");
            assert_eq!(
                body_of(&check, &format!("http://{main}/version")).await.1,
                "v50"
            );
            continue;
        }
        std::fs::write(&file, config(version, &a, &b)).unwrap();
        applied += 1;
        assert_eq!(
            reloader.reload("test").await.expect("valid config applies"),
            applied
        );
        // The change is in effect as soon as the reload returns.
        assert_eq!(
            body_of(&check, &format!("http://{main}/version")).await.1,
            format!("v{version}")
        );
        let extra = body_of(&check, &format!("http://{main}/extra")).await;
        if version.is_multiple_of(2) {
            assert_eq!(extra, (StatusCode::OK, format!("extra-{version}")));
        } else {
            assert_eq!(
                extra.0,
                StatusCode::NOT_FOUND,
                "route removed in v{version}"
            );
        }
        match gateway.local_addr("extra") {
            Some(addr) => {
                assert_eq!(version % 10, 0, "listener only in every tenth config");
                assert_eq!(
                    body_of(&check, &format!("http://{addr}/version")).await.1,
                    format!("v{version}")
                );
            }
            None => assert_ne!(version % 10, 0, "listener added in v{version}"),
        }
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("100 reloads (1 invalid) in {took:?} under load: {sent} requests, {failed} failed");
    assert!(sent > 500, "the load ran throughout: {sent}");
    assert_eq!(failed, 0);
    let status = reloader.status();
    assert_eq!(
        (status.version, status.reloads_ok, status.reloads_failed),
        (100, 99, 1)
    );
    let metrics = gateway.metrics().encode();
    assert!(
        metrics.contains("meshgate_config_reloads_total{result=\"ok\"} 99"),
        "{metrics}"
    );
    assert!(metrics.contains("meshgate_config_reloads_total{result=\"failed\"} 1"));
    assert!(metrics.contains("meshgate_config_version 100"));
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unchanged_file_is_not_reapplied_and_a_bad_listener_keeps_the_old_config() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let dir = std::env::temp_dir().join(format!("meshgate-reload2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("meshgate.yaml");
    let first = config(1, &a, &b);
    std::fs::write(&file, &first).unwrap();
    let gateway = Arc::new(
        Gateway::start_with_log(
            meshgate_config::parse_str(&first, "m.yaml").unwrap(),
            AccessLog::off(),
        )
        .await
        .unwrap(),
    );
    let reloader = Reloader::new(gateway.clone(), file.clone(), &first);
    assert_eq!(
        reloader.reload("test").await.unwrap(),
        1,
        "same bytes: nothing to do"
    );

    // A listener on an address that is taken: the whole config is refused.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bad = config(3, &a, &b).replace(
        "listeners:\n",
        &format!(
            "listeners:\n  - {{name: clash, address: \"{}\"}}\n",
            taken.local_addr().unwrap()
        ),
    );
    std::fs::write(&file, bad).unwrap();
    let err = reloader
        .reload("test")
        .await
        .expect_err("bind failure refuses the config");
    assert!(err.to_string().contains("cannot listen on"), "{err}");
    let main = gateway.local_addr("main").unwrap();
    let h = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    assert_eq!(body_of(&h, &format!("http://{main}/version")).await.1, "v1");
    assert!(gateway.local_addr("clash").is_none());
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
