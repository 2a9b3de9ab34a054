//! The control plane under test (part of the `fanout` example): a real
//! `ControlPlane` on the embedded store, serving gRPC over TLS, plus the config
//! document and endpoints of the benchmark. It runs in the example's process
//! (`Ctl::Local`) or as its child (`--serve-only`, `Ctl::Child`) so that its
//! memory can be read apart from the clients'.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshgate_control::proto::v1::Snapshot;
use meshgate_control::server::{ControlPlane, Options, Scope, Token, Tokens};
use meshgate_control::store::embedded::EmbeddedStore;
use meshgate_control::store::{Instance, NewRevision, Store};
use meshgate_testkit::certs::TestCa;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tonic::transport::Identity;

use crate::usage::{Mem, cpu_ms};
use crate::{Args, PATIENCE, Res, TOKEN};

/// Registrations outlive the run (the store needs no heartbeats for them).
const LEASE: Duration = Duration::from_secs(3600);

/// The config document of round `round`: one listener, a route per service, the
/// services discovered from the registry, and one route that changes every round.
fn document(services: usize, round: usize) -> String {
    let mut yaml = String::from(
        "accessLog: {path: \"off\"}\nlisteners:\n  - name: public\n    address: 127.0.0.1:0\nroutes:\n",
    );
    yaml += &format!(
        "  - name: changing\n    matches: [{{path: {{type: Exact, value: /round-{round}}}}}]\n    backendRefs: [{{name: s0}}]\n"
    );
    for s in 0..services {
        yaml += &format!(
            "  - name: r{s}\n    matches: [{{path: {{type: PathPrefix, value: /s{s}}}}}]\n    backendRefs: [{{name: s{s}}}]\n"
        );
    }
    yaml += "services:\n";
    for s in 0..services {
        yaml += &format!("  - name: s{s}\n    discovery: {{registry: {{}}}}\n");
    }
    yaml
}

