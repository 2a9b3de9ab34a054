//! `services[].discovery`: where a service's endpoints come from when they are not
//! (only) listed statically: instances registered with the control plane, or DNS
//! (A, AAAA or SRV records, re-resolved as their TTL runs out). Discovery is done by
//! the control plane, which sends the endpoints it finds to its proxies in every
//! snapshot; a standalone `meshgate run` does not discover and serves the static
//! `endpoints` only.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, de};

use crate::Duration;

/// How a service's endpoints are discovered: exactly one of `registry` or `dns`.
///
/// Once discovery has an answer it replaces the static `endpoints` entirely (also
/// when the answer is empty: requests then get `503 no_healthy_upstream`). Static
/// `endpoints`, if any, are served until then and wherever no control plane
/// discovers (`meshgate run`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Discovery {
    /// The instances registered with the control plane under this service's name
    /// (the `Registry` gRPC API, e.g. through `meshgate_control::Registrar`), except
    /// those draining. Always authoritative: no registered instance means no endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryDiscovery>,
    /// Endpoints from DNS records of a name, re-resolved when their TTL runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsDiscovery>,
}

/// Registry discovery has no settings yet: `registry: {}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistryDiscovery {}

/// By hand: the derived error for a field of an empty struct ends in "expected
/// one of " followed by nothing.
impl<'de> Deserialize<'de> for RegistryDiscovery {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = RegistryDiscovery;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an empty map: registry: {}")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                match map.next_key::<String>()? {
                    None => Ok(RegistryDiscovery {}),
                    Some(key) => Err(de::Error::custom(format!(
                        "unknown field `{key}`: registry discovery has no settings, write registry: {{}}"
                    ))),
                }
            }
        }
        d.deserialize_map(V)
    }
}

/// DNS discovery of one name.
///
/// The name is resolved again at `max(refresh, min(TTL, maxTtl))` after each
/// answer, where TTL is the smallest TTL of the records used. A failed resolution
/// (timeout, SERVFAIL, unreachable server) keeps the last answer and is retried
/// after `refresh`. A name that does not exist (NXDOMAIN) or has no records of
/// `type` empties the service only once three resolutions in a row said so.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DnsDiscovery {
    /// The name to resolve, e.g. `orders.internal` (`A`/`AAAA`) or
    /// `_http._tcp.orders.internal` (`SRV`). A name without a trailing `.` is
    /// also tried under the search domains of `/etc/resolv.conf`.
    pub name: String,
    /// Record type: `A` (IPv4, default), `AAAA` (IPv6) or `SRV`.
    #[serde(rename = "type", default)]
    pub record_type: DnsRecordType,
    /// The endpoints' port; required for `A` and `AAAA`, not allowed for `SRV`
    /// (each SRV record carries its own port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Minimum time between two resolutions of the name, whatever the TTL; also
    /// the retry interval after a failure. Default `5s`.
    #[serde(default = "DnsDiscovery::default_refresh")]
    pub refresh: Duration,
    /// Maximum time an answer is used before the name is resolved again, however
    /// long its TTL. Default `60s`.
    #[serde(default = "DnsDiscovery::default_max_ttl")]
    pub max_ttl: Duration,
}

impl DnsDiscovery {
    fn default_refresh() -> Duration {
        Duration::from_secs(5)
    }
    fn default_max_ttl() -> Duration {
        Duration::from_secs(60)
    }

    /// How long to use an answer whose smallest record TTL is `ttl`:
    /// `max(refresh, min(ttl, maxTtl))`.
    pub fn reresolve_after(&self, ttl: std::time::Duration) -> std::time::Duration {
        ttl.min(self.max_ttl.get()).max(self.refresh.get())
    }
}

/// DNS record types usable for discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
pub enum DnsRecordType {
    /// IPv4 addresses; every address is an endpoint on `port`, weight 1.
    #[default]
    A,
    /// IPv6 addresses; every address is an endpoint on `port`, weight 1.
    AAAA,
    /// Service records: each target is resolved (A, then AAAA) and each of its
    /// addresses is an endpoint on the record's port, weighted by the record's
    /// weight (0 counts as 1). Only the lowest priority whose targets resolve is
    /// used: higher priorities are backups.
    SRV,
}
