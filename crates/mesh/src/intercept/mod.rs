//! Transparent interception: iptables rules that send an unmodified app's TCP
//! connections through its sidecar (outbound to the sidecar's outbound port,
//! inbound to its inbound port), built as data (`rules`) and installed, removed
//! and guarded (`apply`). The sidecar's own connections are excluded by uid
//! (`-m owner --uid-owner`): the app must run as another user than the sidecar.
//! The original destination of a redirected connection is read back by core's
//! `l4::original_dst` (`SO_ORIGINAL_DST`).

pub mod apply;
pub mod rules;

pub use apply::{ApplyError, Interception};
pub use ipnet::IpNet;
pub use rules::{RuleSet, Spec};

/// `--intercept` of a long-running role (`meshgate sidecar`): with `dry_run`,
/// prints the install commands and returns `None` (the caller exits); otherwise
/// installs the rules and returns the guard that removes them when dropped: hold
/// it for the life of the process. Runs a few `iptables` processes synchronously
/// (call it before serving, or from `spawn_blocking`).
///
/// The sidecar's inbound listener must listen on the pod's address (e.g.
/// `0.0.0.0`): `PREROUTING` redirects to the address of the interface the
/// connection arrived on. The outbound listener may listen on `127.0.0.1`
/// (`OUTPUT` redirects to loopback).
pub fn start(spec: &Spec, dry_run: bool) -> Result<Option<Interception>, ApplyError> {
    if dry_run {
        for line in RuleSet::new(spec).install_lines() {
            println!("{line}");
        }
        return Ok(None);
    }
    Interception::install(spec).map(Some)
}
