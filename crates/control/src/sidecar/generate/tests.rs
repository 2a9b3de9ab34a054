use std::collections::BTreeMap;

use meshgate_config::{ListenerProtocol, MeshTlsMode, UpstreamProtocol, parse_str};

use super::*;
use crate::sidecar::ports::{Ports, localize};
use crate::sidecar::stream::snapshot_of;
use crate::store::Instance;

const DOC: &str = "
mesh:
  trustDomain: example.org
  services:
    - name: a
      ports: [{port: 8080}]
    - name: b
      ports: [{port: 9090, protocol: HTTP2}, {port: 6379, protocol: TCP}, {port: 5432, protocol: TCP}]
      mtls: PERMISSIVE
      defaultDeny: true
    - name: c
      namespace: other
      ports: [{port: 50051, protocol: GRPC}]
    - name: db
      ports: [{port: 27017, protocol: TCP}]
  authorization:
    - service: b
      rules:
        - {name: a-reads, action: ALLOW, from: [{service: a}], to: [{methods: [GET]}]}
        - {name: no-c, action: DENY, from: [{service: c, namespace: other}]}
";

fn doc() -> Config {
    parse_str(DOC, "t.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn instances() -> Instances {
    let mut all = Instances::new();
    let mut b = BTreeMap::new();
    for (name, address) in [("b-1", "10.0.0.1:15006"), ("b-2", "10.0.0.2:16000")] {
        b.insert(
            name.to_owned(),
            Instance {
                service: "b".into(),
                instance: name.into(),
                address: address.into(),
                weight: 1,
                draining: false,
            },
        );
    }
    all.insert("b".into(), b);
    all
}

#[test]
fn sidecar_of_a_gets_inbound_and_routes_to_every_mesh_service() {
    let c = sidecar_config(&doc(), "a", "default", &instances()).unwrap();
    let names: Vec<_> = c.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "inbound",
            "outbound",
            "outbound-tcp-b.default-6379",
            "outbound-tcp-b.default-5432",
            "outbound-tcp-db.default-27017",
        ]
    );
    let inbound = &c.listeners[0];
    assert_eq!(inbound.address.to_string(), "0.0.0.0:15006");
    // No rule aims at a, and it does not deny by default.
    assert!(inbound.mesh_authorization.is_none());
    assert_eq!(inbound.mesh.as_ref().unwrap().mode, MeshTlsMode::STRICT);
    assert_eq!(inbound.workload.as_deref(), Some("a.default"));
    assert_eq!(c.listeners[1].address.to_string(), "127.0.0.1:15001");
    let tcp: Vec<_> = c.listeners[2..]
        .iter()
        .map(|l| {
            (
                l.protocol,
                l.address.port(),
                l.l4.as_ref().unwrap().service.clone(),
            )
        })
        .collect();
    assert_eq!(
        tcp,
        [
            (ListenerProtocol::TCP, 15002, Some("b.default:6379".into())),
            (ListenerProtocol::TCP, 15003, Some("b.default:5432".into())),
            (
                ListenerProtocol::TCP,
                15004,
                Some("db.default:27017".into())
            ),
        ]
    );

    let route = |n: &str| c.routes.iter().find(|r| r.name == n).unwrap();
    assert_eq!(route("inbound").backend_refs[0].name, "local-app");
    assert_eq!(
        route("outbound-b.default").hostnames,
        [
            "b",
            "b.default",
            "b.default.svc",
            "b.default.svc.example.org"
        ]
    );
    // Another namespace: no short name.
    assert_eq!(
        route("outbound-c.other").hostnames,
        ["c.other", "c.other.svc", "c.other.svc.example.org"]
    );
    let retry = route("outbound-c.other").retry.as_ref().unwrap();
    assert_eq!(retry.attempts, 2);
    assert!(retry.retry_on.contains(&meshgate_config::RetryOn::Grpc(14)));
    // TCP-only services have no HTTP route.
    assert!(c.routes.iter().all(|r| r.name != "outbound-db.default"));

    let service = |n: &str| c.services.iter().find(|s| s.name == n).unwrap();
    let app = service("local-app");
    assert_eq!(app.endpoints[0].address, "127.0.0.1:8080");
    assert_eq!(app.protocol, UpstreamProtocol::HTTP1);
    let b = service("b.default");
    let addrs: Vec<_> = b.endpoints.iter().map(|e| e.address.as_str()).collect();
    assert_eq!(addrs, ["10.0.0.1:15006", "10.0.0.2:16000"]);
    assert_eq!(
        b.mesh.as_ref().unwrap().spiffe_id,
        "spiffe://example.org/ns/default/sa/b"
    );
    assert_eq!(b.protocol, UpstreamProtocol::HTTP2);
    assert!(b.outlier_detection.is_some());
    // The second TCP port of b: each sidecar's inbound port + 2.
    let pg = service("b.default:5432");
    let addrs: Vec<_> = pg.endpoints.iter().map(|e| e.address.as_str()).collect();
    assert_eq!(addrs, ["10.0.0.1:15008", "10.0.0.2:16002"]);
    assert!(pg.mesh.is_some());
    // Nobody registered for c yet: no endpoint, which the config allows.
    assert!(service("c.other").endpoints.is_empty());
}

