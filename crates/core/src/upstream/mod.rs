//! Upstream services: endpoints with their live load and health, the balancer that
//! picks one, the keep-alive client pool, the retry budget, and the resilience
//! machinery: active health checks (`health`), outlier detection (`outlier`) and
//! circuit breaking (`breaker`), over the shared endpoint state (`state`).

mod breaker;
mod connect;
mod health;
mod outlier;
#[cfg(test)]
mod resilience_tests;
mod state;

pub use breaker::{
    Breaker, ConnectionOverflow, Limit, LimitedConnector, OwnedPermit, Permit, is_overflow,
};
pub use connect::{
    MeshClient, PooledBody, SendError, TlsHandshakeError, TlsOrigin, UpstreamClient, is_tls_failure,
};
pub use outlier::{Outcome, Outlier};
pub use state::{EndpointState, ServiceHealth, now_ms};

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use http::uri::Authority;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use meshgate_config as config;
use tower::retry::budget::TpsBudget;

use meshgate_observe::Metrics;
use meshgate_observe::metrics::{EndpointLabels, KindLabels, LatencyHistogram, Name, ServiceLabel};
use tokio::task::AbortHandle;

use crate::balance::{Balancer, EndpointLoad, hash_key};
use crate::proxy::Failure;
use crate::rescue::ProxyError;

/// One endpoint of a service.
#[derive(Debug)]
pub struct Endpoint {
    /// As configured, `host:port`; logged as the upstream.
    pub address: Arc<str>,
    pub authority: Authority,
    /// `host:port` as a Host header, for services that do not preserve the client's.
    pub host_header: http::HeaderValue,
    pub load: Arc<EndpointLoad>,
    pub weight: u32,
}

/// One endpoint as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    pub address: String,
    pub weight: u32,
    /// Passing active health checks (true when none are configured).
    pub healthy: bool,
    /// Currently ejected by outlier detection.
    pub ejected: bool,
    /// Requests in flight to this endpoint.
    pub active_requests: u32,
}

/// A service ready to take traffic.
pub struct Upstream {
    pub name: Arc<str>,
    pub endpoints: Vec<Endpoint>,
    loads: Vec<Arc<EndpointLoad>>,
    balancer: Balancer,
    hash_on: Option<config::HashOn>,
    /// Pooled client: plain or TLS, HTTP/1.1 or HTTP/2 (`connect`).
    pub client: UpstreamClient,
    pub budget: TpsBudget,
    /// Health of every endpoint (active checks and outlier ejections).
    pub health: Arc<ServiceHealth>,
    /// Present when the service configures outlier detection.
    pub outlier: Option<Arc<Outlier>>,
    pub breaker: Breaker,
    /// Open upstream connections (`maxConnections`).
    pub connections: Arc<Limit>,
    /// Health checkers and the outlier sweeper; aborted on drop.
    tasks: Vec<AbortHandle>,
    pub preserve_host: bool,
    pub metrics: Arc<Metrics>,
    /// This service's metric label, built once.
    pub label: ServiceLabel,
    /// Cached handles: no label lookup per try.
    latency: LatencyHistogram,
    timeouts: prometheus_client::metrics::counter::Counter,
    pub retries: prometheus_client::metrics::counter::Counter,
    /// `services[].mesh`: the mTLS origin (no ALPN) of L4 connections.
    pub mesh: Option<Arc<TlsOrigin>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn build(svc: &config::Service, metrics: &Arc<Metrics>) -> Result<Self, String> {
        Self::build_with_identity(svc, metrics, None)
    }

