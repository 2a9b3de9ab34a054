//! Bad `listeners[].meshAuthorization`, `listeners[].workload` and
//! `mesh.authorization` settings, and the exact errors they produce.

#[macro_use]
mod common;

use common::check_table;

const TABLE: &[(&str, &str)] = &[
    (
        "
        listeners:
          - name: l
            address: \"127.0.0.1:0\"
            workload: \" \"
            meshAuthorization:
              defaultAction: DENY
              rules:
                - {name: \"\", action: ALLOW}
                - {name: a, action: ALLOW, from: [{}]}
                - {name: a, action: DENY, from: [{spiffeId: x}, {service: b, spiffeIdPrefix: \"spiffe://td/\"}]}
                - {name: c, action: ALLOW, from: [{service: Orders, namespace: \"-x\"}, {spiffeIdPrefix: \"spiffe://\"}]}
        ",
        "t.yaml:4:15: listeners[0].workload: \" \" is not a service name: expected name.namespace, e.g. orders.default\n\
         t.yaml:8:18: listeners[0].meshAuthorization.rules[0].name: must not be empty\n\
         t.yaml:9:43: listeners[0].meshAuthorization.rules[1].from[0]: must name exactly one of spiffeId, spiffeIdPrefix, service (with an optional namespace) or namespace\n\
         t.yaml:10:18: listeners[0].meshAuthorization.rules[2].name: rule \"a\" is already defined at [1]\n\
         t.yaml:10:53: listeners[0].meshAuthorization.rules[2].from[0].spiffeId: \"x\" is not a SPIFFE ID: expected spiffe://<trust-domain>/…\n\
         t.yaml:10:57: listeners[0].meshAuthorization.rules[2].from[1]: must name exactly one of spiffeId, spiffeIdPrefix, service (with an optional namespace) or namespace\n\
         t.yaml:11:53: listeners[0].meshAuthorization.rules[3].from[0].service: invalid name \"Orders\": expected a DNS label (a-z, 0-9, inner -, at most 63)\n\
         t.yaml:11:72: listeners[0].meshAuthorization.rules[3].from[0].namespace: invalid name \"-x\": expected a DNS label (a-z, 0-9, inner -, at most 63)\n\
         t.yaml:11:96: listeners[0].meshAuthorization.rules[3].from[1].spiffeIdPrefix: \"spiffe://\" is not a SPIFFE ID: expected spiffe://<trust-domain>/…",
    ),
    (
        "
        listeners:
          - name: l
            address: \"127.0.0.1:0\"
            meshAuthorization:
              rules:
                - name: ops
                  action: ALLOW
                  to:
                    - {methods: [get, POST], paths: [\"/a/*\", \"/b*\", \"x\", \"*\", \"/*\"], headers: {\"bad name\": v, x-ok: \"a\\nb\"}}
        ",
        "t.yaml:9:26: listeners[0].meshAuthorization.rules[0].to[0].methods[0]: invalid method \"get\": expected an uppercase token such as GET, POST or PURGE\n\
         t.yaml:9:54: listeners[0].meshAuthorization.rules[0].to[0].paths[1]: invalid path \"/b*\": \"*\" is only allowed alone or as a trailing \"/*\" (prefix match)\n\
         t.yaml:9:61: listeners[0].meshAuthorization.rules[0].to[0].paths[2]: invalid path \"x\": must start with \"/\"\n\
         t.yaml:9:100: listeners[0].meshAuthorization.rules[0].to[0].headers.bad name: invalid header name \"bad name\": expected a token of letters, digits and !#$%&'*+-.^_`|~ (RFC 9110)\n\
         t.yaml:9:109: listeners[0].meshAuthorization.rules[0].to[0].headers.x-ok: invalid header value: must not contain CR, LF or NUL characters",
    ),
    (
        "
        listeners:
          - {name: t, address: \"127.0.0.1:0\", protocol: TLS, l4: {service: s}, meshAuthorization: {rules: []}}
          - name: c
            address: \"127.0.0.1:0\"
            protocol: TCP
            l4: {service: s}
            meshAuthorization:
              rules: [{name: r, action: ALLOW, to: [{methods: [GET]}]}]
        services: [{name: s, endpoints: [\"10.0.0.1:80\"]}]
        ",
        "t.yaml:2:91: listeners[0].meshAuthorization: not allowed when protocol is TLS: a passthrough listener never sees the caller's certificate\n\
         t.yaml:8:44: listeners[1].meshAuthorization.rules[0].to: HTTP operations cannot be checked on a TCP listener: rules there match callers only",
    ),
    (
        "
        mesh:
          services: [{name: orders, ports: [{port: 8080}]}]
          authorization:
            - {service: orders, namespace: shop, rules: [{name: r, action: DENY, from: [{namespace: x}]}, {name: r, action: ALLOW}]}
        ",
        "t.yaml:4:17: mesh.authorization[0].service: no mesh service \"orders\" in namespace \"shop\" (declare it in mesh.services)\n\
         t.yaml:4:106: mesh.authorization[0].rules[1].name: rule \"r\" is already defined at [0]",
    ),
    (
        "
        listeners:
          - {name: l, address: \"127.0.0.1:0\", meshAuthorization: {defaultAction: MAYBE}}
        ",
        "t.yaml:2:74: listeners[0].meshAuthorization.defaultAction: unknown variant `MAYBE`, expected one of ALLOW, DENY",
    ),
    (
        "
        listeners:
          - {name: l, address: \"127.0.0.1:0\", meshAuthorization: {rules: [{name: r, action: ALLOW, from: [{sa: x}]}]}}
        ",
        "t.yaml:2:100: listeners[0].meshAuthorization.rules[0].from[0].sa: unknown field `sa`, expected one of spiffeId, spiffeIdPrefix, service, namespace",
    ),
];

#[test]
fn mesh_authz_errors() {
    check_table(TABLE);
}