#[test]
fn sidecar_of_b_serves_its_tcp_ports_and_mtls_mode() {
    let c = sidecar_config(&doc(), "b", "default", &instances()).unwrap();
    let inbound = &c.listeners[0];
    assert_eq!(inbound.mesh.as_ref().unwrap().mode, MeshTlsMode::PERMISSIVE);
    let authz = inbound.mesh_authorization.as_ref().unwrap();
    assert_eq!(authz.default_action, meshgate_config::MeshAuthzAction::DENY);
    let rules: Vec<_> = authz.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(rules, ["a-reads", "no-c"]);
    // A connection has no HTTP operation: only identity rules reach TCP ports.
    let tcp = c
        .listeners
        .iter()
        .find(|l| l.name == "inbound-tcp-6379")
        .unwrap();
    let rules: Vec<_> = tcp
        .mesh_authorization
        .as_ref()
        .unwrap()
        .rules
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(rules, ["no-c"]);
    let l = c
        .listeners
        .iter()
        .find(|l| l.name == "inbound-tcp-5432")
        .unwrap();
    assert_eq!(l.address.to_string(), "0.0.0.0:15008");
    assert_eq!(
        l.l4.as_ref().unwrap().service.as_deref(),
        Some("local-app-tcp-5432")
    );
    let app = c.services.iter().find(|s| s.name == "local-app").unwrap();
    assert_eq!(app.endpoints[0].address, "127.0.0.1:9090");
    assert_eq!(app.protocol, UpstreamProtocol::HTTP2);
    let tcp_app = c
        .services
        .iter()
        .find(|s| s.name == "local-app-tcp-5432")
        .unwrap();
    assert_eq!(tcp_app.endpoints[0].address, "127.0.0.1:5432");
}

#[test]
fn a_tcp_only_service_has_no_http_inbound() {
    let c = sidecar_config(&doc(), "db", "default", &Instances::new()).unwrap();
    assert!(c.listeners.iter().all(|l| l.name != "inbound"));
    assert!(c.listeners.iter().any(|l| l.name == "inbound-tcp-27017"));
    assert!(c.routes.iter().all(|r| r.name != "inbound"));
}

#[test]
fn unknown_services_and_documents_without_mesh_are_errors() {
    let err = sidecar_config(&doc(), "a", "other", &Instances::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "service \"a\" in namespace \"other\" is not declared in mesh.services"
    );
    let plain = parse_str("listeners: []\n", "t.yaml").unwrap();
    assert_eq!(
        sidecar_config(&plain, "a", "default", &Instances::new()),
        Err(GenerateError::NoMesh)
    );
}

#[test]
fn the_snapshot_opens_to_the_generated_config() {
    let c = sidecar_config(&doc(), "a", "default", &instances()).unwrap();
    let snapshot = snapshot_of(7, &c).unwrap();
    assert!(snapshot.version.starts_with("7-"), "{}", snapshot.version);
    let opened = crate::snapshot::open(&snapshot).unwrap_or_else(|e| {
        panic!("{e}\n{}", snapshot.config_yaml);
    });
    assert_eq!(opened, c);
    // JSON, read by serde_json alone (the parser's fast path, no YAML code run).
    let direct: Config = serde_json::from_str(&snapshot.config_yaml).unwrap();
    assert_eq!(direct, c);
    for service in ["b", "db"] {
        let c = sidecar_config(&doc(), service, "default", &instances()).unwrap();
        let snapshot = snapshot_of(7, &c).unwrap();
        let opened = crate::snapshot::open(&snapshot)
            .unwrap_or_else(|e| panic!("{service}: {e}\n{}", snapshot.config_yaml));
        assert_eq!(opened, c, "{service}");
    }
    // Same content, same version; other endpoints, another version.
    assert_eq!(snapshot_of(7, &c).unwrap().version, snapshot.version);
    let fewer = sidecar_config(&doc(), "a", "default", &Instances::new()).unwrap();
    assert_ne!(snapshot_of(7, &fewer).unwrap().version, snapshot.version);
}

#[test]
fn localize_moves_listeners_and_the_app() {
    let mut c = sidecar_config(&doc(), "b", "default", &instances()).unwrap();
    let ports = Ports {
        inbound: 20000,
        outbound: 30000,
        app: Some(7000),
    };
    localize(&mut c, &ports).unwrap();
    let port = |n: &str| {
        c.listeners
            .iter()
            .find(|l| l.name == n)
            .unwrap()
            .address
            .port()
    };
    assert_eq!(port("inbound"), 20000);
    assert_eq!(port("inbound-tcp-6379"), 20001);
    assert_eq!(port("inbound-tcp-5432"), 20002);
    assert_eq!(port("outbound"), 30000);
    assert_eq!(port("outbound-tcp-db.default-27017"), 30003);
    let app = c.services.iter().find(|s| s.name == "local-app").unwrap();
    assert_eq!(app.endpoints[0].address, "127.0.0.1:7000");

    let mut c = sidecar_config(&doc(), "b", "default", &instances()).unwrap();
    let too_high = Ports {
        inbound: 65535,
        ..Ports::default()
    };
    let err = localize(&mut c, &too_high).unwrap_err();
    assert_eq!(err.listener, "inbound-tcp-6379");
}
