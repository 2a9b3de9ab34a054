//! A real etcd server for tests: the `etcd` binary (Debian package
//! `etcd-server`) as a one-member cluster on free ports with its own temporary
//! data directory, killed when dropped. `stop` and `restart` (same ports, same
//! data) let tests take etcd away and bring it back.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::free_port;

const BINARY: &str = "etcd";
/// A loaded CI machine can take a while to start etcd.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running (or stopped) etcd member.
pub struct Etcd {
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl Etcd {
    /// Starts etcd on free ports and waits until it reports healthy. Panics if
    /// the binary is missing or etcd does not come up.
    pub async fn start() -> Etcd {
        let mut last = String::new();
        // The free ports are only free "a moment ago": retry on a clash.
        for _ in 0..3 {
            let mut etcd = Etcd {
                dir: tempfile::tempdir().expect("a temporary directory for etcd"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            };
            match etcd.launch().await {
                Ok(()) => return etcd,
                Err(e) => last = e,
            }
        }
        panic!("etcd did not start: {last}");
    }

    /// The client URL (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The member's data directory (kept across `stop`/`restart`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills etcd (like a crash: no graceful shutdown). Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops etcd if it runs, then starts it again on the same ports with the
    /// same data, and waits until it is healthy.
    pub async fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.launch().await {
            panic!("etcd did not restart: {e}");
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    async fn launch(&mut self) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("etcd log file: {e}"))?;
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(BINARY)
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--initial-cluster-state=new")
            // One member: short raft timings make the minimum lease TTL 1 s
            // (etcd's minimum is 1.5 election timeouts), for lease-expiry tests.
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(clone(&log)?)
            .stderr(log)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "the `etcd` binary is not installed: install the Debian package etcd-server \
                 (apt-get install -y etcd-server)"
            ),
            Err(e) => return Err(format!("cannot run etcd: {e}")),
        };
        self.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if !self.is_running() {
                self.child = None;
                return Err(format!("etcd exited:\n{}", tail(&self.log_path())));
            }
            if healthy(self.client_port).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.stop();
        Err(format!(
            "etcd not healthy within {READY_WITHIN:?}:\n{}",
            tail(&self.log_path())
        ))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn clone(file: &File) -> Result<File, String> {
    file.try_clone().map_err(|e| format!("etcd log file: {e}"))
}

/// `GET /health` on the client port answers `"health":"true"` once the member
/// has a leader and serves requests.
async fn healthy(port: u16) -> bool {
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&answer).contains("\"health\":\"true\""))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), check).await,
        Ok(Ok(true))
    )
}

/// The last lines of etcd's log, for failure messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
