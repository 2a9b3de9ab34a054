//! Automatic rollback: after an apply of version V, this replica watches what the
//! proxies answer. Once every connected proxy has answered V (or the window ends),
//! if more than the configured share of the answers are NACKs, the previous
//! version's content is committed again as a new version — with `expected = V`, so
//! an operator who applied something newer meanwhile wins — and the event is
//! logged at error level and counted (`meshgate_control_auto_rollbacks_total`).
//!
//! The store has no watch on proxy records (they change with every ACK), so the
//! watcher polls them; a poll is one read of the store, cheap on both backends.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

use crate::store::{NewRevision, ProxyRecord, Revision, Store, StoreError};

/// How often proxy records are read while a rollout is watched.
const POLL: Duration = Duration::from_millis(100);

/// When to roll back a version automatically.
#[derive(Debug, Clone)]
pub struct AutoRollback {
    /// Roll back when NACKs / answers exceeds this share (0.5: more than half).
    pub nack_share: f64,
    /// How long to wait for the connected proxies to answer.
    pub window: Duration,
    /// Decide only when at least this many proxies answered.
    pub min_proxies: usize,
    /// Where rollbacks and verdicts are counted (shared by clones).
    pub metrics: RollbackMetrics,
}

impl Default for AutoRollback {
    fn default() -> Self {
        Self {
            nack_share: 0.5,
            window: Duration::from_secs(30),
            min_proxies: 1,
            metrics: RollbackMetrics::default(),
        }
    }
}

/// Counters of the rollout watcher; clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct RollbackMetrics {
    rollbacks: Counter,
    verdicts: Family<[(&'static str, &'static str); 1], Counter>,
}

impl RollbackMetrics {
    /// Adds the counters to `registry` (`meshgate_control_auto_rollbacks_total`,
    /// `meshgate_control_rollout_verdicts_total{verdict}`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "meshgate_control_auto_rollbacks",
            "Versions rolled back automatically because too many proxies refused them",
            self.rollbacks.clone(),
        );
        registry.register(
            "meshgate_control_rollout_verdicts",
            "Rollouts watched after an apply, by verdict",
            self.verdicts.clone(),
        );
    }

    /// A registry holding only these counters.
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        self.register(&mut registry);
        registry
    }

    /// Automatic rollbacks so far.
    pub fn rollbacks(&self) -> u64 {
        self.rollbacks.get()
    }

    /// Rollouts that ended with `verdict` so far.
    pub fn verdicts(&self, verdict: Verdict) -> u64 {
        self.verdicts
            .get_or_create(&[("verdict", verdict.name())])
            .get()
    }

    fn count(&self, verdict: Verdict) {
        self.verdicts
            .get_or_create(&[("verdict", verdict.name())])
            .inc();
        if verdict == Verdict::RolledBack {
            self.rollbacks.inc();
        }
    }
}

/// How a watched rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Few enough NACKs: the version stays.
    Kept,
    /// Too many NACKs: the previous content was committed again.
    RolledBack,
    /// Too many NACKs, but there is no earlier version to go back to.
    NoPrevious,
    /// Fewer than `min_proxies` answered within the window: nothing decided.
    TooFewAnswers,
    /// A newer version was committed meanwhile: nothing to decide.
    Superseded,
    /// The store failed while rolling back (logged).
    Failed,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Kept => "kept",
            Verdict::RolledBack => "rolled_back",
            Verdict::NoPrevious => "no_previous",
            Verdict::TooFewAnswers => "too_few_answers",
            Verdict::Superseded => "superseded",
            Verdict::Failed => "failed",
        }
    }
}

/// What the connected proxies answered to one config version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub connected: usize,
    pub answered: usize,
    pub nacked: usize,
    /// The reason of the first NACK (by proxy key), for the note and the log.
    pub first_reason: String,
}

impl Tally {
    /// Counts the answers of connected proxies to config `version`. A proxy that
    /// refused one snapshot of `version` but serves another (new endpoints) runs it.
    pub fn of(records: &[ProxyRecord], version: u64) -> Tally {
        let mut tally = Tally::default();
        for r in records.iter().filter(|r| r.connected) {
            tally.connected += 1;
            if r.acked_config == version {
                tally.answered += 1;
            } else if r.nacked_config == version {
                tally.answered += 1;
                tally.nacked += 1;
                if tally.first_reason.is_empty() {
                    tally.first_reason = r.nack_reason.clone();
                }
            }
        }
        tally
    }

    /// Every connected proxy has answered (and there is at least one).
    pub fn complete(&self) -> bool {
        self.connected > 0 && self.answered == self.connected
    }

    /// Whether these answers call for a rollback (None: too few answers to say).
    pub fn refused(&self, settings: &AutoRollback) -> Option<bool> {
        if self.answered == 0 || self.answered < settings.min_proxies {
            return None;
        }
        Some(self.nacked as f64 / self.answered as f64 > settings.nack_share)
    }
}

