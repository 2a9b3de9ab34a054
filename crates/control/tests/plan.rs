//! `meshgate plan` output, golden-tested: a rich pair of documents (every section
//! touched, items added, removed and changed, secrets changed) renders to the text
//! in `snapshots/`, and no secret value ever appears in it.

use meshgate_config::Config;
use meshgate_control::plan::plan;
use meshgate_control::store::ProxyRecord;

const RUNNING: &str = r#"
runtime:
  drainTimeout: 10s
accessLog:
  path: stdout
listeners:
  - name: public
    address: 127.0.0.1:8080
  - name: internal
    address: 127.0.0.1:8081
routes:
  - name: orders
    hostnames: [shop.example.com]
    matches:
      - path: {type: PathPrefix, value: /orders}
    policies: [keys]
    backendRefs: [{name: api}]
    timeouts: {request: 5s}
  - name: legacy
    matches: [{path: {value: /old}}]
    backendRefs: [{name: legacy}]
  - name: canary
    matches: [{path: {value: /shop}}]
    backendRefs:
      - {name: api, weight: 95}
      - {name: legacy, weight: 5}
services:
  - name: api
    endpoints: ["10.0.0.1:80", "10.0.0.3:80"]
    loadBalancer: {policy: RoundRobin}
  - name: legacy
    endpoints: ["10.0.1.1:80"]
policies:
  - name: keys
    type: ApiKey
    apiKey:
      header: x-api-key
  - name: login
    type: Oidc
    oidc:
      issuer: http://idp.example.com/realms/shop
      clientId: shop
      clientSecret: first-client-secret-value
      cookieSecret: first-cookie-secret-0123456789abcdef
consumers:
  - name: acme
    groups: [partners]
    apiKeys: ["sha256:1111111111111111111111111111111111111111111111111111111111111111"]
  - name: alice
    basicAuth:
      passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$NxcJaAOgfsE/dEqCnTptKA$utzdkRLZdEUp0PZqo13hwxafsbA7pX9QEbds2vCAwg4"
"#;

const NEXT: &str = r#"
# Comments, order and explicit defaults do not count as changes.
runtime:
  drainTimeout: 30s
accessLog:
  path: /var/log/meshgate/access.log
listeners:
  - name: internal
    address: 127.0.0.1:8081
    protocol: HTTP
  - name: public
    address: 0.0.0.0:8080
  - name: admin-ui
    address: 127.0.0.1:8090
routes:
  - name: orders
    hostnames: [shop.example.com, orders.example.com]
    matches:
      - path: {type: PathPrefix, value: /orders}
    policies: [keys, per-client]
    backendRefs: [{name: api}]
    timeouts: {request: 10s}
    retry: {attempts: 2, retryOn: [connect-failure]}
  - name: canary
    matches: [{path: {value: /shop}}]
    backendRefs:
      - {name: api, weight: 80}
      - {name: checkout, weight: 20}
  - name: checkout
    matches: [{path: {value: /checkout}}]
    backendRefs: [{name: checkout}]
services:
  - name: api
    endpoints:
      - "10.0.0.1:80"
      - {address: "10.0.0.2:80", weight: 3}
    loadBalancer: {policy: LeastRequest}
  - name: checkout
    endpoints: ["10.0.2.1:80"]
policies:
  - name: keys
    type: ApiKey
    apiKey:
      header: x-shop-key
  - name: login
    type: Oidc
    oidc:
      issuer: http://idp.example.com/realms/shop
      clientId: shop-web
      clientSecret: second-client-secret-value
      cookieSecret: second-cookie-secret-0123456789abcdef
  - name: per-client
    type: RateLimit
    rateLimit:
      key: clientIp
      requests: 10
      per: 1m
consumers:
  - name: acme
    groups: [partners, gold]
    apiKeys: ["sha256:2222222222222222222222222222222222222222222222222222222222222222"]
  - name: alice
    basicAuth:
      passwordHash: "$2b$10$M9uCL4WOHVBTEvc5AE5FIuUW3JmcXzjNo69mgIerBsjsMiZMKft5u"
  - name: bob
    apiKeys: ["sha256:3333333333333333333333333333333333333333333333333333333333333333"]
"#;

const SECRETS: [&str; 9] = [
    "first-client-secret",
    "second-client-secret",
    "first-cookie-secret",
    "second-cookie-secret",
    "sha256:",
    "1111111111",
    "2222222222",
    "$argon2id",
    "$2b$",
];

fn parse(yaml: &str, name: &str) -> Config {
    meshgate_config::parse_str(yaml, name).unwrap_or_else(|e| panic!("{e}"))
}

fn gateway(node: &str, connected: bool) -> ProxyRecord {
    ProxyRecord {
        role: "gateway".into(),
        node_id: node.into(),
        service: String::new(),
        namespace: String::new(),
        connected,
        acked: "4-00000000".into(),
        acked_config: 4,
        nacked: String::new(),
        nacked_config: 0,
        nack_reason: String::new(),
        desired: "4-00000000".into(),
        last_seen_ms: 0,
        build: "test".into(),
        replica: "cp-1".into(),
    }
}

#[test]
fn rich_plan_renders_the_golden_text_without_secrets() {
    let running = parse(RUNNING, "running.yaml");
    let next = parse(NEXT, "next.yaml");
    let proxies = [
        gateway("gw-b", true),
        gateway("gw-a", true),
        gateway("gw-gone", false),
        ProxyRecord {
            role: "sidecar".into(),
            ..gateway("pod-1", true)
        },
    ];
    let plan = plan(Some(&running), &next).against(4).affecting(&proxies);
    let text = plan.render();
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret:?} leaked:\n{text}");
    }
    insta::assert_snapshot!("rich_plan", text);
    // Deterministic: the same inputs give the same text.
    assert_eq!(plan_text(&running, &next, &proxies), text);
}

fn plan_text(running: &Config, next: &Config, proxies: &[ProxyRecord]) -> String {
    plan(Some(running), next)
        .against(4)
        .affecting(proxies)
        .render()
}

#[test]
fn reverse_plan_and_first_apply() {
    let running = parse(RUNNING, "running.yaml");
    let next = parse(NEXT, "next.yaml");
    let back = plan(Some(&next), &running).against(5).render();
    for secret in SECRETS {
        assert!(!back.contains(secret), "{secret:?} leaked:\n{back}");
    }
    insta::assert_snapshot!("reverse_plan", back);

    let first = plan(None, &running)
        .affecting(&[gateway("gw-a", true)])
        .render();
    for secret in SECRETS {
        assert!(!first.contains(secret), "{secret:?} leaked:\n{first}");
    }
    insta::assert_snapshot!("first_apply", first);
}

#[test]
fn same_document_reformatted_is_no_change() {
    let a = parse(RUNNING, "a.yaml");
    let reformatted = RUNNING.replace("drainTimeout: 10s", "drainTimeout: 10000ms");
    let b = parse(&reformatted, "b.yaml");
    assert_eq!(plan(Some(&a), &b).render(), "No changes.\n");
}
