//! The `ExtAuthz` policy through a real gateway and a real authorization service
//! (hyper on 127.0.0.1:0) that decides by the `authorization` header: allowed
//! requests reach the upstream with the service's headers (forged copies stripped),
//! refusals pass the service's status and body through without touching the
//! upstream, and a slow or absent service is handled by `failureMode`.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshgate_testkit::Backend;
use tokio::net::TcpListener;

/// What the service received: method, request target, headers.
type Seen = Arc<Mutex<Vec<(Method, String, HeaderMap)>>>;

/// A running authorization service. `Bearer good` is allowed (as alice),
/// `Bearer slow` never gets an answer, anything else is refused with 403.
struct AuthzService {
    addr: SocketAddr,
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AuthzService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AuthzService {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| decide(log.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        AuthzService { addr, seen, task }
    }

    fn last(&self) -> (Method, String, HeaderMap) {
        self.seen.lock().unwrap().last().cloned().expect("a check")
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn decide(seen: Seen, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, _) = req.into_parts();
    let target = parts.uri.path_and_query().unwrap().to_string();
    seen.lock()
        .unwrap()
        .push((parts.method.clone(), target, parts.headers.clone()));
    let auth = parts.headers.get("authorization").map(|v| v.as_bytes());
    Ok(match auth {
        Some(b"Bearer good") => Response::builder()
            .header("x-user-id", "alice")
            .header("x-groups", "admins, dev")
            .header("x-internal", "not for upstream")
            .body(Full::default())
            .unwrap(),
        Some(b"Bearer slow") => std::future::pending().await,
        _ => Response::builder()
            .status(403)
            .header("content-type", "application/json")
            .header("www-authenticate", "Bearer realm=\"test\"")
            .header("x-leak", "internal detail")
            .body(Full::new(Bytes::from_static(
                br#"{"denied":"no valid token"}"#,
            )))
            .unwrap(),
    })
}

/// The live explain trace of a response.
fn explained(r: &common::Reply) -> String {
    String::from_utf8(r.headers["x-meshgate-explain"].as_bytes().to_vec()).unwrap()
}

fn config(authz: SocketAddr, svc: &str) -> String {
    let dead = common::dead_addr();
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
admin: {{enabled: false, token: t0ken, liveExplain: true}}
policies:
  - name: closed
    type: ExtAuthz
    extAuthz:
      url: http://{authz}/check/
      timeout: 1s
      headersToUpstream: [x-user-id, x-groups]
      consumerFrom: x-user-id
      groupsFrom: x-groups
  - {{name: open, type: ExtAuthz, extAuthz: {{url: \"http://{authz}\", timeout: 1s, failureMode: open, headersToUpstream: [x-user-id]}}}}
  - {{name: down-closed, type: ExtAuthz, extAuthz: {{url: \"http://{dead}\"}}}}
  - {{name: down-open, type: ExtAuthz, extAuthz: {{url: \"http://{dead}\", failureMode: open, headersToUpstream: [x-user-id]}}}}
routes:
  - {{name: closed, matches: [{{path: {{value: /closed}}}}], policies: [closed], backendRefs: [{{name: svc}}]}}
  - {{name: open, matches: [{{path: {{value: /open}}}}], policies: [open], backendRefs: [{{name: svc}}]}}
  - {{name: down-closed, matches: [{{path: {{value: /down-closed}}}}], policies: [down-closed], backendRefs: [{{name: svc}}]}}
  - {{name: down-open, matches: [{{path: {{value: /down-open}}}}], policies: [down-open], backendRefs: [{{name: svc}}]}}
services:
{svc}"
    )
}

#[tokio::test]
async fn the_service_decides_and_its_headers_reach_the_upstream() {
    let b = Backend::start("svc").await;
    let authz = AuthzService::start().await;
    let h = common::start(&config(authz.addr, &common::service("svc", &[b.addr]))).await;

    // Allowed: the service's headers replace forged ones; unlisted ones stay behind.
    let r = h
        .send(
            Method::POST,
            "shop.test",
            "/closed/orders?page=2",
            &[
                ("authorization", "Bearer good"),
                ("x-user-id", "mallory"),
                ("x-groups", "root"),
                ("x-secret", "not for the service"),
                ("x-forwarded-for", "203.0.113.9"),
                ("x-meshgate-explain", "t0ken"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let upstream = &r.json()["headers"];
    assert_eq!(upstream["x-user-id"], "alice");
    assert_eq!(upstream["x-groups"], "admins, dev");
    assert!(upstream.get("x-internal").is_none());
    let trace = explained(&r);
    assert!(
        trace
            .contains("closed [ExtAuthz]: continue - allowed by the service (200), consumer alice"),
        "{trace}"
    );

    // What the service was asked.
    let (method, target, seen) = authz.last();
    assert_eq!(method, Method::POST);
    assert_eq!(target, "/check/closed/orders?page=2");
    assert_eq!(seen["authorization"], "Bearer good");
    assert_eq!(seen["x-forwarded-method"], "POST");
    assert_eq!(seen["x-forwarded-uri"], "/closed/orders?page=2");
    assert_eq!(seen["x-forwarded-host"], "shop.test");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["x-request-id"], r.headers["x-request-id"]);
    assert!(
        seen.get("x-secret").is_none(),
        "only allowedHeaders are sent"
    );
    assert!(
        seen.get("x-user-id").is_none(),
        "forged copies are stripped first"
    );

    // Refused: the service's status, body and listed headers, and no upstream call.
    let hits = b.hits();
    let r = h
        .send(
            Method::GET,
            "shop.test",
            "/closed/orders",
            &[
                ("authorization", "Bearer forged"),
                ("x-meshgate-explain", "t0ken"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body, r#"{"denied":"no valid token"}"#);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"test\"");
    assert!(r.headers.get("x-leak").is_none(), "not in headersToClient");
    let trace = explained(&r);
    assert!(
        trace.contains("closed [ExtAuthz]: respond 403 - denied by the service (403)"),
        "{trace}"
    );
    let r = h.get("shop.test", "/open/x").await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "fail-open is not allow-on-deny"
    );
    assert_eq!(b.hits(), hits, "refused requests never reach the upstream");
    assert_eq!(authz.count(), 3);

    let log = h.log_lines(3).await;
    let summary: Vec<_> = log
        .iter()
        .map(|l| (l["status"].as_u64().unwrap(), l["consumer"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (200, "alice".into()),
            (403, serde_json::Value::Null),
            (403, serde_json::Value::Null)
        ]
    );
}

#[tokio::test]
async fn a_slow_or_absent_service_follows_failure_mode() {
    let b = Backend::start("svc").await;
    let authz = AuthzService::start().await;
    let h = common::start(&config(authz.addr, &common::service("svc", &[b.addr]))).await;
    let slow = [
        ("authorization", "Bearer slow"),
        ("x-user-id", "mallory"),
        ("x-meshgate-explain", "t0ken"),
    ];

    // Closed (the default): 503 authz_unavailable, upstream untouched.
    let r = h
        .send(Method::GET, "h", "/closed/a", &slow, Bytes::new())
        .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, "authz_unavailable".into())
    );
    let trace = explained(&r);
    assert!(
        trace.contains("service unavailable (timed out after 1s); failureMode closed"),
        "{trace}"
    );
    let r = h
        .send(Method::GET, "h", "/down-closed/a", &slow, Bytes::new())
        .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, "authz_unavailable".into())
    );
    assert_eq!(b.hits(), 0);

    // Open: let through, with none of the service's headers (forged ones removed).
    for path in ["/open/a", "/down-open/a"] {
        let r = h.send(Method::GET, "h", path, &slow, Bytes::new()).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert!(r.json()["headers"].get("x-user-id").is_none(), "{path}");
        let trace = explained(&r);
        assert!(trace.contains("failureMode open: let through"), "{trace}");
    }
    assert_eq!(b.hits(), 2);

    let log = h.log_lines(4).await;
    let reasons: Vec<_> = log.iter().map(|l| l["reason"].clone()).collect();
    assert_eq!(
        reasons,
        [
            "authz_unavailable".into(),
            "authz_unavailable".into(),
            serde_json::Value::Null,
            serde_json::Value::Null
        ]
    );
}
