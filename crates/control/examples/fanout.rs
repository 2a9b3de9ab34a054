//! Control-plane fan-out benchmark (issue 6, recorded in BENCHMARKS.md; not a test):
//! how long a config change takes to reach N connected proxy streams, and how much
//! memory the control plane holds at N proxies and E registered endpoints.
//!
//! ```sh
//! cargo run --release -p meshgate-control --example fanout -- --proxies 1000 --endpoints 10000
//! ```
//!
//! A real control plane (`ControlPlane::start` + `serve`: embedded store in a temp
//! dir, gRPC over TLS on 127.0.0.1:0, certificates from rcgen via the testkit CA)
//! and N simulated proxies: raw `ConfigDiscovery` streams that say Hello and Ack each
//! snapshot without applying it, `--per-conn` streams per HTTP/2 connection. The
//! config declares `--services` services with `discovery: {registry: {}}`; endpoints
//! are registered through the `Store` trait, spread evenly over them.
//!
//! `--mode inproc` (default) runs both sides in one process, so its RSS is control
//! plane + clients. `--mode split` runs the control plane as a child process of
//! this example (`--serve-only`, driven by one-line commands on its stdin), so the
//! child's RSS is the control plane alone and this process's RSS is the clients'.
//!
//! Measured per config change (commit through the store, as `apply` does): the
//! commit (version file written and fsynced), the snapshot built, the arrival of the
//! new version on each stream (first / p50 / p99 / last), and every proxy's ACK
//! recorded in `store.proxies()` (polled every 5 ms).

#[path = "fanout/control.rs"]
mod control;
#[path = "fanout/proxies.rs"]
mod proxies;
#[path = "fanout/usage.rs"]
mod usage;

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use control::{ChildCtl, CommitTimes, Control, Ctl, serve_only};
use proxies::{Arrival, Arrived, arrivals_until, open_streams};
use usage::Mem;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const TOKEN: &str = "fanout-bench-proxy-token";
/// How long any phase may take before the run is abandoned.
const PATIENCE: Duration = Duration::from_secs(300);
const USAGE: &str = "usage: fanout [--proxies N] [--endpoints N] [--services N] [--rounds N] \
                     [--per-conn N] [--mode inproc|split]";

