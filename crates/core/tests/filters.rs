//! Route filters and forwarding headers through a real gateway to real backends:
//! header modifiers, redirects, URL rewrites, direct responses, filter order, the
//! `x-forwarded-*`/`forwarded`/`via` additions, hop-by-hop removal, Host and request ids.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::{Harness, Reply};
use http::{HeaderMap, Method, StatusCode};
use meshgate_testkit::Backend;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// A gateway with one listener, `routes` (YAML list items) and `services` (the same).
async fn gateway(routes: &str, services: &str) -> Harness {
    let services = match services {
        "" => " []".to_owned(),
        s => format!("\n{s}"),
    };
    let listeners = "listeners: [{name: l, address: \"127.0.0.1:0\"}]";
    let yaml = format!("{listeners}\nroutes:\n{routes}services:{services}\n");
    common::start(&yaml).await
}

/// One route per line of `table`: `name prefix filter-type settings`.
fn routes(table: &str, backend: &str) -> String {
    let route = |line: &str| {
        let [name, prefix, kind, rest] = words::<4>(line);
        let field = kind.replacen("URL", "url", 1);
        let field = field[..1].to_lowercase() + &field[1..];
        let filter = format!("{{type: {kind}, {field}: {{{rest}}}}}");
        let m = format!("[{{path: {{value: {prefix}}}}}]");
        format!("  - {{name: {name}, matches: {m}, filters: [{filter}]{backend}}}\n")
    };
    rows(table).map(route).collect()
}

/// The non-blank lines of a table.
fn rows(table: &str) -> impl Iterator<Item = &str> {
    table.lines().filter(|l| !l.trim().is_empty())
}

/// The first `N - 1` words of `line`, then the rest of it.
fn words<const N: usize>(line: &str) -> [&str; N] {
    let words: Vec<&str> = line.trim().splitn(N, ' ').collect();
    words.try_into().expect(line)
}

async fn get_with(h: &Harness, host: &str, headers: &[(&str, &str)]) -> Reply {
    h.send(Method::GET, host, "/", headers, Bytes::new()).await
}

fn svc(b: &Backend) -> String {
    common::service(&b.name, &[b.addr])
}

/// A header as the testkit backend echoed it (the echo keeps one value per name).
fn seen<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"][name].as_str()
}

fn all<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    let values = headers.get_all(name).iter();
    values.map(|v| v.to_str().unwrap()).collect()
}

/// A raw HTTP/1.1 backend that reports each request head exactly as received, so
/// repeated header lines stay visible (the testkit echo keeps only the last value).
async fn raw_backend() -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (mut head, mut buf) = (Vec::new(), [0u8; 4096]);
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = stream.write_all(ok).await;
            });
        }
    });
    (common::service("raw", &[addr]), rx)
}

/// Values of every `name:` line of a raw request head, in order.
fn raw_values(head: &str, name: &str) -> Vec<String> {
    let lines = head.lines().filter_map(|l| l.split_once(':'));
    let named = lines.filter(|(n, _)| n.eq_ignore_ascii_case(name));
    named.map(|(_, v)| v.trim().to_owned()).collect()
}

#[tokio::test]
async fn request_header_modifier_sets_adds_and_removes() {
    let (raw, mut heads) = raw_backend().await;
    let table = "r / RequestHeaderModifier set: [{name: x-set, value: gw}], \
        add: [{name: x-add, value: gw}, {name: x-new, value: fresh}], remove: [X-Drop]";
    let h = gateway(&routes(table, ", backendRefs: [{name: raw}]"), &raw).await;
    let sent = [
        ("x-set", "client"),
        ("x-add", "client"),
        ("x-drop", "1"),
        ("x-keep", "yes"),
    ];
    let reply = get_with(&h, "h", &sent).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "ok"));
    let head = heads.recv().await.expect("backend saw the request");
    assert_eq!(raw_values(&head, "x-set"), ["gw"], "set replaces:\n{head}");
    assert_eq!(raw_values(&head, "x-add"), ["client", "gw"], "add:\n{head}");
    assert_eq!(raw_values(&head, "x-new"), ["fresh"], "{head}");
    assert!(raw_values(&head, "x-drop").is_empty(), "remove:\n{head}");
    assert_eq!(raw_values(&head, "x-keep"), ["yes"], "{head}");
}

