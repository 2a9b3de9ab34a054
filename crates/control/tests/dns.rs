//! DNS discovery against a real DNS server (dnsmasq, Debian `dnsmasq-base`) on a
//! free port: A, AAAA and SRV records resolved into endpoints; a changed answer
//! published once the 1 s TTL has passed; a name that disappears empties its
//! service; and with the server killed the last answer is kept.

use std::sync::Arc;
use std::time::{Duration, Instant};

use meshgate_config::{DnsDiscovery, DnsRecordType, Duration as ConfigDuration};
use meshgate_control::discovery::dns::{self, DnsError};
use meshgate_control::discovery::{self, Options};
use meshgate_control::snapshot::Discovered;
use meshgate_control::store::embedded::EmbeddedStore;
use meshgate_control::store::{NewRevision, Store};
use meshgate_testkit::dnsmasq::Dnsmasq;
use tokio::sync::watch;

const PATIENCE: Duration = Duration::from_secs(30);

/// api.test (static) and its SRV record; a second SRV name with a priority-0
/// target from the hosts file (primary.test) and a static priority-10 backup;
/// web.test, web6.test and primary.test come from the hosts file the tests
/// rewrite.
async fn dnsmasq(hosts: &str) -> Dnsmasq {
    Dnsmasq::start(
        &[
            // Names under test. that are not defined get NXDOMAIN (not REFUSED).
            "--local=/test/",
            "--host-record=api.test,127.0.0.11",
            "--srv-host=_http._tcp.api.test,api.test,8080,0,5",
            "--srv-host=_grpc._tcp.api.test,primary.test,7070,0,2",
            "--srv-host=_grpc._tcp.api.test,backup.test,9090,10,1",
            "--host-record=backup.test,127.0.0.12",
        ],
        hosts,
    )
    .await
}

const HOSTS: &str =
    "127.0.0.22 web.test\n127.0.0.21 web.test\nfd00::21 web6.test\n127.0.0.31 primary.test\n";

const DOC: &str = "services:
  - name: web
    discovery: {dns: {name: web.test, port: 80, refresh: 100ms}}
  - name: web6
    discovery: {dns: {name: web6.test, type: AAAA, port: 443, refresh: 100ms}}
  - name: api
    discovery: {dns: {name: _http._tcp.api.test, type: SRV, refresh: 100ms}}
  - name: grpc
    discovery: {dns: {name: _grpc._tcp.api.test., type: SRV, refresh: 100ms}}
  - name: ghost
    endpoints: ['10.0.0.1:80']
    discovery: {dns: {name: ghost.test, port: 80, refresh: 100ms}}
";

async fn store_with(doc: &str) -> (Arc<EmbeddedStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 5).unwrap();
    let next = NewRevision {
        yaml: doc.into(),
        source: "t".into(),
        note: String::new(),
    };
    store.commit(0, next).await.unwrap();
    (store, dir)
}

fn endpoints(d: &Discovered, service: &str) -> Option<Vec<(String, u32)>> {
    d.get(service)
        .map(|e| e.iter().map(|e| (e.address.clone(), e.weight)).collect())
}

async fn until(
    rx: &mut watch::Receiver<Arc<Discovered>>,
    what: &str,
    ok: impl Fn(&Discovered) -> bool,
) -> Duration {
    let started = Instant::now();
    let got = tokio::time::timeout(PATIENCE, rx.wait_for(|d| ok(d)))
        .await
        .is_ok();
    assert!(got, "never: {what}; last: {:?}", rx.borrow());
    started.elapsed()
}

fn spec(name: &str, record_type: DnsRecordType, port: Option<u16>) -> DnsDiscovery {
    DnsDiscovery {
        name: name.into(),
        record_type,
        port,
        refresh: ConfigDuration::from_millis(100),
        max_ttl: ConfigDuration::from_secs(60),
    }
}

fn pairs(list: &[(&str, u32)]) -> Option<Vec<(String, u32)>> {
    Some(list.iter().map(|(a, w)| (a.to_string(), *w)).collect())
}

