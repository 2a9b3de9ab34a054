//! Bad `mesh` sections and the exact errors they produce; and a good one, with its
//! defaults.

#[macro_use]
mod common;

use common::{check_table, dedent};
use meshgate_config::{MeshMtlsMode, MeshProtocol, parse_str};

const TABLE: &[(&str, &str)] = &[
    (
        "
        mesh:
          trustDomain: Cluster.Local
          services: []
        ",
        "t.yaml:2:16: mesh.trustDomain: \"Cluster.Local\" contains 'C': only lower-case letters, digits, \".\", \"-\" and \"_\"; expected a name such as cluster.local or example.org",
    ),
    (
        "
        mesh: {trustDomain: \"a..b\"}
        ",
        "t.yaml:1:21: mesh.trustDomain: \"a..b\" has an empty label; expected a name such as cluster.local or example.org",
    ),
    (
        "
        mesh:
          services:
            - {name: Orders, namespace: shop.eu, ports: [{port: 80}]}
            - {name: \"\", ports: [{port: 80}]}
        ",
        "t.yaml:3:14: mesh.services[0].name: \"Orders\" may only contain lower-case letters, digits and \"-\"; expected a DNS label such as orders or billing-v2\n\
         t.yaml:3:33: mesh.services[0].namespace: \"shop.eu\" may only contain lower-case letters, digits and \"-\"; expected a DNS label such as orders or billing-v2\n\
         t.yaml:4:14: mesh.services[1].name: must not be empty; expected a DNS label such as orders or billing-v2",
    ),
    (
        "
        mesh:
          services:
            - {name: a, ports: []}
            - {name: b, ports: [{port: 0}, {port: 80}, {port: 80, protocol: TCP}]}
        ",
        "t.yaml:3:24: mesh.services[0].ports: must list at least one port, e.g. [{port: 8080, protocol: HTTP}]\n\
         t.yaml:4:32: mesh.services[1].ports[0].port: must be 1-65535\n\
         t.yaml:4:55: mesh.services[1].ports[2].port: port 80 is already declared at mesh.services[1].ports[1]",
    ),
    (
        "
        mesh:
          services:
            - {name: a, ports: [{port: 80}]}
            - {name: a, namespace: other, ports: [{port: 80}]}
        ",
        "t.yaml:4:14: mesh.services[1].name: service \"a\" is already declared at mesh.services[0]: names are unique across the mesh (sidecars register under the name alone)",
    ),
    (
        "
        mesh:
          services:
            - {name: a, ports: [{port: 80, protocol: UDP}]}
        ",
        "t.yaml:3:46: mesh.services[0].ports[0].protocol: unknown variant `UDP`, expected one of HTTP, HTTP2, GRPC, TCP",
    ),
    (
        "
        mesh:
          services:
            - {name: a, ports: [{port: 80}], mtls: OFF}
        ",
        "t.yaml:3:44: mesh.services[0].mtls: unknown variant `OFF`, expected one of STRICT, PERMISSIVE",
    ),
    (
        "
        mesh:
          services:
            - {name: a, ports: [{port: 80}], weight: 2}
        ",
        "t.yaml:3:38: mesh.services[0].weight: unknown field `weight`, expected one of name, namespace, ports, mtls, defaultDeny",
    ),
    (
        "
        mesh:
          services:
            - {name: a}
        ",
        "t.yaml:3:8: mesh.services[0]: missing field `ports`",
    ),
];

#[test]
fn table_of_bad_mesh_sections() {
    check_table(TABLE);
}

#[test]
fn good_mesh_parses_with_defaults() {
    let src = dedent(
        "
        mesh:
          services:
            - name: orders
              ports: [{port: 8080}, {port: 9090, protocol: GRPC}, {port: 6379, protocol: TCP}]
            - name: billing
              namespace: money
              ports: [{port: 80, protocol: HTTP2}]
              mtls: PERMISSIVE
              defaultDeny: true
        ",
    );
    let config = parse_str(&src, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let mesh = config.mesh.as_ref().unwrap();
    assert_eq!(mesh.trust_domain, "cluster.local");
    let orders = mesh.service("orders", "default").unwrap();
    assert_eq!(orders.mtls, MeshMtlsMode::STRICT);
    assert!(!orders.default_deny);
    assert_eq!(orders.ports[0].protocol, MeshProtocol::HTTP);
    assert_eq!(orders.tcp_ports().collect::<Vec<_>>(), [6379]);
    assert_eq!(orders.http_protocol(), Some(MeshProtocol::HTTP));
    let billing = mesh.service("billing", "money").unwrap();
    assert_eq!(billing.mtls, MeshMtlsMode::PERMISSIVE);
    assert!(billing.default_deny);
    assert_eq!(
        mesh.spiffe_id("money", "billing"),
        "spiffe://cluster.local/ns/money/sa/billing"
    );
    assert!(mesh.service("billing", "default").is_none());
    // No mesh section: none.
    let plain = parse_str("listeners: []\n", "t.yaml").unwrap();
    assert!(plain.mesh.is_none());
}
