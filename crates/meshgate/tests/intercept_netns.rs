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
#[path = "intercept_netns/pods.rs"]
mod pods;
#[path = "intercept_netns/sidecar.rs"]
mod sidecar;

use std::path::Path;
use std::time::Duration;

use common::{BIN, TempDir};
use pods::*;

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
