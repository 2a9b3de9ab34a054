//! Compiled routes and the per-listener route tables built from them.

mod rule;
mod table;

pub use rule::{Condition, PathRule, Rule, anchored, normalise_prefix};
pub use table::{BackendEntry, PathEntry, RequestView, RouteEntry, RouteTable};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use meshgate_config as config;

use meshgate_observe::Metrics;
use meshgate_observe::metrics::RouteMetrics;

use crate::filter::{self, FilterChain, PolicySet, Step};
use crate::proxy::RetryPolicy;
use crate::upstream::Upstream;

/// A route ready to serve: everything a request needs after it matched.
#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub filters: FilterChain,
    pub backends: Backends,
    pub request_timeout: Option<Duration>,
    pub per_try_timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    /// Metric handles, resolved at compile time.
    pub metrics: Arc<RouteMetrics>,
    /// The route's own `errorResponses` (the snapshot's global ones apply after).
    pub error_pages: crate::rescue::ErrorPages,
    /// Request mirroring to a shadow service (`mirror`).
    pub mirror: Option<Arc<crate::proxy::mirror::Mirror>>,
    /// Response compression (`compression`).
    pub compression: Option<crate::compress::Compression>,
}

/// Weighted backend services of a route.
#[derive(Debug)]
pub struct Backends {
    services: Vec<(Arc<Upstream>, u32)>,
    total: u32,
    /// `backendAffinity`: requests with the same attribute go to the same service.
    affinity: Option<config::HashOn>,
}

impl Backends {
    /// Picks a service by weight; `None` when every weight is 0. With affinity, the
    /// request's attribute chooses the point on the weight line, so the same user
    /// keeps the same service (and keeps it when weights shift, unless their point
    /// moves to another service's share); requests without it are placed at random.
    pub fn pick(
        &self,
        headers: &http::HeaderMap,
        client: std::net::IpAddr,
    ) -> Option<&Arc<Upstream>> {
        match self.services.as_slice() {
            [] => None,
            [(only, w)] => (*w > 0).then_some(only),
            many => {
                if self.total == 0 {
                    return None;
                }
                let sticky = self
                    .affinity
                    .as_ref()
                    .and_then(|on| crate::upstream::request_hash(on, headers, client));
                let mut point = match sticky {
                    // Spread the 64-bit hash over 0..total without modulo bias.
                    Some(h) => ((u128::from(h) * u128::from(self.total)) >> 64) as u32,
                    None => fastrand::u32(0..self.total),
                };
                many.iter()
                    .find(|(_, w)| {
                        if point < *w {
                            return true;
                        }
                        point -= w;
                        false
                    })
                    .map(|(s, _)| s)
            }
        }
    }
}

/// One table per listener, named, in the order of `config.listeners`.
pub fn compile_tables(
    cfg: &config::Config,
    upstreams: &HashMap<String, Arc<Upstream>>,
    policies: &PolicySet,
    metrics: &Metrics,
) -> Result<Vec<(Arc<str>, RouteTable)>, String> {
    let mut tables: Vec<RouteTable> = cfg
        .listeners
        .iter()
        .map(|_| RouteTable::default())
        .collect();
    let mut order = 0;
    for (ri, r) in cfg.routes.iter().enumerate() {
        let route = Arc::new(
            compile_route(r, upstreams, policies, metrics)
                .map_err(|e| format!("routes[{ri}]: {e}"))?,
        );
        let default_match = [config::RouteMatch::default()];
        let matches = if r.matches.is_empty() {
            &default_match[..]
        } else {
            &r.matches[..]
        };
        let wants = |l: &config::Listener| r.listeners.is_empty() || r.listeners.contains(&l.name);
        let last = cfg.listeners.iter().rposition(wants);
        for m in matches {
            let rule =
                Rule::compile(route.clone(), m, order).map_err(|e| format!("routes[{ri}]: {e}"))?;
            order += 1;
            // Moved into the last table that wants it, cloned for the others.
            let Some(last) = last else { continue };
            for (li, _) in cfg.listeners[..last]
                .iter()
                .enumerate()
                .filter(|(_, l)| wants(l))
            {
                tables[li].insert(rule.clone(), &r.hostnames);
            }
            tables[last].insert(rule, &r.hostnames);
        }
    }
    Ok(cfg
        .listeners
        .iter()
        .zip(tables)
        .map(|(l, t)| (Arc::from(l.name.as_str()), t.finish()))
        .collect())
}

fn compile_route(
    r: &config::Route,
    upstreams: &HashMap<String, Arc<Upstream>>,
    policies: &PolicySet,
    metrics: &Metrics,
) -> Result<Route, String> {
    let services = r
        .backend_refs
        .iter()
        .map(|b| {
            let up = upstreams
                .get(&b.name)
                .ok_or_else(|| format!("unknown service {:?}", b.name))?;
            Ok((up.clone(), b.weight))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let total = services.iter().map(|(_, w)| *w).sum();
    let name: Arc<str> = r.name.as_str().into();
    let service_names: Vec<Arc<str>> = services.iter().map(|(u, _)| u.name.clone()).collect();
    Ok(Route {
        metrics: Arc::new(metrics.route(&name, &service_names)),
        mirror: match &r.mirror {
            Some(m) => Some(Arc::new(crate::proxy::mirror::Mirror::compile(
                m, &name, upstreams, metrics,
            )?)),
            None => None,
        },
        compression: r
            .compression
            .as_ref()
            .map(crate::compress::Compression::compile),
        name,
        filters: {
            let mut chain = filter::FilterChain {
                request: policy_chain(&r.policies, policies)?,
                response: Vec::new(),
            };
            let own = filter::compile(&r.filters)?;
            chain.request.extend(own.request);
            chain.response = own.response;
            chain
        },
        backends: Backends {
            services,
            total,
            affinity: r.backend_affinity.clone(),
        },
        request_timeout: r.timeouts.request.map(|d| d.get()),
        per_try_timeout: r.timeouts.backend_request.map(|d| d.get()),
        retry: r.retry.as_ref().map(RetryPolicy::from_config),
        error_pages: crate::rescue::ErrorPages::compile(&r.error_responses)?,
    })
}

/// The named policies, in order, as request filters.
pub fn policy_chain(names: &[String], policies: &PolicySet) -> Result<Vec<Step>, String> {
    names
        .iter()
        .map(|n| {
            let filter = policies
                .get(n)
                .cloned()
                .ok_or_else(|| format!("unknown policy {n:?}"))?;
            Ok(Step {
                label: n.as_str().into(),
                filter,
            })
        })
        .collect()
}
