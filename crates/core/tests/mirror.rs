//! Request mirroring (shadowing) against real backends: the shadow gets a copy of
//! the request, the primary is never delayed or changed by it (shadow down or
//! slow), bodies past the cap are not mirrored, and diff mode reports divergences.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Harness, dead_addr, start, wait_for};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use meshgate_testkit::Backend;
use tokio::net::TcpListener;

/// What a test server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    host: String,
    request_id: String,
    body: Bytes,
}

type Answer = fn(&str) -> (StatusCode, String);

/// A small HTTP/1.1 server of the test's own: records every request and answers
/// `answer(path)` as JSON after `delay` (the testkit echo names its backend, so two
/// of them never answer alike).
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start(answer: Answer, delay: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes();
                            let header = |n: &str| {
                                parts.headers.get(n).map_or(String::new(), |v| {
                                    v.to_str().unwrap_or_default().to_owned()
                                })
                            };
                            log.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                path: parts.uri.path_and_query().unwrap().to_string(),
                                host: header("host"),
                                request_id: header("x-request-id"),
                                body,
                            });
                            tokio::time::sleep(delay).await;
                            let (status, json) = answer(parts.uri.path());
                            Ok::<_, hyper::Error>(
                                Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(json)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Server { addr, seen }
    }

    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn echo_ok(_: &str) -> (StatusCode, String) {
    (StatusCode::OK, r#"{"ok":true}"#.into())
}

/// One listener; route `r` to `svc` mirrored to `shadow` with the given mirror
/// settings (a YAML flow mapping's inner part).
fn mirrored(primary: SocketAddr, shadow: SocketAddr, mirror: &str) -> String {
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
routes:
  - name: r
    backendRefs: [{{name: svc}}]
    mirror: {{service: shadow, {mirror}}}
services:
  - {{name: svc, endpoints: [\"{primary}\"]}}
  - {{name: shadow, endpoints: [\"{shadow}\"], preserveHost: true}}
"
    )
}

/// A counter's value in the metrics text (0 when absent).
fn counter(h: &Harness, name: &str, labels: &str) -> u64 {
    let text = h.gateway.metrics().encode();
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn mirror_result(h: &Harness, route: &str, result: &str) -> u64 {
    counter(
        h,
        "meshgate_mirror_requests_total",
        &format!("route=\"{route}\",result=\"{result}\""),
    )
}

async fn post(h: &Harness, path: &str, body: &'static str, id: &str) -> common::Reply {
    h.send(
        Method::POST,
        "api.test",
        path,
        &[("content-type", "application/json"), ("x-request-id", id)],
        Bytes::from_static(body.as_bytes()),
    )
    .await
}

#[tokio::test]
async fn every_request_reaches_the_shadow_unchanged_and_the_primary_is_untouched() {
    let primary = Backend::start("primary").await;
    let shadow = Server::start(echo_ok, Duration::ZERO).await;
    let h = start(&mirrored(primary.addr, shadow.addr, "percent: 100")).await;
    for i in 0..20 {
        let reply = post(&h, "/orders/7?x=1", r#"{"qty":3}"#, &format!("req-{i}")).await;
        assert_eq!(reply.status, 200);
        let echo = reply.json();
        assert_eq!(echo["backend"], "primary", "{echo}");
        assert_eq!(echo["path"], "/orders/7");
        assert_eq!(echo["headers"]["x-request-id"], format!("req-{i}"));
        assert_eq!(reply.headers["x-request-id"], format!("req-{i}").as_str());
    }
    wait_for("20 mirrored requests", Duration::from_secs(5), || {
        shadow.hits() == 20
    })
    .await;
    let mut ids: Vec<String> = shadow
        .seen()
        .into_iter()
        .map(|s| {
            assert_eq!(s.method, "POST");
            assert_eq!(s.path, "/orders/7?x=1");
            assert_eq!(s.body, r#"{"qty":3}"#);
            assert_eq!(s.host, "api.test-shadow");
            s.request_id
        })
        .collect();
    ids.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("req-{i}")).collect();
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(primary.hits(), 20);
    wait_for("sent metric", Duration::from_secs(5), || {
        mirror_result(&h, "r", "sent") == 20
    })
    .await;
}

#[tokio::test]
async fn half_the_requests_are_mirrored_at_percent_50() {
    let primary = Backend::start("primary").await;
    let shadow = Server::start(echo_ok, Duration::ZERO).await;
    let h = start(&mirrored(primary.addr, shadow.addr, "percent: 50")).await;
    for _ in 0..400 {
        assert_eq!(h.get("api.test", "/").await.status, 200);
    }
    // Every mirror was spawned before its primary was sent; wait for the last ones.
    wait_for("mirrors to land", Duration::from_secs(5), || {
        mirror_result(&h, "r", "sent") == shadow.hits() as u64
    })
    .await;
    let n = shadow.hits();
    // Binomial(400, 0.5): standard deviation 10; ±6 of them.
    assert!((140..=260).contains(&n), "{n} of 400 mirrored");
}

/// The 95th percentile of `n` sequential GETs through `h`, each answered 200.
async fn p95(h: &Harness, n: usize) -> Duration {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let reply = h.get("api.test", "/").await;
        times.push(t.elapsed());
        assert_eq!(reply.status, 200);
        assert_eq!(reply.backend(), "primary");
    }
    times.sort();
    times[n * 95 / 100]
}

#[tokio::test]
async fn a_shadow_that_is_down_does_not_touch_the_primary() {
    let primary = Backend::start("primary").await;
    let with = start(&mirrored(primary.addr, dead_addr(), "timeout: 2s")).await;
    let without = start(&common::one_route(
        "",
        &common::service("svc", &[primary.addr]),
    ))
    .await;
    // Warm both paths (connections pooled) before measuring.
    p95(&with, 10).await;
    p95(&without, 10).await;
    let (mirrored_p95, plain_p95) = (p95(&with, 100).await, p95(&without, 100).await);
    assert!(
        mirrored_p95 <= plain_p95 * 3 + Duration::from_millis(50),
        "p95 with a dead shadow {mirrored_p95:?}, without a mirror {plain_p95:?}"
    );
    wait_for("110 failed mirrors", Duration::from_secs(5), || {
        mirror_result(&with, "r", "failed") == 110
    })
    .await;
    assert_eq!(mirror_result(&with, "r", "sent"), 0);
}

#[tokio::test]
async fn a_slow_shadow_does_not_delay_the_primary_and_times_out() {
    let primary = Backend::start("primary").await;
    let shadow = Server::start(echo_ok, Duration::from_secs(3)).await;
    let h = start(&mirrored(primary.addr, shadow.addr, "timeout: 300ms")).await;
    for _ in 0..5 {
        let t = Instant::now();
        let reply = h.get("api.test", "/").await;
        assert_eq!(reply.status, 200);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "primary took {:?} behind a 3 s shadow",
            t.elapsed()
        );
    }
    wait_for("5 mirror timeouts", Duration::from_secs(5), || {
        mirror_result(&h, "r", "timeout") == 5
    })
    .await;
    assert_eq!(shadow.hits(), 5);
}

#[tokio::test]
async fn bodies_over_the_cap_or_unsized_are_not_mirrored() {
    static BIG: [u8; 2000] = [b'x'; 2000];
    let primary = Backend::start("primary").await;
    let shadow = Server::start(echo_ok, Duration::ZERO).await;
    let h = start(&mirrored(primary.addr, shadow.addr, "maxBodyBytes: 1024")).await;
    let big = h
        .send(
            Method::POST,
            "api.test",
            "/big",
            &[],
            Bytes::from_static(&BIG),
        )
        .await;
    assert_eq!(big.status, 200);
    assert_eq!(big.json()["bodyBytes"], 2000, "{}", big.body);
    // Without content-length the body streams: never buffered for the mirror.
    let chunked = h
        .curl(&[
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Host: api.test",
            "--data-binary",
            "small",
            &h.url("/chunked"),
        ])
        .await;
    assert!(chunked.starts_with("HTTP/1.1 200"), "{chunked}");
    let small = post(&h, "/small", r#"{"fits":true}"#, "small-1").await;
    assert_eq!(small.status, 200);
    wait_for("the small body mirrored", Duration::from_secs(5), || {
        shadow.hits() == 1
    })
    .await;
    let seen = shadow.seen();
    assert_eq!(seen[0].path, "/small");
    assert_eq!(seen[0].body, r#"{"fits":true}"#);
    assert_eq!(mirror_result(&h, "r", "skipped"), 2);
    assert_eq!(primary.hits(), 3);
}

// ---- diff mode ----

/// The primary's answers.
fn primary_answer(path: &str) -> (StatusCode, String) {
    match path {
        "/changed" => (StatusCode::OK, r#"{"user":"ann","price":10}"#.into()),
        "/ignored" => (
            StatusCode::OK,
            r#"{"ts":1,"items":[{"id":"p1","n":1},{"id":"p2","n":2}],"user":"ann"}"#.into(),
        ),
        "/status" => (StatusCode::OK, r#"{"ok":true}"#.into()),
        _ => (StatusCode::OK, r#"{"same":[1,{"a":"b"}]}"#.into()),
    }
}

/// The shadow's: one changed field, only ignored fields changed, a 503, the same.
fn shadow_answer(path: &str) -> (StatusCode, String) {
    match path {
        "/changed" => (StatusCode::OK, r#"{"user":"ann","price":11}"#.into()),
        "/ignored" => (
            StatusCode::OK,
            r#"{"user":"ann","ts":2,"items":[{"id":"s1","n":1},{"id":"s2","n":2}]}"#.into(),
        ),
        "/status" => (StatusCode::SERVICE_UNAVAILABLE, r#"{"ok":true}"#.into()),
        _ => (StatusCode::OK, r#"{"same":[1,{"a":"b"}]}"#.into()),
    }
}

/// Log records of target `meshgate::mirror`, as field maps.
static RECORDS: Mutex<Vec<HashMap<String, String>>> = Mutex::new(Vec::new());

/// A tracing subscriber that keeps the mirror's log records.
struct Capture;

struct Fields<'a>(&'a mut HashMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        m.target() == "meshgate::mirror"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        let mut map = HashMap::new();
        e.record(&mut Fields(&mut map));
        map.insert("level".into(), e.metadata().level().to_string());
        RECORDS.lock().unwrap().push(map);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Installs `Capture` as the global subscriber (once per test binary).
fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| tracing::subscriber::set_global_default(Capture).unwrap());
}

fn records(route: &str) -> Vec<HashMap<String, String>> {
    RECORDS
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.get("route").map(String::as_str) == Some(route))
        .cloned()
        .collect()
}

#[tokio::test]
async fn diff_mode_reports_a_changed_field_and_nothing_else() {
    capture_logs();
    let primary = Server::start(primary_answer, Duration::ZERO).await;
    let shadow = Server::start(shadow_answer, Duration::ZERO).await;
    let route = |name: &str, path: &str| {
        format!(
            "  - name: {name}
    matches: [{{path: {{type: Exact, value: {path}}}}}]
    backendRefs: [{{name: svc}}]
    mirror:
      service: shadow
      diff: {{ignoreJsonFields: [$.ts, items.*.id], sampleLogPerMinute: 100}}
"
        )
    };
    let yaml = format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
routes:
{}{}{}{}services:
  - {{name: svc, endpoints: [\"{}\"]}}
  - {{name: shadow, endpoints: [\"{}\"]}}
",
        route("d-changed", "/changed"),
        route("d-ignored", "/ignored"),
        route("d-same", "/same"),
        route("d-status", "/status"),
        primary.addr,
        shadow.addr,
    );
    let h = start(&yaml).await;
    for path in ["/changed", "/ignored", "/same", "/status"] {
        for i in 0..3 {
            let reply = post(&h, path, r#"{"q":1}"#, &format!("{path}-{i}")).await;
            // The primary's answer, whatever the shadow said.
            assert_eq!(reply.status, 200);
            assert_eq!(reply.body, primary_answer(path).1);
        }
    }
    let diffs = |route: &str, kind: &str| {
        counter(
            &h,
            "meshgate_mirror_diffs_total",
            &format!("route=\"{route}\",kind=\"{kind}\""),
        )
    };
    let compared = |route: &str| {
        counter(
            &h,
            "meshgate_mirror_compared_total",
            &format!("route=\"{route}\""),
        )
    };
    wait_for("12 comparisons", Duration::from_secs(5), || {
        ["d-changed", "d-ignored", "d-same", "d-status"]
            .iter()
            .all(|r| compared(r) == 3)
    })
    .await;
    assert_eq!(diffs("d-changed", "body"), 3);
    assert_eq!(diffs("d-status", "status"), 3);
    for kind in ["status", "header", "body"] {
        assert_eq!(diffs("d-same", kind), 0, "{kind}");
        assert_eq!(diffs("d-ignored", kind), 0, "{kind}");
    }
    assert_eq!(diffs("d-changed", "status"), 0);
    assert_eq!(diffs("d-status", "body"), 0);

    let changed = records("d-changed");
    assert_eq!(changed.len(), 3, "{changed:?}");
    let r = &changed[0];
    assert_eq!(r["level"], "INFO");
    assert_eq!(r["kind"], "body");
    assert_eq!(r["at"], "$.price");
    assert_eq!(r["primary"], "10");
    assert_eq!(r["shadow"], "11");
    assert!(r["request_id"].starts_with("/changed-"), "{r:?}");
    let status = records("d-status");
    assert_eq!(status.len(), 3);
    assert_eq!(
        (status[0]["primary"].as_str(), status[0]["shadow"].as_str()),
        ("200", "503")
    );
    assert!(records("d-same").is_empty());
    assert!(records("d-ignored").is_empty());
}

#[tokio::test]
async fn diff_log_records_are_rate_limited() {
    capture_logs();
    let primary = Server::start(primary_answer, Duration::ZERO).await;
    let shadow = Server::start(shadow_answer, Duration::ZERO).await;
    let h = start(&mirrored(
        primary.addr,
        shadow.addr,
        "diff: {sampleLogPerMinute: 0}",
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(h.get("api.test", "/changed").await.status, 200);
    }
    wait_for("3 body diffs counted", Duration::from_secs(5), || {
        counter(
            &h,
            "meshgate_mirror_diffs_total",
            "route=\"r\",kind=\"body\"",
        ) == 3
    })
    .await;
    // Route `r` is used by other tests too; none of them diffs. The ones that are
    // allowed are logged: see the test above.
    assert!(records("r").is_empty());
}

#[tokio::test]
async fn a_large_primary_response_streams_through_the_tee_and_skips_the_body_diff() {
    let primary = Backend::start("primary").await;
    let shadow = Backend::start("shadow").await;
    let h = start(&mirrored(
        primary.addr,
        shadow.addr,
        "maxBodyBytes: 1024, diff: {compareHeaders: [content-type]}",
    ))
    .await;
    let big = h.get("api.test", "/bytes/300000").await;
    assert_eq!(big.status, 200);
    assert_eq!(big.body.len(), 300_000);
    // A small echo is compared in full: the two backends' names differ.
    let small = h.get("api.test", "/echo").await;
    assert_eq!(small.backend(), "primary");
    let compared = || counter(&h, "meshgate_mirror_compared_total", "route=\"r\"");
    wait_for("2 comparisons", Duration::from_secs(5), || compared() == 2).await;
    let diffs = |kind: &str| {
        counter(
            &h,
            "meshgate_mirror_diffs_total",
            &format!("route=\"r\",kind=\"{kind}\""),
        )
    };
    assert_eq!((diffs("status"), diffs("header"), diffs("body")), (0, 0, 1));
}
