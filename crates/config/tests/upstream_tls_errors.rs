//! Bad `services[].tls`, `protocol` and `http2` settings, and the exact errors they
//! produce. Whether the files exist is checked when the gateway applies the config
//! (see crates/core/tests/upstream_tls.rs), not here.

#[macro_use]
mod common;

use common::check_table;

const TABLE: &[(&str, &str)] = &[
    (
        "
        services:
          - {name: s, endpoints: [\"10.0.0.1:443\"], tls: {}}
        ",
        "t.yaml:2:49: services[0].tls: set caFile (a PEM bundle of the CAs that issue the endpoints' certificates), or insecureSkipVerify: true for development",
    ),
    (
        "
        services:
          - name: s
            endpoints: [\"10.0.0.1:443\"]
            tls: {caFile: ca.pem, insecureSkipVerify: true, clientCertFile: c.pem}
        ",
        "t.yaml:4:47: services[0].tls.insecureSkipVerify: not allowed with caFile: either verify against caFile or skip verification\n\
         t.yaml:4:69: services[0].tls.clientCertFile: needs clientKeyFile: the private key of the client certificate",
    ),
    (
        "
        services:
          - name: s
            endpoints: [\"10.0.0.1:443\"]
            tls: {caFile: \"\", clientKeyFile: k.pem, serverName: \"bad_name.test\"}
        ",
        "t.yaml:4:19: services[0].tls.caFile: must not be empty\n\
         t.yaml:4:38: services[0].tls.clientKeyFile: needs clientCertFile: the certificate of the client key\n\
         t.yaml:4:57: services[0].tls.serverName: invalid hostname \"bad_name.test\": label \"bad_name\" may only contain letters, digits and \"-\"; expected a DNS name such as api.example.com or an IP address",
    ),
    (
        "
        services:
          - {name: s, endpoints: [\"10.0.0.1:443\"], tls: {caFile: ca.pem, verify: false}}
        ",
        "t.yaml:2:66: services[0].tls.verify: unknown field `verify`, expected one of caFile, serverName, clientCertFile, clientKeyFile, insecureSkipVerify",
    ),
    (
        "
        services:
          - {name: s, endpoints: [\"10.0.0.1:80\"], protocol: HTTP3}
        ",
        "t.yaml:2:53: services[0].protocol: unknown variant `HTTP3`, expected one of HTTP1, HTTP2",
    ),
    (
        "
        services:
          - name: s
            endpoints: [\"10.0.0.1:80\"]
            protocol: HTTP2
            http2: {initialStreamWindowSize: 1000}
        ",
        "t.yaml:5:38: services[0].http2.initialStreamWindowSize: window size 1000 is out of range 65535-2147483647",
    ),
    (
        "
        services:
          - name: s
            endpoints: [\"10.0.0.1:80\"]
            protocol: HTTP2
            http2: {initialConnectionWindowSize: 4294967296}
        ",
        "t.yaml:5:42: services[0].http2.initialConnectionWindowSize: window size 4294967296 is out of range 65535-2147483647",
    ),
    (
        "
        services:
          - name: s
            endpoints: [\"10.0.0.1:80\"]
            http2: {maxConcurrentStreams: 10}
        ",
        "t.yaml:4:13: services[0].http2.maxConcurrentStreams: unknown field `maxConcurrentStreams`, expected one of initialStreamWindowSize, initialConnectionWindowSize, keepAliveInterval, keepAliveTimeout",
    ),
];

#[test]
fn upstream_tls_errors_are_exact() {
    check_table(TABLE);
}

#[test]
fn valid_upstream_tls_and_http2_settings_parse() {
    let config = meshgate_config::parse_str(
        "services:
  - name: a
    endpoints: [\"api.internal:8443\", \"10.0.0.7:8443\"]
    protocol: HTTP2
    http2: {initialStreamWindowSize: 65535, keepAliveInterval: 10s}
    tls:
      caFile: /etc/meshgate/upstream-ca.pem
      serverName: api.internal
      clientCertFile: /etc/meshgate/gw.crt
      clientKeyFile: /etc/meshgate/gw.key
  - name: b
    endpoints: [\"[::1]:8443\"]
    tls: {insecureSkipVerify: true, serverName: \"::1\"}
  - name: c
    endpoints: [\"10.0.0.8:80\"]
",
        "ok.yaml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let a = &config.services[0];
    assert_eq!(a.protocol, meshgate_config::UpstreamProtocol::HTTP2);
    let h2 = a.http2.as_ref().unwrap();
    assert_eq!(h2.initial_stream_window_size, 65535);
    assert_eq!(h2.initial_connection_window_size, 4 << 20);
    assert_eq!(h2.keep_alive_timeout.get().as_secs(), 20);
    let tls = a.tls.as_ref().unwrap();
    assert_eq!(tls.server_name.as_deref(), Some("api.internal"));
    assert!(!tls.insecure_skip_verify);
    assert!(
        config.services[1]
            .tls
            .as_ref()
            .unwrap()
            .insecure_skip_verify
    );
    assert_eq!(
        config.services[2].protocol,
        meshgate_config::UpstreamProtocol::HTTP1
    );
    assert!(config.services[2].tls.is_none());
}
