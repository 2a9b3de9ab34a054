//! The rule set's exact commands, in order (order is semantics in iptables).

use super::*;

fn spec() -> Spec {
    Spec {
        outbound_port: 15001,
        inbound_port: Some(15006),
        exclude_uids: vec![0],
        exclude_outbound_ports: vec![9443],
        exclude_outbound_cidrs: vec!["10.96.0.0/12".parse().unwrap(), "fd00::/8".parse().unwrap()],
        exclude_inbound_ports: vec![22, 15000],
        ipv6: false,
    }
}

#[test]
fn ipv4_install_commands_in_order() {
    let lines = RuleSet::new(&spec()).install_lines();
    let want = [
        "iptables -t nat -N MESHGATE_OUTPUT",
        "iptables -t nat -F MESHGATE_OUTPUT",
        "iptables -t nat -N MESHGATE_INBOUND",
        "iptables -t nat -F MESHGATE_INBOUND",
        "iptables -t nat -A MESHGATE_OUTPUT -m owner --uid-owner 0 -j RETURN",
        "iptables -t nat -A MESHGATE_OUTPUT -d 127.0.0.0/8 -j RETURN",
        "iptables -t nat -A MESHGATE_OUTPUT -d 10.96.0.0/12 -j RETURN",
        "iptables -t nat -A MESHGATE_OUTPUT -p tcp --dport 9443 -j RETURN",
        "iptables -t nat -A MESHGATE_OUTPUT -p tcp -j REDIRECT --to-ports 15001",
        "iptables -t nat -A MESHGATE_INBOUND -p tcp --dport 15006 -j RETURN",
        "iptables -t nat -A MESHGATE_INBOUND -p tcp --dport 22 -j RETURN",
        "iptables -t nat -A MESHGATE_INBOUND -p tcp --dport 15000 -j RETURN",
        "iptables -t nat -A MESHGATE_INBOUND -p tcp -j REDIRECT --to-ports 15006",
        "iptables -t nat -A OUTPUT -p tcp -j MESHGATE_OUTPUT",
        "iptables -t nat -A PREROUTING -p tcp -j MESHGATE_INBOUND",
    ];
    assert_eq!(lines, want);
}

#[test]
fn removal_unhooks_then_deletes_and_tolerates_absence() {
    let set = RuleSet::new(&spec());
    let lines: Vec<String> = set.remove.iter().map(|s| s.command().to_string()).collect();
    assert_eq!(
        lines,
        [
            "iptables -t nat -D OUTPUT -p tcp -j MESHGATE_OUTPUT",
            "iptables -t nat -D PREROUTING -p tcp -j MESHGATE_INBOUND",
            "iptables -t nat -F MESHGATE_OUTPUT",
            "iptables -t nat -X MESHGATE_OUTPUT",
            "iptables -t nat -F MESHGATE_INBOUND",
            "iptables -t nat -X MESHGATE_INBOUND",
        ]
    );
    assert!(set.remove.iter().all(|s| matches!(s, Step::Try(_))));
    // Jumps are added once (checked with -C); chain creation may find the chain.
    let once: Vec<&Step> = set
        .install
        .iter()
        .filter(|s| matches!(s, Step::Once(_)))
        .collect();
    assert_eq!(once.len(), 2);
    assert_eq!(
        once[0].command().with_action("-C").to_string(),
        "iptables -t nat -C OUTPUT -p tcp -j MESHGATE_OUTPUT"
    );
}

#[test]
fn without_an_inbound_port_only_outbound_is_intercepted() {
    let set = RuleSet::new(&Spec {
        inbound_port: None,
        exclude_inbound_ports: vec![22],
        ..spec()
    });
    let lines = set.install_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("REDIRECT --to-ports 15001"))
    );
    assert!(!lines.iter().any(|l| l.contains("-A MESHGATE_INBOUND")
        || l.contains("-A PREROUTING")
        || l.contains("-N MESHGATE_INBOUND")));
    // A stale inbound chain from an earlier run is removed, tolerantly, last.
    let tail: Vec<&String> = lines.iter().rev().take(3).collect();
    assert_eq!(
        tail,
        [
            "iptables -t nat -X MESHGATE_INBOUND",
            "iptables -t nat -F MESHGATE_INBOUND",
            "iptables -t nat -D PREROUTING -p tcp -j MESHGATE_INBOUND",
        ]
    );
    assert!(
        set.install
            .iter()
            .rev()
            .take(3)
            .all(|s| matches!(s, Step::Try(_)))
    );
    // Removal covers both chains regardless.
    assert_eq!(set.remove, RuleSet::new(&spec()).remove);
}

#[test]
fn ipv6_adds_ip6tables_with_its_loopback_and_cidrs() {
    let lines = RuleSet::new(&Spec {
        ipv6: true,
        ..spec()
    })
    .install_lines();
    let v6: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("ip6tables "))
        .collect();
    assert_eq!(v6.len(), 15);
    assert!(
        v6.iter()
            .any(|l| l.ends_with("-A MESHGATE_OUTPUT -d ::1/128 -j RETURN"))
    );
    assert!(
        v6.iter()
            .any(|l| l.ends_with("-A MESHGATE_OUTPUT -d fd00::/8 -j RETURN"))
    );
    // Each family gets only its own networks.
    assert!(!v6.iter().any(|l| l.contains("10.96.0.0/12")));
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("iptables ") && l.contains("fd00::/8"))
    );
}

#[test]
fn current_uid_is_known_on_linux() {
    assert!(current_uid().is_some());
}
