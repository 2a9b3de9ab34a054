//! The privileged mesh test of `meshgate sidecar --intercept` (a control plane
//! and two pods, each sidecar installing its own rules) and its no-root dry
//! run. Uses the parent's `Pods`/`Proc` helpers.

use std::path::Path;
use std::time::Duration;

use super::common::{BIN, TempDir};
use super::{A_IP, B_IP, Pods, Proc, privileged, records, sh, text, wait_until};

const WEB_ID: &str = "spiffe://cluster.local/ns/default/sa/web";

/// A `meshgate control` in pod A, reachable from B at A's address (its serving
/// certificate names it), with operator, sidecar and registrar tokens.
fn control_config(dir: &TempDir) -> String {
    for t in ["operator", "sidecar", "registrar"] {
        dir.write(&format!("{t}.token"), &format!("{t}-secret-0123456789\n"));
    }
    let p = |name: &str| dir.path(name).display().to_string();
    format!(
        "# meshgate control config\n\
         listen: 0.0.0.0:15010\n\
         dataDir: {data:?}\n\
         tls: {{serverNames: [\"127.0.0.1\", \"{A_IP}\"]}}\n\
         tokens:\n\
         \x20 - {{name: ops, tokenFile: {op:?}, scope: operator}}\n\
         \x20 - {{name: sidecars, tokenFile: {sc:?}, scope: sidecar}}\n\
         \x20 - {{name: instances, tokenFile: {reg:?}, scope: registrar}}\n\
         mesh: {{trustDomain: cluster.local}}\n",
        data = p("data"),
        op = p("operator.token"),
        sc = p("sidecar.token"),
        reg = p("registrar.token"),
    )
}

const MESH_DOCUMENT: &str = "mesh:
  trustDomain: cluster.local
  services:
    - {name: web, ports: [{port: 80, protocol: HTTP}]}
    - {name: orders, ports: [{port: 8080, protocol: HTTP}, {port: 9090, protocol: TCP}]}
";

/// `meshgate sidecar --intercept` for `service` in pod `ns` at `ip`, talking to
/// the control plane at `control`; extra flags appended.
fn sidecar(
    cp: &TempDir,
    service: &str,
    ns: &str,
    ip: &str,
    control: &str,
    log: &Path,
    extra: &[&str],
) -> Proc {
    let dir = TempDir::new(&format!("intercept-sc-{service}"));
    let p = |name: &str| cp.path(name).display().to_string();
    let (ca, token, registrar) = (
        p("data/ca/ca.pem"),
        p("sidecar.token"),
        p("registrar.token"),
    );
    let data = dir.path("data").display().to_string();
    let advertise = format!("{ip}:15006");
    let log = log.display().to_string();
    let mut args = vec![
        "sidecar",
        "--service",
        service,
        "--control",
        control,
        "--control-ca",
        &ca,
        "--token-file",
        &token,
        "--registrar-token-file",
        &registrar,
        "--advertise",
        &advertise,
        "--data-dir",
        &data,
        "--access-log",
        &log,
        "--registration-ttl",
        "5s",
        "--intercept",
        "--exclude-uid",
        "0",
    ];
    args.extend_from_slice(extra);
    Proc::meshgate(&format!("sidecar-{service}"), ns, &args)
}

