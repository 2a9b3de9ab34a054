//! Bad `listeners[].l4` settings (TCP proxy, TLS passthrough by SNI) and the exact
//! errors they produce; and the settings that are accepted, with their defaults.

#[macro_use]
mod common;

use common::{check_table, dedent};
use meshgate_config::{ListenerProtocol, parse_str};

const TABLE: &[(&str, &str)] = &[
    (
        with_s!(
            "
        listeners:
          - {name: t, address: \"127.0.0.1:0\", protocol: TCP, l4: {}}
        "
        ),
        "t.yaml:2:58: listeners[0].l4.service: required when protocol is TCP: the service connections are proxied to",
    ),
    (
        with_s!(
            "
        listeners:
          - {name: t, address: \"127.0.0.1:0\", protocol: TCP, l4: {service: s, routes: [{hostnames: [a.test], service: s}]}}
        "
        ),
        "t.yaml:2:79: listeners[0].l4.routes: only allowed when protocol is TLS: a TCP connection carries no server name to route by",
    ),
    (
        with_s!(
            "
        listeners:
          - {name: t, address: \"127.0.0.1:0\", protocol: TLS, l4: {idleTimeout: 0s, clientHelloTimeout: 0ms}}
        "
        ),
        "t.yaml:2:58: listeners[0].l4.routes: set routes, service or both: a TLS listener needs somewhere to send connections\n\
         t.yaml:2:72: listeners[0].l4.idleTimeout: must be greater than 0\n\
         t.yaml:2:96: listeners[0].l4.clientHelloTimeout: must be greater than 0",
    ),
    (
        with_s!(
            "
        listeners:
          - {name: t, address: \"127.0.0.1:0\", protocol: TCP, l4: {service: ss}}
          - {name: u, address: \"127.0.0.1:0\", protocol: TLS, l4: {service: nope, routes: [{hostnames: [a.test], service: zzz}]}}
        "
        ),
        "t.yaml:2:68: listeners[0].l4.service: unknown service \"ss\" (did you mean \"s\"?)\n\
         t.yaml:3:68: listeners[1].l4.service: unknown service \"nope\": expected one of \"s\"\n\
         t.yaml:3:114: listeners[1].l4.routes[0].service: unknown service \"zzz\": expected one of \"s\"",
    ),
    (
        with_s!(
            "
        listeners:
          - name: t
            address: \"127.0.0.1:0\"
            protocol: TLS
            l4:
              routes:
                - {hostnames: [a.test, \"*.b.test\", A.Test], service: s}
                - {hostnames: [], service: s}
                - {hostnames: [\"*.B.test\", \"a.*.test\", \"c.test:443\", \"\"], service: s}
        "
        ),
        "t.yaml:7:44: listeners[0].l4.routes[0].hostnames[2]: duplicate server name \"A.Test\" (first at listeners[0].l4.routes[0].hostnames[0])\n\
         t.yaml:8:23: listeners[0].l4.routes[1].hostnames: must list at least one server name, e.g. db.example.com or *.example.com\n\
         t.yaml:9:24: listeners[0].l4.routes[2].hostnames[0]: duplicate server name \"*.B.test\" (first at listeners[0].l4.routes[0].hostnames[1])\n\
         t.yaml:9:36: listeners[0].l4.routes[2].hostnames[1]: invalid hostname \"a.*.test\": a wildcard is only allowed as a single leading \"*.\"; expected a DNS name such as api.example.com or *.example.com\n\
         t.yaml:9:48: listeners[0].l4.routes[2].hostnames[2]: invalid hostname \"c.test:443\": a port is not allowed; expected a DNS name such as api.example.com or *.example.com\n\
         t.yaml:9:62: listeners[0].l4.routes[2].hostnames[3]: invalid hostname \"\": must not be empty; expected a DNS name such as api.example.com or *.example.com",
    ),
    (
        "
        listeners:
          - {name: t, address: \"127.0.0.1:0\", protocol: TLS, l4: {service: s}}
        services:
          - {name: s, endpoints: [\"10.0.0.1:443\"], tls: {insecureSkipVerify: true}}
        ",
        "t.yaml:2:68: listeners[0].l4.service: service \"s\" originates TLS (services[0].tls), but an L4 listener passes the client's bytes through unchanged: use a service without tls",
    ),
    (
        with_s!(
            "
        listeners:
          - {name: t, address: \"127.0.0.1:0\", protocol: TCP, l4: {service: s, idleTimeout: 5}}
        "
        ),
        "t.yaml:2:84: listeners[0].l4.idleTimeout: invalid duration 5: a unit is required (ms, s, m, h), e.g. 5ms or 5s",
    ),
    (
        with_s!(
            "
        listeners:
          - {name: t, address: \"127.0.0.1:0\", protocol: TLS, l4: {routes: [{hostnames: [a.test], service: s, weight: 2}]}}
        "
        ),
        "t.yaml:2:102: listeners[0].l4.routes[0].weight: unknown field `weight`, expected one of hostnames, service",
    ),
    (
        with_s!(
            "
        listeners:
          - {name: t, address: \"127.0.0.1:0\", protocol: TCP}
          - {name: u, address: \"127.0.0.1:0\", l4: {service: s}}
        "
        ),
        "t.yaml:2:5: listeners[0].l4: required when protocol is TCP\n\
         t.yaml:3:43: listeners[1].l4: not allowed when protocol is HTTP",
    ),
];

#[test]
fn table_of_bad_l4_listeners() {
    check_table(TABLE);
}

#[test]
fn good_l4_listeners_parse_with_defaults() {
    let src = dedent(
        "
        listeners:
          - {name: tcp, address: \"127.0.0.1:0\", protocol: TCP, l4: {service: s}}
          - name: tls
            address: \"127.0.0.1:0\"
            protocol: TLS
            l4:
              service: s
              idleTimeout: 10m
              clientHelloTimeout: 2s
              routes:
                - {hostnames: [a.test, \"*.a.test\"], service: s}
                - {hostnames: [\"*.test\"], service: t}
        services:
          - {name: s, endpoints: [\"10.0.0.1:80\"]}
          - {name: t, endpoints: [\"10.0.0.2:443\"]}
        ",
    );
    let config = parse_str(&src, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let tcp = &config.listeners[0];
    assert_eq!(tcp.protocol, ListenerProtocol::TCP);
    let l4 = tcp.l4.as_ref().unwrap();
    assert_eq!(l4.service.as_deref(), Some("s"));
    assert!(l4.routes.is_empty());
    assert_eq!(l4.idle_timeout.get(), std::time::Duration::from_secs(3600));
    assert_eq!(
        l4.client_hello_timeout.get(),
        std::time::Duration::from_secs(5)
    );
    let tls = config.listeners[1].l4.as_ref().unwrap();
    assert_eq!(tls.routes.len(), 2);
    assert_eq!(tls.routes[0].hostnames, ["a.test", "*.a.test"]);
    assert_eq!(tls.routes[1].service, "t");
    assert_eq!(tls.idle_timeout.get(), std::time::Duration::from_secs(600));
    assert_eq!(
        tls.client_hello_timeout.get(),
        std::time::Duration::from_secs(2)
    );
}

#[test]
fn tls_listener_may_have_only_routes_or_only_a_default() {
    for l4 in [
        "{routes: [{hostnames: [a.test], service: s}]}",
        "{service: s}",
    ] {
        let src = format!(
            "listeners: [{{name: t, address: \"127.0.0.1:0\", protocol: TLS, l4: {l4}}}]\n\
             services: [{{name: s, endpoints: [\"10.0.0.1:443\"]}}]\n"
        );
        parse_str(&src, "t.yaml").unwrap_or_else(|e| panic!("{l4}: {e}"));
    }
}
