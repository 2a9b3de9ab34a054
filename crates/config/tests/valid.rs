//! Valid configs: a full document using every feature, a quickstart, edge cases
//! that are allowed (all backend weights 0, routes answered by filters alone), the
//! annotated example of docs/configuration.md, and the JSON Schema of the model.

mod common;

use common::dedent;
use meshgate_config::parse_str;

/// Configs that use every feature correctly, and edge cases that are allowed.
#[test]
fn valid_configs_parse() {
    let full = "
        runtime: {workerThreads: 4, drainTimeout: 10s}
        accessLog: {path: off}
        listeners:
          - {name: public, address: 0.0.0.0:8080}
          - {name: internal, address: \"[::1]:9090\", protocol: HTTP}
        routes:
          - name: users-v2
            hostnames: [api.example.com, \"*.Example.COM\"]
            listeners: [public]
            matches:
              - path: {type: PathPrefix, value: /users}
                method: GET
                headers: [{name: x-version, value: \"2\"}, {type: RegularExpression, name: x-tenant, value: \"[a-z]+\"}]
                queryParams: [{type: RegularExpression, name: page, value: \"[0-9]+\"}]
              - {}
            filters:
              - type: RequestHeaderModifier
                requestHeaderModifier:
                  set: [{name: x-gateway, value: meshgate}]
                  add: [{name: x-trace, value: \"1\"}]
                  remove: [x-internal]
              - type: URLRewrite
                urlRewrite: {hostname: users.internal, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2/users}}
              - type: ResponseHeaderModifier
                responseHeaderModifier: {remove: [server]}
            backendRefs: [{name: users, weight: 90}, {name: users-canary, weight: 10}]
            timeouts: {request: 5s, backendRequest: 1s}
            retry:
              attempts: 3
              retryOn: [connect-failure, reset, timeout, 5xx, gateway-error, 429]
              backoff: {base: 10ms, max: 1s}
              retryNonIdempotent: false
              bodyBufferBytes: 1024
          - name: old-site
            hostnames: [old.example.com]
            filters:
              - type: RequestRedirect
                requestRedirect:
                  scheme: https
                  hostname: www.example.com
                  port: 443
                  path: {type: ReplaceFullPath, replaceFullPath: /}
                  statusCode: 301
          - name: maintenance
            matches: [{path: {type: Exact, value: /status}}]
            filters:
              - type: DirectResponse
                directResponse: {status: 503, body: down, headers: [{name: content-type, value: text/plain}]}
          - name: switched-off
            matches: [{path: {type: RegularExpression, value: \"^/legacy/.*\"}}]
            backendRefs: [{name: users, weight: 0}, {name: users-canary, weight: 0}]
        services:
          - name: users
            endpoints: [\"10.0.0.1:8080\", {address: \"users-2.internal:8080\", weight: 3}, \"[fd00::1]:8080\"]
            loadBalancer: {policy: LeastRequest}
            connectTimeout: 250ms
            pool: {maxIdlePerEndpoint: 100000, idleTimeout: 30s}
            retryBudget: {percent: 0, minRetriesPerSecond: 0, window: 1s}
            preserveHost: false
          - name: users-canary
            endpoints: [\"10.0.1.1:8080\"]
            loadBalancer: {policy: RingHash, hashOn: {cookie: session}}
        ";
    let config = parse_str(&dedent(full), "full.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.routes.len(), 4);
    assert_eq!(config.services[0].endpoints[1].weight, 3);
    assert_eq!(config.routes[0].retry.as_ref().unwrap().attempts, 3);

    let quickstart = "
        listeners:
          - name: web
            address: 127.0.0.1:8080
        routes:
          - name: all
            backendRefs: [{name: app}]
        services:
          - name: app
            endpoints: [127.0.0.1:3000]
        ";
    let config =
        parse_str(&dedent(quickstart), "quickstart.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.runtime.drain_timeout,
        meshgate_config::Duration::from_secs(30)
    );
    assert!(config.routes[0].retry.is_none());

    // An empty document is a valid (if useless) config.
    assert_eq!(
        parse_str("{}\n", "empty.yaml").unwrap(),
        meshgate_config::Config::default()
    );
}

#[test]
fn json_schema_describes_the_model() {
    let text = meshgate_config::json_schema();
    assert!(text.contains("\"Route\""), "no Route definition");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    for key in ["runtime", "accessLog", "listeners", "routes", "services"] {
        assert!(
            schema["properties"][key].is_object(),
            "properties.{key} missing"
        );
    }
    assert_eq!(
        schema["additionalProperties"],
        serde_json::Value::Bool(false),
        "unknown top-level fields rejected"
    );
    let defs = schema["$defs"].as_object().expect("$defs");
    for name in [
        "Route", "Service", "Filter", "Listener", "Duration", "RetryOn",
    ] {
        assert!(defs.contains_key(name), "$defs.{name} missing");
    }
}

/// The annotated example in docs/configuration.md is a valid config.
#[test]
fn documented_example_is_valid() {
    let doc = include_str!("../../../docs/configuration.md");
    let section = doc
        .split("## Full annotated example")
        .nth(1)
        .expect("example section");
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("yaml block");
    let config = parse_str(yaml, "docs/configuration.md").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.routes.len(), 4);
    assert_eq!(config.services.len(), 3);
}