#[derive(Debug, Clone)]
pub struct Args {
    pub proxies: usize,
    pub endpoints: usize,
    pub services: usize,
    pub rounds: usize,
    pub per_conn: usize,
    pub split: bool,
    pub serve_only: bool,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        proxies: 1000,
        endpoints: 10_000,
        services: 100,
        rounds: 5,
        per_conn: 100,
        split: false,
        serve_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--proxies" => args.proxies = value()?.parse()?,
            "--endpoints" => args.endpoints = value()?.parse()?,
            "--services" => args.services = value()?.parse()?,
            "--rounds" => args.rounds = value()?.parse()?,
            "--per-conn" => args.per_conn = value()?.parse()?,
            "--mode" => match value()?.as_str() {
                "inproc" => args.split = false,
                "split" => args.split = true,
                other => return Err(format!("unknown mode {other:?}").into()),
            },
            "--serve-only" => args.serve_only = true,
            other => return Err(format!("unknown option {other:?}").into()),
        }
    }
    if args.services == 0 || args.per_conn == 0 || args.proxies == 0 {
        return Err("--services, --per-conn and --proxies must be at least 1".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    let before = Mem::of_self(false);
    let result = match parse_args() {
        Err(e) => Err(format!("{e}\n{USAGE}").into()),
        Ok(args) if args.serve_only => serve_only(args).await,
        Ok(args) => run(args, before).await,
    };
    if let Err(e) = result {
        eprintln!("fanout: {e}");
        std::process::exit(1);
    }
}

/// The `p`-th percentile (nearest rank) of sorted durations.
fn pct(sorted: &[Duration], p: usize) -> Duration {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

/// CPU time used so far by the control plane and by this process, ms.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    control: u64,
    this: u64,
}

impl Cpu {
    async fn now(ctl: &mut Ctl) -> Res<Cpu> {
        Ok(Cpu {
            control: ctl.cpu_ms().await?,
            this: usage::cpu_ms(),
        })
    }

    fn since(self, start: Cpu) -> Cpu {
        Cpu {
            control: self.control.saturating_sub(start.control),
            this: self.this.saturating_sub(start.this),
        }
    }
}

/// One measured change (a config commit, or the registration of every endpoint).
struct Change {
    label: String,
    times: CommitTimes,
    arrived: Arrived,
    /// Streams measured.
    n: usize,
    acked: Duration,
    cpu: Cpu,
}

impl Change {
    fn row(&self, split: bool) -> String {
        let t = &self.times;
        let version = if t.version == 0 {
            "—".to_owned()
        } else {
            format!("v{}", t.version)
        };
        let clients_cpu = if split {
            self.cpu.this.to_string()
        } else {
            "—".into()
        };
        format!(
            "| {} | {version} | {:.0} | {:.1} | {} | {} | {} | {} | {} | **{}** | {} | {} | {clients_cpu} |",
            self.label,
            self.arrived.bytes as f64 / 1024.0,
            self.arrived.received as f64 / self.n as f64,
            ms(t.committed),
            ms(t.built),
            ms(pct(&self.arrived.times, 0)),
            ms(pct(&self.arrived.times, 50)),
            ms(pct(&self.arrived.times, 99)),
            ms(pct(&self.arrived.times, 100)),
            ms(self.acked),
            self.cpu.control,
        )
    }
}

/// Makes `rounds` config changes one after the other, each measured until every
/// stream has it and every ACK is recorded.
async fn changes(
    ctl: &mut Ctl,
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    n: usize,
    rounds: std::ops::Range<usize>,
    label: &str,
) -> Res<Vec<Change>> {
    let mut all = Vec::new();
    for round in rounds {
        let cpu = Cpu::now(ctl).await?;
        let t0 = Instant::now();
        let times = ctl.commit(round).await?;
        let version = times.version;
        let (arrived, acked) = tokio::join!(
            arrivals_until(rx, n, t0, |a| a.config_version >= version),
            ctl.acks(n)
        );
        all.push(Change {
            label: label.to_owned(),
            times,
            arrived: arrived?,
            n,
            acked: acked?,
            cpu: Cpu::now(ctl).await?.since(cpu),
        });
    }
    Ok(all)
}

/// Registers `e` endpoints (every stream receives many intermediate snapshots
/// while they arrive), measured until every stream has all of them and ACKed.
async fn registration(
    ctl: &mut Ctl,
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    n: usize,
    e: usize,
) -> Res<Change> {
    let cpu = Cpu::now(ctl).await?;
    let t0 = Instant::now();
    let (registered, built) = ctl.register(e).await?;
    let (arrived, acked) =
        tokio::join!(arrivals_until(rx, n, t0, |a| a.endpoints == e), ctl.acks(n));
    Ok(Change {
        label: format!("register {e} endpoints (store)"),
        times: CommitTimes {
            version: 0,
            committed: registered,
            built,
        },
        arrived: arrived?,
        n,
        acked: acked?,
        cpu: Cpu::now(ctl).await?.since(cpu),
    })
}

/// Memory at one stage: the control plane's (None before it exists in its own
/// process) and this process's.
struct Stage {
    name: &'static str,
    control: Option<Mem>,
    this: Mem,
}

async fn stage(name: &'static str, ctl: &mut Ctl) -> Res<Stage> {
    Ok(Stage {
        name,
        control: Some(ctl.mem().await?),
        this: Mem::of_self(false),
    })
}

async fn run(args: Args, before: Mem) -> Res<()> {
    let (n, e, rounds) = (args.proxies, args.endpoints, args.rounds);
    let (mut ctl, addr, ca_pem) = if args.split {
        let (child, addr, ca_pem) = ChildCtl::spawn(&args).await?;
        (Ctl::Child(child), addr, ca_pem)
    } else {
        let control = Control::start(args.services).await?;
        let (addr, ca_pem) = (control.addr, control.ca.ca_pem());
        (Ctl::Local(control), addr, ca_pem)
    };
    let mut memory = vec![Stage {
        name: "process start",
        control: (!args.split).then_some(before),
        this: before,
    }];
    memory.push(stage("control plane started (config v1, 0 proxies)", &mut ctl).await?);

    let (tx, mut rx) = mpsc::unbounded_channel();
    let t0 = Instant::now();
    open_streams(addr, &ca_pem, n, args.per_conn, tx).await?;
    let connected = arrivals_until(&mut rx, n, t0, |_| true).await?.times;
    let connect_acks = ctl.acks(n).await?;
    memory.push(stage("N proxies connected", &mut ctl).await?);

    let label = "config change, 0 endpoints";
    let mut rows = changes(&mut ctl, &mut rx, n, 1..rounds + 1, label).await?;
    rows.push(registration(&mut ctl, &mut rx, n, e).await?);
    memory.push(stage("N proxies + E endpoints (pushed, ACKed)", &mut ctl).await?);
    let label = format!("config change, {e} endpoints");
    rows.extend(changes(&mut ctl, &mut rx, n, rounds + 1..2 * rounds + 1, &label).await?);
    memory.push(stage("after all changes", &mut ctl).await?);

    let mode = if args.split {
        "split (control plane in a child process)"
    } else {
        "inproc (control plane and clients in one process)"
    };
    println!(
        "## fanout: {n} proxy streams ({} per HTTP/2 connection, TLS), {e} endpoints in {} services, mode {mode}\n",
        args.per_conn, args.services,
    );
    println!(
        "{n} streams opened, first snapshot on each: p50 {} ms, last {} ms; all ACKs in the store after {} ms\n",
        ms(pct(&connected, 50)),
        ms(pct(&connected, 100)),
        ms(connect_acks),
    );
    println!(
        "Times in ms from the commit call (registration: from the first `register`); a stream's arrival = snapshot decoded by its client. CPU: user+sys during the change, 10 ms ticks.\n"
    );
    let cpu = if args.split {
        "control-plane CPU ms | clients' CPU ms"
    } else {
        "process CPU ms | —"
    };
    println!(
        "| change | version | snapshot KiB | snapshots per stream | commit | snapshot built | first stream | p50 | p99 | last stream | all ACKs in store | {cpu} |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for change in &rows {
        println!("{}", change.row(args.split));
    }
    println!();
    let (who, clients) = if args.split {
        ("control plane", "clients' process RSS MiB")
    } else {
        ("process (control plane + clients)", "—")
    };
    println!(
        "| stage | {who} RSS MiB | peak MiB | heap in use MiB | RSS after malloc_trim MiB | {clients} |\n|---|---|---|---|---|---|"
    );
    for s in &memory {
        let control = |f: fn(&Mem) -> u64| s.control.as_ref().map_or("—".into(), |m| mib(f(m)));
        let this = if args.split {
            mib(s.this.rss_kb)
        } else {
            "—".into()
        };
        println!(
            "| {} | {} | {} | {} | {} | {this} |",
            s.name,
            control(|m| m.rss_kb),
            control(|m| m.hwm_kb),
            control(|m| m.heap_kb),
            control(|m| m.trimmed_kb),
        );
    }
    Ok(())
}