    /// Like `build`, with the workload identity a `mesh` service needs.
    pub fn build_with_identity(
        svc: &config::Service,
        metrics: &Arc<Metrics>,
        identity: Option<&Arc<crate::identity::WorkloadIdentity>>,
    ) -> Result<Self, String> {
        let mesh = MeshClient::of(svc, identity)?;
        let endpoints = svc
            .endpoints
            .iter()
            .map(|e| {
                let authority = e
                    .address
                    .parse::<Authority>()
                    .map_err(|err| format!("endpoint {:?}: {err}", e.address))?;
                let host_header = http::HeaderValue::from_str(authority.as_str())
                    .map_err(|err| format!("endpoint {:?}: {err}", e.address))?;
                Ok(Endpoint {
                    address: e.address.as_str().into(),
                    authority,
                    host_header,
                    load: Arc::new(EndpointLoad::new()),
                    weight: e.weight.max(1),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        // A service may have no endpoints (its discovery found none): it is built,
        // and every pick fails with `NoHealthyUpstream` (503) instead of the whole
        // config being refused. The balancer needs one entry; `pick` never asks it.
        let mut weights: Vec<u32> = svc.endpoints.iter().map(|e| e.weight.max(1)).collect();
        let mut ids: Vec<&str> = svc.endpoints.iter().map(|e| e.address.as_str()).collect();
        if weights.is_empty() {
            (weights, ids) = (vec![1], vec![""]);
        }
        let balancer = Balancer::new_with_ids(svc.load_balancer.policy, &weights, &ids);
        let name: Arc<str> = svc.name.as_str().into();
        let label = metrics.service(&name);

        let health = Arc::new(service_health(svc, &name, &endpoints, metrics));
        let outlier = svc.outlier_detection.as_ref().map(|o| {
            let ejections = metrics.ejections.get_or_create(&label).clone();
            Arc::new(Outlier::new(o, ejections))
        });
        let (breaker, connections) = Breaker::new(&svc.circuit_breaker, metrics, &label.service);

        // Background tasks need a runtime; without one (e.g. a config check)
        // there are none, and every endpoint stays healthy.
        let mut tasks = Vec::new();
        if tokio::runtime::Handle::try_current().is_ok() {
            if let Some(check) = &svc.health_check {
                let authorities: Vec<Authority> =
                    endpoints.iter().map(|e| e.authority.clone()).collect();
                tasks = health::spawn(svc, check, &health, &authorities, mesh.as_ref())?;
            }
            if let Some(o) = &outlier {
                tasks.push(tokio::spawn(o.clone().sweep(health.clone())).abort_handle());
            }
        }

        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(svc.connect_timeout.get()));
        connector.set_nodelay(true);
        // TLS services send `https://` URIs (HTTP/2's `:scheme`); TCP is the same.
        connector.enforce_http(svc.tls.is_none() && svc.mesh.is_none());
        let connector = LimitedConnector::new(connector, connections.clone());
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(svc.pool.idle_timeout.get())
            .pool_max_idle_per_host(svc.pool.max_idle_per_endpoint)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new());
        let authorities: Vec<Authority> = endpoints.iter().map(|e| e.authority.clone()).collect();
        let client =
            UpstreamClient::build(svc, &authorities, connector, &mut builder, mesh.as_ref())?;
        let mesh = match &mesh {
            Some(m) => Some(Arc::new(m.origin(None)?)),
            None => None,
        };
        let b = &svc.retry_budget;
        Ok(Upstream {
            name,
            loads: endpoints.iter().map(|e| e.load.clone()).collect(),
            endpoints,
            balancer,
            hash_on: svc.load_balancer.hash_on.clone(),
            client,
            budget: TpsBudget::new(b.window.get(), b.min_retries_per_second, b.percent / 100.0),
            preserve_host: svc.preserve_host,
            health,
            outlier,
            breaker,
            connections,
            tasks,
            latency: metrics.upstream_duration.get_or_create(&label).clone(),
            timeouts: metrics
                .timeouts
                .get_or_create(&KindLabels {
                    service: label.service.clone(),
                    kind: "upstream_timeout",
                })
                .clone(),
            retries: metrics.retries.get_or_create(&label).clone(),
            mesh,
            label,
            metrics: metrics.clone(),
        })
    }

    /// Every endpoint's live state, for the admin API.
    pub fn endpoint_status(&self) -> Vec<EndpointStatus> {
        self.endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| EndpointStatus {
                address: e.address.to_string(),
                weight: e.weight,
                healthy: self.health.state(i).is_healthy(),
                ejected: self.health.is_ejected(i),
                active_requests: e.load.in_flight(),
            })
            .collect()
    }

    /// Records one upstream try: its latency, and a per-try timeout if that is how it ended.
    pub fn observe_try(&self, elapsed: std::time::Duration, failure: Option<&Failure>) {
        self.latency.observe(elapsed);
        if failure == Some(&Failure::Timeout) {
            self.timeouts.inc();
        }
    }

    /// Records how a try on endpoint `i` ended, for outlier detection.
    pub fn record(&self, i: usize, outcome: Outcome) {
        if let Some(o) = &self.outlier {
            o.record(&self.health, i, outcome);
        }
    }

    /// Chooses an available endpoint (healthy and not ejected), avoiding `avoid`
    /// (the one that just failed) when there is another to try.
    ///
    /// The balancer's choice is kept when it is available. Otherwise the balancer
    /// is asked twice more (with the hash key rehashed, so a `RingHash` key keeps
    /// landing on the same substitute; not for `RoundRobin`, whose extra picks
    /// would skip turns), then the endpoints are scanned by index from a random
    /// start (from `hash mod n` for hashed requests). So the keys of an unavailable
    /// endpoint move to other endpoints while it is out, and come back to it when
    /// it recovers; other keys do not move.
    ///
    /// If every endpoint that passes health checks is ejected, ejection is ignored
    /// (outlier detection never empties a service). If none passes health checks:
    /// with `panicMode` any endpoint is used (Envoy's panic mode), else the request
    /// fails with `NoHealthyUpstream`.
    pub fn pick(&self, hash: Option<u64>, avoid: Option<usize>) -> Result<usize, ProxyError> {
        if self.endpoints.is_empty() {
            return Err(ProxyError::NoHealthyUpstream);
        }
        let first = self.balancer.pick(&self.loads, hash);
        if !self.health.guarded {
            return Ok(self.avoiding(first, avoid));
        }
        let n = self.endpoints.len();
        let avoided = |i: usize| avoid == Some(i) && n > 1;
        let usable = |i: usize| !avoided(i) && self.health.available(i);
        if usable(first) {
            return Ok(first);
        }
        // Round robin is not asked again: each extra pick would use up a turn, and
        // a fixed number of extra picks per request would pin it to one endpoint.
        let rounds = if self.balancer.policy() == config::LbPolicy::RoundRobin {
            0
        } else {
            2
        };
        for round in 1..=rounds {
            let rehashed = hash.map(|h| hash_key(&(h ^ round).to_le_bytes()));
            let i = self.balancer.pick(&self.loads, rehashed);
            if usable(i) {
                return Ok(i);
            }
        }
        let start = hash.map_or_else(|| fastrand::usize(..n), |h| (h % n as u64) as usize);
        let mut spare = None;
        for k in 0..n {
            let i = (start + k) % n;
            if self.health.available(i) {
                if !avoided(i) {
                    return Ok(i);
                }
                spare = Some(i);
            }
        }
        if let Some(i) = spare.or_else(|| {
            (0..n)
                .map(|k| (start + k) % n)
                .find(|&i| self.health.state(i).is_healthy())
        }) {
            return Ok(i);
        }
        if self.health.panic_mode {
            // The first choice, not a fresh one: round robin must not skip turns.
            return Ok(self.avoiding(first, avoid));
        }
        Err(ProxyError::NoHealthyUpstream)
    }

    /// The balancer's choice `first`, ignoring health, or another endpoint when
    /// `first` is the one to avoid.
    fn avoiding(&self, first: usize, avoid: Option<usize>) -> usize {
        match avoid {
            Some(bad) if bad == first && self.endpoints.len() > 1 => {
                let second = self.balancer.pick(&self.loads, None);
                if second != bad {
                    second
                } else {
                    (bad + 1) % self.endpoints.len()
                }
            }
            _ => first,
        }
    }

    /// The request's hash key for `RingHash`, if the service hashes and the request
    /// carries the attribute.
    pub fn hash_for(&self, headers: &HeaderMap, client_ip: IpAddr) -> Option<u64> {
        request_hash(self.hash_on.as_ref()?, headers, client_ip)
    }
}

/// The hash of the request attribute `on` names (header, cookie or client IP);
/// `None` when the request does not have it. Shared by ring-hash balancing and
/// sticky backend choice on routes.
pub(crate) fn request_hash(
    on: &config::HashOn,
    headers: &HeaderMap,
    client_ip: IpAddr,
) -> Option<u64> {
    if let Some(name) = &on.header {
        return headers.get(name.as_str()).map(|v| hash_key(v.as_bytes()));
    }
    if let Some(name) = &on.cookie {
        return cookie(headers, name).map(|v| hash_key(v.as_bytes()));
    }
    on.client_ip.then(|| match client_ip {
        IpAddr::V4(ip) => hash_key(&ip.octets()),
        IpAddr::V6(ip) => hash_key(&ip.octets()),
    })
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The endpoint state of a service. Every endpoint's `endpoint_healthy` and
/// `endpoint_ejected` series start at 1 and 0, also without health checks or
/// outlier detection (then they stay so, like the admin API's view), so a reload
/// that turns a feature off leaves no stale value behind.
fn service_health(
    svc: &config::Service,
    name: &Arc<str>,
    endpoints: &[Endpoint],
    metrics: &Metrics,
) -> ServiceHealth {
    let states = endpoints
        .iter()
        .map(|e| {
            let labels = EndpointLabels {
                service: Name(name.clone()),
                endpoint: Name(e.address.clone()),
            };
            let healthy = metrics.endpoint_healthy.get_or_create(&labels).clone();
            let ejected = metrics.endpoint_ejected.get_or_create(&labels).clone();
            EndpointState::new(e.address.clone(), Some(healthy), Some(ejected))
        })
        .collect();
    let guarded = svc.health_check.is_some() || svc.outlier_detection.is_some();
    let panic_mode = svc.health_check.as_ref().is_some_and(|h| h.panic_mode);
    ServiceHealth::new(name.clone(), states, guarded, panic_mode)
}

/// The value of cookie `name` across all `cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_is_found_among_several() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1; sid=xyz".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        assert_eq!(cookie(&h, "sid"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "nope"), None);
    }
}
