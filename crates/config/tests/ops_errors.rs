//! Bad operations settings (`admin`, `reload`, `tracing`) and the exact errors.

#[macro_use]
mod common;

use common::check_table;

/// (document, expected errors), one line per error.
const TABLE: &[(&str, &str)] = &[
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
