//! Privileged tests of transparent interception: each "pod" is a network
//! namespace (joined to the other by a veth pair, 10.77.0.1 ↔ 10.77.0.2) with
//! its own processes and its own iptables rules, installed by `meshgate
//! intercept` or by `meshgate sidecar --intercept` (with a control plane in pod
//! A). An unmodified `curl`, run as another user than the proxy, reaches the
//! other pod only through the proxy. Needs root, `ip` (iproute2), `iptables`,
//! `curl`, `setpriv`; without them each test prints "skipped: <reason>" and
//! passes. Namespaces (and with them their rules) are deleted by a guard.
//!
//! Lives in the binary crate's tests because it drives the `meshgate` binary.

mod common;
#[path = "intercept_netns/sidecar.rs"]
mod sidecar;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{BIN, TempDir};

const A_IP: &str = "10.77.0.1";
const B_IP: &str = "10.77.0.2";
/// The uid the "app" (curl) runs as: not the proxy's (root), so not excluded.
const APP_UID: &str = "65534";

/// Why privileged tests cannot run here, if they cannot.
fn skip_reason() -> Option<String> {
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
fn privileged() -> bool {
    static REASON: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    match REASON.get_or_init(skip_reason) {
        Some(reason) => {
            println!("skipped: {reason}");
            false
        }
        None => true,
    }
}

fn sh(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// Runs `program args` and panics (with its stderr) if it fails.
fn must(program: &str, args: &[&str]) -> String {
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
struct Pods {
    a: String,
    b: String,
}

impl Pods {
    fn new() -> Pods {
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
    fn exec(ns: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", ns];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// `curl` inside `ns` as the app's uid (not excluded from interception).
    fn app_curl(ns: &str, url: &str) -> Output {
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
    fn nat_rules(ns: &str) -> String {
        let out = Pods::exec(ns, &["iptables", "-t", "nat", "-S"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until something in `ns` listens on TCP `port`.
    fn wait_listening(ns: &str, port: u16, proc: &mut Proc) {
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
struct Proc {
    name: String,
    child: Child,
    dir: TempDir,
}

impl Proc {
    /// `meshgate args` inside `ns`, output to files.
    fn meshgate(name: &str, ns: &str, args: &[&str]) -> Proc {
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

    fn stderr(&self) -> String {
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
fn wait_until(within: Duration, mut ready: impl FnMut() -> bool) -> bool {
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
fn records(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn text(out: &Output) -> String {
    format!(
        "status {}; stdout: {}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The gateway in pod A: a TCP listener on the outbound port routing by original
/// destination; `orders` is B's app. Access log (one JSON line per connection)
/// to `log`.
fn outbound_gateway_yaml(log: &Path) -> String {
    format!(
        "accessLog: {{path: {log:?}}}\n\
         admin: {{enabled: false}}\n\
         listeners:\n\
         \x20 - name: outbound\n\
         \x20   address: 127.0.0.1:15001\n\
         \x20   protocol: TCP\n\
         \x20   l4: {{originalDestination: true}}\n\
         services:\n\
         \x20 - name: orders\n\
         \x20   endpoints: [\"{B_IP}:8080\"]\n"
    )
}

/// An unmodified client in pod A calling `http://orders:8080` goes through A's
/// proxy (its TCP listener learns the original destination and picks `orders`);
/// the proxy's own uid (root) is excluded, a destination no service owns is
/// refused, and removing the rules restores direct connections.
#[test]
fn app_connections_are_redirected_and_routed_by_original_destination() {
    if !privileged() {
        return;
    }
    let pods = Pods::new();
    let mut app = Proc::meshgate(
        "app",
        &pods.b,
        &["echo", "--listen", "0.0.0.0:8080", "--name", "orders-app"],
    );
    Pods::wait_listening(&pods.b, 8080, &mut app);
    let dir = TempDir::new("intercept-gw");
    let log = dir.path("access.log");
    let config = dir.write("gw.yaml", &outbound_gateway_yaml(&log));
    let config = config.to_str().expect("utf-8 path");
    let mut gw = Proc::meshgate("gateway", &pods.a, &["run", "-c", config]);
    Pods::wait_listening(&pods.a, 15001, &mut gw);

    let apply = Pods::exec(
        &pods.a,
        &[
            BIN,
            "intercept",
            "apply",
            "--outbound-port",
            "15001",
            "--inbound-port",
            "0",
            "--exclude-uid",
            "0",
        ],
    );
    assert!(apply.status.success(), "apply: {}", text(&apply));
    let rules = Pods::nat_rules(&pods.a);
    assert!(
        rules.contains("-A OUTPUT -p tcp -j MESHGATE_OUTPUT")
            && rules.contains("--uid-owner 0 -j RETURN")
            && rules.contains("-j REDIRECT --to-ports 15001"),
        "{rules}"
    );

    // The app's call, by name, reaches B's app through the proxy.
    let call = Pods::app_curl(&pods.a, "http://orders:8080/hello");
    assert!(call.status.success(), "app call: {}", text(&call));
    let body = String::from_utf8_lossy(&call.stdout);
    assert!(body.contains("orders-app"), "{body}");
    let logged = |want: &[(&str, &str)]| {
        wait_until(Duration::from_secs(10), || {
            records(&log).iter().any(|r| {
                want.iter()
                    .all(|(k, v)| r.get(*k).and_then(|x| x.as_str()) == Some(*v))
            })
        })
    };
    let upstream = format!("{B_IP}:8080");
    assert!(
        logged(&[
            ("protocol", "tcp"),
            ("listener", "outbound"),
            ("client", A_IP),
            ("service", "orders"),
            ("upstream", &upstream),
        ]),
        "no proxied connection in the access log:\n{}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        gw.stderr()
    );

    // A destination no service owns is refused by the proxy, not reached.
    let stray = Pods::app_curl(&pods.a, &format!("http://{B_IP}:8081/"));
    assert!(!stray.status.success(), "{}", text(&stray));
    assert!(
        logged(&[("listener", "outbound"), ("reason", "unknown_destination")]),
        "no refusal logged"
    );

    // Applying again changes nothing: one jump, one redirect.
    let again = Pods::exec(
        &pods.a,
        &[
            BIN,
            "intercept",
            "apply",
            "--outbound-port",
            "15001",
            "--inbound-port",
            "0",
            "--exclude-uid",
            "0",
        ],
    );
    assert!(again.status.success(), "apply again: {}", text(&again));
    let rules = Pods::nat_rules(&pods.a);
    assert_eq!(rules.matches("-j MESHGATE_OUTPUT").count(), 1, "{rules}");
    assert_eq!(rules.matches("REDIRECT").count(), 1, "{rules}");

    // With the proxy gone, the app's calls fail (they are still redirected, to a
    // closed port), while root's (the proxy's uid: excluded) go out directly.
    drop(gw);
    let refused = Pods::app_curl(&pods.a, "http://orders:8080/no-proxy");
    assert!(
        !refused.status.success(),
        "not redirected: {}",
        text(&refused)
    );
    let direct = Pods::exec(
        &pods.a,
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            &format!("http://{B_IP}:8080/root"),
        ],
    );
    assert!(direct.status.success(), "root call: {}", text(&direct));

    // Removal leaves nothing behind; the app's calls then go out directly.
    let remove = Pods::exec(
        &pods.a,
        &[
            BIN,
            "intercept",
            "remove",
            "--inbound-port",
            "0",
            "--exclude-uid",
            "0",
        ],
    );
    assert!(remove.status.success(), "remove: {}", text(&remove));
    let rules = Pods::nat_rules(&pods.a);
    assert!(!rules.contains("MESHGATE"), "{rules}");
    let after = Pods::app_curl(&pods.a, "http://orders:8080/after");
    assert!(after.status.success(), "direct call: {}", text(&after));
}

/// `apply --until-signal` removes its rules when stopped, inbound chain included;
/// connections from the other pod are redirected to the inbound port meanwhile.
#[test]
fn rules_held_until_signal_redirect_inbound_and_are_removed_on_exit() {
    if !privileged() {
        return;
    }
    let pods = Pods::new();
    // B's "inbound listener" is an echo server on 15006 answering as "inbound";
    // the app port 8080 has its own. Inbound interception sends 8080 to 15006.
    let mut inbound = Proc::meshgate(
        "inbound",
        &pods.b,
        &["echo", "--listen", "0.0.0.0:15006", "--name", "inbound"],
    );
    Pods::wait_listening(&pods.b, 15006, &mut inbound);
    let mut app = Proc::meshgate(
        "app",
        &pods.b,
        &["echo", "--listen", "0.0.0.0:8080", "--name", "orders-app"],
    );
    Pods::wait_listening(&pods.b, 8080, &mut app);
    let mut hold = Proc::meshgate(
        "hold",
        &pods.b,
        &[
            "intercept",
            "apply",
            "--until-signal",
            "--exclude-uid",
            "0",
            "--exclude-inbound-port",
            "22",
        ],
    );
    let installed = wait_until(Duration::from_secs(20), || {
        Pods::nat_rules(&pods.b).contains("-A PREROUTING -p tcp -j MESHGATE_INBOUND")
    });
    assert!(installed, "rules not installed:\n{}", hold.stderr());

    let call = Pods::app_curl(&pods.a, "http://orders:8080/in");
    assert!(call.status.success(), "{}", text(&call));
    assert!(
        String::from_utf8_lossy(&call.stdout).contains("\"inbound\""),
        "not redirected to the inbound port: {}",
        text(&call)
    );
    // Connections addressed to the inbound port itself reach it unchanged.
    let direct = Pods::app_curl(&pods.a, &format!("http://{B_IP}:15006/"));
    assert!(direct.status.success(), "{}", text(&direct));

    let term = sh("kill", &["-TERM", &hold.child.id().to_string()]);
    assert!(term.status.success(), "kill: {}", text(&term));
    let exited = wait_until(Duration::from_secs(20), || {
        matches!(hold.child.try_wait(), Ok(Some(_)))
    });
    assert!(
        exited,
        "apply --until-signal did not exit:\n{}",
        hold.stderr()
    );
    let rules = Pods::nat_rules(&pods.b);
    assert!(!rules.contains("MESHGATE"), "rules left behind:\n{rules}");
    let call = Pods::app_curl(&pods.a, "http://orders:8080/after");
    assert!(
        String::from_utf8_lossy(&call.stdout).contains("orders-app"),
        "{}",
        text(&call)
    );
}

/// The dry run needs no privilege: it prints the commands apply would run.
#[test]
fn print_shows_the_rules_without_installing_them() {
    let out = sh(
        BIN,
        &[
            "intercept",
            "print",
            "--exclude-uid",
            "1337",
            "--exclude-outbound-cidr",
            "10.96.0.0/12",
            "--exclude-inbound-port",
            "15000,22",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let lines = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = lines.lines().collect();
    assert!(
        lines.contains(&"iptables -t nat -A MESHGATE_OUTPUT -m owner --uid-owner 1337 -j RETURN")
    );
    assert!(lines.contains(&"iptables -t nat -A MESHGATE_OUTPUT -d 10.96.0.0/12 -j RETURN"));
    assert!(lines.contains(&"iptables -t nat -A MESHGATE_INBOUND -p tcp --dport 15000 -j RETURN"));
    assert!(
        lines.contains(&"iptables -t nat -A MESHGATE_INBOUND -p tcp -j REDIRECT --to-ports 15006")
    );
    assert_eq!(
        lines.last(),
        Some(&"iptables -t nat -A PREROUTING -p tcp -j MESHGATE_INBOUND")
    );
    let bad = sh(
        BIN,
        &["intercept", "print", "--exclude-outbound-cidr", "nope"],
    );
    assert!(!bad.status.success());
}
