//! East-west telemetry and mesh authorization counters:
//! `meshgate_mesh_requests_total{source, destination, code_class}`,
//! `meshgate_mesh_request_duration_seconds{source, destination}` and
//! `meshgate_mesh_authz_denied_total{listener, rule, stage}`, and the service
//! graph built from the same edges (`/mesh/graph` in the admin API).
//!
//! `source` is the caller's service (`name.namespace`, from its SPIFFE ID) and
//! comes from traffic, not config: at most [`MAX_SOURCES`] distinct values are
//! kept, later ones are counted as `other`, so cardinality stays bounded. Each
//! edge's handles are resolved once and shared; a request costs a read-locked map
//! lookup (only on listeners with verified peers) and atomic adds.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use super::{LatencyHistogram, Name, status_class};
use crate::access_log::AccessRecord;

/// Distinct `source` label values kept; beyond, callers are counted as `other`.
pub const MAX_SOURCES: usize = 1000;

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MeshRequestLabels {
    pub source: Name,
    pub destination: Name,
    pub code_class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MeshEdgeLabels {
    pub source: Name,
    pub destination: Name,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MeshDeniedLabels {
    pub listener: Name,
    pub rule: Name,
    /// `request`, `connection` (refused after the handshake) or `recheck` (an open
    /// connection closed when the config changed).
    pub stage: &'static str,
}

/// Edges by destination, then source.
type Edges = HashMap<Arc<str>, HashMap<Arc<str>, Arc<MeshEdge>>>;

/// The mesh metric families and the edges seen so far. Cheap to clone.
#[derive(Clone, Default)]
pub struct MeshMetrics(Arc<Inner>);

#[derive(Default)]
struct Inner {
    requests: Family<MeshRequestLabels, Counter>,
    duration: Family<MeshEdgeLabels, LatencyHistogram>,
    denied: Family<MeshDeniedLabels, Counter>,
    /// Edges by destination, then source.
    edges: RwLock<Edges>,
    /// Distinct sources admitted as label values.
    sources: RwLock<BTreeSet<Arc<str>>>,
}

impl std::fmt::Debug for MeshMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeshMetrics")
    }
}

impl MeshMetrics {
    /// Creates the families and registers them in `r`.
    pub fn register(r: &mut Registry) -> Self {
        let this = MeshMetrics::default();
        r.register(
            "mesh_requests",
            "East-west requests, by caller service (source), called service (destination) and status class",
            this.0.requests.clone(),
        );
        r.register_with_unit(
            "mesh_request_duration",
            "East-west request duration, by caller and called service",
            Unit::Seconds,
            this.0.duration.clone(),
        );
        r.register(
            "mesh_authz_denied",
            "Requests and connections refused by mesh authorization, by listener, deciding rule and stage",
            this.0.denied.clone(),
        );
        this
    }

    /// Counts a refusal by `rule` (`defaultAction` when no rule matched).
    pub fn denied(&self, listener: &Arc<str>, rule: &Arc<str>, stage: &'static str) {
        let labels = MeshDeniedLabels {
            listener: Name(listener.clone()),
            rule: Name(rule.clone()),
            stage,
        };
        self.0.denied.get_or_create(&labels).inc();
    }

    /// The handles of the edge `source` → `destination`, created on first use.
    pub fn edge(&self, source: &str, destination: &str) -> Arc<MeshEdge> {
        if let Some(e) = self
            .read_edges()
            .get(destination)
            .and_then(|m| m.get(source))
        {
            return e.clone();
        }
        let source = self.admit_source(source);
        let mut edges = self.0.edges.write().unwrap_or_else(|e| e.into_inner());
        let by_source = edges.entry(destination.into()).or_default();
        by_source
            .entry(source.clone())
            .or_insert_with(|| {
                Arc::new(MeshEdge {
                    source: Name(source),
                    destination: Name(destination.into()),
                    classes: Default::default(),
                    duration: OnceLock::new(),
                    requests: self.0.requests.clone(),
                    durations: self.0.duration.clone(),
                })
            })
            .clone()
    }

