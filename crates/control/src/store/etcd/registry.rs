//! The service registry in etcd: each instance is a key attached to an etcd lease
//! of its TTL, so etcd itself removes instances that stop heartbeating; lease ids
//! are what registrars hold. The follower keeps the `Instances` map in step
//! with the registry keys.

use std::sync::Arc;
use std::time::Duration;

use super::Inner;
use super::conn::{Conn, Failure};
use super::follow::Follower;
use super::keys::{Keys, show};
use super::rpc::{get, leased_by, prefix_end, put_op, under};
use crate::proto::etcd::etcdserverpb::{PutRequest, TxnRequest};
use crate::proto::etcd::mvccpb::{Event, KeyValue, event::EventType};
use crate::store::{Instance, Instances, StoreError};

/// Grants a lease of `ttl` (whole seconds, rounded up) and puts the instance
/// with it; the old lease of the same instance, if any, is revoked.
pub(super) async fn register(
    inner: &Inner,
    instance: Instance,
    ttl: Duration,
) -> Result<String, StoreError> {
    if instance.service.is_empty() || instance.service.contains('/') {
        return Err(StoreError::Etcd(format!(
            "cannot register service name {:?}: it must be non-empty and contain no '/'",
            instance.service
        )));
    }
    if instance.instance.is_empty() {
        return Err(StoreError::Etcd(format!(
            "cannot register an instance of {} without an instance name",
            instance.service
        )));
    }
    let ttl_secs = ttl.as_millis().div_ceil(1000).clamp(1, i64::MAX as u128) as i64;
    let value = serde_json::to_vec(&instance).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let key = inner.keys.instance(&instance.service, &instance.instance);
    let id = inner.conn.grant(ttl_secs).await?;
    let put = inner
        .conn
        .put(PutRequest {
            key,
            value,
            lease: id,
            prev_kv: true,
        })
        .await;
    let previous = match put {
        Ok(answer) => answer.prev_kv.map_or(0, |kv| kv.lease),
        Err(failure) => {
            // Best effort: an orphan lease holds no key and expires anyway.
            let _ = inner.conn.revoke(id).await;
            return Err(failure.into());
        }
    };
    if previous != 0 && previous != id {
        // The key now hangs on the new lease, so revoking the old one deletes
        // nothing: it only stops the old id from being renewed.
        match inner.conn.revoke(previous).await {
            Ok(()) => {}
            Err(f) if f.lease_not_found() => {}
            Err(f) => {
                tracing::warn!(error = %f, "could not revoke the replaced registration lease")
            }
        }
    }
    Ok(id.to_string())
}

/// One keep-alive round trip; etcd answers TTL 0 for a lease it no longer has.
pub(super) async fn heartbeat(inner: &Inner, lease: &str) -> Result<(), StoreError> {
    let id = parse_lease(lease)?;
    match inner.conn.keep_alive(id).await {
        Ok(ttl) if ttl > 0 => Ok(()),
        Ok(_) => Err(StoreError::LeaseNotFound(lease.to_owned())),
        Err(f) => Err(not_found_or(f, lease)),
    }
}

/// Without `drain`, revokes the lease (etcd deletes the instance). With it,
/// rewrites the instance as draining on the same lease, so it still expires
/// when its heartbeats stop.
pub(super) async fn deregister(inner: &Inner, lease: &str, drain: bool) -> Result<(), StoreError> {
    let id = parse_lease(lease)?;
    let not_found = || StoreError::LeaseNotFound(lease.to_owned());
    let found = inner
        .conn
        .time_to_live(id)
        .await
        .map_err(|f| not_found_or(f, lease))?;
    // Only registration leases: never the session lease of a replica.
    let registry = inner.keys.registry();
    let key = match found.keys.into_iter().find(|k| k.starts_with(&registry)) {
        Some(key) if found.ttl >= 0 => key,
        _ => return Err(not_found()),
    };
    if !drain {
        return inner
            .conn
            .revoke(id)
            .await
            .map_err(|f| not_found_or(f, lease));
    }
    let answer = inner.conn.range(get(key.clone())).await?;
    let Some(kv) = answer.kvs.into_iter().next().filter(|kv| kv.lease == id) else {
        return Err(not_found());
    };
    let mut instance: Instance = serde_json::from_slice(&kv.value)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", show(&key))))?;
    instance.draining = true;
    let value = serde_json::to_vec(&instance).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    // Unless it was re-registered (new lease) meanwhile.
    let answer = inner
        .conn
        .txn(TxnRequest {
            compare: vec![leased_by(key.clone(), id)],
            success: vec![put_op(key, value, id)],
            failure: Vec::new(),
        })
        .await?;
    if answer.succeeded {
        Ok(())
    } else {
        Err(not_found())
    }
}

fn parse_lease(lease: &str) -> Result<i64, StoreError> {
    lease
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| StoreError::LeaseNotFound(lease.to_owned()))
}

fn not_found_or(failure: Failure, lease: &str) -> StoreError {
    if failure.lease_not_found() {
        StoreError::LeaseNotFound(lease.to_owned())
    } else {
        failure.into()
    }
}

/// Every registered instance and the etcd revision the read reflects.
pub(super) async fn load(conn: &Conn, keys: &Keys) -> Result<(Instances, i64), StoreError> {
    let answer = conn.range(under(keys.registry(), false)).await?;
    let mut all = Instances::new();
    for kv in &answer.kvs {
        apply_put(keys, &mut all, kv);
    }
    Ok((all, answer.header.map_or(0, |h| h.revision)))
}

/// Records a put registry key; whether that changed anything.
fn apply_put(keys: &Keys, all: &mut Instances, kv: &KeyValue) -> bool {
    let Some((service, name)) = keys.parse_instance(&kv.key) else {
        return false;
    };
    match serde_json::from_slice::<Instance>(&kv.value) {
        Ok(instance) => {
            let of_service = all.entry(service).or_default();
            let changed = of_service.get(&name) != Some(&instance);
            of_service.insert(name, instance);
            changed
        }
        Err(e) => {
            tracing::error!(key = %show(&kv.key), error = %e, "ignoring a registry entry that is not an instance");
            false
        }
    }
}

/// Keeps the store's `Instances` in step with `<prefix>/registry/`.
pub(super) struct RegistryFollower;

impl Follower for RegistryFollower {
    const WHAT: &'static str = "registry";

    fn range(inner: &Inner) -> (Vec<u8>, Vec<u8>) {
        let prefix = inner.keys.registry();
        let end = prefix_end(&prefix);
        (prefix, end)
    }

    async fn resync(&mut self, inner: &Inner) -> Result<i64, StoreError> {
        let (all, at) = load(&inner.conn, &inner.keys).await?;
        inner.registry.send_if_modified(|current| {
            let changed = **current != all;
            if changed {
                *current = Arc::new(all);
            }
            changed
        });
        Ok(at)
    }

    async fn apply(&mut self, inner: &Inner, events: Vec<Event>) -> Result<(), StoreError> {
        let keys = &inner.keys;
        inner.registry.send_if_modified(|current| {
            let all = Arc::make_mut(current);
            let mut changed = false;
            for event in &events {
                let Some(kv) = &event.kv else { continue };
                if event.r#type != EventType::Delete as i32 {
                    changed |= apply_put(keys, all, kv);
                    continue;
                }
                let Some((service, name)) = keys.parse_instance(&kv.key) else {
                    continue;
                };
                if let Some(of_service) = all.get_mut(&service) {
                    changed |= of_service.remove(&name).is_some();
                    if of_service.is_empty() {
                        all.remove(&service);
                    }
                }
            }
            changed
        });
        Ok(())
    }
}
