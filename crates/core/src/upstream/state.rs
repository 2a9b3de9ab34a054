//! Live health of a service's endpoints, shared by the request path, the active
//! health checkers and the outlier sweeper: one [`EndpointState`] of atomics per
//! endpoint, and the service-wide count of ejected endpoints. No locks; a pick
//! reads one or two atomics per endpoint it considers.
//!
//! An endpoint is **available** when it passes active health checks (`healthy`)
//! and is not ejected by outlier detection (`ejected_until` is 0 or in the past).
//! Endpoints start healthy and not ejected, so a fresh config serves at once;
//! health checks take an endpoint out only after `unhealthyThreshold` failures.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use prometheus_client::metrics::gauge::Gauge;

/// Process-wide origin of [`now_ms`].
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Monotonic milliseconds since the process-wide epoch, never 0 (0 in
/// `ejected_until` means "not ejected").
pub fn now_ms() -> u64 {
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
}

/// One endpoint's health. Cache-line aligned: the failure counters are written by
/// every failing request and must not share a line with a neighbour's.
#[repr(align(64))]
#[derive(Debug)]
pub struct EndpointState {
    /// Passing active health checks (always true without them).
    pub(super) healthy: AtomicBool,
    /// Ejected until this [`now_ms`] reading; 0 when not ejected.
    pub(super) ejected_until: AtomicU64,
    /// When the latest ejection ended (or will end), for the multiplier's reset.
    pub(super) last_until: AtomicU64,
    pub(super) consecutive_5xx: AtomicU32,
    pub(super) consecutive_failures: AtomicU32,
    /// Ejections so far: the next one lasts `base × (ejections + 1)`.
    pub(super) ejections: AtomicU32,
    /// Failure-rate window counters, reset at each window end.
    pub(super) window_requests: AtomicU32,
    pub(super) window_failures: AtomicU32,
    pub(super) address: std::sync::Arc<str>,
    /// `endpoint_healthy` / `endpoint_ejected` series, when the feature is on.
    pub(super) healthy_gauge: Option<Gauge>,
    pub(super) ejected_gauge: Option<Gauge>,
}

impl EndpointState {
    pub(super) fn new(
        address: std::sync::Arc<str>,
        healthy_gauge: Option<Gauge>,
        ejected_gauge: Option<Gauge>,
    ) -> Self {
        if let Some(g) = &healthy_gauge {
            g.set(1);
        }
        if let Some(g) = &ejected_gauge {
            g.set(0);
        }
        Self {
            healthy: AtomicBool::new(true),
            ejected_until: AtomicU64::new(0),
            last_until: AtomicU64::new(0),
            consecutive_5xx: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            window_requests: AtomicU32::new(0),
            window_failures: AtomicU32::new(0),
            address,
            healthy_gauge,
            ejected_gauge,
        }
    }

    /// Passing active health checks.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    /// Records an active-check verdict; returns whether it was a transition (the
    /// gauge is only written then).
    pub(super) fn set_healthy(&self, healthy: bool) -> bool {
        let changed = self.healthy.swap(healthy, Relaxed) != healthy;
        if changed && let Some(g) = &self.healthy_gauge {
            g.set(i64::from(healthy));
        }
        changed
    }
}

/// The health of every endpoint of one service (index = endpoint index).
#[derive(Debug)]
pub struct ServiceHealth {
    pub(super) service: std::sync::Arc<str>,
    pub(super) states: Box<[EndpointState]>,
    /// Endpoints currently ejected (ejections whose time passed but that nobody has
    /// noticed yet included; [`ServiceHealth::settle`] catches up).
    pub(super) ejected: AtomicU32,
    /// Whether anything can make an endpoint unavailable (health checks or outlier
    /// detection configured); when not, picks skip every check.
    pub(super) guarded: bool,
    /// Envoy's panic mode: with every endpoint unhealthy, use them all anyway.
    pub(super) panic_mode: bool,
}

impl ServiceHealth {
    pub(super) fn new(
        service: std::sync::Arc<str>,
        states: Vec<EndpointState>,
        guarded: bool,
        panic_mode: bool,
    ) -> Self {
        Self {
            service,
            states: states.into_boxed_slice(),
            ejected: AtomicU32::new(0),
            guarded,
            panic_mode,
        }
    }

    /// Healthy and not ejected.
    pub fn available(&self, i: usize) -> bool {
        self.states[i].is_healthy() && !self.is_ejected(i)
    }

    /// Ejected right now. An ejection whose time has passed is ended here, lazily.
    pub fn is_ejected(&self, i: usize) -> bool {
        let until = self.states[i].ejected_until.load(Relaxed);
        if until == 0 {
            return false;
        }
        if now_ms() < until {
            return true;
        }
        self.end_ejection(i, until);
        false
    }

    /// Ends ejection `until` of endpoint `i` if nobody else did already.
    pub(super) fn end_ejection(&self, i: usize, until: u64) {
        let s = &self.states[i];
        if s.ejected_until
            .compare_exchange(until, 0, Relaxed, Relaxed)
            .is_ok()
        {
            self.ejected.fetch_sub(1, Relaxed);
            if let Some(g) = &s.ejected_gauge {
                g.set(0);
            }
            tracing::info!(service = %self.service, endpoint = %s.address, "endpoint back from outlier ejection");
        }
    }

    /// Ends every ejection whose time has passed (keeps `ejected` and the gauges
    /// right without traffic; cheap, walks the endpoints once).
    pub(super) fn settle(&self, now: u64) {
        for (i, s) in self.states.iter().enumerate() {
            let until = s.ejected_until.load(Relaxed);
            if until != 0 && now >= until {
                self.end_ejection(i, until);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    pub fn state(&self, i: usize) -> &EndpointState {
        &self.states[i]
    }
}