/// Endpoint `i`: a unique address, in service `i % services`.
fn instance(i: usize, services: usize) -> Instance {
    Instance {
        service: format!("s{}", i % services),
        instance: format!("i{i}"),
        address: format!("10.{}.{}.{}:8080", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        weight: 1,
        draining: false,
    }
}

pub fn endpoint_count(snapshot: &Snapshot) -> usize {
    snapshot.endpoints.iter().map(|s| s.endpoints.len()).sum()
}

/// What one config change cost on the control-plane side (from its commit call).
#[derive(Debug, Clone, Copy)]
pub struct CommitTimes {
    pub version: u64,
    pub committed: Duration,
    pub built: Duration,
}

/// The control plane under test, with its store.
pub struct Control {
    store: Arc<EmbeddedStore>,
    cp: Arc<ControlPlane>,
    pub addr: SocketAddr,
    pub ca: TestCa,
    services: usize,
    /// When the change being measured started (commit or registration).
    mark: Mutex<Instant>,
    _dir: tempfile::TempDir,
}

impl Control {
    pub async fn start(services: usize) -> Res<Control> {
        let dir = tempfile::tempdir()?;
        let store = EmbeddedStore::open(dir.path(), 10)?;
        let first = NewRevision {
            yaml: document(services, 0),
            source: "fanout".into(),
            note: String::new(),
        };
        meshgate_config::parse_str(&first.yaml, "fanout")?;
        store.commit(0, first).await?;
        let tokens = Tokens(vec![Token {
            name: "bench-proxies".into(),
            secret: TOKEN.into(),
            scope: Scope::Proxy {
                role: "gateway".into(),
                services: vec![],
            },
        }]);
        let options = Options {
            replica: "bench".into(),
            tokens,
            auto_rollback: None,
        };
        let cp = ControlPlane::start(store.clone(), options);
        let ca = TestCa::new("fanout");
        let cert = ca.server_cert("control", &["localhost", "127.0.0.1"]);
        let identity = Identity::from_pem(&cert.cert_pem, &cert.key_pem);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = cp.clone();
        tokio::spawn(async move {
            if let Err(e) = server.serve(listener, identity).await {
                eprintln!("fanout: control plane stopped: {e}");
            }
        });
        Ok(Control {
            store,
            cp,
            addr,
            ca,
            services,
            mark: Mutex::new(Instant::now()),
            _dir: dir,
        })
    }

    fn set_mark(&self) -> Instant {
        let now = Instant::now();
        *self.mark.lock().unwrap_or_else(|e| e.into_inner()) = now;
        now
    }

    /// Registers `count` endpoints; returns the time the registrations took and
    /// the time until the snapshot carried all of them.
    async fn register(&self, count: usize) -> Res<(Duration, Duration)> {
        let mut snapshots = self.cp.snapshots.clone();
        let t0 = self.set_mark();
        for i in 0..count {
            self.store
                .register(instance(i, self.services), LEASE)
                .await?;
        }
        let registered = t0.elapsed();
        let wanted =
            |s: &Option<Arc<Snapshot>>| s.as_ref().is_some_and(|s| endpoint_count(s) == count);
        tokio::time::timeout(PATIENCE, snapshots.wait_for(wanted)).await??;
        Ok((registered, t0.elapsed()))
    }

    /// Commits the document of `round` as the next version and waits for its
    /// snapshot.
    async fn commit(&self, round: usize) -> Res<CommitTimes> {
        let mut snapshots = self.cp.snapshots.clone();
        let current = self
            .store
            .config()
            .borrow()
            .as_ref()
            .map_or(0, |r| r.version);
        let next = NewRevision {
            yaml: document(self.services, round),
            source: "fanout".into(),
            note: format!("round {round}"),
        };
        let t0 = self.set_mark();
        let version = self.store.commit(current, next).await?.version;
        let committed = t0.elapsed();
        let built =
            |s: &Option<Arc<Snapshot>>| s.as_ref().is_some_and(|s| s.config_version == version);
        tokio::time::timeout(PATIENCE, snapshots.wait_for(built)).await??;
        Ok(CommitTimes {
            version,
            committed,
            built: t0.elapsed(),
        })
    }

    /// Waits until `n` connected proxies have ACKed the current snapshot in the
    /// store; returns the time since the last mark.
    async fn acks(&self, n: usize) -> Res<Duration> {
        let t0 = *self.mark.lock().unwrap_or_else(|e| e.into_inner());
        let target = self
            .cp
            .snapshots
            .borrow()
            .as_ref()
            .map(|s| s.version.clone());
        let target = target.ok_or("no snapshot")?;
        loop {
            let all = self.store.proxies().await?;
            let done = all
                .iter()
                .filter(|r| r.connected && r.acked == target)
                .count();
            if done >= n {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > PATIENCE {
                return Err(format!("only {done}/{n} ACKs of {target} recorded").into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// `--serve-only`: the control plane alone, driven by one command per stdin line
/// (`register N`, `commit ROUND`, `acks N`, `mem`, `cpu`), answering `ok …` (durations in
/// µs) on stdout; stops at the end of stdin.
pub async fn serve_only(args: Args) -> Res<()> {
    let control = Control::start(args.services).await?;
    println!("ready {} {}", control.addr, control.ca.ca_path().display());
    // tokio's stdin needs the io-std feature; a thread reading lines is enough.
    let (tx, mut lines) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            ["register", n] => {
                let (registered, built) = control.register(n.parse()?).await?;
                format!("ok {} {}", registered.as_micros(), built.as_micros())
            }
            ["commit", round] => {
                let t = control.commit(round.parse()?).await?;
                format!(
                    "ok {} {} {}",
                    t.version,
                    t.committed.as_micros(),
                    t.built.as_micros()
                )
            }
            ["acks", n] => format!("ok {}", control.acks(n.parse()?).await?.as_micros()),
            ["mem"] => {
                let m = Mem::of_self(true);
                format!(
                    "ok {} {} {} {}",
                    m.rss_kb, m.hwm_kb, m.heap_kb, m.trimmed_kb
                )
            }
            ["cpu"] => format!("ok {}", cpu_ms()),
            _ => format!("error unknown command {line:?}"),
        };
        println!("{reply}");
    }
    Ok(())
}

/// The control plane, in this process or in a child process.
pub enum Ctl {
    Local(Control),
    Child(ChildCtl),
}

pub struct ChildCtl {
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    _child: tokio::process::Child,
}

impl ChildCtl {
    pub async fn spawn(args: &Args) -> Res<(ChildCtl, SocketAddr, String)> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["--serve-only", "--services", &args.services.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no child stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no child stdout")?).lines();
        let mut ctl = ChildCtl {
            stdin,
            stdout,
            _child: child,
        };
        let ready = ctl.line().await?;
        let mut words = ready.split_whitespace();
        let (Some("ready"), Some(addr), Some(ca)) = (words.next(), words.next(), words.next())
        else {
            return Err(format!("child said {ready:?}").into());
        };
        let ca_pem = std::fs::read_to_string(ca)?;
        Ok((ctl, addr.parse()?, ca_pem))
    }

    async fn line(&mut self) -> Res<String> {
        let line = tokio::time::timeout(PATIENCE, self.stdout.next_line()).await??;
        line.ok_or_else(|| "control-plane child exited".into())
    }

    /// Sends a command; returns the numbers of its `ok` answer.
    async fn ask(&mut self, command: String) -> Res<Vec<u64>> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        let answer = self.line().await?;
        match answer.strip_prefix("ok") {
            Some(rest) => Ok(rest
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()?),
            None => Err(format!("{command}: {answer}").into()),
        }
    }
}

fn micros(v: u64) -> Duration {
    Duration::from_micros(v)
}

impl Ctl {
    pub async fn register(&mut self, count: usize) -> Res<(Duration, Duration)> {
        match self {
            Ctl::Local(c) => c.register(count).await,
            Ctl::Child(c) => match c.ask(format!("register {count}")).await?[..] {
                [a, b] => Ok((micros(a), micros(b))),
                _ => Err("bad answer to register".into()),
            },
        }
    }

    pub async fn commit(&mut self, round: usize) -> Res<CommitTimes> {
        match self {
            Ctl::Local(c) => c.commit(round).await,
            Ctl::Child(c) => match c.ask(format!("commit {round}")).await?[..] {
                [version, committed, built] => Ok(CommitTimes {
                    version,
                    committed: micros(committed),
                    built: micros(built),
                }),
                _ => Err("bad answer to commit".into()),
            },
        }
    }

    pub async fn acks(&mut self, n: usize) -> Res<Duration> {
        match self {
            Ctl::Local(c) => c.acks(n).await,
            Ctl::Child(c) => match c.ask(format!("acks {n}")).await?[..] {
                [t] => Ok(micros(t)),
                _ => Err("bad answer to acks".into()),
            },
        }
    }

    /// The control plane's memory (in-process: the whole process's); returns the
    /// allocator's free memory to the system after measuring.
    pub async fn mem(&mut self) -> Res<Mem> {
        match self {
            Ctl::Local(_) => Ok(Mem::of_self(true)),
            Ctl::Child(c) => match c.ask("mem".into()).await?[..] {
                [rss_kb, hwm_kb, heap_kb, trimmed_kb] => Ok(Mem {
                    rss_kb,
                    hwm_kb,
                    heap_kb,
                    trimmed_kb,
                }),
                _ => Err("bad answer to mem".into()),
            },
        }
    }

    /// The control plane's CPU time so far, ms (in-process: the whole process's).
    pub async fn cpu_ms(&mut self) -> Res<u64> {
        match self {
            Ctl::Local(_) => Ok(cpu_ms()),
            Ctl::Child(c) => match c.ask("cpu".into()).await?[..] {
                [ms] => Ok(ms),
                _ => Err("bad answer to cpu".into()),
            },
        }
    }
}
