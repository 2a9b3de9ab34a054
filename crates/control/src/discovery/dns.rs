//! DNS discovery: one background task per service with `discovery.dns`, resolving
//! its name (A, AAAA or SRV) with hickory-resolver and reporting the endpoints
//! whenever they change.
//!
//! - **When.** After an answer, again at `max(refresh, min(TTL, maxTtl))`, TTL being
//!   the smallest TTL of the records used (for SRV: the SRV records and the
//!   addresses of their targets). After a failure, again after `refresh`.
//! - **Failures keep the last answer.** A timeout, SERVFAIL or unreachable server
//!   changes nothing (logged at warn): a DNS outage must not empty a service.
//! - **Negative answers.** NXDOMAIN, or no record of the type, is an answer ("the
//!   name is gone"), but a single one may be a zone being reloaded: the service is
//!   emptied only after [`NEGATIVE_TO_EMPTY`] negative answers in a row.
//! - **SRV.** Targets are resolved here (A, then AAAA), not left as host names for
//!   the proxies: they would resolve them with their system resolver, which may
//!   not be the one configured here, and without following the TTL. Only the
//!   lowest priority whose targets resolve is used (higher ones are backups); the
//!   record's weight (0 counts as 1) becomes the endpoint's weight.
//!
//! The resolver reads `/etc/resolv.conf`, or asks only the server of
//! `Options::dns_server` (`MESHGATE_DNS_SERVER`). Its cache is off: each task keeps
//! its own answer and schedules by the TTL, so a re-resolution always asks the
//! server.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use meshgate_config::{DnsDiscovery, DnsRecordType};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::proto::v1::Endpoint;

/// Negative answers in a row after which a service's endpoints are emptied.
pub const NEGATIVE_TO_EMPTY: u32 = 3;
/// Largest endpoint weight (as in the config).
const MAX_WEIGHT: u32 = 10_000;

/// What a task reports: the endpoints of `service` found by the task of
/// `generation` (so reports of a replaced task are recognised and dropped).
#[derive(Debug)]
pub(super) struct Report {
    pub service: String,
    pub generation: u64,
    pub endpoints: Vec<Endpoint>,
}

/// A successful resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Sorted by address, each address once.
    pub endpoints: Vec<Endpoint>,
    /// Smallest TTL of the records used.
    pub ttl: Duration,
}

/// Why a resolution gave no endpoints.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist, or has no usable record: an answer.
    #[error("{0}")]
    Negative(String),
    /// No answer (timeout, server failure, unreachable server): try again later.
    #[error("{0}")]
    Failed(String),
}

