//! Endpoint discovery: which endpoints each service gets in snapshots, beyond its
//! static `endpoints`. Follows the current config (`Store::config`: which services
//! ask for `discovery`) and the registry (`Store::registry`), and publishes the
//! endpoints found, by service, into one `watch` the snapshot builder follows.
//!
//! - `discovery: {registry: {}}`: the service's registered instances that are not
//!   draining, sorted by address (an address registered twice is listed once, with
//!   the larger weight; weights 1–10000). Always published, also when empty: the
//!   registry is authoritative, so an instance that deregisters or stops
//!   heartbeating leaves at once.
//! - `discovery: {dns: …}`: resolved in the background ([`dns`]); published from
//!   the first answer on. Until then the service is absent from the map, so its
//!   static endpoints (if any) serve.
//!
//! A stored config that does not parse (it cannot become a snapshot anyone
//! accepts) is logged and changes nothing: the services of the last parsable one
//! go on being discovered. A new value is published only when the result changed.

pub mod dns;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use meshgate_config::DnsDiscovery;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use crate::proto::v1::Endpoint;
use crate::snapshot::Discovered;
use crate::store::{Instances, Revision, Store};

/// Largest endpoint weight (as in the config).
const MAX_WEIGHT: u32 = 10_000;

/// Settings of discovery.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Ask only this DNS server (`ip:port`) instead of those of `/etc/resolv.conf`.
    pub dns_server: Option<SocketAddr>,
}

impl Options {
    /// From the environment: `MESHGATE_DNS_SERVER=ip:port` sets `dns_server` (an
    /// unparsable value is logged and ignored).
    pub fn from_env() -> Options {
        let dns_server = std::env::var("MESHGATE_DNS_SERVER")
            .ok()
            .filter(|v| !v.is_empty())
            .and_then(|v| match v.parse() {
                Ok(addr) => Some(addr),
                Err(e) => {
                    tracing::warn!(value = %v, error = %e, "MESHGATE_DNS_SERVER is not ip:port; using /etc/resolv.conf");
                    None
                }
            });
        Options { dns_server }
    }
}

/// Follows `store` (config and registry) and publishes the endpoints discovered
/// for the current config's services. Runs until the receivers are dropped.
/// Options come from the environment ([`Options::from_env`]).
pub fn start(store: Arc<dyn Store>) -> watch::Receiver<Arc<Discovered>> {
    start_with(store, Options::from_env())
}

/// [`start`] with explicit options. Must be called inside a tokio runtime.
pub fn start_with(store: Arc<dyn Store>, options: Options) -> watch::Receiver<Arc<Discovered>> {
    let (reports_tx, reports) = mpsc::channel(64);
    let mut discoverer = Discoverer {
        config: store.config(),
        registry: store.registry(),
        options,
        plan: Plan::default(),
        planned_version: None,
        resolver: None,
        dns: BTreeMap::new(),
        next_generation: 0,
        reports_tx,
        reports,
        tx: watch::channel(Arc::new(Discovered::new())).0,
    };
    // The registry part is known now: the first snapshot already carries it.
    let current = discoverer.config.borrow_and_update().clone();
    discoverer.reconfigure(current.as_deref());
    discoverer.registry.mark_unchanged();
    discoverer.publish();
    let rx = discoverer.tx.subscribe();
    tokio::spawn(discoverer.run());
    rx
}

/// Which services of the current config are discovered, and how.
#[derive(Debug, Default)]
struct Plan {
    registry: BTreeSet<String>,
    dns: BTreeMap<String, DnsDiscovery>,
}

/// A running DNS task; aborted when dropped.
struct DnsTask {
    spec: DnsDiscovery,
    generation: u64,
    task: AbortHandle,
    /// The task's latest answer (None until the first).
    answer: Option<Vec<Endpoint>>,
}

impl Drop for DnsTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Discoverer {
    config: watch::Receiver<Option<Arc<Revision>>>,
    registry: watch::Receiver<Arc<Instances>>,
    options: Options,
    plan: Plan,
    /// Config version `plan` was last computed for.
    planned_version: Option<u64>,
    /// Built when the first DNS service appears (reads /etc/resolv.conf).
    resolver: Option<Arc<TokioResolver>>,
    dns: BTreeMap<String, DnsTask>,
    next_generation: u64,
    reports_tx: mpsc::Sender<dns::Report>,
    reports: mpsc::Receiver<dns::Report>,
    tx: watch::Sender<Arc<Discovered>>,
}

