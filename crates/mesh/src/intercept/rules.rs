//! The iptables rule set of transparent interception, built as data: which chains,
//! which rules in which order, and the commands that install and remove them. Pure:
//! nothing here runs a command (`apply` does), so `--dry-run` prints exactly what
//! would run.
//!
//! Two chains in the `nat` table, like Istio's init step:
//! - `MESHGATE_OUTPUT`, jumped to from `OUTPUT` for TCP: connections the app opens
//!   are redirected to the sidecar's outbound port, except those of the excluded
//!   uids (the sidecar's own: without this its upstream connections would loop back
//!   into itself), to loopback, and to excluded CIDRs and ports.
//! - `MESHGATE_INBOUND`, jumped to from `PREROUTING` for TCP: connections arriving
//!   from the network are redirected to the sidecar's inbound port, except those
//!   already addressed to it (other sidecars dial it directly) and excluded ports.
//!
//! Only the first packet of a connection passes `nat`, so replies and established
//! connections are untouched and the rules cost nothing per packet afterwards.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// The chain redirecting the app's outbound connections.
pub const OUTPUT_CHAIN: &str = "MESHGATE_OUTPUT";
/// The chain redirecting connections that arrive from the network.
pub const INBOUND_CHAIN: &str = "MESHGATE_INBOUND";

/// What to intercept and what to leave alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The sidecar's outbound listener port (on loopback).
    pub outbound_port: u16,
    /// The sidecar's inbound listener port; `None`: inbound traffic is not
    /// intercepted.
    pub inbound_port: Option<u16>,
    /// Processes of these uids are never redirected: the sidecar's own uid must be
    /// among them.
    pub exclude_uids: Vec<u32>,
    /// Outbound connections to these ports go out directly.
    pub exclude_outbound_ports: Vec<u16>,
    /// Outbound connections to these networks go out directly.
    pub exclude_outbound_cidrs: Vec<IpNet>,
    /// Inbound connections to these ports reach their listener directly (ssh, the
    /// sidecar's admin port, a control plane running beside the app).
    pub exclude_inbound_ports: Vec<u16>,
    /// Also install the rules for IPv6 (`ip6tables`). IPv4 only otherwise.
    pub ipv6: bool,
}

/// Which iptables binary a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn program(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1/128",
        }
    }

    fn holds(self, net: &IpNet) -> bool {
        matches!(
            (self, net.addr()),
            (Family::V4, IpAddr::V4(_)) | (Family::V6, IpAddr::V6(_))
        )
    }
}

/// One iptables invocation: `<program> -t nat <args…>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub family: Family,
    pub args: Vec<String>,
}

impl Command {
    fn nat(family: Family, args: &[&str]) -> Command {
        let mut all = vec!["-t".to_owned(), "nat".to_owned()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        Command { family, args: all }
    }

    /// The same rule with its action (`-A`/`-I`/`-D`) replaced by `action`.
    pub fn with_action(&self, action: &str) -> Command {
        let mut args = self.args.clone();
        if let Some(a) = args.get_mut(2) {
            action.clone_into(a);
        }
        Command {
            family: self.family,
            args,
        }
    }
}

impl fmt::Display for Command {
    /// As a shell command line (no argument needs quoting: all are flags, chain
    /// names, numbers and CIDRs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.family.program())?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

/// How `apply` treats a step's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Must succeed.
    Run(Command),
    /// May fail (creating a chain that exists, deleting one that is gone).
    Try(Command),
    /// An `-A` rule added only when `-C` says it is not there yet: the jumps
    /// from the built-in chains, so applying twice leaves one jump.
    Once(Command),
}

impl Step {
    pub fn command(&self) -> &Command {
        match self {
            Step::Run(c) | Step::Try(c) | Step::Once(c) => c,
        }
    }
}

/// The steps that install the rules and the steps that remove them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    pub install: Vec<Step>,
    pub remove: Vec<Step>,
}

impl RuleSet {
    /// The rule set for `spec`: IPv4, and IPv6 when asked.
    pub fn new(spec: &Spec) -> RuleSet {
        let mut set = RuleSet {
            install: Vec::new(),
            remove: Vec::new(),
        };
        let families: &[Family] = if spec.ipv6 {
            &[Family::V4, Family::V6]
        } else {
            &[Family::V4]
        };
        for &family in families {
            set.add_family(spec, family);
        }
        set
    }

