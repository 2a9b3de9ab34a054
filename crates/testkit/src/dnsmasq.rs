//! A real DNS server for tests: `dnsmasq` (Debian package `dnsmasq-base`) on
//! 127.0.0.1 and a free port (UDP and TCP), answering only what the test gives it:
//! its own options (`--host-record`, `--srv-host`, …) and a hosts file the test
//! can rewrite ([`Dnsmasq::set_hosts`]: dnsmasq re-reads it on SIGHUP). No
//! upstream servers, no /etc/hosts, no config file. Killed when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, wait_for_port};

const BINARY: &str = "dnsmasq";
const READY_WITHIN: Duration = Duration::from_secs(15);

/// A running (or stopped) dnsmasq.
pub struct Dnsmasq {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Dnsmasq {
    /// Starts dnsmasq with `options` (e.g. `--host-record=api.test,127.0.0.11`)
    /// and `hosts` (hosts-file lines, e.g. `127.0.0.21 web.test`) and waits until
    /// it listens. Panics if the binary is missing or it does not come up.
    pub async fn start(options: &[&str], hosts: &str) -> Dnsmasq {
        let mut last = String::new();
        // The free port is only free "a moment ago": retry on a clash.
        for _ in 0..3 {
            let mut d = Dnsmasq {
                dir: tempfile::tempdir().expect("a temporary directory for dnsmasq"),
                port: free_port(),
                child: None,
            };
            d.write_hosts(hosts);
            match d.launch(options).await {
                Ok(()) => return d,
                Err(e) => last = e,
            }
        }
        panic!("dnsmasq did not start: {last}");
    }

    /// Where it answers (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Replaces the hosts file and makes dnsmasq re-read it (SIGHUP, which also
    /// clears its cache). Returns once the signal is sent; dnsmasq reloads soon
    /// after, so tests await the new answer rather than assume it.
    pub fn set_hosts(&self, hosts: &str) {
        self.write_hosts(hosts);
        let pid = self
            .child
            .as_ref()
            .map(Child::id)
            .expect("dnsmasq is running");
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGHUP to dnsmasq ({pid}) failed");
    }

    /// Kills dnsmasq: queries then go unanswered. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What dnsmasq logged (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn hosts_path(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("dnsmasq.log")
    }

    /// Written aside and renamed, so dnsmasq never reads half a file.
    fn write_hosts(&self, hosts: &str) {
        let tmp = self.dir.path().join("hosts.tmp");
        std::fs::write(&tmp, hosts).expect("write the hosts file");
        std::fs::rename(&tmp, self.hosts_path()).expect("replace the hosts file");
    }

    async fn launch(&mut self, options: &[&str]) -> Result<(), String> {
        // dnsmasq may drop privileges to `nobody`: its directory must be readable.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ =
                std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o755));
        }
        let child = Command::new(BINARY)
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--conf-file=/dev/null",
                "--pid-file=",
                "--local-ttl=1",
            ])
            .arg(format!("--port={}", self.port))
            .arg(format!("--addn-hosts={}", self.hosts_path().display()))
            .arg(format!("--log-facility={}", self.log_path().display()))
            .args(options)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("{BINARY} not found: install it with `apt-get install dnsmasq-base`")
            }
            Err(e) => panic!("cannot run {BINARY}: {e}"),
        };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("exited with {status}: {err}{}", self.log()));
            }
            if wait_for_port(self.addr(), Duration::from_millis(100)).await {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "not listening after {READY_WITHIN:?}: {}",
                    self.log()
                ));
            }
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}
