//! Bad `listeners[].mesh` and `services[].mesh` settings, and the exact errors
//! they produce. (Whether a workload identity is installed is checked when the
//! gateway applies the config: see crates/core/tests/mesh_tls.rs.)

#[macro_use]
mod common;

use common::check_table;

const TABLE: &[(&str, &str)] = &[
    (
        with_s!(
            "
        listeners:
          - {name: l, address: \"127.0.0.1:0\", protocol: TLS, l4: {service: s}, mesh: {}}
        "
        ),
        "t.yaml:2:78: listeners[0].mesh: only allowed when protocol is HTTP or TCP (protocol is TLS): a mesh listener terminates mTLS itself, with the workload identity",
    ),
    (
        with_s!(
            "
        listeners:
          - {name: l, address: \"127.0.0.1:0\", httpsRedirect: {}, mesh: {mode: PERMISSIVE}}
        "
        ),
        "t.yaml:2:64: listeners[0].mesh: not allowed with httpsRedirect: mesh clients are not redirected",
    ),
    (
        with_s!(
            "
        listeners:
          - {name: l, address: \"127.0.0.1:0\", mesh: {mode: MUTUAL}}
        "
        ),
        "t.yaml:2:52: listeners[0].mesh.mode: unknown variant `MUTUAL`, expected one of STRICT, PERMISSIVE",
    ),
    (
        with_s!(
            "
        listeners:
          - {name: l, address: \"127.0.0.1:0\", mesh: {allowedPeers: []}}
        "
        ),
        "t.yaml:2:60: listeners[0].mesh.allowedPeers: must list at least one SPIFFE ID; omit it to allow every peer of the trust bundle",
    ),
    (
        with_s!(
            "
        listeners:
          - name: l
            address: \"127.0.0.1:0\"
            mesh:
              allowedPeers:
                - spiffe://example.org/ns/a/sa/web
                - http://example.org/web
                - spiffe://Example.org/ns/a/*
                - spiffe://example.org/ns//sa/x
                - spiffe://example.org/ns/a/sa/web
        "
        ),
        "t.yaml:7:11: listeners[0].mesh.allowedPeers[1]: invalid SPIFFE ID \"http://example.org/web\": expected spiffe://<trust domain>/<path>, e.g. spiffe://example.org/ns/shop/sa/web, or a prefix ending in *, e.g. spiffe://example.org/ns/shop/*\n\
         t.yaml:8:11: listeners[0].mesh.allowedPeers[2]: invalid SPIFFE ID \"spiffe://Example.org/ns/a/*\": trust domain \"Example.org\" may only contain lower-case letters, digits, \".\", \"-\" and \"_\"; expected spiffe://<trust domain>/<path>, e.g. spiffe://example.org/ns/shop/sa/web, or a prefix ending in *, e.g. spiffe://example.org/ns/shop/*\n\
         t.yaml:9:11: listeners[0].mesh.allowedPeers[3]: invalid SPIFFE ID \"spiffe://example.org/ns//sa/x\": empty, \".\" or \"..\" path segment; expected spiffe://<trust domain>/<path>, e.g. spiffe://example.org/ns/shop/sa/web, or a prefix ending in *, e.g. spiffe://example.org/ns/shop/*\n\
         t.yaml:10:11: listeners[0].mesh.allowedPeers[4]: \"spiffe://example.org/ns/a/sa/web\" is already listed at listeners[0].mesh.allowedPeers[0]",
    ),
    (
        with_s!(
            "
        listeners:
          - {name: l, address: \"127.0.0.1:0\", mesh: {allowPeers: [x]}}
        "
        ),
        "t.yaml:2:46: listeners[0].mesh.allowPeers: unknown field `allowPeers`, expected one of mode, allowedPeers",
    ),
    (
        "
        services:
          - name: s
            endpoints: [\"10.0.0.1:443\"]
            tls: {insecureSkipVerify: true}
            mesh: {spiffeId: \"spiffe://example.org\"}
        ",
        "t.yaml:5:11: services[0].mesh: not allowed with tls: mesh mTLS uses the workload identity, not files\n\
         t.yaml:5:22: services[0].mesh.spiffeId: invalid SPIFFE ID \"spiffe://example.org\": no path after the trust domain; expected spiffe://<trust domain>/<path>, e.g. spiffe://example.org/ns/shop/sa/web, or a prefix ending in *, e.g. spiffe://example.org/ns/shop/*",
    ),
    (
        "
        services:
          - {name: s, endpoints: [\"10.0.0.1:443\"], mesh: {}}
        ",
        "t.yaml:2:50: services[0].mesh: missing field `spiffeId`",
    ),
];

#[test]
fn mesh_tls_errors_are_exact() {
    check_table(TABLE);
}

#[test]
fn valid_mesh_settings_parse_with_their_defaults() {
    let config = meshgate_config::parse_str(
        "listeners:
  - {name: in, address: \"127.0.0.1:15006\", mesh: {}}
  - name: migrating
    address: \"127.0.0.1:15007\"
    mesh: {mode: PERMISSIVE, allowedPeers: [\"spiffe://example.org/ns/shop/*\"]}
  - {name: db, address: \"127.0.0.1:15008\", protocol: TCP, l4: {service: app}, mesh: {}}
services:
  - {name: app, endpoints: [\"127.0.0.1:8080\"]}
  - name: orders
    endpoints: [\"10.0.0.7:15006\"]
    protocol: HTTP2
    mesh: {spiffeId: \"spiffe://example.org/ns/shop/sa/orders\"}
",
        "ok.yaml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    use meshgate_config::MeshTlsMode;
    let strict = config.listeners[0].mesh.as_ref().unwrap();
    assert_eq!(strict.mode, MeshTlsMode::STRICT);
    assert!(strict.allowed_peers.is_none());
    let permissive = config.listeners[1].mesh.as_ref().unwrap();
    assert_eq!(permissive.mode, MeshTlsMode::PERMISSIVE);
    assert_eq!(
        permissive.allowed_peers.as_deref(),
        Some(&["spiffe://example.org/ns/shop/*".to_owned()][..])
    );
    assert!(config.listeners[2].mesh.is_some());
    assert!(config.services[0].mesh.is_none());
    assert_eq!(
        config.services[1].mesh.as_ref().unwrap().spiffe_id,
        "spiffe://example.org/ns/shop/sa/orders"
    );
}
