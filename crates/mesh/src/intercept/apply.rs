//! Installing and removing the interception rules with the `iptables` binary
//! (Debian's `iptables` package; its nft backend is fine), and the guard that
//! removes them when the sidecar stops, also on a failed start or a panic.
//!
//! Installing is idempotent: the own chains are created if absent and flushed,
//! the jumps into them added only when `iptables -C` does not find them, so
//! re-running after a crash that left rules behind ends with one clean set.
//! Commands run synchronously (a few fork/execs at start and stop); every one
//! gets `-w` so it waits for the xtables lock rather than failing on it.

use std::io;
use std::process::{Command as Process, Output};

use super::rules::{Command, RuleSet, Spec, Step};

/// A rules command that could not be run or failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "cannot run {program}: {source} (install the Debian package `iptables`; \
         interception needs root or CAP_NET_ADMIN)"
    )]
    Spawn {
        program: &'static str,
        source: io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
}

/// Installed interception rules; dropping the guard removes them.
#[derive(Debug)]
pub struct Interception {
    set: RuleSet,
    /// False once removed or deliberately left installed (`keep`).
    armed: bool,
}

impl Interception {
    /// Installs the rules of `spec`. On failure whatever was installed is removed
    /// again and the first error returned.
    pub fn install(spec: &Spec) -> Result<Interception, ApplyError> {
        let set = RuleSet::new(spec);
        // Armed before the first command: a failure midway drops it, removing the
        // part already installed.
        let guard = Interception { set, armed: true };
        for step in &guard.set.install {
            run_step(step)?;
        }
        tracing::info!(
            rules = guard.set.install.len(),
            "interception rules installed"
        );
        Ok(guard)
    }

    /// The rule set this guard installed.
    pub fn rules(&self) -> &RuleSet {
        &self.set
    }

    /// Removes the rules now, reporting a command that could not run.
    pub fn remove(mut self) -> Result<(), ApplyError> {
        self.armed = false;
        remove(&self.set)
    }

    /// Leaves the rules installed after the guard is gone (an init step that
    /// installs them for a sidecar started later).
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Interception {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = remove(&self.set)
        {
            tracing::error!(error = %e, "removing the interception rules failed");
        }
    }
}

/// Runs the removal steps of `set`; parts already gone are fine. Fails only when
/// a command cannot be run at all.
pub fn remove(set: &RuleSet) -> Result<(), ApplyError> {
    let mut first = None;
    for step in &set.remove {
        if let Err(e) = run_step(step) {
            first.get_or_insert(e);
        }
    }
    match first {
        Some(e) => Err(e),
        None => {
            tracing::info!("interception rules removed");
            Ok(())
        }
    }
}

fn run_step(step: &Step) -> Result<(), ApplyError> {
    match step {
        Step::Run(c) => check(c, run(c)?),
        Step::Try(c) => {
            let out = run(c)?;
            if !out.status.success() {
                tracing::debug!(command = %c, stderr = %stderr(&out), "tolerated failure");
            }
            Ok(())
        }
        Step::Once(c) => {
            if run(&c.with_action("-C"))?.status.success() {
                return Ok(());
            }
            check(c, run(c)?)
        }
    }
}

fn run(c: &Command) -> Result<Output, ApplyError> {
    let program = c.family.program();
    Process::new(program)
        .arg("-w")
        .args(&c.args)
        .output()
        .map_err(|source| ApplyError::Spawn { program, source })
}

fn check(c: &Command, out: Output) -> Result<(), ApplyError> {
    if out.status.success() {
        return Ok(());
    }
    Err(ApplyError::Failed {
        command: c.to_string(),
        stderr: stderr(&out),
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}