impl Discoverer {
    async fn run(mut self) {
        loop {
            tokio::select! {
                changed = self.config.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let current = self.config.borrow_and_update().clone();
                    self.reconfigure(current.as_deref());
                }
                changed = self.registry.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.registry.mark_unchanged();
                }
                Some(report) = self.reports.recv() => self.take(report),
                _ = self.tx.closed() => return,
            }
            self.publish();
        }
    }

    /// Recomputes the plan for `revision` and starts/stops DNS tasks to match.
    fn reconfigure(&mut self, revision: Option<&Revision>) {
        let version = revision.map(|r| r.version);
        if version == self.planned_version {
            return;
        }
        let plan = match revision {
            None => Plan::default(),
            Some(r) => {
                let source = format!("control-plane:v{}", r.version);
                match meshgate_config::parse_str(&r.yaml, &source) {
                    Ok(config) => plan_of(&config),
                    Err(e) => {
                        tracing::warn!(version = r.version, error = %e, "stored config does not parse; discovery keeps the services of the previous one");
                        return;
                    }
                }
            }
        };
        self.planned_version = version;
        // Unchanged DNS specs keep their task and its answer.
        self.dns
            .retain(|service, task| plan.dns.get(service) == Some(&task.spec));
        for (service, spec) in &plan.dns {
            if self.dns.contains_key(service) {
                continue;
            }
            let Some(resolver) = self.resolver() else {
                break;
            };
            self.next_generation += 1;
            let task = dns::spawn(
                resolver,
                service.clone(),
                spec.clone(),
                self.next_generation,
                self.reports_tx.clone(),
            );
            self.dns.insert(
                service.clone(),
                DnsTask {
                    spec: spec.clone(),
                    generation: self.next_generation,
                    task,
                    answer: None,
                },
            );
        }
        self.plan = plan;
    }

    /// The shared resolver, built on first use; None (logged) if the system's
    /// DNS configuration cannot be read. Tried again at the next config change.
    fn resolver(&mut self) -> Option<Arc<TokioResolver>> {
        if self.resolver.is_none() {
            match dns::resolver(self.options.dns_server) {
                Ok(r) => self.resolver = Some(Arc::new(r)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot set up DNS resolution; DNS-discovered services keep their static endpoints");
                }
            }
        }
        self.resolver.clone()
    }

    /// Records a DNS task's answer, unless the task has been replaced since.
    fn take(&mut self, report: dns::Report) {
        if let Some(task) = self.dns.get_mut(&report.service)
            && task.generation == report.generation
        {
            task.answer = Some(report.endpoints);
        }
    }

    /// Publishes the endpoints of the planned services, if they changed.
    fn publish(&mut self) {
        let mut next = Discovered::new();
        {
            let instances = self.registry.borrow();
            for service in &self.plan.registry {
                next.insert(service.clone(), registered(&instances, service));
            }
        }
        for (service, task) in &self.dns {
            if let Some(answer) = &task.answer {
                next.insert(service.clone(), answer.clone());
            }
        }
        self.tx.send_if_modified(|current| {
            if **current == next {
                return false;
            }
            *current = Arc::new(next);
            true
        });
    }
}

fn plan_of(config: &meshgate_config::Config) -> Plan {
    let mut plan = Plan::default();
    for s in &config.services {
        let Some(d) = &s.discovery else { continue };
        if d.registry.is_some() {
            plan.registry.insert(s.name.clone());
        } else if let Some(dns) = &d.dns {
            plan.dns.insert(s.name.clone(), dns.clone());
        }
    }
    plan
}

/// The endpoints of `service`'s registered instances that are not draining.
pub fn registered(instances: &Instances, service: &str) -> Vec<Endpoint> {
    let mut by_address: BTreeMap<&str, u32> = BTreeMap::new();
    for i in instances.get(service).into_iter().flat_map(|m| m.values()) {
        if i.draining {
            continue;
        }
        let weight = i.weight.clamp(1, MAX_WEIGHT);
        let w = by_address.entry(&i.address).or_insert(weight);
        *w = (*w).max(weight);
    }
    by_address
        .into_iter()
        .map(|(address, weight)| Endpoint {
            address: address.to_owned(),
            weight,
        })
        .collect()
}

#[cfg(test)]
mod tests;
