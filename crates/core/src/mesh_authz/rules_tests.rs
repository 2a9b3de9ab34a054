//! Evaluation order, caller selectors, operations and the connection-level verdict.

use super::*;

const A: &str = "spiffe://td/ns/default/sa/a";
const B: &str = "spiffe://td/ns/default/sa/b";
const C: &str = "spiffe://td/ns/shop/sa/c";

/// Compiles the `meshAuthorization` block `yaml` of a listener, validated as a config.
fn policy(yaml: &str) -> Policy {
    let block: String = yaml.lines().map(|l| format!("      {l}\n")).collect();
    let doc = format!(
        "listeners:\n  - name: l\n    address: \"127.0.0.1:0\"\n    meshAuthorization:\n{block}"
    );
    let config = meshgate_config::parse_str(&doc, "t.yaml").expect("valid");
    let authz = config.listeners[0]
        .mesh_authorization
        .as_ref()
        .expect("set");
    Policy::compile(authz).expect("compile")
}

fn get(p: &Policy, peer: Option<&str>, method: &str, path: &str) -> (bool, String) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let v = p.check_request(peer, &method, path, &HeaderMap::new());
    (v.allow, v.rule.to_string())
}

#[test]
fn deny_rules_win_then_allow_then_default() {
    let p = policy(
        "defaultAction: DENY
rules:
  - {name: allow-all-default, action: ALLOW, from: [{namespace: default}]}
  - {name: no-b-admin, action: DENY, from: [{service: b}], to: [{paths: [/admin/*]}]}
",
    );
    assert_eq!(
        get(&p, Some(A), "GET", "/admin/x"),
        (true, "allow-all-default".into())
    );
    assert_eq!(
        get(&p, Some(B), "GET", "/admin/x"),
        (false, "no-b-admin".into())
    );
    assert_eq!(
        get(&p, Some(B), "GET", "/admin"),
        (true, "allow-all-default".into())
    );
    assert_eq!(get(&p, Some(C), "GET", "/"), (false, DEFAULT_ACTION.into()));
    assert_eq!(get(&p, None, "GET", "/"), (false, DEFAULT_ACTION.into()));
}

#[test]
fn selectors_and_operations() {
    let p = policy(
        "defaultAction: DENY
rules:
  - {name: exact, action: ALLOW, from: [{spiffeId: \"spiffe://td/ns/default/sa/a\"}], to: [{methods: [GET]}]}
  - {name: prefix, action: ALLOW, from: [{spiffeIdPrefix: \"spiffe://td/ns/shop/\"}], to: [{paths: [/api/*, /health]}]}
",
    );
    assert!(get(&p, Some(A), "GET", "/x").0);
    assert!(!get(&p, Some(A), "POST", "/x").0);
    assert!(get(&p, Some(C), "POST", "/api/v1").0);
    assert!(get(&p, Some(C), "GET", "/health").0);
    assert!(!get(&p, Some(C), "GET", "/healthz").0);
    assert!(!get(&p, Some(C), "GET", "/api").0);
    assert!(!get(&p, Some(B), "GET", "/x").0);
}

#[test]
fn headers_must_all_match() {
    let p = policy(
        "defaultAction: DENY
rules:
  - {name: h, action: ALLOW, to: [{headers: {x-env: prod, x-trace: \"*\"}}]}
",
    );
    let mut h = HeaderMap::new();
    h.insert("x-env", HeaderValue::from_static("prod"));
    assert!(!p.check_request(Some(A), &Method::GET, "/", &h).allow);
    h.insert("x-trace", HeaderValue::from_static("1"));
    assert!(p.check_request(Some(A), &Method::GET, "/", &h).allow);
    h.insert("x-env", HeaderValue::from_static("dev"));
    assert!(!p.check_request(Some(A), &Method::GET, "/", &h).allow);
}

#[test]
fn connections_are_judged_on_identity() {
    let p = policy(
        "defaultAction: DENY
rules:
  - {name: a-reads, action: ALLOW, from: [{service: a}], to: [{methods: [GET]}]}
  - {name: b, action: ALLOW, from: [{service: b}]}
  - {name: no-c, action: DENY, from: [{service: c, namespace: shop}]}
  - {name: no-posts, action: DENY, to: [{methods: [POST]}]}
",
    );
    // A may still send GETs over HTTP, but nothing over TCP.
    assert!(p.check_connection(Some(A), true).allow);
    assert!(!p.check_connection(Some(A), false).allow);
    assert_eq!(&*p.check_connection(Some(B), true).rule, "b");
    assert_eq!(&*p.check_connection(Some(C), true).rule, "no-c");
    // Over TCP a DENY rule with operations applies to the caller as a whole.
    assert_eq!(&*p.check_connection(Some(B), false).rule, "no-posts");
    assert!(!p.check_connection(None, true).allow);
    let open = policy("rules: [{name: d, action: DENY, from: [{service: c, namespace: shop}]}]");
    assert!(open.check_connection(Some(A), true).allow);
    assert!(open.check_connection(None, false).allow);
    assert!(!open.check_connection(Some(C), true).allow);
}

#[test]
fn spiffe_ids_parse() {
    assert_eq!(parse_spiffe(A), Some(("default", "a")));
    assert_eq!(parse_spiffe("spiffe://td/ns/x/sa/y/z"), None);
    assert_eq!(parse_spiffe("spiffe://td/other"), None);
    assert_eq!(parse_spiffe("https://td/ns/x/sa/y"), None);
}
