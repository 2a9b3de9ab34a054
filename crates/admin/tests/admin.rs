//! The admin API over real HTTP: a real gateway on 127.0.0.1:0 built from a YAML file,
//! the admin server on 127.0.0.1:0, and a hyper client. Covers authentication, the
//! config/routes/services views, reloads (good and bad), health, metrics and the
//! generated OpenAPI document, and the loopback fallback without a token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshgate_core::access_log::AccessLog;
use meshgate_core::{Gateway, Reloader};
use serde_json::Value;

const TOKEN: &str = "s3cret-admin-token";

/// Version 1: routes declared in an order that is not their match order.
const V1: &str = r#"listeners: [{name: web, address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0", token: s3cret-admin-token}
routes:
  - name: api
    matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: users, weight: 3}, {name: orders, weight: 1}]
  - name: api-v1
    matches: [{path: {type: PathPrefix, value: /api/v1}}]
    backendRefs: [{name: users}]
  - name: status
    matches: [{path: {type: Exact, value: /status}}]
    filters: [{type: DirectResponse, directResponse: {status: 200, body: up}}]
services:
  - name: users
    endpoints: [{address: "127.0.0.1:9", weight: 2}, "127.0.0.1:10"]
    loadBalancer: {policy: LeastRequest}
  - name: orders
    endpoints: ["127.0.0.1:11"]
"#;

/// A route that V1 lacks.
const NEW_ROUTE: &str = r#"  - name: fresh
    matches: [{path: {type: Exact, value: /fresh}}]
    filters: [{type: DirectResponse, directResponse: {status: 200, body: "fresh route"}}]
"#;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    fn content_type(&self) -> &str {
        let ct = self.headers.get("content-type");
        ct.map(|v| v.to_str().unwrap()).unwrap_or_default()
    }
}

struct Http(Client<HttpConnector, Full<Bytes>>);

impl Http {
    fn new() -> Self {
        Http(Client::builder(TokioExecutor::new()).build_http())
    }

    /// A request to the admin API; every answer must say its content type.
    async fn send(
        &self,
        method: Method,
        addr: SocketAddr,
        path: &str,
        token: Option<&str>,
    ) -> Reply {
        let r = self.raw(method, addr, path, token).await;
        let status = r.status;
        assert!(
            !r.content_type().is_empty(),
            "{path}: no content-type ({status}: {})",
            r.body
        );
        r
    }

    async fn raw(
        &self,
        method: Method,
        addr: SocketAddr,
        path: &str,
        token: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = self.0.request(req.body(Full::default()).unwrap()).await;
        let (parts, body) = resp.expect("server answers").into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let body = String::from_utf8_lossy(&bytes).into_owned();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    async fn get(&self, addr: SocketAddr, path: &str) -> Reply {
        self.send(Method::GET, addr, path, Some(TOKEN)).await
    }
}

fn temp_path(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    std::env::temp_dir().join(format!(
        "meshgate-admin-{}-{nanos}-{name}",
        std::process::id()
    ))
}

/// A gateway started from `yaml` (also written to a file for reloads) and its reloader.
async fn gateway(yaml: &str, path: &PathBuf) -> (Arc<Reloader>, meshgate_config::Admin) {
    tokio::fs::write(path, yaml).await.unwrap();
    let file = path.to_str().unwrap();
    let config = meshgate_config::parse_str(yaml, file).unwrap_or_else(|e| panic!("{e}"));
    let admin = config.admin.clone();
    let gw = Gateway::start_with_log(config, AccessLog::off()).await;
    let gw = Arc::new(gw.expect("gateway starts"));
    let reloader = Arc::new(Reloader::new(gw, path.clone(), yaml));
    (reloader, admin)
}

#[tokio::test]
async fn admin_api_end_to_end() {
    let path = temp_path("meshgate.yaml");
    let (reloader, cfg) = gateway(V1, &path).await;
    let admin = meshgate_admin::serve(reloader.clone(), &cfg).await.unwrap();
    let at = admin.local_addr();
    let gw_addr = reloader.gateway().local_addr("web").unwrap();
    let http = Http::new();

    // Authentication: every endpoint but the probes needs the token.
    for path in [
        "/config",
        "/routes",
        "/services",
        "/metrics",
        "/openapi.json",
    ] {
        for token in [None, Some("wrong"), Some("s3cret-admin-token-")] {
            let r = http.send(Method::GET, at, path, token).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path} {token:?}");
            assert_eq!(r.headers["www-authenticate"], "Bearer");
            assert_eq!(r.json()["error"], "unauthorized");
        }
        assert_eq!(http.get(at, path).await.status, StatusCode::OK, "{path}");
    }
    let r = http.send(Method::POST, at, "/config/reload", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    for probe in ["/healthz", "/readyz"] {
        let r = http.send(Method::GET, at, probe, None).await;
        assert_eq!(r.status, StatusCode::OK, "{probe}");
        assert_eq!(r.content_type(), "application/json");
    }
    assert_eq!(
        http.send(Method::GET, at, "/healthz", None).await.json()["status"],
        "ok"
    );
    let r = http.get(at, "/nope").await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    let r = http.get(at, "/config/reload").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json()["error"], "method_not_allowed");

