//! The control plane's metrics: ONE registry per replica ([`ControlMetrics`],
//! held by the [`ControlPlane`]), rendered as OpenMetrics text by [`render`] for
//! the admin endpoint's `/metrics`.
//!
//! - counters updated where things happen: snapshots pushed and ACK/NACK
//!   received on the config streams ([`super::discovery`]), automatic rollbacks
//!   and rollout verdicts ([`super::rollback::RollbackMetrics`]);
//! - gauges set from the store's proxy records at scrape time, so the stream path
//!   keeps no bookkeeping for them (and every replica reports every proxy).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::ControlPlane;
use super::operator::proxy_state;
use super::rollback::RollbackMetrics;
use crate::store::StoreError;

type Labelled<M> = Family<[(&'static str, &'static str); 1], M>;

/// Where a proxy stands, as the `state` label of `meshgate_control_proxies`.
const STATES: [&str; 4] = ["current", "behind", "rejected", "disconnected"];

/// The replica's registry and the handles to what it holds.
#[derive(Debug)]
pub struct ControlMetrics {
    registry: Registry,
    snapshots_sent: Counter,
    acks: Labelled<Counter>,
    rollbacks: RollbackMetrics,
    config_version: Gauge,
    proxies: Labelled<Gauge>,
    streams: Gauge,
}

/// Why `/metrics` could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("encoding: {0}")]
    Encode(#[from] std::fmt::Error),
}

impl ControlMetrics {
    /// A registry with every control-plane metric; `rollbacks` are the counters
    /// the automatic-rollback watcher updates (its settings hold a clone).
    pub fn new(rollbacks: RollbackMetrics) -> ControlMetrics {
        let mut registry = Registry::default();
        let snapshots_sent = Counter::default();
        registry.register(
            "meshgate_control_snapshots_sent",
            "Snapshots pushed to proxies by this replica",
            snapshots_sent.clone(),
        );
        let acks = Labelled::<Counter>::default();
        for result in ["ack", "nack"] {
            let _ = acks.get_or_create(&[("result", result)]);
        }
        registry.register(
            "meshgate_control_acks",
            "Proxy answers to snapshots received by this replica (result: ack or nack)",
            acks.clone(),
        );
        rollbacks.register(&mut registry);
        let config_version = Gauge::default();
        registry.register(
            "meshgate_control_config_version",
            "The current config version",
            config_version.clone(),
        );
        let proxies = Labelled::<Gauge>::default();
        registry.register(
            "meshgate_control_proxies",
            "Known proxies (every replica) by where they stand against the current version",
            proxies.clone(),
        );
        let streams = Gauge::default();
        registry.register(
            "meshgate_control_streams",
            "Proxy streams held by this replica",
            streams.clone(),
        );
        ControlMetrics {
            registry,
            snapshots_sent,
            acks,
            rollbacks,
            config_version,
            proxies,
            streams,
        }
    }

    /// One snapshot pushed to a proxy.
    pub fn snapshot_sent(&self) {
        self.snapshots_sent.inc();
    }

    /// One answer received: `true` for an ACK, `false` for a NACK.
    pub fn answer(&self, acked: bool) {
        let result = if acked { "ack" } else { "nack" };
        self.acks.get_or_create(&[("result", result)]).inc();
    }

    /// Snapshots pushed so far.
    pub fn snapshots_sent(&self) -> u64 {
        self.snapshots_sent.get()
    }

    /// ACKs (`true`) or NACKs (`false`) received so far.
    pub fn answers(&self, acked: bool) -> u64 {
        let result = if acked { "ack" } else { "nack" };
        self.acks.get_or_create(&[("result", result)]).get()
    }

    /// The automatic-rollback counters.
    pub fn rollbacks(&self) -> &RollbackMetrics {
        &self.rollbacks
    }
}

/// Every metric of `cp` as OpenMetrics text, the gauges read from the store now.
pub async fn render(cp: &ControlPlane) -> Result<String, RenderError> {
    let records = cp.store.proxies().await?;
    let current = cp.store.config().borrow().as_ref().map_or(0, |r| r.version);
    let m = &cp.metrics;
    m.config_version
        .set(i64::try_from(current).unwrap_or(i64::MAX));
    let mut counts = [0i64; STATES.len()];
    let mut streams = 0;
    for r in &records {
        let state = if r.connected {
            proxy_state(r, current)
        } else {
            "disconnected"
        };
        if let Some(i) = STATES.iter().position(|s| *s == state) {
            counts[i] += 1;
        }
        if r.connected && r.replica == cp.options.replica {
            streams += 1;
        }
    }
    // Every state appears, at 0 when no proxy is in it.
    for (state, count) in STATES.iter().zip(counts) {
        m.proxies.get_or_create(&[("state", state)]).set(count);
    }
    m.streams.set(streams);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &m.registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_registered_at_zero_and_counted() {
        let m = ControlMetrics::new(RollbackMetrics::default());
        m.snapshot_sent();
        m.answer(true);
        m.answer(false);
        m.answer(false);
        assert_eq!(
            (m.snapshots_sent(), m.answers(true), m.answers(false)),
            (1, 1, 2)
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry).unwrap();
        for line in [
            "meshgate_control_snapshots_sent_total 1",
            "meshgate_control_acks_total{result=\"nack\"} 2",
            "meshgate_control_auto_rollbacks_total 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