#[tokio::test]
async fn response_header_modifier_sets_adds_and_removes() {
    let b = Backend::start("web").await;
    let table = "
        set /set ResponseHeaderModifier set: [{name: x-backend, value: gw}, {name: content-type, value: text/plain}], add: [{name: x-extra, value: \"1\"}]
        add /add ResponseHeaderModifier add: [{name: x-backend, value: also}], remove: [Content-Type]";
    let h = gateway(&routes(table, ", backendRefs: [{name: web}]"), &svc(&b)).await;
    let set = h.get("h", "/set").await;
    assert_eq!(set.backend(), "web", "the upstream still answers");
    assert_eq!(all(&set.headers, "x-backend"), ["gw"]);
    assert_eq!(all(&set.headers, "content-type"), ["text/plain"]);
    assert_eq!(all(&set.headers, "x-extra"), ["1"]);
    let add = h.get("h", "/add").await;
    assert_eq!(add.backend(), "web");
    assert_eq!(all(&add.headers, "x-backend"), ["web", "also"]);
    assert_eq!(add.headers.get("content-type"), None);
    assert_eq!(b.hits(), 2);
}

#[tokio::test]
async fn request_redirect_builds_the_exact_location() {
    let table = "
        secure /secure RequestRedirect scheme: https, statusCode: 301
        tls-port /tls-port RequestRedirect scheme: https, port: 8443, statusCode: 308
        tls-443 /tls-443 RequestRedirect scheme: https, port: 443
        moved /moved RequestRedirect hostname: www.example.com
        port /port RequestRedirect port: 9000, statusCode: 302
        http-80 /http-80 RequestRedirect port: 80
        full /full RequestRedirect path: {type: ReplaceFullPath, replaceFullPath: /landing}
        old /old RequestRedirect path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}, statusCode: 308";
    let h = gateway(&routes(table, ""), "").await;
    let port = h.addr.port().to_string();
    // `S` is the shop's Host with the listener's own port, as a browser would send it.
    let cases = "
        S /secure/x?a=1&b=2 301 https://shop.example.com/secure/x?a=1&b=2
        plain.example /secure 301 https://plain.example/secure
        S /tls-port?q=1 308 https://shop.example.com:8443/tls-port?q=1
        S /tls-443 302 https://shop.example.com/tls-443
        S /moved/a?x=1 302 http://www.example.com:PORT/moved/a?x=1
        S /port/p 302 http://shop.example.com:9000/port/p
        S /http-80 302 http://shop.example.com/http-80
        S /full/deep?x=1 302 http://shop.example.com:PORT/landing?x=1
        S /old/a/b?x=1 308 http://shop.example.com:PORT/new/a/b?x=1
        S /old 308 http://shop.example.com:PORT/new";
    for line in rows(cases) {
        let [host, path, status, location] = words::<4>(line);
        let host = host.replace('S', "shop.example.com:PORT");
        let host = host.replace("PORT", &port);
        let r = h.get(&host, path).await;
        assert_eq!(r.status.as_str(), status, "{host}{path}");
        let want = location.replace("PORT", &port);
        assert_eq!(all(&r.headers, "location"), [want], "{host}{path}");
    }
}

#[tokio::test]
async fn redirect_with_an_explicit_scheme_uses_its_well_known_port() {
    let h = gateway(&routes("r /to-http RequestRedirect scheme: http", ""), "").await;
    let r = h.get("shop.example.com:8080", "/to-http").await;
    assert_eq!(r.status, StatusCode::FOUND);
    let want = "http://shop.example.com/to-http";
    // Gateway API HTTPRequestRedirectFilter.port: "If redirect scheme is not-empty,
    // the redirect port MUST be the well-known port associated with the redirect scheme".
    assert_eq!(all(&r.headers, "location"), [want]);
}

#[tokio::test]
async fn url_rewrite_changes_host_and_path_sent_upstream() {
    let b = Backend::start("app").await;
    let table = "
        prefix /api/v1 URLRewrite path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}
        full /legacy URLRewrite hostname: internal.example, path: {type: ReplaceFullPath, replaceFullPath: /modern}
        host /host URLRewrite hostname: new.internal";
    let h = gateway(&routes(table, ", backendRefs: [{name: app}]"), &svc(&b)).await;
    let cases = "
        /api/v1/users?x=1 /v2/users x=1 app.example.com
        /api/v1 /v2 - app.example.com
        /api/v1/ /v2/ - app.example.com
        /legacy/anything?y=2 /modern y=2 internal.example
        /host/keep?z /host/keep z new.internal";
    for line in rows(cases) {
        let [path, want_path, want_query, want_host] = words::<4>(line);
        let echo = h.get("app.example.com", path).await.json();
        assert_eq!(echo["path"], want_path, "{path}");
        let query = echo["query"].as_str().unwrap_or("-");
        assert_eq!(query, want_query, "{path}");
        assert_eq!(seen(&echo, "host"), Some(want_host), "{path}");
        let original = seen(&echo, "x-forwarded-host");
        assert_eq!(original, Some("app.example.com"));
    }
}

