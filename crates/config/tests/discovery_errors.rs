//! Bad `services[].discovery` settings and the exact errors they produce; the
//! documents discovery makes valid (no static endpoints); and the warning that a
//! standalone `meshgate run` does not discover.

#[macro_use]
mod common;

use common::{check_table, dedent};
use meshgate_config::{DnsRecordType, parse_str};

/// (document, expected errors), one line per error.
const TABLE: &[(&str, &str)] = &[
    (
        "
        services:
          - name: s
        ",
        "t.yaml:2:5: services[0].endpoints: must list at least one endpoint",
    ),
    (
        "
        services:
          - name: s
            discovery: {}
        ",
        "t.yaml:3:16: services[0].discovery: set exactly one of registry or dns (got none)",
    ),
    (
        "
        services:
          - name: s
            discovery:
              registry: {}
              dns: {name: a.b, port: 80}
        ",
        "t.yaml:4:7: services[0].discovery: set exactly one of registry or dns (got registry and dns)",
    ),
    (
        "
        services:
          - name: s
            discovery:
              registry: {ttl: 5s}
        ",
        "t.yaml:4:17: services[0].discovery.registry: unknown field `ttl`: registry discovery has no settings, write registry: {}",
    ),
    (
        "
        services:
          - name: s
            discovery:
              dns: {name: orders.internal}
        ",
        "t.yaml:4:12: services[0].discovery.dns: port is required when type is A, e.g. port: 8080",
    ),
    (
        "
        services:
          - name: s
            discovery:
              dns: {name: orders.internal, type: AAAA}
        ",
        "t.yaml:4:12: services[0].discovery.dns: port is required when type is AAAA, e.g. port: 8080",
    ),
    (
        "
        services:
          - name: s
            discovery:
              dns: {name: _http._tcp.orders.internal, type: SRV, port: 80}
        ",
        "t.yaml:4:64: services[0].discovery.dns.port: not allowed when type is SRV: each SRV record carries its port",
    ),
    (
        "
        services:
          - name: s
            discovery:
              dns: {name: orders.internal, port: 0}
        ",
        "t.yaml:4:42: services[0].discovery.dns.port: must be 1-65535 (got 0)",
    ),
    (
        "
        services:
          - name: s
            discovery:
              dns: {name: orders.internal, port: 70000}
        ",
        "t.yaml:4:42: services[0].discovery.dns.port: invalid u16",
    ),
    (
        "
        services:
          - name: s
            discovery:
              dns: {name: orders.internal, type: MX, port: 25}
        ",
        "t.yaml:4:42: services[0].discovery.dns.type: unknown variant `MX`, expected one of A, AAAA, SRV",
    ),
    (
        "
        services:
          - name: s
            discovery:
              dns:
                name: orders..internal
                port: 80
              
        ",
        "t.yaml:5:15: services[0].discovery.dns.name: invalid DNS name \"orders..internal\": empty label (leading or doubled \".\"); e.g. orders.internal or _http._tcp.orders.internal",
    ),
    (
        "
        services:
          - name: s
            discovery:
              dns: {name: 'orders.internal:80', port: 80}
        ",
        "t.yaml:4:19: services[0].discovery.dns.name: invalid DNS name \"orders.internal:80\": label \"internal:80\" may only contain letters, digits and \"-\" (and a leading \"_\"); e.g. orders.internal or _http._tcp.orders.internal",
    ),
    (
        "
        services:
          - name: s
            discovery:
              dns: {name: '', port: 80}
        ",
        "t.yaml:4:19: services[0].discovery.dns.name: invalid DNS name \"\": must not be empty; e.g. orders.internal or _http._tcp.orders.internal",
    ),
    (
        "
        services:
          - name: s
            discovery:
              dns:
                name: orders.internal
                port: 80
                refresh: 0s
                maxTtl: 0s
        ",
        "t.yaml:7:18: services[0].discovery.dns.refresh: must be greater than 0, e.g. 5s\n\
         t.yaml:8:17: services[0].discovery.dns.maxTtl: must be greater than 0, e.g. 60s",
    ),
    (
        "
        services:
          - name: s
            discovery:
              dns:
                name: orders.internal
                port: 80
                refresh: 2m
        ",
        "t.yaml:7:18: services[0].discovery.dns.refresh: must not exceed maxTtl (1m), got 2m",
    ),
    (
        "
        services:
          - name: s
            endpoints: ['10.0.0.1:80']
            discovery:
              dns: {name: a.b, port: 80, ttl: 5s}
        ",
        "t.yaml:5:34: services[0].discovery.dns.ttl: unknown field `ttl`, expected one of name, type, port, refresh, maxTtl",
    ),
];

#[test]
fn bad_discovery_settings_are_rejected_with_located_errors() {
    check_table(TABLE);
}

const VALID: &str = "
services:
  - name: registered
    discovery: {registry: {}}
  - name: by-a
    endpoints: ['10.0.0.9:80']
    discovery:
      dns: {name: orders.internal, port: 8080}
  - name: by-srv
    discovery:
      dns:
        name: _http._tcp.orders.internal.
        type: SRV
        refresh: 1s
        maxTtl: 30s
";

#[test]
fn discovery_allows_services_without_static_endpoints() {
    let config = parse_str(VALID, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let [registered, by_a, by_srv] = &config.services[..] else {
        panic!("three services");
    };
    assert!(registered.endpoints.is_empty());
    let d = registered.discovery.as_ref().unwrap();
    assert!(d.registry.is_some() && d.dns.is_none());

    let dns = by_a.discovery.as_ref().unwrap().dns.as_ref().unwrap();
    assert_eq!(
        (
            dns.record_type,
            dns.port,
            dns.refresh.get().as_secs(),
            dns.max_ttl.get().as_secs()
        ),
        (DnsRecordType::A, Some(8080), 5, 60),
        "defaults"
    );
    assert_eq!(by_a.endpoints.len(), 1);

    let dns = by_srv.discovery.as_ref().unwrap().dns.as_ref().unwrap();
    assert_eq!((dns.record_type, dns.port), (DnsRecordType::SRV, None));
    // max(refresh, min(ttl, maxTtl))
    let s = std::time::Duration::from_secs;
    assert_eq!(dns.reresolve_after(s(0)), s(1));
    assert_eq!(dns.reresolve_after(s(10)), s(10));
    assert_eq!(dns.reresolve_after(s(3600)), s(30));
}

#[test]
fn standalone_gateway_is_warned_that_it_does_not_discover() {
    let src = dedent(VALID);
    let config = parse_str(&src, "t.yaml").unwrap();
    let warnings: Vec<String> = meshgate_config::warnings(&config, &src, "t.yaml")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(
        warnings[0].starts_with("t.yaml:3:16: services[0].discovery: service \"registered\": discovery is done by a control plane"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].ends_with("serves no endpoints: requests to it get 503"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].ends_with("serves only its static endpoints"),
        "{}",
        warnings[1]
    );
}