/// A resolver for discovery: the system's name servers (`/etc/resolv.conf`), or
/// only `server` when given; no cache (see the module doc).
pub fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, NetError> {
    let mut builder = match server {
        Some(addr) => {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio()?,
    };
    let options = builder.options_mut();
    options.cache_size = 0;
    options.timeout = Duration::from_secs(2);
    options.attempts = 2;
    if server.is_some() {
        // Only the given server answers: no /etc/hosts either.
        options.use_hosts_file = ResolveHosts::Never;
    }
    builder.build()
}

/// Starts the task resolving `spec` for `service`; it reports changes on `tx`
/// and runs until aborted.
pub(super) fn spawn(
    resolver: Arc<TokioResolver>,
    service: String,
    spec: DnsDiscovery,
    generation: u64,
    tx: mpsc::Sender<Report>,
) -> AbortHandle {
    tokio::spawn(follow(resolver, service, spec, generation, tx)).abort_handle()
}

async fn follow(
    resolver: Arc<TokioResolver>,
    service: String,
    spec: DnsDiscovery,
    generation: u64,
    tx: mpsc::Sender<Report>,
) {
    let mut last: Option<Vec<Endpoint>> = None;
    let mut negative_in_a_row = 0;
    loop {
        let (found, wait) = match resolve(&resolver, &spec).await {
            Ok(r) => {
                negative_in_a_row = 0;
                (Some(r.endpoints), spec.reresolve_after(r.ttl))
            }
            Err(DnsError::Negative(why)) => {
                negative_in_a_row += 1;
                if negative_in_a_row >= NEGATIVE_TO_EMPTY {
                    if last.as_ref().is_some_and(|l| !l.is_empty()) {
                        tracing::warn!(%service, name = %spec.name, %why, "DNS name gone: no endpoints");
                    }
                    (Some(Vec::new()), spec.refresh.get())
                } else {
                    tracing::warn!(%service, name = %spec.name, %why, negative_in_a_row, "negative DNS answer; keeping the last answer for now");
                    (None, spec.refresh.get())
                }
            }
            Err(DnsError::Failed(why)) => {
                tracing::warn!(%service, name = %spec.name, %why, "DNS resolution failed; keeping the last answer");
                (None, spec.refresh.get())
            }
        };
        if let Some(endpoints) = found
            && last.as_ref() != Some(&endpoints)
        {
            tracing::info!(%service, name = %spec.name, endpoints = endpoints.len(), "DNS endpoints changed");
            last = Some(endpoints.clone());
            let report = Report {
                service: service.clone(),
                generation,
                endpoints,
            };
            if tx.send(report).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(wait).await;
    }
}

/// Resolves `spec` once.
pub async fn resolve(resolver: &TokioResolver, spec: &DnsDiscovery) -> Result<Resolved, DnsError> {
    match spec.record_type {
        DnsRecordType::A | DnsRecordType::AAAA => {
            let port = spec.port.unwrap_or(0);
            let record_type = if spec.record_type == DnsRecordType::A {
                RecordType::A
            } else {
                RecordType::AAAA
            };
            let answers = lookup(resolver, &spec.name, record_type).await?;
            let ttl = min_ttl(&answers);
            let endpoints = Endpoints::default()
                .with(addresses(&answers).map(|ip| SocketAddr::new(ip, port)), 1);
            if endpoints.0.is_empty() {
                return Err(DnsError::Negative(format!("no {record_type} record")));
            }
            Ok(Resolved {
                endpoints: endpoints.sorted(),
                ttl,
            })
        }
        DnsRecordType::SRV => srv(resolver, &spec.name).await,
    }
}

/// SRV: the lowest priority whose targets resolve.
async fn srv(resolver: &TokioResolver, name: &str) -> Result<Resolved, DnsError> {
    let answers = lookup(resolver, name, RecordType::SRV).await?;
    let srv_ttl = min_ttl(&answers);
    let mut by_priority: BTreeMap<u16, Vec<(Name, u16, u32)>> = BTreeMap::new();
    for r in &answers {
        // A target of "." says the service is not offered there (RFC 2782).
        if let RData::SRV(s) = &r.data
            && !s.target.is_root()
        {
            let weight = u32::from(s.weight).clamp(1, MAX_WEIGHT);
            by_priority
                .entry(s.priority)
                .or_default()
                .push((s.target.clone(), s.port, weight));
        }
    }
    if by_priority.is_empty() {
        return Err(DnsError::Negative("no SRV record with a target".into()));
    }
    let mut addresses_of: BTreeMap<Name, (Vec<IpAddr>, Duration)> = BTreeMap::new();
    for (_, records) in by_priority {
        let mut endpoints = Endpoints::default();
        let mut ttl = srv_ttl;
        for (target, port, weight) in records {
            if !addresses_of.contains_key(&target) {
                let found = match resolver.lookup_ip(target.clone()).await {
                    Ok(ips) => (ips.iter().collect(), min_ttl(ips.as_lookup().answers())),
                    Err(e) if e.is_no_records_found() => (Vec::new(), Duration::MAX),
                    Err(e) => {
                        return Err(DnsError::Failed(format!("SRV target {target}: {e}")));
                    }
                };
                addresses_of.insert(target.clone(), found);
            }
            let Some((ips, target_ttl)) = addresses_of.get(&target) else {
                continue;
            };
            if !ips.is_empty() {
                ttl = ttl.min(*target_ttl);
                endpoints = endpoints.with(ips.iter().map(|ip| SocketAddr::new(*ip, port)), weight);
            }
        }
        if !endpoints.0.is_empty() {
            return Ok(Resolved {
                endpoints: endpoints.sorted(),
                ttl,
            });
        }
    }
    Err(DnsError::Negative(
        "no SRV target resolves to an address".into(),
    ))
}

async fn lookup(
    resolver: &TokioResolver,
    name: &str,
    record_type: RecordType,
) -> Result<Vec<Record>, DnsError> {
    match resolver.lookup(name, record_type).await {
        Ok(found) => Ok(found.answers().to_vec()),
        Err(e) if e.is_no_records_found() => Err(DnsError::Negative(e.to_string())),
        Err(e) => Err(DnsError::Failed(e.to_string())),
    }
}

fn addresses(records: &[Record]) -> impl Iterator<Item = IpAddr> + '_ {
    records.iter().filter_map(|r| match &r.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    })
}

/// The smallest TTL among `records` (CNAMEs included: the chain expires with
/// its shortest link).
fn min_ttl(records: &[Record]) -> Duration {
    Duration::from_secs(records.iter().map(|r| u64::from(r.ttl)).min().unwrap_or(0))
}

/// Endpoints by address; an address found twice keeps its larger weight.
#[derive(Default)]
struct Endpoints(BTreeMap<String, u32>);

impl Endpoints {
    fn with(mut self, addrs: impl Iterator<Item = SocketAddr>, weight: u32) -> Self {
        for a in addrs {
            let w = self.0.entry(a.to_string()).or_insert(weight);
            *w = (*w).max(weight);
        }
        self
    }

    fn sorted(self) -> Vec<Endpoint> {
        self.0
            .into_iter()
            .map(|(address, weight)| Endpoint { address, weight })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_sorted_and_deduplicated_with_the_larger_weight() {
        let a: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let v6: SocketAddr = "[fd00::1]:80".parse().unwrap();
        let found = Endpoints::default()
            .with([a, b].into_iter(), 1)
            .with([a, v6].into_iter(), 5)
            .sorted();
        let got: Vec<(&str, u32)> = found
            .iter()
            .map(|e| (e.address.as_str(), e.weight))
            .collect();
        assert_eq!(
            got,
            [("10.0.0.1:80", 1), ("10.0.0.2:80", 5), ("[fd00::1]:80", 5)]
        );
    }
}
