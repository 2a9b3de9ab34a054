//! The service registry end to end, over real gRPC with TLS: instances register
//! through `Registrar` with the control plane (embedded store in a temp dir), the
//! discovery publishes them, and a gateway fed by the control plane sends real
//! requests to them. An instance that stops heartbeating leaves after its TTL; one
//! deregistered with drain leaves the endpoints at once; registrations the token
//! does not allow, or that are malformed, are refused; and a registrar registers
//! again with a control plane that restarted and forgot it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshgate_control::client::{self, Backoff, Settings};
use meshgate_control::discovery::{self, Options as DiscoveryOptions};
use meshgate_control::proto::v1::registry_client::RegistryClient;
use meshgate_control::proto::v1::{LeaseRef, ProxyIdentity, Registration};
use meshgate_control::registrar::{Registrar, RegistrarError};
use meshgate_control::server::{ControlPlane, Options, Scope, Token, Tokens};
use meshgate_control::snapshot::Discovered;
use meshgate_control::store::embedded::EmbeddedStore;
use meshgate_control::store::{NewRevision, Store};
use meshgate_testkit::Backend;
use meshgate_testkit::certs::{Issued, TestCa};
use tokio::sync::watch;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

const ORDERS_TOKEN: &str = "registrar-orders";
const ANY_TOKEN: &str = "registrar-any";
const GATEWAY_TOKEN: &str = "gateway";
const PATIENCE: Duration = Duration::from_secs(30);

const DOC: &str = "accessLog: {path: 'off'}
listeners: [{name: web, address: '127.0.0.1:0'}]
routes:
  - name: r
    backendRefs: [{name: orders}]
services:
  - name: orders
    discovery: {registry: {}}
";

fn options() -> Options {
    let token = |name: &str, scope| Token {
        name: name.into(),
        secret: name.into(),
        scope,
    };
    Options {
        replica: "cp".into(),
        auto_rollback: None,
        tokens: Tokens(vec![
            token(
                ORDERS_TOKEN,
                Scope::Registrar {
                    services: vec!["orders".into()],
                },
            ),
            token(ANY_TOKEN, Scope::Registrar { services: vec![] }),
            token(
                GATEWAY_TOKEN,
                Scope::Proxy {
                    role: "gateway".into(),
                    services: vec![],
                },
            ),
        ]),
    }
}

/// A control plane on its own runtime (so killing it drops every connection, as
/// a dead process would) over a store in a temp dir.
struct Control {
    runtime: Option<tokio::runtime::Runtime>,
    store: Arc<dyn Store>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Control {
    /// Starts on `addr` (port 0: any), retrying while a killed predecessor lets
    /// go of the port.
    async fn start(ca: &TestCa, cert: &Issued, addr: SocketAddr) -> Control {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match Control::try_start(cert, addr) {
                Ok(c) => return c,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebinding {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!(
                    "cannot listen on {addr}: {e}; CA {}",
                    ca.ca_path().display()
                ),
            }
        }
    }

    fn try_start(cert: &Issued, addr: SocketAddr) -> std::io::Result<Control> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = match std::net::TcpListener::bind(addr) {
            Ok(l) => l,
            Err(e) => {
                runtime.shutdown_background();
                return Err(e);
            }
        };
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let dir = tempfile::tempdir()?;
        let (store, cp) = {
            let _in = runtime.enter();
            let store: Arc<dyn Store> =
                EmbeddedStore::open(dir.path(), 5).map_err(std::io::Error::other)?;
            let cp = ControlPlane::start(store.clone(), options());
            (store, cp)
        };
        let identity = Identity::from_pem(&cert.cert_pem, &cert.key_pem);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            if let Err(e) = cp.serve(listener, identity).await {
                eprintln!("control plane stopped: {e}");
            }
        });
        Ok(Control {
            runtime: Some(runtime),
            store,
            addr,
            _dir: dir,
        })
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    async fn commit(&self, yaml: &str) {
        let next = NewRevision {
            yaml: yaml.into(),
            source: "test".into(),
            note: String::new(),
        };
        self.store.commit(0, next).await.unwrap();
    }

    fn kill(&mut self) {
        if let Some(r) = self.runtime.take() {
            r.shutdown_background();
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.kill();
    }
}

