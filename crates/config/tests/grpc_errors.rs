//! gRPC settings and the exact errors they produce: the `grpc` health-check kind
//! (`services[].healthCheck.grpc`) and gRPC conditions in `routes[].retry.retryOn`.

#[macro_use]
mod common;

use common::check_table;
use meshgate_config::{RetryOn, parse_str};

/// (document, expected errors), one line per error.
const TABLE: &[(&str, &str)] = &[
    (
        "
        services:
          - name: s
            endpoints: [10.0.0.1:80]
            healthCheck:
              tcp: {}
              grpc: {}
        ",
        "t.yaml:5:7: services[0].healthCheck: set exactly one of http, tcp or grpc (got tcp and grpc)",
    ),
    (
        "
        services:
          - name: s
            endpoints: [10.0.0.1:80]
            healthCheck:
              http: {}
              tcp: {}
              grpc: {service: x}
        ",
        "t.yaml:5:7: services[0].healthCheck: set exactly one of http, tcp or grpc (got http and tcp and grpc)",
    ),
    (
        "
        services:
          - name: s
            endpoints: [10.0.0.1:80]
            protocol: HTTP2
            tls: {insecureSkipVerify: true}
            healthCheck:
              grpc: {authority: \"a b/c\"}
        ",
        // A service with tls may use gRPC checks (over TLS); only the authority is wrong.
        "t.yaml:7:25: services[0].healthCheck.grpc.authority: invalid authority \"a b/c\": expected host or host:port",
    ),
    (
        "
        services:
          - name: s
            endpoints: [10.0.0.1:80]
            healthCheck:
              grpc: {port: 1}
        ",
        "t.yaml:5:14: services[0].healthCheck.grpc.port: unknown field `port`, expected one of service, authority",
    ),
    (
        with_s!(
            "
        routes:
          - name: r
            backendRefs: [{name: s}]
            retry: {retryOn: [grpc-unavailable, grpc-not-found]}
        "
        ),
        "t.yaml:4:41: routes[0].retry.retryOn[1]: unknown retryOn \"grpc-not-found\": expected \
         connect-failure, reset, timeout, 5xx, gateway-error, a status code 100-599, grpc-cancelled, \
         grpc-deadline-exceeded, grpc-resource-exhausted, grpc-internal or grpc-unavailable",
    ),
];

#[test]
fn grpc_errors() {
    check_table(TABLE);
}

#[test]
fn grpc_settings_parse() {
    let c = parse_str(
        "services:
  - name: s
    protocol: HTTP2
    endpoints: [\"10.0.0.1:80\"]
    healthCheck:
      grpc: {service: greeter, authority: greeter.internal:50051}
routes:
  - name: r
    backendRefs: [{name: s}]
    retry:
      retryOn: [grpc-cancelled, grpc-deadline-exceeded, grpc-resource-exhausted, grpc-internal, grpc-unavailable, 503]
",
        "t.yaml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let grpc = c.services[0]
        .health_check
        .as_ref()
        .unwrap()
        .grpc
        .as_ref()
        .unwrap();
    assert_eq!(grpc.service, "greeter");
    assert_eq!(grpc.authority.as_deref(), Some("greeter.internal:50051"));
    let on = &c.routes[0].retry.as_ref().unwrap().retry_on;
    assert_eq!(
        on,
        &[
            RetryOn::Grpc(1),
            RetryOn::Grpc(4),
            RetryOn::Grpc(8),
            RetryOn::Grpc(13),
            RetryOn::Grpc(14),
            RetryOn::Status(503)
        ]
    );
    // Names round-trip through Display.
    for r in on {
        assert_eq!(r.to_string().parse::<RetryOn>().as_ref(), Ok(r));
    }
    let empty = parse_str(
        "services:\n  - {name: s, endpoints: [\"10.0.0.1:80\"], healthCheck: {grpc: {}}}\n",
        "t.yaml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let grpc = empty.services[0]
        .health_check
        .as_ref()
        .unwrap()
        .grpc
        .clone();
    assert_eq!(grpc.unwrap().service, "", "default: the server as a whole");
}
