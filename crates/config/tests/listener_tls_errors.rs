//! Bad `listeners[].tls` and `listeners[].httpsRedirect` settings, and the exact
//! errors they produce. (Files are not read by validation: see docs/tls.md.)

#[macro_use]
mod common;

use common::check_table;

const TABLE: &[(&str, &str)] = &[
    (
        "
        listeners:
          - {name: l, address: \"127.0.0.1:0\", protocol: HTTPS, tls: {certificates: []}}
        ",
        "t.yaml:2:76: listeners[0].tls.certificates: needs at least one certificate ({certFile, keyFile})",
    ),
    (
        "
        listeners:
          - name: l
            address: \"127.0.0.1:0\"
            protocol: HTTPS
            tls:
              certificates:
                - {certFile: a.crt, keyFile: \"\", hostnames: [a.test, \"*.a.test\", \"b..test\", A.test]}
                - {certFile: \" \", keyFile: b.key, hostnames: [a.test, \"x.*.test\"]}
              alpn: [h2, http/1.1, h2]
              clientAuth: {caFile: \"\"}
              handshakeTimeout: 0s
        ",
        "t.yaml:7:38: listeners[0].tls.certificates[0].keyFile: must not be empty\n\
         t.yaml:7:74: listeners[0].tls.certificates[0].hostnames[2]: invalid hostname \"b..test\": empty label (leading, trailing or doubled \".\"); expected a DNS name such as api.example.com or *.example.com\n\
         t.yaml:7:85: listeners[0].tls.certificates[0].hostnames[3]: \"A.test\" is listed twice\n\
         t.yaml:8:22: listeners[0].tls.certificates[1].certFile: must not be empty\n\
         t.yaml:8:55: listeners[0].tls.certificates[1].hostnames[0]: \"a.test\" is already served by certificates[0]\n\
         t.yaml:8:63: listeners[0].tls.certificates[1].hostnames[1]: invalid hostname \"x.*.test\": a wildcard is only allowed as a single leading \"*.\"; expected a DNS name such as api.example.com or *.example.com\n\
         t.yaml:9:28: listeners[0].tls.alpn[2]: h2 is listed twice\n\
         t.yaml:10:28: listeners[0].tls.clientAuth.caFile: must not be empty\n\
         t.yaml:11:25: listeners[0].tls.handshakeTimeout: must be greater than 0",
    ),
    (
        "
        listeners:
          - {name: l, address: \"127.0.0.1:0\", protocol: HTTPS, tls: {certificates: [{certFile: a, keyFile: b}], alpn: []}}
        ",
        "t.yaml:2:111: listeners[0].tls.alpn: must name at least one protocol: h2, http/1.1",
    ),
    (
        "
        listeners:
          - {name: l, address: \"127.0.0.1:0\", protocol: HTTPS, tls: {certificates: [{certFile: a, keyFile: b}], minVersion: TLS1_1}}
        ",
        "t.yaml:2:117: listeners[0].tls.minVersion: unknown variant `TLS1_1`, expected one of TLS1_2, TLS1_3",
    ),
    (
        "
        listeners:
          - {name: l, address: \"127.0.0.1:0\", protocol: HTTPS, tls: {certificates: [{certFile: a, keyFile: b}], alpn: [h3]}}
        ",
        "t.yaml:2:112: listeners[0].tls.alpn[0]: unknown variant `h3`, expected one of h2, http/1.1",
    ),
    (
        "
        listeners:
          - {name: l, address: \"127.0.0.1:0\", protocol: HTTPS, tls: {certificates: [{certFile: a, keyFile: b}], clientAuth: {caFile: ca.pem, mode: Maybe}}}
        ",
        "t.yaml:2:140: listeners[0].tls.clientAuth.mode: unknown variant `Maybe`, expected one of Require, Optional",
    ),
    (
        "
        listeners:
          - {name: l, address: \"127.0.0.1:0\", protocol: HTTPS, tls: {certificates: [{certFile: a, keyFile: b, sni: x}]}}
        ",
        "t.yaml:2:103: listeners[0].tls.certificates[0].sni: unknown field `sni`, expected one of certFile, keyFile, hostnames",
    ),
    (
        "
        listeners:
          - {name: l, address: \"127.0.0.1:0\", httpsRedirect: {port: 0}}
        ",
        "t.yaml:2:55: listeners[0].httpsRedirect.port: invalid value: integer `0`, expected a nonzero u16",
    ),
];

#[test]
fn listener_tls_errors() {
    check_table(TABLE);
}
