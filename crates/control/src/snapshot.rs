//! Snapshots: what a proxy receives. A snapshot is the config document as applied
//! (so a proxy's errors point at its lines) plus the endpoints discovered for its
//! services (registry, DNS), which replace those services' static `endpoints`.
//! Its version is `<config version>-<hash of the endpoints>`: equal content gives an
//! equal version on every control-plane replica.

use meshgate_config::{Config, Endpoint as ConfigEndpoint};
use std::collections::BTreeMap;

use crate::proto::v1::{Endpoint, ServiceEndpoints, Snapshot};
use crate::store::Revision;

/// Endpoints found for services, by service name (sorted: hashing is stable).
pub type Discovered = BTreeMap<String, Vec<Endpoint>>;

/// The snapshot of `revision` with `discovered` endpoints.
pub fn build(revision: &Revision, discovered: &Discovered) -> Snapshot {
    let endpoints: Vec<ServiceEndpoints> = discovered
        .iter()
        .map(|(service, endpoints)| ServiceEndpoints {
            service: service.clone(),
            endpoints: endpoints.clone(),
        })
        .collect();
    Snapshot {
        version: version(revision.version, &endpoints),
        config_version: revision.version,
        config_yaml: revision.yaml.clone(),
        endpoints,
    }
}

fn version(config_version: u64, endpoints: &[ServiceEndpoints]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for s in endpoints {
        h.update(s.service.as_bytes());
        h.update(&[0]);
        for e in &s.endpoints {
            h.update(e.address.as_bytes());
            h.update(&e.weight.to_le_bytes());
        }
        h.update(&[1]);
    }
    format!("{config_version}-{:08x}", h.digest() as u32)
}

/// The name errors in a snapshot's document are reported under.
pub fn source_name(snapshot: &Snapshot) -> String {
    format!("control-plane:v{}", snapshot.config_version)
}

/// Why a proxy refuses a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Invalid(#[from] meshgate_config::ConfigErrors),
}

/// Parses and validates a snapshot into the config a proxy applies.
pub fn open(snapshot: &Snapshot) -> Result<Config, OpenError> {
    let mut config = meshgate_config::parse_str(&snapshot.config_yaml, &source_name(snapshot))?;
    overlay(&mut config, &snapshot.endpoints);
    Ok(config)
}

/// Replaces the endpoints of each service named in `endpoints`. Entries for a
/// service the document does not declare are skipped: discovery follows config
/// changes a moment behind, so a snapshot built right after a service was removed
/// may still carry its endpoints, and refusing it for that would be a false NACK
/// (one that could even trigger an automatic rollback).
pub fn overlay(config: &mut Config, endpoints: &[ServiceEndpoints]) {
    for found in endpoints {
        let Some(service) = config.services.iter_mut().find(|s| s.name == found.service) else {
            tracing::debug!(service = %found.service, "endpoints for an undeclared service skipped");
            continue;
        };
        service.endpoints = found
            .endpoints
            .iter()
            .map(|e| ConfigEndpoint {
                address: e.address.clone(),
                weight: e.weight.max(1),
            })
            .collect();
    }
}

/// A snapshot as sent to proxies: its protobuf encoding, made once per snapshot
/// and shared by every stream (the generated servers in `proto::wire` send this
/// type where the protocol says `Snapshot`; the bytes are the same).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EncodedSnapshot(bytes::Bytes);

impl EncodedSnapshot {
    pub fn of(snapshot: &Snapshot) -> Self {
        EncodedSnapshot(prost::Message::encode_to_vec(snapshot).into())
    }
}

impl prost::Message for EncodedSnapshot {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    // Only ever sent, never received: a decoder would skip every field.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = bytes::Bytes::new();
    }
}

/// Encodings of the snapshots being sent, one per snapshot (keyed by the `Arc`,
/// not the version: sidecar snapshots of different services can share a version
/// string). Entries go when their snapshot is dropped.
#[derive(Default)]
pub struct EncodeCache(std::sync::Mutex<Vec<(std::sync::Weak<Snapshot>, EncodedSnapshot)>>);

impl EncodeCache {
    /// The encoding of `snapshot`, made now if no stream asked for it before.
    pub fn get(&self, snapshot: &std::sync::Arc<Snapshot>) -> EncodedSnapshot {
        let mut entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = std::sync::Arc::downgrade(snapshot);
        if let Some((_, encoded)) = entries.iter().find(|(w, _)| w.ptr_eq(&wanted)) {
            return encoded.clone();
        }
        entries.retain(|(w, _)| w.strong_count() > 0);
        let encoded = EncodedSnapshot::of(snapshot);
        entries.push((wanted, encoded.clone()));
        encoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(yaml: &str) -> Revision {
        Revision {
            version: 7,
            yaml: yaml.into(),
            source: "t.yaml".into(),
            applied_at_ms: 0,
            note: String::new(),
        }
    }

    const DOC: &str = "services:\n  - name: orders\n    endpoints: [\"127.0.0.1:1\"]\n";

    #[test]
    fn version_depends_on_endpoints_only_through_their_content() {
        let mut found = Discovered::new();
        let plain = build(&revision(DOC), &found);
        found.insert(
            "orders".into(),
            vec![Endpoint {
                address: "10.0.0.1:80".into(),
                weight: 1,
            }],
        );
        let with = build(&revision(DOC), &found);
        assert!(plain.version.starts_with("7-") && with.version.starts_with("7-"));
        assert_ne!(plain.version, with.version);
        assert_eq!(with.version, build(&revision(DOC), &found).version);
    }

    #[test]
    fn open_overlays_discovered_endpoints_and_reports_bad_documents() {
        let mut found = Discovered::new();
        found.insert(
            "orders".into(),
            vec![Endpoint {
                address: "10.0.0.1:80".into(),
                weight: 3,
            }],
        );
        let config = open(&build(&revision(DOC), &found)).unwrap();
        assert_eq!(config.services[0].endpoints[0].address, "10.0.0.1:80");
        assert_eq!(config.services[0].endpoints[0].weight, 3);

        // A service the document no longer declares (discovery a moment behind).
        found.insert("ghost".into(), vec![]);
        let config = open(&build(&revision(DOC), &found)).unwrap();
        assert_eq!(config.services.len(), 1);

        let err = open(&build(
            &revision("services: [{name: x}]\n"),
            &Discovered::new(),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("control-plane:v7:1:"), "{err}");
    }

    #[test]
    fn an_encoded_snapshot_decodes_as_the_snapshot_and_is_made_once() {
        let snapshot = std::sync::Arc::new(build(&revision(DOC), &Discovered::new()));
        let cache = EncodeCache::default();
        let encoded = cache.get(&snapshot);
        let bytes = prost::Message::encode_to_vec(&encoded);
        let decoded: Snapshot = prost::Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded, *snapshot);
        assert_eq!(cache.get(&snapshot).0.as_ptr(), encoded.0.as_ptr());
        let other = std::sync::Arc::new(Snapshot::clone(&snapshot));
        assert_ne!(cache.get(&other).0.as_ptr(), encoded.0.as_ptr());
    }
}