    /// `source` itself while fewer than [`MAX_SOURCES`] are known, else `other`.
    fn admit_source(&self, source: &str) -> Arc<str> {
        let sources = self.0.sources.read().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sources.get(source) {
            return s.clone();
        }
        drop(sources);
        let mut sources = self.0.sources.write().unwrap_or_else(|e| e.into_inner());
        if sources.len() >= MAX_SOURCES {
            return Arc::from("other");
        }
        let s: Arc<str> = source.into();
        sources.insert(s.clone());
        s
    }

    fn read_edges(&self) -> std::sync::RwLockReadGuard<'_, Edges> {
        self.0.edges.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The service graph: every service seen, and every edge with its totals.
    pub fn graph(&self) -> MeshGraph {
        let edges = self.read_edges();
        let mut nodes = BTreeSet::new();
        let mut out = Vec::new();
        for by_source in edges.values() {
            for e in by_source.values() {
                nodes.insert(e.source.0.to_string());
                nodes.insert(e.destination.0.to_string());
                out.push(e.stats());
            }
        }
        out.sort_by(|a, b| (&a.source, &a.destination).cmp(&(&b.source, &b.destination)));
        MeshGraph {
            nodes: nodes.into_iter().collect(),
            edges: out,
        }
    }
}

/// One caller → called service pair's metric handles.
pub struct MeshEdge {
    source: Name,
    destination: Name,
    /// Counters by status class, each created on first use (no zero series).
    classes: [OnceLock<Counter>; 5],
    duration: OnceLock<LatencyHistogram>,
    /// The families (shared handles, not the registry's `Inner`: no cycle).
    requests: Family<MeshRequestLabels, Counter>,
    durations: Family<MeshEdgeLabels, LatencyHistogram>,
}

impl std::fmt::Debug for MeshEdge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshEdge")
            .field("source", &self.source.0)
            .field("destination", &self.destination.0)
            .finish_non_exhaustive()
    }
}

impl MeshEdge {
    /// Records a finished request on this edge.
    pub fn on_request(&self, r: &AccessRecord) {
        let class = CLASSES
            .iter()
            .position(|c| *c == status_class(r.status))
            .unwrap_or(4);
        self.counter(class).inc();
        self.histogram().observe(r.duration);
    }

    fn counter(&self, class: usize) -> &Counter {
        self.classes[class].get_or_init(|| {
            let labels = MeshRequestLabels {
                source: self.source.clone(),
                destination: self.destination.clone(),
                code_class: CLASSES[class],
            };
            self.requests.get_or_create(&labels).clone()
        })
    }

    fn histogram(&self) -> &LatencyHistogram {
        self.duration.get_or_init(|| {
            let labels = MeshEdgeLabels {
                source: self.source.clone(),
                destination: self.destination.clone(),
            };
            self.durations.get_or_create(&labels).clone()
        })
    }

    fn stats(&self) -> GraphEdge {
        let count = |i: usize| self.classes[i].get().map_or(0, Counter::get);
        let requests = (0..CLASSES.len()).map(count).sum();
        let h = self.duration.get();
        let ms = |q| h.and_then(|h| h.quantile(q)).map(|s| s * 1000.0);
        GraphEdge {
            source: self.source.0.to_string(),
            destination: self.destination.0.to_string(),
            requests,
            errors: count(4),
            client_errors: count(3),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
        }
    }
}

/// The service graph (`GET /mesh/graph`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MeshGraph {
    /// Every service that called or was called, sorted.
    pub nodes: Vec<String>,
    /// Caller → called pairs, sorted by source then destination.
    pub edges: Vec<GraphEdge>,
}

/// Totals of one edge since the process started.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GraphEdge {
    pub source: String,
    pub destination: String,
    pub requests: u64,
    /// Answers with a 5xx status.
    pub errors: u64,
    /// Answers with a 4xx status (including `403 mesh_denied`).
    pub client_errors: u64,
    /// Latency quantiles estimated from the histogram buckets, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_beyond_the_cap_become_other() {
        let m = MeshMetrics::default();
        for i in 0..MAX_SOURCES {
            m.edge(&format!("s{i}.default"), "orders.default");
        }
        let late = m.edge("late.default", "orders.default");
        assert_eq!(&*late.source.0, "other");
        assert_eq!(
            &*m.edge("s1.default", "orders.default").source.0,
            "s1.default"
        );
        assert_eq!(m.graph().edges.len(), MAX_SOURCES + 1);
    }
}
