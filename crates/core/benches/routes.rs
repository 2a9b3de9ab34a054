//! Route-scale benches (issue 8, target 5): route lookup in a 10,000-route table
//! against a 1-route table, compiling a 10,000-route config into a snapshot, and
//! `Gateway::apply` of it (compile + swap) on a running gateway.
//!
//! The configs are JSON text parsed with `meshgate_config::parse_str`, as a reload
//! reads them: 1,000 hostnames × 10 path prefixes, each route with a header match,
//! all to one service (`bench/routes.sh` serves the same shape under load).
//!
//!   cargo bench -p meshgate-core --bench routes

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use meshgate_config::Config;
use meshgate_core::Gateway;
use meshgate_core::access_log::AccessLog;
use meshgate_core::filter::NoPolicies;
use meshgate_core::route::RequestView;
use meshgate_core::snapshot::Snapshot;
use meshgate_observe::Metrics;

/// The allocator of the meshgate binary: compile and apply are allocation-heavy,
/// and glibc malloc would make them look ~2× slower than a real reload.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HOSTS: usize = 1_000;
const PREFIXES: usize = 10;

/// The route a "late" request hits: the last host, the last prefix.
const HIT_HOST: &str = "h999.bench.test";
const HIT_TENANT: &str = "t999";
/// Deeper than the prefix, so the lookup walks 4 segment boundaries before the hit.
const HIT_PATH: &str = "/svc9/api/v1/items";

