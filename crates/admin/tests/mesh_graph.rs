//! `GET /mesh/graph` over real HTTP: a real gateway whose listener names its
//! `workload`, a direct response route, plain HTTP requests (callers without a
//! SPIFFE ID count as `unknown`), and the graph the admin API serves from the
//! east-west metrics.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshgate_core::access_log::AccessLog;
use meshgate_core::{Gateway, Reloader};
use serde_json::Value;

const YAML: &str = r#"listeners: [{name: inbound, address: "127.0.0.1:0", workload: orders.default}]
admin: {address: "127.0.0.1:0", token: graph-token}
routes:
  - name: ok
    matches: [{path: {type: Exact, value: /ok}}]
    filters: [{type: DirectResponse, directResponse: {status: 200, body: ok}}]
  - name: broken
    matches: [{path: {type: Exact, value: /broken}}]
    filters: [{type: DirectResponse, directResponse: {status: 503, body: down}}]
"#;

async fn get(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: String,
    token: Option<&str>,
) -> (StatusCode, String) {
    let mut req = Request::get(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = client
        .request(req.body(Full::default()).unwrap())
        .await
        .expect("answered");
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_graph_lists_edges_with_their_totals() {
    let path = std::env::temp_dir().join(format!("meshgate-graph-{}.yaml", std::process::id()));
    std::fs::write(&path, YAML).unwrap();
    let config = meshgate_config::parse_str(YAML, "graph.yaml").unwrap_or_else(|e| panic!("{e}"));
    let admin_cfg = config.admin.clone();
    let gw = Arc::new(
        Gateway::start_with_log(config, AccessLog::off())
            .await
            .expect("starts"),
    );
    let reloader = Arc::new(Reloader::new(gw.clone(), path.clone(), YAML));
    let admin = meshgate_admin::serve(reloader, &admin_cfg).await.unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let at = admin.local_addr();
    let gw_addr = gw.local_addr("inbound").unwrap();

    let (status, body) = get(
        &client,
        format!("http://{at}/mesh/graph"),
        Some("graph-token"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        serde_json::json!({"nodes": [], "edges": []})
    );
    assert_eq!(
        get(&client, format!("http://{at}/mesh/graph"), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    for _ in 0..3 {
        assert_eq!(
            get(&client, format!("http://{gw_addr}/ok"), None).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(
        get(&client, format!("http://{gw_addr}/broken"), None)
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&client, format!("http://{gw_addr}/nothing"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Counted when the response body is done: wait for all five.
    let mut graph = Value::Null;
    for _ in 0..200 {
        let (_, body) = get(
            &client,
            format!("http://{at}/mesh/graph"),
            Some("graph-token"),
        )
        .await;
        graph = serde_json::from_str(&body).unwrap();
        if graph["edges"][0]["requests"] == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        graph["nodes"],
        serde_json::json!(["orders.default", "unknown"]),
        "{graph}"
    );
    let edge = &graph["edges"][0];
    assert_eq!(edge["source"], "unknown", "{graph}");
    assert_eq!(edge["destination"], "orders.default");
    assert_eq!(edge["requests"], 5);
    assert_eq!(edge["errors"], 1);
    assert_eq!(edge["client_errors"], 1);
    assert!(edge["p50_ms"].as_f64().is_some_and(|v| v >= 0.0), "{graph}");
    assert!(
        edge["p99_ms"]
            .as_f64()
            .is_some_and(|v| v >= edge["p50_ms"].as_f64().unwrap()),
        "{graph}"
    );

    let (_, doc) = get(
        &client,
        format!("http://{at}/openapi.json"),
        Some("graph-token"),
    )
    .await;
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert!(doc["paths"]["/mesh/graph"]["get"].is_object());
    admin.shutdown().await;
    gw.shutdown().await;
    let _ = std::fs::remove_file(&path);
}