fn registration(instance: &str, address: SocketAddr, ttl_seconds: u32) -> Registration {
    Registration {
        service: "orders".into(),
        instance: instance.into(),
        address: address.to_string(),
        weight: 1,
        ttl_seconds,
    }
}

async fn register(
    ca: &TestCa,
    cp: &Control,
    token: &str,
    r: Registration,
) -> Result<Registrar, RegistrarError> {
    Registrar::start(&cp.url(), ca.ca_pem().as_bytes(), token, r).await
}

fn addresses(d: &Discovered, service: &str) -> Vec<String> {
    d.get(service)
        .map(|e| e.iter().map(|e| e.address.clone()).collect())
        .unwrap_or_default()
}

/// Waits until the discovered endpoints of orders are `want` (sorted); returns
/// how long it took.
async fn until_orders(rx: &mut watch::Receiver<Arc<Discovered>>, want: &[SocketAddr]) -> Duration {
    let mut want: Vec<String> = want.iter().map(ToString::to_string).collect();
    want.sort();
    let started = Instant::now();
    let got = tokio::time::timeout(PATIENCE, rx.wait_for(|d| addresses(d, "orders") == want))
        .await
        .is_ok();
    assert!(
        got,
        "orders never became {want:?}; last: {:?}",
        addresses(&rx.borrow(), "orders")
    );
    started.elapsed()
}

