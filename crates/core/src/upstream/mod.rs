//! Upstream services: endpoints with their live load, the balancer that picks one,
//! the keep-alive client pool, and the retry budget.

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
use meshgate_observe::metrics::{KindLabels, ServiceLabel};

use crate::balance::{Balancer, EndpointLoad, hash_key};
use crate::body::Body;
use crate::proxy::Failure;

/// One endpoint of a service.
#[derive(Debug)]
pub struct Endpoint {
    /// As configured, `host:port`; logged as the upstream.
    pub address: Arc<str>,
    pub authority: Authority,
    /// `host:port` as a Host header, for services that do not preserve the client's.
    pub host_header: http::HeaderValue,
    pub load: Arc<EndpointLoad>,
}

/// A service ready to take traffic.
pub struct Upstream {
    pub name: Arc<str>,
    pub endpoints: Vec<Endpoint>,
    loads: Vec<Arc<EndpointLoad>>,
    balancer: Balancer,
    hash_on: Option<config::HashOn>,
    pub client: Client<HttpConnector, Body>,
    pub budget: TpsBudget,
    pub preserve_host: bool,
    pub metrics: Arc<Metrics>,
    /// This service's metric label, built once.
    pub label: ServiceLabel,
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
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if endpoints.is_empty() {
            return Err(format!("service {:?} has no endpoints", svc.name));
        }
        let weights: Vec<u32> = svc.endpoints.iter().map(|e| e.weight.max(1)).collect();
        let ids: Vec<&str> = svc.endpoints.iter().map(|e| e.address.as_str()).collect();
        let balancer = Balancer::new_with_ids(svc.load_balancer.policy, &weights, &ids);

        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(svc.connect_timeout.get()));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(svc.pool.idle_timeout.get())
            .pool_max_idle_per_host(svc.pool.max_idle_per_endpoint)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let b = &svc.retry_budget;
        Ok(Upstream {
            name: svc.name.as_str().into(),
            loads: endpoints.iter().map(|e| e.load.clone()).collect(),
            endpoints,
            balancer,
            hash_on: svc.load_balancer.hash_on.clone(),
            client,
            budget: TpsBudget::new(b.window.get(), b.min_retries_per_second, b.percent / 100.0),
            preserve_host: svc.preserve_host,
            label: metrics.service(&svc.name.as_str().into()),
            metrics: metrics.clone(),
        })
    }

    /// Records one upstream try: its latency, and a per-try timeout if that is how it ended.
    pub fn observe_try(&self, elapsed: std::time::Duration, failure: Option<&Failure>) {
        self.metrics
            .upstream_duration
            .get_or_create(&self.label)
            .observe(elapsed.as_secs_f64());
        if failure == Some(&Failure::Timeout) {
            let kind = KindLabels {
                service: self.label.service.clone(),
                kind: "upstream_timeout",
            };
            self.metrics.timeouts.get_or_create(&kind).inc();
        }
    }

    /// Chooses an endpoint, avoiding `avoid` (the one that just failed) when there
    /// is another to try.
    pub fn pick(&self, hash: Option<u64>, avoid: Option<usize>) -> usize {
        let first = self.balancer.pick(&self.loads, hash);
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
        let on = self.hash_on.as_ref()?;
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
