//! Network-namespace "pods" for the interception tests: the skip check, shell
//! helpers, `Pods` (two namespaces joined by a veth, removed on drop), `Proc` (a
//! `meshgate` process run inside one, killed on drop) and access-log readers.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::common::{BIN, TempDir};

pub(crate) const A_IP: &str = "10.77.0.1";
pub(crate) const B_IP: &str = "10.77.0.2";
/// The uid the "app" (curl) runs as: not the proxy's (root), so not excluded.
pub(crate) const APP_UID: &str = "65534";

/// Why privileged tests cannot run here, if they cannot.
pub(crate) fn skip_reason() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self").map(|m| m.uid()) {
        Ok(0) => {}
        Ok(uid) => return Some(format!("not root (uid {uid})")),
        Err(e) => return Some(format!("cannot read /proc/self: {e}")),
    }
    for (tool, arg) in [
        ("ip", "-V"),
        ("iptables", "--version"),
        ("curl", "--version"),
        ("setpriv", "--version"),
    ] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!("`{tool}` is not available"));
        }
    }
    let probe = format!("mgprobe-{}", std::process::id());
    let out = sh("ip", &["netns", "add", &probe]);
    if !out.status.success() {
        return Some(format!(
            "cannot create a network namespace: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    sh("ip", &["netns", "del", &probe]);
    None
}

/// Runs the test body only where namespaces can be made; prints why not. The
/// probe runs once per test binary (tests run in parallel).
pub(crate) fn privileged() -> bool {
    static REASON: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    match REASON.get_or_init(skip_reason) {
        Some(reason) => {
            println!("skipped: {reason}");
            false
        }
        None => true,
    }
}

pub(crate) fn sh(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// Runs `program args` and panics (with its stderr) if it fails.
pub(crate) fn must(program: &str, args: &[&str]) -> String {
    let out = sh(program, args);
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two pods joined by a veth pair; deleted (processes' rules and links with
/// them) on drop.
pub(crate) struct Pods {
    pub(crate) a: String,
    pub(crate) b: String,
}

impl Pods {
    pub(crate) fn new() -> Pods {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{n}", std::process::id());
        let pods = Pods {
            a: format!("mgA-{id}"),
            b: format!("mgB-{id}"),
        };
        must("ip", &["netns", "add", &pods.a]);
        must("ip", &["netns", "add", &pods.b]);
        // The veth pair is made inside A with its peer moved to B at once: the
        // host's namespace never holds either end.
        must(
            "ip",
            &[
                "-n", &pods.a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
                "netns", &pods.b,
            ],
        );
        for (ns, ip) in [(&pods.a, A_IP), (&pods.b, B_IP)] {
            must(
                "ip",
                &["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            );
            must("ip", &["-n", ns, "link", "set", "lo", "up"]);
            must("ip", &["-n", ns, "link", "set", "eth0", "up"]);
        }
        pods
    }

    /// `cmd args` inside namespace `ns`, as root.
    pub(crate) fn exec(ns: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", ns];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// `curl` inside `ns` as the app's uid (not excluded from interception).
    pub(crate) fn app_curl(ns: &str, url: &str) -> Output {
        Pods::exec(
            ns,
            &[
                "setpriv",
                "--reuid",
                APP_UID,
                "--regid",
                APP_UID,
                "--clear-groups",
                "curl",
                "-sS",
                "--max-time",
                "5",
                "--resolve",
                &format!("orders:8080:{B_IP}"),
                url,
            ],
        )
    }

    /// The nat table of `ns`, as `iptables -S` prints it.
    pub(crate) fn nat_rules(ns: &str) -> String {
        let out = Pods::exec(ns, &["iptables", "-t", "nat", "-S"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until something in `ns` listens on TCP `port`.
    pub(crate) fn wait_listening(ns: &str, port: u16, proc: &mut Proc) {
        let filter = format!("sport = :{port}");
        let ready = wait_until(Duration::from_secs(20), || {
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!("{} exited early ({status}):\n{}", proc.name, proc.stderr());
            }
            let out = Pods::exec(ns, &["ss", "-Hltn", &filter]);
            !String::from_utf8_lossy(&out.stdout).trim().is_empty()
        });
        assert!(
            ready,
            "{} not listening on {port}:\n{}",
            proc.name,
            proc.stderr()
        );
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = sh("ip", &["netns", "del", ns]);
        }
    }
}

/// A process inside a namespace, killed and reaped on drop.
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) dir: TempDir,
}

impl Proc {
    /// `meshgate args` inside `ns`, output to files.
    pub(crate) fn meshgate(name: &str, ns: &str, args: &[&str]) -> Proc {
        let dir = TempDir::new(&format!("intercept-{name}"));
        let child = Command::new("ip")
            .args(["netns", "exec", ns, BIN])
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path("stdout")).expect("stdout file"))
            .stderr(std::fs::File::create(dir.path("stderr")).expect("stderr file"))
            .spawn()
            .expect("spawn ip netns exec");
        Proc {
            name: name.to_owned(),
            child,
            dir,
        }
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path("stderr")).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `ready` every 50 ms until it holds or `within` passes.
pub(crate) fn wait_until(within: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The access log's records (one JSON object per line).
pub(crate) fn records(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "status {}; stdout: {}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
