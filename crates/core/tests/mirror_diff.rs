//! Mirroring in diff mode against real backends: a deliberately changed JSON field
//! is reported (metric and log record), ignored fields and identical answers are
//! not, log records are rate-limited, and a large primary response streams.

mod common;
mod mirror_support;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::{start, wait_for};
use http::StatusCode;
use meshgate_testkit::Backend;
use mirror_support::*;

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
    // Its own route name: other tests of this binary log records for theirs.
    let yaml = mirrored(primary.addr, shadow.addr, "diff: {sampleLogPerMinute: 0}")
        .replace("name: r\n", "name: quiet\n");
    let h = start(&yaml).await;
    for _ in 0..3 {
        assert_eq!(h.get("api.test", "/changed").await.status, 200);
    }
    wait_for("3 body diffs counted", Duration::from_secs(5), || {
        counter(
            &h,
            "meshgate_mirror_diffs_total",
            "route=\"quiet\",kind=\"body\"",
        ) == 3
    })
    .await;
    assert!(records("quiet").is_empty());
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
