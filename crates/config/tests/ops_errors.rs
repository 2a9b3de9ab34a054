//! Bad operations settings (`admin`, `reload`, `tracing`) and the exact errors.

#[macro_use]
mod common;

use common::check_table;

/// (document, expected errors), one line per error.
const TABLE: &[(&str, &str)] = &[
    (
        "
        admin: {liveExplain: true}
        ",
        "t.yaml:1:22: admin.liveExplain: needs admin.token or admin.tokenEnv: requests prove they may see traces with it",
    ),
    (
        "
        errorResponses:
          - {statuses: [404, 200], body: '{\"e\": \"{{reason}}\"}'}
          - {contentType: \"\", body: '{{nope}} {{status'}
        routes:
          - name: r
            backendRefs: [{name: s}]
            errorResponses: [{body: '{{ requestid }}'}]
        services: [{name: s, endpoints: [{address: \"127.0.0.1:1\"}]}]
        ",
        "t.yaml:7:29: routes[0].errorResponses[0].body: unknown variable {{requestid}} (known: status, reason, message, requestId, route, method, path)\n\
         t.yaml:2:22: errorResponses[0].statuses[1]: 200 is not an error status (400-599)\n\
         t.yaml:3:19: errorResponses[1].contentType: \"\" is not a valid content type\n\
         t.yaml:3:29: errorResponses[1].body: unknown variable {{nope}} (known: status, reason, message, requestId, route, method, path)",
    ),
    (
        "
        admin: {token: \"\"}
        ",
        "t.yaml:1:16: admin.token: must not be empty (omit it to run the admin API without auth, loopback only)",
    ),
    (
        "
        reload: {debounce: 0ms}
        ",
        "t.yaml:1:20: reload.debounce: must be greater than 0",
    ),
    (
        "
        tracing:
          sampleRatio: 1.5
          serviceName: \"\"
          otlp: {endpoint: \"127.0.0.1:4317\", maxBatch: 0, timeout: 0s}
        ",
        "t.yaml:2:16: tracing.sampleRatio: 1.5 is not between 0.0 and 1.0\n\
         t.yaml:3:16: tracing.serviceName: must not be empty\n\
         t.yaml:4:20: tracing.otlp.endpoint: \"127.0.0.1:4317\" is not an http:// or https:// URL, e.g. http://127.0.0.1:4317\n\
         t.yaml:4:48: tracing.otlp.maxBatch: must be at least 1\n\
         t.yaml:4:60: tracing.otlp.timeout: must be greater than 0",
    ),
    (
        "
        admin: {adress: 127.0.0.1:9901}
        ",
        "t.yaml:1:9: admin.adress: unknown field `adress`, expected one of enabled, address, token, tokenEnv, liveExplain",
    ),
];

#[test]
fn table_of_bad_ops_settings() {
    check_table(TABLE);
}

#[test]
fn ops_defaults_are_explicit() {
    let c = meshgate_config::parse_str("{}", "t.yaml").unwrap();
    assert!(c.admin.enabled);
    assert_eq!(c.admin.address.to_string(), "127.0.0.1:9901");
    assert!(c.reload.watch);
    assert_eq!(
        c.reload.debounce.get(),
        std::time::Duration::from_millis(250)
    );
    assert!(c.tracing.otlp.is_none());
    assert_eq!(c.tracing.sample_ratio, 1.0);
}
