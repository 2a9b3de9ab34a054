//! `meshgate intercept print|apply|remove`: the transparent-interception rules on
//! their own (a developer tool, and the init-step form: install the rules, then
//! start the sidecar). `RuleArgs` are the flags that say what is intercepted;
//! `meshgate sidecar --intercept` flattens their `Exclusions` part into its own
//! arguments and passes the spec to `meshgate_mesh::intercept::start`.

use std::net::IpAddr;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use meshgate_mesh::intercept::rules::{RuleSet, Spec, current_uid};
use meshgate_mesh::intercept::{self, Interception, IpNet, apply};

/// The ports of `meshgate intercept`: where redirected connections go.
#[derive(Args, Debug, Clone)]
pub struct RuleArgs {
    /// The sidecar's outbound listener port (the app's connections go there).
    #[arg(long, default_value_t = 15001)]
    pub outbound_port: u16,
    /// The sidecar's inbound listener port (connections from the network go
    /// there); 0: inbound traffic is not intercepted.
    #[arg(long, default_value_t = 15006)]
    pub inbound_port: u16,
    #[command(flatten)]
    pub exclusions: Exclusions,
}

impl RuleArgs {
    pub fn spec(&self) -> Result<Spec, String> {
        let inbound = (self.inbound_port != 0).then_some(self.inbound_port);
        self.exclusions.spec(self.outbound_port, inbound)
    }
}

/// What interception leaves alone. Without port flags, so a role with its own
/// `--outbound-port`/`--inbound-port` (`meshgate sidecar --intercept`) can
/// flatten it into its arguments and call `spec` with its ports.
#[derive(Args, Debug, Clone)]
pub struct Exclusions {
    /// Connections of processes with this uid are never redirected; repeatable.
    /// Default: this process's own uid (the sidecar's). The app must run as
    /// another user.
    #[arg(long = "exclude-uid", value_name = "UID")]
    pub exclude_uids: Vec<u32>,
    /// Outbound connections to these ports go out directly (comma-separated or
    /// repeated).
    #[arg(
        long = "exclude-outbound-port",
        value_name = "PORT",
        value_delimiter = ','
    )]
    pub exclude_outbound_ports: Vec<u16>,
    /// Outbound connections to these networks go out directly, e.g. 10.0.0.0/8.
    #[arg(long = "exclude-outbound-cidr", value_name = "CIDR", value_delimiter = ',', value_parser = cidr)]
    pub exclude_outbound_cidrs: Vec<IpNet>,
    /// Inbound connections to these ports reach their listener directly (ssh, a
    /// control plane beside the app).
    #[arg(
        long = "exclude-inbound-port",
        value_name = "PORT",
        value_delimiter = ','
    )]
    pub exclude_inbound_ports: Vec<u16>,
    /// Also intercept IPv6 (ip6tables). Default: IPv4 only.
    #[arg(long)]
    pub ipv6: bool,
}

impl Exclusions {
    /// The rule spec for a proxy with these ports (`inbound` `None`: inbound
    /// traffic is not intercepted); fails when no uid is given and this
    /// process's cannot be read.
    pub fn spec(&self, outbound: u16, inbound: Option<u16>) -> Result<Spec, String> {
        let exclude_uids = if self.exclude_uids.is_empty() {
            vec![current_uid().ok_or("cannot read this process's uid: pass --exclude-uid")?]
        } else {
            self.exclude_uids.clone()
        };
        Ok(Spec {
            outbound_port: outbound,
            inbound_port: inbound,
            exclude_uids,
            exclude_outbound_ports: self.exclude_outbound_ports.clone(),
            exclude_outbound_cidrs: self.exclude_outbound_cidrs.clone(),
            exclude_inbound_ports: self.exclude_inbound_ports.clone(),
            ipv6: self.ipv6,
        })
    }
}

/// `10.0.0.0/8`, or a single address (`10.0.0.1` = `10.0.0.1/32`).
fn cidr(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR (10.0.0.0/8) or IP address"))
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the iptables commands that `apply` would run (dry run).
    Print(RuleArgs),
    /// Install the rules (idempotent). They stay installed after the command
    /// exits, unless --until-signal is given.
    Apply {
        #[command(flatten)]
        rules: RuleArgs,
        /// Keep running and remove the rules on SIGTERM/SIGINT.
        #[arg(long)]
        until_signal: bool,
    },
    /// Remove the rules (whatever part of them is present).
    Remove(RuleArgs),
}

pub fn run(command: Command) -> ExitCode {
    let (rules, action) = match &command {
        Command::Print(r) => (r, "print"),
        Command::Apply { rules, .. } => (rules, "apply"),
        Command::Remove(r) => (r, "remove"),
    };
    let spec = match rules.spec() {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("meshgate intercept {action}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        Command::Print(_) => intercept::start(&spec, true).map(|_| ()),
        Command::Remove(_) => apply::remove(&RuleSet::new(&spec)),
        Command::Apply { until_signal, .. } => Interception::install(&spec).map(|guard| {
            if until_signal {
                hold(guard);
            } else {
                guard.keep();
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshgate intercept {action}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Waits for a stopping signal with the rules installed; dropping `guard` at the
/// end removes them.
fn hold(guard: Interception) {
    eprintln!("interception rules installed; SIGTERM or SIGINT removes them");
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => {
            let signal = rt.block_on(crate::signals::shutdown_signal());
            eprintln!("{signal}: removing the interception rules");
        }
        Err(e) => eprintln!("cannot wait for signals ({e}): removing the rules"),
    }
    drop(guard);
}
