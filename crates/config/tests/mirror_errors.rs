//! Bad `routes[].mirror` settings and the exact errors they produce.

#[macro_use]
mod common;

use common::check_table;
use meshgate_config::parse_str;

/// (document, expected errors), one line per error.
const TABLE: &[(&str, &str)] = &[
    (
        "
        routes:
          - name: r
            backendRefs: [{name: s}]
            mirror: {service: shadw}
        services:
          - {name: s, endpoints: [\"10.0.0.1:80\"]}
          - {name: shadow, endpoints: [\"10.0.0.2:80\"]}
        ",
        "t.yaml:4:23: routes[0].mirror.service: unknown service \"shadw\" (did you mean \"shadow\"?)",
    ),
    (
        "
        routes:
          - name: r
            backendRefs: [{name: s}]
            mirror:
              service: s
              percent: 150
              timeout: 0s
              maxBodyBytes: 100000000
        services:
          - {name: s, endpoints: [\"10.0.0.1:80\"]}
        ",
        "t.yaml:6:16: routes[0].mirror.percent: must be between 0 and 100 (got 150)\n\
         t.yaml:7:16: routes[0].mirror.timeout: must be greater than 0, e.g. 1s\n\
         t.yaml:8:21: routes[0].mirror.maxBodyBytes: must be at most 16777216 (16 MiB): \
         mirrored bodies are held in memory (got 100000000)",
    ),
    (
        "
        routes:
          - name: r
            backendRefs: [{name: s}]
            mirror:
              service: s
              percent: -1
              diff:
                compareHeaders: [content-type, \"bad header\"]
                ignoreJsonFields: [$.ok, items.*.id, $, a..b, $x]
        services:
          - {name: s, endpoints: [\"10.0.0.1:80\"]}
        ",
        "t.yaml:6:16: routes[0].mirror.percent: must be between 0 and 100 (got -1)\n\
         t.yaml:8:40: routes[0].mirror.diff.compareHeaders[1]: invalid header name \"bad header\": \
         expected a token of letters, digits and !#$%&'*+-.^_`|~ (RFC 9110)\n\
         t.yaml:9:46: routes[0].mirror.diff.ignoreJsonFields[2]: must name a field below the root, \
         e.g. $.timestamp\n\
         t.yaml:9:49: routes[0].mirror.diff.ignoreJsonFields[3]: \"a..b\" has an empty field name: \
         expected dotted field names, e.g. items.*.id\n\
         t.yaml:9:55: routes[0].mirror.diff.ignoreJsonFields[4]: \"$x\": expected `$.` then dotted \
         field names, e.g. $.items.*.id",
    ),
    (
        "
        routes:
          - name: r
            backendRefs: [{name: s}]
            mirror: {service: s, percnt: 5}
        services:
          - {name: s, endpoints: [\"10.0.0.1:80\"]}
        ",
        "t.yaml:4:26: routes[0].mirror.percnt: unknown field `percnt`, expected one of \
         service, percent, timeout, maxBodyBytes, diff",
    ),
    (
        "
        routes:
          - name: r
            backendRefs: [{name: s}]
            mirror: {percent: 5}
        services:
          - {name: s, endpoints: [\"10.0.0.1:80\"]}
        ",
        "t.yaml:4:14: routes[0].mirror: missing field `service`",
    ),
];

#[test]
fn mirror_errors() {
    check_table(TABLE);
}

#[test]
fn mirror_defaults() {
    let c = parse_str(
        "routes:\n  - name: r\n    backendRefs: [{name: s}]\n    mirror: {service: s, diff: {}}\n\
         services:\n  - {name: s, endpoints: [\"10.0.0.1:80\"]}\n",
        "t.yaml",
    )
    .unwrap();
    let m = c.routes[0].mirror.as_ref().unwrap();
    assert_eq!(m.percent, 100.0);
    assert_eq!(m.timeout.get(), std::time::Duration::from_secs(1));
    assert_eq!(m.max_body_bytes, 65536);
    let d = m.diff.as_ref().unwrap();
    assert_eq!(d.compare_headers, vec!["content-type".to_owned()]);
    assert!(d.ignore_json_fields.is_empty());
    assert_eq!(d.sample_log_per_minute, 10);
}
