//! The control plane's admin REST API as a real process, called with real curl:
//! `POST /config` (401/403 without an operator token, 400 with located errors,
//! 409 on a stale `expectVersion`, `unchanged` for the same document), `POST
//! /plan`, `GET /versions`, `POST /rollback` — each change reaching a real
//! `meshgate gateway --control` — and the stream counters on `/metrics`. Then a
//! graceful stop: SIGTERM ends the config streams (the gateway sees the stream
//! end, not break), and the process exits promptly with success.

mod common;
mod control_support;

use std::path::Path;
use std::time::Duration;

use common::curl;
use control_support::{
    ControlDir, GATEWAY_TOKEN, GatewayNode, OPERATOR_TOKEN, document, get, http_client, path,
    wait_serving,
};
use meshgate_testkit::Backend;

/// `curl -X method` on the admin endpoint with an optional bearer token and the
/// file `body` as the body; (HTTP status, body).
async fn call(
    cp: &ControlDir,
    method: &str,
    route: &str,
    token: Option<&str>,
    body: Option<&Path>,
) -> (u16, String) {
    let url = format!("http://{}{route}", cp.admin);
    let mut args = vec!["-X", method, "-w", "\n%{http_code}"];
    let authorization = token.map(|t| format!("authorization: Bearer {t}"));
    if let Some(a) = &authorization {
        args.extend(["-H", a]);
    }
    let data = body.map(|b| format!("@{}", path(b)));
    if let Some(d) = &data {
        args.extend(["-H", "content-type: application/yaml", "--data-binary", d]);
    }
    args.push(&url);
    let out = curl(&args).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, code) = text.rsplit_once('\n').expect("status code line");
    (code.parse().expect("HTTP status"), body.to_owned())
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_through_the_admin_api_reach_the_gateway() {
    let backend = Backend::start("app").await;
    let client = http_client();
    let cp_dir = ControlDir::new("cp-admin", "control-1", "{embedded: {keep: 5}}");
    let _cp = cp_dir.start().await;
    let node = GatewayNode::new("gw-admin");
    let mut gw = node.start(&cp_dir);
    let v1 = cp_dir.dir.write("v1.yaml", &document(1, backend.addr));
    let v2 = cp_dir.dir.write("v2.yaml", &document(2, backend.addr));
    let op = Some(OPERATOR_TOKEN);

    // Operator tokens only.
    let (code, body) = call(&cp_dir, "POST", "/config", None, Some(&v1)).await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = call(&cp_dir, "POST", "/config", Some("nope"), Some(&v1)).await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = call(&cp_dir, "POST", "/config", Some(GATEWAY_TOKEN), Some(&v1)).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .is_some_and(|e| e.contains("operator")),
        "{body}"
    );
    let (code, body) = call(&cp_dir, "GET", "/versions", None, None).await;
    assert_eq!(code, 401, "{body}");

    // An invalid document: every error located, nothing stored.
    let broken = cp_dir.dir.write(
        "broken.yaml",
        "listeners:\n  - name: public\n    address: 127.0.0.1:1\n    bogus: 1\n",
    );
    let (code, body) = call(
        &cp_dir,
        "POST",
        "/config?source=broken.yaml",
        op,
        Some(&broken),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let errors = json(&body)["errors"].clone();
    assert!(
        errors
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["file"] == "broken.yaml"
                && e["line"] == 4
                && e["column"].as_u64().is_some()
                && e["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("listeners[0]")))),
        "{body}"
    );
    let (code, body) = call(&cp_dir, "GET", "/versions", op, None).await;
    assert_eq!(
        (code, json(&body)["current"].as_u64()),
        (200, Some(0)),
        "{body}"
    );

    // v1, then its plan-reviewed successor v2, reach the gateway.
    let (code, body) = call(&cp_dir, "POST", "/config?source=v1.yaml", op, Some(&v1)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        json(&body),
        serde_json::json!({"version": 1, "unchanged": false})
    );
    wait_serving(&client, &mut gw, node.addr, 1).await;
    let (code, plan) = call(&cp_dir, "POST", "/plan", op, Some(&v2)).await;
    assert_eq!(code, 200, "{plan}");
    assert!(
        plan.contains("Compared with running version 1") && plan.contains("routes[version]"),
        "{plan}"
    );
    let (code, body) = call(&cp_dir, "POST", "/config?expectVersion=7", op, Some(&v2)).await;
    assert_eq!(code, 409, "{body}");
    let (code, body) = call(&cp_dir, "POST", "/config?expectVersion=1", op, Some(&v2)).await;
    assert_eq!(
        (code, json(&body)["version"].as_u64()),
        (200, Some(2)),
        "{body}"
    );
    wait_serving(&client, &mut gw, node.addr, 2).await;
    let (code, body) = call(&cp_dir, "POST", "/config", op, Some(&v2)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        json(&body),
        serde_json::json!({"version": 2, "unchanged": true})
    );

    // History and rollback.
    let (code, body) = call(&cp_dir, "GET", "/versions", op, None).await;
    assert_eq!(code, 200, "{body}");
    let history = json(&body);
    assert_eq!(history["current"], 2, "{body}");
    assert_eq!(history["versions"][1]["source"], "v1.yaml", "{body}");
    let (code, body) = call(&cp_dir, "POST", "/rollback?version=99", op, None).await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = call(&cp_dir, "POST", "/rollback?version=x", op, None).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = call(&cp_dir, "POST", "/rollback?version=1", op, None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        json(&body),
        serde_json::json!({"version": 3, "unchanged": false})
    );
    wait_serving(&client, &mut gw, node.addr, 1).await;
    let (_, body) = call(&cp_dir, "GET", "/versions", op, None).await;
    assert_eq!(
        json(&body)["versions"][0]["note"],
        "rollback to 1",
        "{body}"
    );

    // The stream counters: v1, v2, v3 sent to one gateway and acknowledged.
    let metrics = get(&client, &format!("http://{}/metrics", cp_dir.admin))
        .await
        .expect("admin /metrics");
    for line in [
        "meshgate_control_snapshots_sent_total 3",
        "meshgate_control_acks_total{result=\"ack\"} 3",
        "meshgate_control_acks_total{result=\"nack\"} 0",
        "meshgate_control_config_version 3",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_streams_and_stops_promptly() {
    let backend = Backend::start("app").await;
    let client = http_client();
    let cp_dir = ControlDir::new("cp-stop", "control-1", "{embedded: {}}");
    let mut cp = cp_dir.start().await;
    let node = GatewayNode::new("gw-stop");
    let mut gw = node.start(&cp_dir);
    cp_dir.apply(1, backend.addr).await;
    wait_serving(&client, &mut gw, node.addr, 1).await;

    cp.signal("TERM");
    // Well inside the control plane's own 10 s bound: nothing had to be cut.
    let exit = cp.wait_exit(Duration::from_secs(8)).await;
    assert!(
        exit.is_some_and(|s| s.success()),
        "exit {exit:?}:\n{}",
        cp.stderr_text()
    );
    let log = cp.stderr_text();
    assert!(
        log.contains("stopped") && !log.contains("closing them"),
        "{log}"
    );
    // The gateway saw its stream end (a clean end, not a broken connection) and
    // keeps serving while it tries to reconnect.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !gw.stderr_text().contains("control-plane stream ended") {
        assert!(std::time::Instant::now() < deadline, "{}", gw.stderr_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !gw.stderr_text().contains("stream broke"),
        "{}",
        gw.stderr_text()
    );
    wait_serving(&client, &mut gw, node.addr, 1).await;
}