fn certs() -> (TestCa, Issued) {
    let ca = TestCa::new("registry");
    let cert = ca.server_cert("control", &["localhost", "127.0.0.1"]);
    (ca, cert)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_instances_are_discovered_and_served_until_they_leave() {
    let (ca, cert) = certs();
    let cp = Control::start(&ca, &cert, "127.0.0.1:0".parse().unwrap()).await;
    cp.commit(DOC).await;
    let mut found = discovery::start_with(cp.store.clone(), DiscoveryOptions::default());
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;

    let reg_a = register(&ca, &cp, ORDERS_TOKEN, registration("a", a.addr, 1))
        .await
        .unwrap();
    let reg_b = register(&ca, &cp, ANY_TOKEN, registration("b", b.addr, 30))
        .await
        .unwrap();
    assert!(reg_a.lease().is_some() && reg_b.lease().is_some());
    until_orders(&mut found, &[a.addr, b.addr]).await;

    // A gateway fed by the control plane sends requests to both instances.
    let data = tempfile::tempdir().unwrap();
    let settings = Settings {
        control: cp.url(),
        ca_pem: ca.ca_pem().into_bytes(),
        token: GATEWAY_TOKEN.into(),
        identity: ProxyIdentity {
            role: "gateway".into(),
            node_id: "g1".into(),
            ..Default::default()
        },
        data_dir: data.path().to_owned(),
        build: "test".into(),
        backoff: Backoff {
            initial: Duration::from_millis(50),
            cap: Duration::from_millis(500),
        },
    };
    let fed = tokio::time::timeout(
        PATIENCE,
        client::start_gateway(settings, Arc::new(meshgate_core::filter::NoPolicies)),
    )
    .await
    .expect("gateway started in time")
    .expect("gateway settings are valid");
    let web = fed.gateway.local_addr("web").expect("listener bound");
    let served = |want: &'static [&'static str]| async move {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut seen = Vec::new();
            for _ in 0..6 {
                seen.push(get(web).await);
            }
            seen.sort();
            seen.dedup();
            if seen == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateway serves {seen:?}, not {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    served(&["a", "b"]).await;

    // a stops heartbeating (as if it crashed): it leaves after its 1 s TTL.
    drop(reg_a);
    let took = until_orders(&mut found, &[b.addr]).await;
    println!("instance without heartbeats removed after {took:?}");
    served(&["b"]).await;

    // b deregisters with drain (TTL 30 s): out of the endpoints at once, but
    // still known to the registry as draining until its lease ends.
    reg_b.deregister(true).await.unwrap();
    let took = until_orders(&mut found, &[]).await;
    assert!(took < Duration::from_secs(10), "drained in {took:?}");
    let instances = cp.store.registry().borrow().clone();
    assert!(instances["orders"]["b"].draining, "{instances:?}");
    served(&["503 no_healthy_upstream"]).await;
}

/// One request through the gateway: the backend's name, or the status and
/// error of a gateway answer.
async fn get(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let status = text.split(' ').nth(1).unwrap_or_default().to_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
    match json["backend"].as_str() {
        Some(b) => b.to_owned(),
        None => format!("{status} {}", json["error"].as_str().unwrap_or(body)),
    }
}

#[tokio::test]
async fn registrations_the_token_does_not_allow_or_that_are_malformed_are_refused() {
    let (ca, cert) = certs();
    let cp = Control::start(&ca, &cert, "127.0.0.1:0".parse().unwrap()).await;
    let addr: SocketAddr = "10.0.0.7:8080".parse().unwrap();
    let code = |r: Result<Registrar, RegistrarError>| match r {
        Err(RegistrarError::Refused(s)) => s.code(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("registered"),
    };

    let payments = Registration {
        service: "payments".into(),
        ..registration("p", addr, 10)
    };
    assert_eq!(
        code(register(&ca, &cp, ORDERS_TOKEN, payments.clone()).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(register(&ca, &cp, GATEWAY_TOKEN, payments.clone()).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(register(&ca, &cp, "nope", payments.clone()).await),
        Code::Unauthenticated
    );
    let r = register(&ca, &cp, ANY_TOKEN, payments)
        .await
        .expect("any service");
    r.deregister(false).await.unwrap();

    for bad in [
        registration("x", addr, 0),
        registration("x", addr, 301),
        Registration {
            address: "10.0.0.7".into(),
            ..registration("x", addr, 10)
        },
        Registration {
            address: "[fd00::7]:0".into(),
            ..registration("x", addr, 10)
        },
        Registration {
            instance: String::new(),
            ..registration("x", addr, 10)
        },
    ] {
        let what = format!("{bad:?}");
        assert_eq!(
            code(register(&ca, &cp, ORDERS_TOKEN, bad).await),
            Code::InvalidArgument,
            "{what}"
        );
    }
    assert!(
        cp.store.registry().borrow().is_empty(),
        "nothing was registered"
    );

    // Renewing a lease that does not exist: NOT_FOUND (the instance registers again).
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.ca_pem()));
    let channel = Endpoint::from_shared(cp.url())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw = RegistryClient::new(channel);
    let mut request = tonic::Request::new(LeaseRef { id: "gone".into() });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {ORDERS_TOKEN}").parse().unwrap(),
    );
    assert_eq!(
        raw.heartbeat(request).await.unwrap_err().code(),
        Code::NotFound
    );
    let mut request = tonic::Request::new(LeaseRef { id: "gone".into() });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {GATEWAY_TOKEN}").parse().unwrap(),
    );
    assert_eq!(
        raw.heartbeat(request).await.unwrap_err().code(),
        Code::PermissionDenied
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registrar_registers_again_with_a_restarted_control_plane() {
    let (ca, cert) = certs();
    let mut cp = Control::start(&ca, &cert, "127.0.0.1:0".parse().unwrap()).await;
    let addr: SocketAddr = "10.0.0.7:8080".parse().unwrap();
    let registrar = register(&ca, &cp, ORDERS_TOKEN, registration("x", addr, 1))
        .await
        .unwrap();
    let first = registrar.lease().expect("registered");
    let mut leases = registrar.leases();

    // A new control-plane process on the same address, with an empty registry.
    cp.kill();
    let cp = Control::start(&ca, &cert, cp.addr).await;
    let mut registry = cp.store.registry();
    let found = tokio::time::timeout(PATIENCE, registry.wait_for(|r| r.contains_key("orders")))
        .await
        .is_ok();
    assert!(found, "the instance never registered again");
    let again = tokio::time::timeout(
        PATIENCE,
        leases.wait_for(|l| l.as_ref().is_some_and(|l| *l != first)),
    )
    .await
    .expect("a new lease")
    .unwrap()
    .clone();
    assert_eq!(registrar.lease(), again);
    assert_eq!(
        cp.store.registry().borrow()["orders"]["x"].address,
        addr.to_string()
    );
    registrar.deregister(false).await.unwrap();
    let gone = tokio::time::timeout(PATIENCE, registry.wait_for(|r| r.is_empty()))
        .await
        .is_ok();
    assert!(gone, "deregistered without drain: removed");
}
