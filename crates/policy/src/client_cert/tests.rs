//! Unit tests of the `ClientCert` policy: certificates built as the TLS layer hands
//! them over, the filter run through a real `FilterChain` so the `explain` notes
//! are recorded; every refusal's status and reason, the consumer's name under each
//! `consumerFrom`, groups from `consumers:`, forged headers removed.

use std::sync::Arc;

use meshgate_core::filter::{Filter, FilterChain, Flow, RequestCx};
use meshgate_core::server::tls::ClientCert as Cert;

use super::ClientCert;

fn policy(settings: &str, consumers: &str) -> Arc<ClientCert> {
    let yaml = format!(
        "consumers: {consumers}\npolicies: [{{name: m, type: ClientCert, clientCert: {settings}}}]"
    );
    let c = meshgate_config::parse_str(&yaml, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    Arc::new(
        ClientCert::compile(c.policies[0].client_cert.as_ref().unwrap(), &c.consumers)
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

fn cert(subject: &str, uris: &[&str], dns: &[&str]) -> Cert {
    Cert {
        subject: subject.into(),
        uris: uris.iter().map(|s| s.to_string()).collect(),
        dns_names: dns.iter().map(|s| s.to_string()).collect(),
    }
}

/// What one request got: the status and reason of a refusal (or 200), the
/// consumer, the headers sent on, and the explain note.
struct Outcome {
    status: (u16, &'static str),
    consumer: Option<(String, Vec<String>)>,
    headers: http::HeaderMap,
    note: String,
}

async fn run(p: &Arc<ClientCert>, cert: Option<&Cert>, scheme: &'static str) -> Outcome {
    let mut chain = FilterChain::default();
    chain.push_request(p.clone() as Arc<dyn Filter>);
    let (mut req, ()) = http::Request::builder()
        .uri("/x")
        .header("x-consumer", "admin")
        .header("x-consumer-groups", "root")
        .header("x-client-cert-subject", "CN=admin")
        .body(())
        .unwrap()
        .into_parts();
    let mut cx = RequestCx::new("t", scheme, "h", 443, std::net::Ipv4Addr::LOCALHOST.into());
    cx.client_cert = cert;
    cx.explain = Some(Box::default());
    let status = match chain.on_request(&mut req, &mut cx).await {
        Flow::Continue => (200, "ok"),
        Flow::Reject(e) => (e.status().as_u16(), e.reason()),
        other => panic!("{other:?}"),
    };
    Outcome {
        status,
        consumer: cx
            .consumer
            .as_ref()
            .map(|c| (c.name.to_string(), c.groups.clone())),
        headers: req.headers,
        note: cx.explain.unwrap().steps[0]
            .detail
            .clone()
            .unwrap_or_default(),
    }
}

fn header<'h>(o: &'h Outcome, name: &str) -> Option<&'h str> {
    o.headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn no_certificate_is_401_and_forged_headers_never_pass() {
    let p = policy("{}", "[]");
    let o = run(&p, None, "http").await;
    assert_eq!(o.status, (401, "missing_credentials"));
    assert!(o.note.contains("plain HTTP"), "{}", o.note);
    for h in ["x-consumer", "x-consumer-groups", "x-client-cert-subject"] {
        assert_eq!(header(&o, h), None, "{h} survived a refusal");
    }
    let o = run(&p, None, "https").await;
    assert_eq!(o.status, (401, "missing_credentials"));
    assert!(o.note.contains("none was presented"), "{}", o.note);
}

#[tokio::test]
async fn subject_cn_names_the_consumer_and_consumers_give_groups() {
    let p = policy(
        "{groups: [mtls]}",
        "[{name: alice, groups: [admins]}, {name: carol, groups: [mtls]}]",
    );
    let alice = cert("CN=alice,O=Example", &[], &[]);
    let o = run(&p, Some(&alice), "https").await;
    assert_eq!(o.status, (200, "ok"));
    assert_eq!(
        o.consumer,
        Some(("alice".into(), vec!["admins".into(), "mtls".into()]))
    );
    assert_eq!(header(&o, "x-consumer"), Some("alice"));
    assert_eq!(header(&o, "x-consumer-groups"), Some("admins,mtls"));
    assert_eq!(
        header(&o, "x-client-cert-subject"),
        Some("CN=alice,O=Example")
    );
    assert_eq!(
        o.note,
        "consumer alice from subjectCN of certificate CN=alice,O=Example; \
         no allow list: any verified certificate"
    );
    // Not a consumers: entry: still a consumer, with the policy's groups only.
    let o = run(&p, Some(&cert("CN=dave", &[], &[])), "https").await;
    assert_eq!(o.consumer, Some(("dave".into(), vec!["mtls".into()])));
    assert_eq!(header(&o, "x-consumer-groups"), Some("mtls"));
    // carol already has the group: not doubled.
    let o = run(&p, Some(&cert("CN=carol", &[], &[])), "https").await;
    assert_eq!(o.consumer, Some(("carol".into(), vec!["mtls".into()])));
    // No CN at all.
    let o = run(&p, Some(&cert("O=Example", &[], &[])), "https").await;
    assert_eq!(o.status, (403, "forbidden"));
    assert!(o.note.contains("has no subjectCN"), "{}", o.note);
}

#[tokio::test]
async fn allow_entries_match_subject_uri_and_dns() {
    let p = policy(
        "{allow: [{subject: \"cn = alice, o=Example\"}, \
                  {uriPrefix: \"spiffe://example.org/\"}, \
                  {dnsSuffix: .partners.example}, \
                  {uri: \"urn:x:1\", dns: a.example}]}",
        "[]",
    );
    let cases = [
        (
            cert("CN=alice,O=Example", &[], &[]),
            200,
            "allow[0] matched subject CN=alice,O=Example",
        ),
        (
            cert("CN=alice,O=Other", &[], &[]),
            403,
            "matches no allow entry",
        ),
        (
            cert(
                "CN=svc",
                &["urn:y", "spiffe://example.org/ns/a/sa/svc"],
                &[],
            ),
            200,
            "allow[1] matched URI spiffe://example.org/ns/a/sa/svc (prefix spiffe://example.org/)",
        ),
        (
            cert("CN=svc", &["spiffe://example.org.evil/x"], &[]),
            403,
            "URIs: [spiffe://example.org.evil/x]",
        ),
        (
            cert("CN=p", &[], &["API.Partners.Example"]),
            200,
            "DNS API.Partners.Example (suffix .partners.example)",
        ),
        (
            cert("CN=p", &[], &["evilpartners.example"]),
            403,
            "DNS: [evilpartners.example]",
        ),
        (
            cert("CN=p", &[], &["partners.example"]),
            403,
            "matches no allow entry",
        ),
        (
            cert("CN=b", &["urn:x:1"], &["A.example"]),
            200,
            "allow[3] matched URI urn:x:1 (= urn:x:1), DNS A.example",
        ),
        (
            cert("CN=b", &["urn:x:1"], &["b.example"]),
            403,
            "matches no allow entry",
        ),
    ];
    for (c, status, note) in cases {
        let o = run(&p, Some(&c), "https").await;
        assert_eq!(o.status.0, status, "{c:?}: {}", o.note);
        assert!(o.note.contains(note), "{c:?}:\n{}\nwant: {note}", o.note);
        if status == 403 {
            assert_eq!(o.status.1, "forbidden");
            assert_eq!(header(&o, "x-consumer"), None);
        }
    }
}

#[tokio::test]
async fn consumer_from_uri_dns_and_subject() {
    let spiffe = "spiffe://example.org/ns/pay/sa/api";
    let c = cert(
        "CN=api,O=Pay",
        &["urn:other", spiffe],
        &["api.pay.svc", "api.internal"],
    );
    // uri: the URI the matching entry accepted, not simply the first one.
    let p = policy(
        "{consumerFrom: uri, allow: [{uriPrefix: \"spiffe://example.org/\"}]}",
        "[]",
    );
    assert_eq!(run(&p, Some(&c), "https").await.consumer.unwrap().0, spiffe);
    // Without an allow list, the first URI.
    let p = policy("{consumerFrom: uri}", "[]");
    assert_eq!(
        run(&p, Some(&c), "https").await.consumer.unwrap().0,
        "urn:other"
    );
    let p = policy("{consumerFrom: dns, allow: [{dnsSuffix: .internal}]}", "[]");
    assert_eq!(
        run(&p, Some(&c), "https").await.consumer.unwrap().0,
        "api.internal"
    );
    let p = policy("{consumerFrom: subject}", "[]");
    let o = run(&p, Some(&c), "https").await;
    assert_eq!(o.consumer.as_ref().unwrap().0, "CN=api,O=Pay");
    assert_eq!(header(&o, "x-consumer"), Some("CN=api,O=Pay"));
    // A certificate without the field: refused, saying which.
    let p = policy("{consumerFrom: uri}", "[]");
    let o = run(&p, Some(&cert("CN=bob", &[], &["bob.example"])), "https").await;
    assert_eq!(o.status, (403, "forbidden"));
    assert!(
        o.note.contains("has no uri to name the consumer"),
        "{}",
        o.note
    );
}

#[tokio::test]
async fn require_consumer_refuses_unknown_names() {
    let p = policy(
        "{requireConsumer: true, consumerHeader: x-who, subjectHeader: x-dn}",
        "[{name: alice, groups: [admins]}]",
    );
    let o = run(&p, Some(&cert("CN=alice", &[], &[])), "https").await;
    assert_eq!(o.status, (200, "ok"));
    assert_eq!(header(&o, "x-who"), Some("alice"));
    assert_eq!(header(&o, "x-dn"), Some("CN=alice"));
    // Renamed headers: the defaults are left as the client sent them.
    assert_eq!(header(&o, "x-consumer"), Some("admin"));
    let o = run(&p, Some(&cert("CN=mallory", &[], &[])), "https").await;
    assert_eq!(o.status, (403, "forbidden"));
    assert_eq!(
        o.note,
        "consumer mallory (from subjectCN) is not a consumers: entry (requireConsumer)"
    );
}

#[tokio::test]
async fn names_go_upstream_as_utf8_and_never_with_control_characters() {
    let p = policy("{}", "[]");
    let o = run(&p, Some(&cert("CN=josé", &[], &[])), "https").await;
    assert_eq!(o.status, (200, "ok"));
    assert_eq!(o.headers["x-consumer"].as_bytes(), "josé".as_bytes());
    // A line break cannot be a header value: left out, not sent mangled.
    let o = run(&p, Some(&cert("CN=a\nb", &[], &[])), "https").await;
    assert_eq!(o.status, (200, "ok"));
    assert_eq!(o.consumer.as_ref().unwrap().0, "a\nb");
    assert_eq!(header(&o, "x-consumer"), None);
    assert_eq!(header(&o, "x-client-cert-subject"), None);
}