#[tokio::test]
async fn a_aaaa_and_srv_records_become_endpoints() {
    let server = dnsmasq(HOSTS).await;
    let resolver = dns::resolver(Some(server.addr())).unwrap();

    let a = dns::resolve(&resolver, &spec("web.test", DnsRecordType::A, Some(80)))
        .await
        .unwrap();
    let got: Vec<&str> = a.endpoints.iter().map(|e| e.address.as_str()).collect();
    assert_eq!(got, ["127.0.0.21:80", "127.0.0.22:80"], "sorted");
    assert_eq!(a.ttl, Duration::from_secs(1), "dnsmasq --local-ttl=1");

    let srv = dns::resolve(
        &resolver,
        &spec("_http._tcp.api.test", DnsRecordType::SRV, None),
    )
    .await
    .unwrap();
    let got: Vec<(&str, u32)> = srv
        .endpoints
        .iter()
        .map(|e| (e.address.as_str(), e.weight))
        .collect();
    assert_eq!(got, [("127.0.0.11:8080", 5)], "priority 0 only; its weight");

    let missing = dns::resolve(&resolver, &spec("ghost.test", DnsRecordType::A, Some(80))).await;
    assert!(matches!(missing, Err(DnsError::Negative(_))), "{missing:?}");

    // Through discovery: every DNS service, and none for a name that has never
    // resolved (its static endpoints serve meanwhile).
    let (store, _dir) = store_with(DOC).await;
    let options = Options {
        dns_server: Some(server.addr()),
    };
    let mut rx = discovery::start_with(store.clone() as Arc<dyn Store>, options);
    // The first value with all three (ghost needs three negative answers, 100 ms
    // apart, before it is published).
    let d = tokio::time::timeout(
        PATIENCE,
        rx.wait_for(|d| d.contains_key("web") && d.contains_key("web6") && d.contains_key("api")),
    )
    .await
    .expect("web, web6 and api resolved in time")
    .expect("discovery runs")
    .clone();
    assert_eq!(
        endpoints(&d, "web"),
        pairs(&[("127.0.0.21:80", 1), ("127.0.0.22:80", 1)])
    );
    assert_eq!(endpoints(&d, "web6"), pairs(&[("[fd00::21]:443", 1)]));
    assert_eq!(endpoints(&d, "api"), pairs(&[("127.0.0.11:8080", 5)]));
    assert_eq!(endpoints(&d, "ghost"), None);
    // A name that does not exist is published (empty) only after three negative
    // answers in a row.
    until(&mut rx, "ghost published empty", |d| {
        endpoints(d, "ghost") == Some(vec![])
    })
    .await;
}

#[tokio::test]
async fn a_changed_answer_is_published_after_the_ttl_and_a_gone_name_empties() {
    let server = dnsmasq(HOSTS).await;
    let (store, _dir) = store_with(DOC).await;
    let options = Options {
        dns_server: Some(server.addr()),
    };
    let mut rx = discovery::start_with(store.clone() as Arc<dyn Store>, options);
    until(&mut rx, "web and grpc resolved", |d| {
        d.contains_key("web") && d.contains_key("grpc")
    })
    .await;
    assert_eq!(
        endpoints(&rx.borrow(), "grpc"),
        pairs(&[("127.0.0.31:7070", 2)])
    );

    // web.test changes address; the SRV's priority-0 target disappears, so the
    // priority-10 backup serves.
    server.set_hosts("127.0.0.23 web.test\nfd00::21 web6.test\n");
    let took = until(&mut rx, "web and grpc changed", |d| {
        endpoints(d, "web") == pairs(&[("127.0.0.23:80", 1)])
            && endpoints(d, "grpc") == pairs(&[("127.0.0.12:9090", 1)])
    })
    .await;
    println!("changed answers published after {took:?} (TTL 1 s)");
    assert!(took < Duration::from_secs(10), "{took:?}");

    // web.test disappears (NXDOMAIN): emptied, but only after it persisted.
    server.set_hosts("fd00::21 web6.test\n");
    let took = until(&mut rx, "web emptied", |d| {
        endpoints(d, "web") == Some(vec![])
    })
    .await;
    println!("vanished name emptied after {took:?}");
}

#[tokio::test]
async fn with_the_server_gone_the_last_answer_is_kept() {
    let mut server = dnsmasq(HOSTS).await;
    let (store, _dir) = store_with(DOC).await;
    let addr = server.addr();
    let mut rx = discovery::start_with(
        store.clone() as Arc<dyn Store>,
        Options {
            dns_server: Some(addr),
        },
    );
    until(&mut rx, "every name resolved", |d| {
        // Everything settled, the name that does not exist included.
        ["web", "web6", "api", "grpc"]
            .iter()
            .all(|s| d.contains_key(*s))
            && endpoints(d, "ghost") == Some(vec![])
    })
    .await;
    let before = rx.borrow_and_update().clone();

    server.stop();
    // A resolution now fails (and is not a negative answer)…
    let resolver = dns::resolver(Some(addr)).unwrap();
    let failed = dns::resolve(&resolver, &spec("web.test", DnsRecordType::A, Some(80))).await;
    assert!(matches!(failed, Err(DnsError::Failed(_))), "{failed:?}");
    // …and several TTLs and retries later nothing was published. (A bounded wait
    // is the only way to see that nothing happens.)
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!rx.has_changed().unwrap(), "published {:?}", rx.borrow());
    assert_eq!(*rx.borrow(), before);
    assert_eq!(
        endpoints(&before, "web"),
        pairs(&[("127.0.0.21:80", 1), ("127.0.0.22:80", 1)])
    );
}