/// Watches the rollout of `applied` (committed over `previous`) in the background.
pub fn spawn(
    store: Arc<dyn Store>,
    settings: AutoRollback,
    applied: Arc<Revision>,
    previous: Option<Arc<Revision>>,
) -> JoinHandle<Verdict> {
    tokio::spawn(async move {
        let verdict = watch(store.as_ref(), &settings, &applied, previous.as_deref()).await;
        settings.metrics.count(verdict);
        verdict
    })
}

async fn watch(
    store: &dyn Store,
    settings: &AutoRollback,
    applied: &Revision,
    previous: Option<&Revision>,
) -> Verdict {
    let version = applied.version;
    let deadline = tokio::time::Instant::now() + settings.window;
    let config = store.config();
    let mut tick = tokio::time::interval(POLL.min(settings.window.max(Duration::from_millis(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let tally = loop {
        tick.tick().await;
        if config.borrow().as_ref().map_or(0, |r| r.version) != version {
            return Verdict::Superseded;
        }
        let tally = match store.proxies().await {
            Ok(records) => Tally::of(&records, version),
            Err(e) => {
                tracing::warn!(version, error = %e, "rollout watch: reading proxy records");
                Tally::default()
            }
        };
        if tally.complete() || tokio::time::Instant::now() >= deadline {
            break tally;
        }
    };
    match tally.refused(settings) {
        None => {
            tracing::info!(
                version,
                answered = tally.answered,
                connected = tally.connected,
                "rollout watch: too few answers to judge the version"
            );
            Verdict::TooFewAnswers
        }
        Some(false) => {
            tracing::info!(
                version,
                nacked = tally.nacked,
                answered = tally.answered,
                "rollout accepted"
            );
            Verdict::Kept
        }
        Some(true) => roll_back(store, applied, previous, &tally).await,
    }
}

async fn roll_back(
    store: &dyn Store,
    applied: &Revision,
    previous: Option<&Revision>,
    tally: &Tally,
) -> Verdict {
    let version = applied.version;
    let note = format!(
        "automatic rollback: {} of {} proxies refused v{version}: {}",
        tally.nacked, tally.answered, tally.first_reason
    );
    let Some(previous) = previous else {
        tracing::error!(version, "{note} (no earlier version to roll back to)");
        return Verdict::NoPrevious;
    };
    let next = NewRevision {
        yaml: previous.yaml.clone(),
        source: previous.source.clone(),
        note: note.clone(),
    };
    match store.commit(version, next).await {
        Ok(rolled) => {
            tracing::error!(
                version,
                restored = previous.version,
                new_version = rolled.version,
                "{note}"
            );
            Verdict::RolledBack
        }
        Err(StoreError::Conflict { current, .. }) => {
            tracing::warn!(
                version,
                current,
                "automatic rollback skipped: a newer version was applied"
            );
            Verdict::Superseded
        }
        Err(e) => {
            tracing::error!(version, error = %e, "automatic rollback failed");
            Verdict::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(node: &str, connected: bool, acked: u64, nacked: u64) -> ProxyRecord {
        ProxyRecord {
            role: "gateway".into(),
            node_id: node.into(),
            service: String::new(),
            namespace: String::new(),
            connected,
            acked: String::new(),
            acked_config: acked,
            nacked: String::new(),
            nacked_config: nacked,
            nack_reason: format!("bad on {node}"),
            desired: String::new(),
            last_seen_ms: 0,
            build: String::new(),
            replica: "r1".into(),
        }
    }

    #[test]
    fn tally_counts_connected_answers_to_the_version() {
        let records = [
            record("a", true, 1, 2),
            record("b", true, 2, 0),
            record("c", true, 1, 0),
            record("d", false, 0, 2),
        ];
        let t = Tally::of(&records, 2);
        assert_eq!((t.connected, t.answered, t.nacked), (3, 2, 1));
        assert_eq!(t.first_reason, "bad on a");
        assert!(!t.complete());
        let settings = AutoRollback::default();
        assert_eq!(t.refused(&settings), Some(false)); // 1 of 2 is not more than half
    }

    #[test]
    fn share_and_minimum_decide() {
        let settings = AutoRollback {
            min_proxies: 2,
            ..AutoRollback::default()
        };
        let t = Tally::of(&[record("a", true, 0, 5)], 5);
        assert_eq!(t.refused(&settings), None);
        let t = Tally::of(
            &[
                record("a", true, 0, 5),
                record("b", true, 0, 5),
                record("c", true, 5, 0),
            ],
            5,
        );
        assert!(t.complete());
        assert_eq!(t.refused(&settings), Some(true));
        assert_eq!(Tally::default().refused(&AutoRollback::default()), None);
    }
}