/// Sends SIGTERM to `proc` and waits until it exits.
fn terminate(proc: &mut Proc) {
    let term = sh("kill", &["-TERM", &proc.child.id().to_string()]);
    assert!(term.status.success(), "kill: {}", text(&term));
    let exited = wait_until(Duration::from_secs(30), || {
        matches!(proc.child.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "{} did not exit:\n{}", proc.name, proc.stderr());
}

/// The mesh with interception: pod A runs the control plane and `web`'s
/// sidecar, pod B `orders`' app and sidecar, both sidecars with `--intercept`.
/// An unmodified `curl` in pod A (uid 65534) calling `http://orders:8080/`
/// reaches B's app through A's outbound listener (routed by `Host`) and B's
/// inbound listener, with mTLS (B's access log shows A's SPIFFE ID); a plaintext
/// connection to B's app port, even from an excluded uid, is redirected to B's
/// inbound port and refused there; a TCP port of the service is reached at L4
/// through both sidecars; the rules are gone when the sidecars stop.
#[test]
fn sidecars_with_intercept_carry_an_unmodified_client_over_mtls() {
    if !privileged() {
        return;
    }
    let pods = Pods::new();
    let cp_dir = TempDir::new("intercept-cp");
    let config = cp_dir.write("control.yaml", &control_config(&cp_dir));
    let config = config.to_str().expect("utf-8 path");
    let mut cp = Proc::meshgate("control", &pods.a, &["control", "-c", config]);
    Pods::wait_listening(&pods.a, 15010, &mut cp);
    let doc = cp_dir.write("mesh.yaml", MESH_DOCUMENT);
    let (ca, op) = (cp_dir.path("data/ca/ca.pem"), cp_dir.path("operator.token"));
    let apply = Pods::exec(
        &pods.a,
        &[
            BIN,
            "apply",
            "-f",
            doc.to_str().expect("utf-8 path"),
            "--control",
            "https://127.0.0.1:15010",
            "--control-ca",
            ca.to_str().expect("utf-8 path"),
            "--token-file",
            op.to_str().expect("utf-8 path"),
        ],
    );
    assert!(apply.status.success(), "apply: {}", text(&apply));

    let mut app = Proc::meshgate(
        "app",
        &pods.b,
        &["echo", "--listen", "127.0.0.1:8080", "--name", "orders-app"],
    );
    Pods::wait_listening(&pods.b, 8080, &mut app);
    // orders' TCP port (an HTTP echo carried at L4).
    let mut tcp_app = Proc::meshgate(
        "tcp-app",
        &pods.b,
        &["echo", "--listen", "127.0.0.1:9090", "--name", "orders-tcp"],
    );
    Pods::wait_listening(&pods.b, 9090, &mut tcp_app);
    let logs = TempDir::new("intercept-logs");
    let (log_a, log_b) = (logs.path("web.log"), logs.path("orders.log"));
    // The control plane beside A's app: B's sidecar reaches it at A's address,
    // which A's inbound interception must leave alone.
    let mut sc_a = sidecar(
        &cp_dir,
        "web",
        &pods.a,
        A_IP,
        "https://127.0.0.1:15010",
        &log_a,
        &["--exclude-inbound-port", "15010"],
    );
    let control_b = format!("https://{A_IP}:15010");
    let mut sc_b = sidecar(&cp_dir, "orders", &pods.b, B_IP, &control_b, &log_b, &[]);
    for (ns, sc) in [(&pods.a, &mut sc_a), (&pods.b, &mut sc_b)] {
        let installed = wait_until(Duration::from_secs(60), || {
            if let Ok(Some(status)) = sc.child.try_wait() {
                panic!("{} exited ({status}):\n{}", sc.name, sc.stderr());
            }
            Pods::nat_rules(ns).contains("-A PREROUTING -p tcp -j MESHGATE_INBOUND")
        });
        assert!(installed, "{}: no rules:\n{}", sc.name, sc.stderr());
    }

    // Once A's config holds B's registered sidecar, the app's call gets through.
    let mut last = None;
    let reached = wait_until(Duration::from_secs(60), || {
        let call = Pods::app_curl(&pods.a, "http://orders:8080/api");
        let ok = String::from_utf8_lossy(&call.stdout).contains("orders-app");
        last = Some(call);
        ok
    });
    assert!(
        reached,
        "app call: {}\nA: {}\nB: {}",
        last.as_ref().map(text).unwrap_or_default(),
        sc_a.stderr(),
        sc_b.stderr()
    );
    let logged = |log: &Path, want: &[(&str, &str)]| {
        wait_until(Duration::from_secs(10), || {
            records(log).iter().any(|r| {
                want.iter()
                    .all(|(k, v)| r.get(*k).and_then(|x| x.as_str()) == Some(*v))
            })
        })
    };
    assert!(
        logged(
            &log_a,
            &[
                ("route", "outbound-orders.default"),
                ("authority", "orders:8080"),
                ("service", "orders.default"),
                ("upstream", &format!("{B_IP}:15006")),
            ]
        ),
        "A's sidecar did not route the call:\n{}",
        std::fs::read_to_string(&log_a).unwrap_or_default()
    );
    assert!(
        logged(
            &log_b,
            &[
                ("route", "inbound"),
                ("client_cert", WEB_ID),
                ("path", "/api")
            ]
        ),
        "B's sidecar did not see A's identity:\n{}",
        std::fs::read_to_string(&log_b).unwrap_or_default()
    );

    // orders' TCP port at A's outbound port + 1: A's sidecar dials B's inbound
    // TCP listener (inbound port + 1), which B's rules must leave alone (the
    // sidecar excludes the ports of its inbound listeners).
    let tcp = Pods::app_curl(&pods.a, "http://127.0.0.1:15002/tcp");
    assert!(
        String::from_utf8_lossy(&tcp.stdout).contains("orders-tcp"),
        "TCP port: {}\nB: {}",
        text(&tcp),
        Pods::nat_rules(&pods.b)
    );
    assert!(
        Pods::nat_rules(&pods.b).contains("--dport 15007 -j RETURN"),
        "{}",
        Pods::nat_rules(&pods.b)
    );

    // Plaintext to B's app port, from A's excluded uid (root: not redirected in
    // A), is redirected to B's inbound port by B's rules, which wants mTLS.
    let bypass = Pods::exec(
        &pods.a,
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            &format!("http://{B_IP}:8080/bypass"),
        ],
    );
    assert!(
        !String::from_utf8_lossy(&bypass.stdout).contains("orders-app"),
        "B's app reached in plaintext: {}",
        text(&bypass)
    );

    // Stopping the sidecars removes their rules.
    terminate(&mut sc_a);
    terminate(&mut sc_b);
    for ns in [&pods.a, &pods.b] {
        let rules = Pods::nat_rules(ns);
        assert!(!rules.contains("MESHGATE"), "rules left behind:\n{rules}");
    }
    drop(cp);
}

/// `meshgate sidecar --intercept --dry-run` prints the rules and exits without
/// reading its token files or contacting the control plane; a non-loopback
/// admin port is left out of inbound interception.
#[test]
fn sidecar_dry_run_prints_the_rules() {
    let out = sh(
        BIN,
        &[
            "sidecar",
            "--service",
            "web",
            "--control",
            "https://127.0.0.1:1",
            "--control-ca",
            "/nonexistent/ca.pem",
            "--token-file",
            "/nonexistent/token",
            "--data-dir",
            "/nonexistent/data",
            "--inbound-port",
            "16006",
            "--outbound-port",
            "16001",
            "--admin",
            "0.0.0.0:15000",
            "--intercept",
            "--dry-run",
            "--exclude-uid",
            "1337",
            "--exclude-inbound-port",
            "22",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let lines = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = lines.lines().collect();
    for want in [
        "iptables -t nat -A MESHGATE_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "iptables -t nat -A MESHGATE_OUTPUT -p tcp -j REDIRECT --to-ports 16001",
        "iptables -t nat -A MESHGATE_INBOUND -p tcp --dport 16006 -j RETURN",
        "iptables -t nat -A MESHGATE_INBOUND -p tcp --dport 22 -j RETURN",
        "iptables -t nat -A MESHGATE_INBOUND -p tcp --dport 15000 -j RETURN",
        "iptables -t nat -A MESHGATE_INBOUND -p tcp -j REDIRECT --to-ports 16006",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in {lines:#?}");
    }
    // --dry-run only means something with --intercept.
    let bad = sh(
        BIN,
        &[
            "sidecar",
            "--service",
            "web",
            "--control",
            "https://127.0.0.1:1",
            "--control-ca",
            "/x",
            "--token-file",
            "/x",
            "--data-dir",
            "/x",
            "--dry-run",
        ],
    );
    assert!(!bad.status.success(), "{}", text(&bad));
}
