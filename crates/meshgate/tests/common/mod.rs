//! Helpers shared by the process-level tests: temp dirs, the gateway process with a
//! kill-on-drop guard, real `curl`, signals and bounded polling.
#![allow(dead_code)] // each test file uses its own subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_meshgate");

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("meshgate-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process that is killed (SIGKILL) and reaped when the guard drops.
pub struct Proc {
    pub child: Child,
    /// Where its stdout and stderr go (files, so a chatty child never blocks).
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Proc {
    /// Spawns `meshgate ARGS` with stdout/stderr to files in `dir`.
    pub fn spawn(dir: &TempDir, args: &[&str]) -> Proc {
        let (stdout, stderr) = (dir.path("stdout.log"), dir.path("stderr.log"));
        let child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn meshgate");
        Proc {
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Waits until `addr` accepts connections; panics with the child's stderr if it
    /// exits first or does not listen in time.
    pub async fn wait_listening(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("meshgate exited early ({status}):\n{}", self.stderr_text());
            }
            if meshgate_testkit::wait_for_port(addr, Duration::from_millis(100)).await {
                return;
            }
        }
        panic!("meshgate not listening on {addr}:\n{}", self.stderr_text());
    }

    /// Sends a signal by name (`TERM`, `INT`) with the system `kill`.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// The exit status if the process ends within `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A one-service config: listener on `port`, route `name` with prefix `prefix`
/// to service `svc` at `backend`, access log to `log` and the given `runtime` block.
pub fn gateway_yaml(port: u16, backend: SocketAddr, log: &Path, runtime: &str) -> String {
    format!(
        "runtime: {runtime}\n\
         accessLog: {{path: {log:?}}}\n\
         admin: {{address: \"127.0.0.1:0\"}}\n\
         listeners:\n  - {{name: public, address: \"127.0.0.1:{port}\"}}\n\
         routes:\n  - name: api\n    matches: [{{path: {{type: PathPrefix, value: /api}}}}]\n    backendRefs: [{{name: svc}}]\n\
         services:\n  - {{name: svc, endpoints: [\"{backend}\"]}}\n",
        log = log.display().to_string(),
    )
}

/// Writes the config for a free port, starts `meshgate run -c` on it and waits until it listens.
pub async fn start_gateway(
    dir: &TempDir,
    yaml_for_port: impl Fn(u16) -> String,
) -> (Proc, SocketAddr) {
    let port = meshgate_testkit::free_port();
    let config = dir.write("meshgate.yaml", &yaml_for_port(port));
    let mut gw = Proc::spawn(dir, &["run", "-c", config.to_str().expect("utf-8 path")]);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    gw.wait_listening(addr).await;
    (gw, addr)
}

/// Runs real `curl -sS` with `args` (bounded by `--max-time 120`).
pub async fn curl(args: &[&str]) -> Output {
    tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "120"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run curl")
}

/// Splits `curl -i` output into (status line, lower-cased headers, body).
pub fn split_response(out: &[u8]) -> (String, Vec<(String, String)>, String) {
    let text = String::from_utf8_lossy(out);
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default().trim().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// The first value of header `name` (lower-case) in `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Whether a TCP connect to `addr` is refused right now.
pub async fn refused(addr: SocketAddr) -> bool {
    matches!(
        tokio::net::TcpStream::connect(addr).await,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}