/// One listener on an ephemeral port; `hosts` × `prefixes` routes, each
/// `hostnames: [hH.bench.test]`, `PathPrefix /svcP`, header `x-tenant: tH`.
///
/// JSON text (which `parse_str` reads with serde_json, then validates like YAML):
/// the YAML reader refuses a document of more than 250,000 nodes ("budget
/// breached"), and 10,000 routes of this shape are ~270,000.
fn config_text(hosts: usize, prefixes: usize) -> String {
    let mut t = String::with_capacity(hosts * prefixes * 220 + 512);
    t.push_str(
        r#"{"accessLog": {"path": "off"}, "admin": {"enabled": false},
"listeners": [{"name": "bench", "address": "127.0.0.1:0"}],
"services": [{"name": "backend", "endpoints": ["127.0.0.1:9"]}],
"routes": ["#,
    );
    // Hosts counted down so that with one host and one prefix the only route is the
    // one the hit request targets (h999, /svc9).
    let mut first = true;
    for h in (HOSTS - hosts..HOSTS).rev() {
        for p in (PREFIXES - prefixes..PREFIXES).rev() {
            if !first {
                t.push_str(",\n");
            }
            first = false;
            write!(
                t,
                r#"{{"name": "r-h{h}-p{p}", "hostnames": ["h{h}.bench.test"], "matches": [{{"path": {{"type": "PathPrefix", "value": "/svc{p}"}}, "headers": [{{"name": "x-tenant", "value": "t{h}"}}]}}], "backendRefs": [{{"name": "backend"}}]}}"#
            )
            .expect("writing to a String");
        }
    }
    t.push_str("]}\n");
    t
}

fn parse(text: &str) -> Config {
    meshgate_config::parse_str(text, "routes-bench.json").expect("bench config is valid")
}

fn compile(config: Config, previous: Option<&Snapshot>, metrics: &Arc<Metrics>) -> Snapshot {
    Snapshot::compile(config, previous, metrics, &NoPolicies).expect("bench config compiles")
}

/// A request as `proxy::decide` presents it to the table (host already normalised).
struct Req {
    host: &'static str,
    path: &'static str,
    method: Method,
    headers: HeaderMap,
}

impl Req {
    fn new(host: &'static str, path: &'static str, tenant: &'static str) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert("x-tenant", HeaderValue::from_static(tenant));
        // The headers a browser or wrk-like client sends too, so the header match
        // does not find its name in an otherwise empty map.
        headers.insert("user-agent", HeaderValue::from_static("bench/1.0"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        Req {
            host,
            path,
            method: Method::GET,
            headers,
        }
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            host: self.host,
            path: self.path,
            query: None,
            method: &self.method,
            headers: &self.headers,
        }
    }
}

fn lookup(c: &mut Criterion) {
    let metrics = Arc::new(Metrics::new());
    let one = compile(parse(&config_text(1, 1)), None, &metrics);
    let many = compile(parse(&config_text(HOSTS, PREFIXES)), None, &metrics);
    assert_eq!(one.table("bench").expect("table").len(), 1);
    assert_eq!(many.table("bench").expect("table").len(), HOSTS * PREFIXES);

    let hit = Req::new(HIT_HOST, HIT_PATH, HIT_TENANT);
    // Unknown host: one hash probe, no path walk.
    let miss_host = Req::new("nowhere.bench.test", HIT_PATH, HIT_TENANT);
    // Known host, wrong tenant: every prefix on the walk is probed, down to `/`.
    let miss_header = Req::new(HIT_HOST, HIT_PATH, "t0");

    let mut g = c.benchmark_group("lookup");
    for (label, snap) in [("1-route", &one), ("10k-routes", &many)] {
        let table = snap.table("bench").expect("table");
        let found = table.find(&hit.view()).expect("the hit request matches");
        assert_eq!(&*found.route.name, "r-h999-p9");
        assert!(table.find(&miss_host.view()).is_none());
        assert!(table.find(&miss_header.view()).is_none());
        g.bench_function(format!("{label}/hit"), |b| {
            b.iter(|| black_box(table.find(black_box(&hit.view()))).is_some())
        });
        g.bench_function(format!("{label}/miss-host"), |b| {
            b.iter(|| black_box(table.find(black_box(&miss_host.view()))).is_some())
        });
        g.bench_function(format!("{label}/miss-header"), |b| {
            b.iter(|| black_box(table.find(black_box(&miss_header.view()))).is_some())
        });
    }
    g.finish();
}

fn compile_and_apply(c: &mut Criterion) {
    let text = config_text(HOSTS, PREFIXES);
    let config = parse(&text);
    let metrics = Arc::new(Metrics::new());
    let previous = compile(config.clone(), None, &metrics);

    let mut g = c.benchmark_group("config-10k");
    // A reload is these three steps in turn (`Reloader::reload`): parse the file's
    // text, compile it aside (reusing the unchanged services of the served
    // snapshot), and swap it in.
    g.sample_size(20);
    g.bench_function("parse", |b| b.iter(|| parse(black_box(&text))));
    // Outputs are dropped outside the timed section by `iter_batched`.
    g.bench_function("compile", |b| {
        b.iter_batched(
            || config.clone(),
            |cfg| compile(cfg, Some(&previous), &metrics),
            BatchSize::LargeInput,
        )
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let gateway = rt
        .block_on(Gateway::start_with_log(config.clone(), AccessLog::off()))
        .expect("gateway starts");
    // Compile + swap; `apply` hands the replaced snapshot to a blocking thread to
    // free, as on a real reload (its CPU is spent, but not on the worker).
    g.bench_function("apply", |b| {
        b.iter_batched(
            || config.clone(),
            |cfg| rt.block_on(gateway.apply(cfg)).expect("apply"),
            BatchSize::LargeInput,
        )
    });
    // One reload at a time, as an operator's reload is: before each timed apply
    // the previous one's snapshot has been freed (the blocking thread is done), so
    // its frees do not compete with this compile for the 2 cores and the
    // allocator. `apply` above runs them back to back and includes that overlap.
    g.bench_function("apply-isolated", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let cfg = config.clone();
                std::thread::sleep(std::time::Duration::from_millis(50));
                let started = std::time::Instant::now();
                rt.block_on(gateway.apply(cfg)).expect("apply");
                total += started.elapsed();
            }
            total
        })
    });
    g.finish();
    rt.block_on(gateway.shutdown());
}

criterion_group!(benches, lookup, compile_and_apply);
criterion_main!(benches);