    // /config: version 1, the served routes, never the token.
    let r = http.get(at, "/config").await;
    assert_eq!(r.content_type(), "application/json");
    assert!(!r.body.contains(TOKEN), "token leaked: {}", r.body);
    let c = r.json();
    assert_eq!(c["version"], 1);
    assert_eq!(c["source"], path.to_str().unwrap());
    assert_eq!(c["lastError"], Value::Null);
    let names: Vec<&str> = c["config"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api", "api-v1", "status"]);

    // /routes: match order, not declaration order.
    let routes = http.get(at, "/routes").await.json();
    let rows = routes.as_array().unwrap();
    let order: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["route"].as_str().unwrap(),
                r["path"]["type"].as_str().unwrap(),
                r["path"]["value"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("status", "Exact", "/status"),
            ("api-v1", "PathPrefix", "/api/v1"),
            ("api", "PathPrefix", "/api")
        ]
    );
    assert!(
        rows.iter()
            .all(|r| r["listener"] == "web" && r["host"] == "*")
    );
    let api = &rows[2];
    assert_eq!(
        api["backends"],
        serde_json::json!([{"service": "users", "weight": 3}, {"service": "orders", "weight": 1}])
    );
    assert_eq!(
        (api["method"].clone(), api["headers"].clone()),
        (Value::Null, serde_json::json!([]))
    );

    // /services: policy and endpoints with weights.
    let services = http.get(at, "/services").await.json();
    let users = &services[0];
    assert_eq!(
        (users["name"].as_str(), users["policy"].as_str()),
        (Some("users"), Some("LeastRequest"))
    );
    let eps: Vec<(&str, u64)> = users["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["address"].as_str().unwrap(),
                e["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(eps, [("127.0.0.1:9", 2), ("127.0.0.1:10", 1)]);
    assert_eq!(services[1]["name"], "orders");
    assert_eq!(services[1]["policy"], "RoundRobin");

    // A good reload: version 2 and the new route serves.
    let v2 = format!(
        "{}{NEW_ROUTE}{}",
        &V1[..V1.find("services:").unwrap()],
        &V1[V1.find("services:").unwrap()..]
    );
    tokio::fs::write(&path, &v2).await.unwrap();
    let r = http
        .send(Method::POST, at, "/config/reload", Some(TOKEN))
        .await;
    assert_eq!(
        (r.status, r.json()),
        (StatusCode::OK, serde_json::json!({"version": 2})),
        "{}",
        r.body
    );
    let r = http.raw(Method::GET, gw_addr, "/fresh", None).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "fresh route"));
    // Unchanged file: same version.
    let r = http
        .send(Method::POST, at, "/config/reload", Some(TOKEN))
        .await;
    assert_eq!(r.json()["version"], 2);