#[tokio::test]
async fn direct_response_answers_without_calling_the_backend() {
    let b = Backend::start("never").await;
    let table = "stub / DirectResponse status: 503, body: \"down for maintenance\\n\", \
        headers: [{name: content-type, value: text/plain}, {name: retry-after, value: \"120\"}]";
    let h = gateway(&routes(table, ", backendRefs: [{name: never}]"), &svc(&b)).await;
    let payload = Bytes::from("payload");
    let r = h.send(Method::POST, "h", "/x", &[], payload).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body, "down for maintenance\n");
    assert_eq!(all(&r.headers, "content-type"), ["text/plain"]);
    assert_eq!(all(&r.headers, "retry-after"), ["120"]);
    assert_eq!(r.headers["x-request-id"].len(), 32);
    assert_eq!(b.hits(), 0, "a direct response never reaches the backend");
    // Control: the backend is up, so the 0 above means something.
    let direct = h.send_to(b.addr, Method::GET, "h", "/", &[], Bytes::new());
    assert_eq!((direct.await.backend(), b.hits()), ("never".into(), 1));
}

#[tokio::test]
async fn filters_run_in_declared_order() {
    let b = Backend::start("app").await;
    let m = |set: &str, remove: &str| {
        let edits = format!("{{set: [{set}], remove: [{remove}]}}");
        format!("{{type: RequestHeaderModifier, requestHeaderModifier: {edits}}}")
    };
    let filters = [
        m("{name: x-a, value: \"1\"}", ""), // set x-a …
        m("", "x-a"),                       // … then remove it: absent
        m("", "x-b"),                       // remove the client's x-b …
        m("{name: x-b, value: gw}", ""),    // … then set it: gw
        m("{name: x-c, value: first}", ""), // the later set wins
        m("{name: x-c, value: second}, {name: x-d, value: v}", "x-d"), // set before remove
    ];
    let filters = filters.join(", ");
    let route = format!("  - {{name: r, backendRefs: [{{name: app}}], filters: [{filters}]}}\n");
    let h = gateway(&route, &svc(&b)).await;
    let sent = [("x-a", "client"), ("x-b", "client")];
    let echo = get_with(&h, "h", &sent).await.json();
    assert_eq!(seen(&echo, "x-a"), None, "{echo}");
    assert_eq!(seen(&echo, "x-b"), Some("gw"));
    assert_eq!(seen(&echo, "x-c"), Some("second"));
    assert_eq!(seen(&echo, "x-d"), None, "set, add, remove in one modifier");
}

#[tokio::test]
async fn forwarding_headers_are_added_and_hop_by_hop_headers_dropped() {
    let b = Backend::start("app").await;
    let h = gateway("  - {name: r, backendRefs: [{name: app}]}\n", &svc(&b)).await;
    let sent = [
        ("x-forwarded-for", "203.0.113.7"),
        ("connection", "x-secret"),
        ("x-secret", "s3cret"),
        ("keep-alive", "timeout=5"),
        ("te", "deflate, trailers"),
        ("proxy-authorization", "Basic dXNlcjpwdw=="),
        ("x-kept", "yes"),
    ];
    let hop = ["x-secret", "keep-alive", "proxy-authorization"];
    let send = |to| h.send_to(to, Method::GET, "app.example.com", "/", &sent, Bytes::new());
    // Control: sent straight to the backend, every header arrives.
    let direct = send(b.addr).await.json();
    assert!(hop.iter().all(|n| seen(&direct, n).is_some()), "{direct}");
    let reply = send(h.addr).await;
    let echo = reply.json();
    let xff = seen(&echo, "x-forwarded-for");
    assert_eq!(xff, Some("203.0.113.7, 127.0.0.1"));
    assert_eq!(seen(&echo, "x-forwarded-proto"), Some("http"));
    assert_eq!(seen(&echo, "x-forwarded-host"), Some("app.example.com"));
    let forwarded = "for=127.0.0.1;host=\"app.example.com\";proto=http";
    assert_eq!(seen(&echo, "forwarded"), Some(forwarded));
    assert_eq!(seen(&echo, "via"), Some("1.1 meshgate"));
    assert_eq!(seen(&echo, "host"), Some("app.example.com"), "preserveHost");
    for name in hop {
        assert_eq!(seen(&echo, name), None, "{name}: {echo}");
    }
    assert!(!seen(&echo, "connection").unwrap_or("").contains("x-secret"));
    assert_eq!(seen(&echo, "x-kept"), Some("yes"));
    // `te` is hop-by-hop except its `trailers` value (the one HTTP/2 allows; gRPC).
    assert_eq!(seen(&echo, "te"), Some("trailers"));
    assert_eq!(all(&reply.headers, "via"), ["1.1 meshgate"]);
}

