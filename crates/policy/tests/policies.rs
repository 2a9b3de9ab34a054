//! Named policies through a real gateway: `IpAccess` on a listener (before
//! routing) and on a route, `RequestLimits` (414, 431, 413 by length and while reading unsized bodies), ordering against
//! route filters, and policy changes applied by a reload.

mod common;

use bytes::Bytes;
use http::{Method, StatusCode};
use meshgate_testkit::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(listener_policies: &str, route_policies: &str, policies: &str, svc: &str) -> String {
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\", policies: [{listener_policies}]}}]
policies:
{policies}
routes:
  - name: guarded
    matches: [{{path: {{value: /guarded}}}}]
    policies: [{route_policies}]
    backendRefs: [{{name: svc}}]
  - name: stub
    matches: [{{path: {{value: /stub}}}}]
    policies: [{route_policies}]
    filters: [{{type: DirectResponse, directResponse: {{status: 200, body: stub}}}}]
  - name: open
    matches: [{{path: {{value: /open}}}}]
    backendRefs: [{{name: svc}}]
services:
{svc}"
    )
}

const LOOPBACK_ONLY: &str = "  - {name: loopback, type: IpAccess, ipAccess: {allow: [127.0.0.0/8, \"::1\"]}}
  - {name: no-loopback, type: IpAccess, ipAccess: {deny: [127.0.0.0/8, \"::1\"]}}
  - {name: small, type: RequestLimits, requestLimits: {maxUriBytes: 64, maxHeaderBytes: 512, maxBodyBytes: 16}}";

#[tokio::test]
async fn ip_access_on_a_listener_runs_before_routing() {
    let b = Backend::start("svc").await;
    let svc = common::service("svc", &[b.addr]);
    let h = common::start(&config("no-loopback", "", LOOPBACK_ONLY, &svc)).await;
    for path in ["/open", "/nowhere"] {
        let r = h.get("h", path).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(r.json()["error"], "ip_denied");
    }
    assert_eq!(b.hits(), 0);
    let log = h.log_lines(2).await;
    assert!(
        log.iter()
            .all(|l| l["reason"] == "ip_denied" && l["status"] == 403),
        "{log:?}"
    );

    let h = common::start(&config("loopback", "", LOOPBACK_ONLY, &svc)).await;
    assert_eq!(h.get("h", "/open").await.status, StatusCode::OK);
}

#[tokio::test]
async fn route_policies_apply_to_their_route_only_and_run_before_filters() {
    let b = Backend::start("svc").await;
    let h = common::start(&config(
        "",
        "no-loopback",
        LOOPBACK_ONLY,
        &common::service("svc", &[b.addr]),
    ))
    .await;
    assert_eq!(h.get("h", "/guarded").await.status, StatusCode::FORBIDDEN);
    let stub = h.get("h", "/stub").await;
    assert_eq!(
        stub.status,
        StatusCode::FORBIDDEN,
        "the policy runs before the DirectResponse filter"
    );
    assert_eq!(
        h.get("h", "/open").await.status,
        StatusCode::OK,
        "other routes are unaffected"
    );
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn request_limits_answer_414_431_and_413() {
    let b = Backend::start("svc").await;
    let h = common::start(&config(
        "small",
        "",
        LOOPBACK_ONLY,
        &common::service("svc", &[b.addr]),
    ))
    .await;
    let long = format!("/open?q={}", "x".repeat(100));
    let r = h.get("h", &long).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::URI_TOO_LONG, "uri_too_long".into())
    );

    let big = "y".repeat(600);
    let r = h
        .send(Method::GET, "h", "/open", &[("x-big", &big)], Bytes::new())
        .await;
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    let r = h
        .send(Method::POST, "h", "/open", &[], Bytes::from(vec![b'z'; 17]))
        .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large".into())
    );
    assert_eq!(b.hits(), 0, "nothing over a limit reached the upstream");

    let r = h
        .send(Method::POST, "h", "/open", &[], Bytes::from(vec![b'z'; 16]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "at the limit is fine");
    assert_eq!(r.json()["bodyBytes"], 16);

    // Bodies without a length (HTTP/1.1 chunked, HTTP/2 without content-length) are
    // read up to the cap before forwarding: under it they pass, past it 413.
    let chunked = |body: &str| {
        format!(
            "POST /open HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
    };
    let raw = |req: String| async move {
        let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let out = raw(chunked("hello")).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"bodyBytes\":5"), "{out}");
    let out = raw(chunked(&"z".repeat(40))).await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert_eq!(b.hits(), 2);

    for (size, want) in [(16, StatusCode::OK), (17, StatusCode::PAYLOAD_TOO_LARGE)] {
        assert_eq!(
            h2_unsized_post(h.addr, size).await,
            want,
            "{size} bytes over h2"
        );
    }
    assert_eq!(
        b.hits(),
        3,
        "the h2 body past the cap never reached the upstream"
    );
}

/// POSTs `size` bytes over HTTP/2 (prior knowledge) in two frames with no
/// content-length, so the gateway cannot know the size up front.
async fn h2_unsized_post(addr: std::net::SocketAddr, size: usize) -> StatusCode {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let half = size / 2;
    let frames = vec![
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'a'; half]))),
        Ok(Frame::data(Bytes::from(vec![b'b'; size - half]))),
    ];
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = http::Request::post(format!("http://{addr}/open"))
        .header("host", "h")
        .body(body)
        .unwrap();
    assert!(req.headers().get("content-length").is_none());
    client.request(req).await.expect("gateway answers").status()
}

#[tokio::test]
async fn a_reload_changes_policies() {
    let b = Backend::start("svc").await;
    let svc = common::service("svc", &[b.addr]);
    let h = common::start(&config("no-loopback", "", LOOPBACK_ONLY, &svc)).await;
    assert_eq!(h.get("h", "/open").await.status, StatusCode::FORBIDDEN);
    let next =
        meshgate_config::parse_str(&config("loopback", "", LOOPBACK_ONLY, &svc), "t.yaml").unwrap();
    h.gateway.apply(next).await.unwrap();
    assert_eq!(h.get("h", "/open").await.status, StatusCode::OK);
}

/// A reload that leaves a policy as it was keeps its state (here, a rate limit's
/// spent bucket); changing the policy starts it afresh.
#[tokio::test]
async fn unchanged_policies_keep_their_state_across_reloads() {
    let b = Backend::start("svc").await;
    let svc = common::service("svc", &[b.addr]);
    let limit = |requests: u32| {
        format!(
            "{LOOPBACK_ONLY}\n  - {{name: three, type: RateLimit, rateLimit: {{key: route, requests: {requests}, per: 1h}}}}"
        )
    };
    let h = common::start(&config("", "three", &limit(3), &svc)).await;
    for _ in 0..3 {
        assert_eq!(h.get("h", "/guarded").await.status, StatusCode::OK);
    }
    assert_eq!(
        h.get("h", "/guarded").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Another policy's settings change; `three` does not: its bucket stays spent.
    let other = limit(3).replace("maxUriBytes: 64", "maxUriBytes: 65");
    let next = meshgate_config::parse_str(&config("", "three", &other, &svc), "t.yaml").unwrap();
    h.gateway.apply(next).await.unwrap();
    assert_eq!(
        h.get("h", "/guarded").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    // `three` itself changes: a new bucket.
    let next = meshgate_config::parse_str(&config("", "three", &limit(4), &svc), "t.yaml").unwrap();
    h.gateway.apply(next).await.unwrap();
    assert_eq!(h.get("h", "/guarded").await.status, StatusCode::OK);
}