    // A bad reload: 400 with file:line:col, version stays 2, the gateway still serves.
    let bad = v2.replace("  - name: fresh\n", "  - name: fresh\n    bogus: true\n");
    let bad_line = bad.lines().position(|l| l.contains("bogus")).unwrap() + 1;
    tokio::fs::write(&path, &bad).await.unwrap();
    let r = http
        .send(Method::POST, at, "/config/reload", Some(TOKEN))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let e = r.json();
    assert_eq!(e["error"], "invalid_config");
    let message = e["message"].as_str().unwrap();
    let at_line = format!("{}:{bad_line}:", path.display());
    let col = message
        .split(&at_line)
        .nth(1)
        .and_then(|rest| rest.split(':').next());
    assert!(
        col.is_some_and(|c| c.parse::<u32>().is_ok()),
        "no {at_line}<col>: in {message}"
    );
    let c = http.get(at, "/config").await.json();
    assert_eq!(
        (
            c["version"].as_u64(),
            c["reloadsOk"].as_u64(),
            c["reloadsFailed"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert!(
        c["lastError"]
            .as_str()
            .is_some_and(|l| l.contains(&at_line)),
        "{c}"
    );
    let r = http.raw(Method::GET, gw_addr, "/fresh", None).await;
    assert_eq!(r.body, "fresh route");

    // /metrics: the reload counters and the served version.
    let r = http.get(at, "/metrics").await;
    assert_eq!(
        r.content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    for line in [
        r#"meshgate_config_reloads_total{result="ok"} 1"#,
        r#"meshgate_config_reloads_total{result="failed"} 1"#,
        "meshgate_config_version 2",
    ] {
        assert!(
            r.body.lines().any(|l| l == line),
            "no {line:?} in\n{}",
            r.body
        );
    }

    // /openapi.json: generated, OpenAPI 3.1, every path.
    let doc = http.get(at, "/openapi.json").await.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = [
        "/config",
        "/config/reload",
        "/routes",
        "/services",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ];
    for p in paths {
        assert!(
            doc["paths"][p].is_object(),
            "{p} missing from {}",
            doc["paths"]
        );
    }
    assert!(doc["paths"]["/config/reload"]["post"]["responses"]["400"].is_object());
    assert!(doc["paths"]["/config"]["get"]["responses"]["401"].is_object());
    assert!(
        doc["paths"]["/healthz"]["get"]["responses"]
            .get("401")
            .is_none()
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert_eq!(
        doc,
        serde_json::to_value(meshgate_admin::document()).unwrap()
    );

    // Readiness follows the gateway: not ready once it shuts down.
    reloader.gateway().shutdown().await;
    let r = http.send(Method::GET, at, "/readyz", None).await;
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready".into())
    );
    assert_eq!(
        http.send(Method::GET, at, "/healthz", None).await.status,
        StatusCode::OK
    );

    admin.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(at).await.is_err(),
        "still listening after shutdown"
    );
    let _ = tokio::fs::remove_file(&path).await;
}

#[tokio::test]
async fn without_a_token_binds_to_loopback_only() {
    let path = temp_path("open.yaml");
    let yaml = V1.replace(
        r#"admin: {address: "127.0.0.1:0", token: s3cret-admin-token}"#,
        r#"admin: {address: "0.0.0.0:0"}"#,
    );
    let (reloader, cfg) = gateway(&yaml, &path).await;
    assert_eq!(cfg.address, "0.0.0.0:0".parse::<SocketAddr>().unwrap());
    let admin = meshgate_admin::serve(reloader.clone(), &cfg).await.unwrap();
    assert_eq!(admin.local_addr().ip(), std::net::Ipv4Addr::LOCALHOST);
    // No token configured: no authentication (loopback is the protection).
    let r = Http::new()
        .send(Method::GET, admin.local_addr(), "/config", None)
        .await;
    assert_eq!(
        (r.status, r.json()["version"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    admin.shutdown().await;
    reloader.gateway().shutdown().await;
    let _ = tokio::fs::remove_file(&path).await;
}