    /// The install commands as shell lines (`--dry-run`).
    pub fn install_lines(&self) -> Vec<String> {
        self.install
            .iter()
            .map(|s| s.command().to_string())
            .collect()
    }

    fn add_family(&mut self, spec: &Spec, family: Family) {
        let nat = |args: &[&str]| Command::nat(family, args);
        let mut chains = vec![(OUTPUT_CHAIN, "OUTPUT")];
        if spec.inbound_port.is_some() {
            chains.push((INBOUND_CHAIN, "PREROUTING"));
        }
        // Own chains, created if absent and emptied: a re-run (or a sidecar that
        // crashed without cleaning up) ends with exactly this rule set.
        for (chain, _) in &chains {
            self.install.push(Step::Try(nat(&["-N", chain])));
            self.install.push(Step::Run(nat(&["-F", chain])));
        }
        let out = |rule: &[&str]| {
            let mut args = vec!["-A", OUTPUT_CHAIN];
            args.extend_from_slice(rule);
            Step::Run(nat(&args))
        };
        for uid in &spec.exclude_uids {
            let uid = uid.to_string();
            self.install
                .push(out(&["-m", "owner", "--uid-owner", &uid, "-j", "RETURN"]));
        }
        self.install
            .push(out(&["-d", family.loopback(), "-j", "RETURN"]));
        for net in spec
            .exclude_outbound_cidrs
            .iter()
            .filter(|n| family.holds(n))
        {
            let net = net.to_string();
            self.install.push(out(&["-d", &net, "-j", "RETURN"]));
        }
        for port in &spec.exclude_outbound_ports {
            let port = port.to_string();
            self.install
                .push(out(&["-p", "tcp", "--dport", &port, "-j", "RETURN"]));
        }
        let to = spec.outbound_port.to_string();
        self.install
            .push(out(&["-p", "tcp", "-j", "REDIRECT", "--to-ports", &to]));
        if let Some(inbound) = spec.inbound_port {
            let inb = |rule: &[&str]| {
                let mut args = vec!["-A", INBOUND_CHAIN];
                args.extend_from_slice(rule);
                Step::Run(nat(&args))
            };
            let to = inbound.to_string();
            let mut direct = vec![inbound];
            direct.extend(&spec.exclude_inbound_ports);
            for port in direct {
                let port = port.to_string();
                self.install
                    .push(inb(&["-p", "tcp", "--dport", &port, "-j", "RETURN"]));
            }
            self.install
                .push(inb(&["-p", "tcp", "-j", "REDIRECT", "--to-ports", &to]));
        }
        for (chain, from) in &chains {
            self.install
                .push(Step::Once(nat(&["-A", from, "-p", "tcp", "-j", chain])));
        }
        let all = [(OUTPUT_CHAIN, "OUTPUT"), (INBOUND_CHAIN, "PREROUTING")];
        if spec.inbound_port.is_none() {
            // An inbound chain left by an earlier run with inbound interception
            // goes: the result is exactly this rule set.
            self.install.extend(unhook(family, &all[1..]));
        }
        // Removal covers both chains whatever this spec installs, so `remove`
        // also cleans up after a run with other settings.
        self.remove.extend(unhook(family, &all));
    }
}

/// Steps removing `chains` (`(chain, jumped to from)`): unhook first (so no
/// packet meets a half-emptied chain), then empty and delete. Everything may
/// already be gone.
fn unhook(family: Family, chains: &[(&str, &str)]) -> Vec<Step> {
    let nat = |args: &[&str]| Step::Try(Command::nat(family, args));
    let mut steps: Vec<Step> = chains
        .iter()
        .map(|(chain, from)| nat(&["-D", from, "-p", "tcp", "-j", chain]))
        .collect();
    for (chain, _) in chains {
        steps.push(nat(&["-F", chain]));
        steps.push(nat(&["-X", chain]));
    }
    steps
}

/// The effective uid of this process (the owner of `/proc/self`), for excluding
/// the sidecar's own traffic; `None` where `/proc` is not mounted.
pub fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