#[tokio::test]
async fn forwarding_headers_extend_every_client_sent_line() {
    let (raw, mut heads) = raw_backend().await;
    let h = gateway("  - {name: r, backendRefs: [{name: raw}]}\n", &raw).await;
    let sent = [
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-for", "10.0.0.2"),
        ("via", "1.0 edge"),
    ];
    assert_eq!(get_with(&h, "h", &sent).await.body, "ok");
    let head = heads.recv().await.expect("backend saw the request");
    let via = raw_values(&head, "via");
    assert_eq!(via, ["1.0 edge", "1.1 meshgate"], "{head}");
    let xff = raw_values(&head, "x-forwarded-for").join(", ");
    // Repeated x-forwarded-for lines are one comma-separated list (RFC 9110 §5.3).
    assert_eq!(xff, "10.0.0.1, 10.0.0.2, 127.0.0.1", "{head}");
}

#[tokio::test]
async fn host_is_the_endpoint_address_without_preserve_host() {
    let (keep, own) = (Backend::start("keep").await, Backend::start("own").await);
    let routes = "  - {name: keep, matches: [{path: {value: /keep}}], backendRefs: [{name: keep}]}
  - {name: own, matches: [{path: {value: /own}}], backendRefs: [{name: own}]}
  - name: renamed
    matches: [{path: {value: /renamed}}]
    filters: [{type: URLRewrite, urlRewrite: {hostname: svc.internal}}]
    backendRefs: [{name: own}]\n";
    let own_addr = own.addr.to_string();
    let own_svc = format!("  - {{name: own, preserveHost: false, endpoints: [\"{own_addr}\"]}}\n");
    let h = gateway(routes, &(svc(&keep) + &own_svc)).await;
    let kept = h.get("App.Example.com:8080", "/keep").await.json();
    assert_eq!(seen(&kept, "host"), Some("App.Example.com:8080"));
    let owned = h.get("app.example.com", "/own").await.json();
    assert_eq!(seen(&owned, "host"), Some(own_addr.as_str()));
    assert_eq!(seen(&owned, "x-forwarded-host"), Some("app.example.com"));
    // A URLRewrite hostname overrides both.
    let renamed = h.get("app.example.com", "/renamed").await.json();
    assert_eq!(seen(&renamed, "host"), Some("svc.internal"));
}

#[tokio::test]
async fn request_id_is_honoured_or_generated_and_sent_both_ways() {
    let b = Backend::start("app").await;
    let h = gateway("  - {name: r, backendRefs: [{name: app}]}\n", &svc(&b)).await;
    let r = get_with(&h, "h", &[("x-request-id", "trace-abc-123")]).await;
    assert_eq!(all(&r.headers, "x-request-id"), ["trace-abc-123"]);
    assert_eq!(seen(&r.json(), "x-request-id"), Some("trace-abc-123"));
    // Absent, or not sane (a space, longer than 128): a fresh id is generated.
    let long = "x".repeat(129);
    let mut ids = Vec::new();
    for sent in [None, None, Some("has space"), Some(long.as_str())] {
        let sent: Vec<_> = sent.map(|v| ("x-request-id", v)).into_iter().collect();
        let r = get_with(&h, "h", &sent).await;
        let id = r.headers["x-request-id"].to_str().unwrap().to_owned();
        let hex = id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        assert!(id.len() == 32 && hex, "{sent:?}: {id}");
        assert_eq!(seen(&r.json(), "x-request-id"), Some(id.as_str()));
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each request gets its own id");
}
