//! The replica's session lease and the proxy records hung on it. Each replica
//! holds one etcd lease for as long as it lives (kept alive every third of its
//! TTL); the records of the proxies it serves are attached to it, so when a
//! replica dies its records vanish with the lease instead of claiming proxies
//! nobody serves any more. If the lease is lost anyway (this replica could not
//! reach etcd for a whole TTL), a new one is granted and the records this
//! replica wrote are put back unless someone else wrote them since.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use super::Inner;
use super::conn::{Backoff, Failure, Stop};
use super::keys::show;
use super::rpc::{absent, put_op, under};
use crate::proto::etcd::etcdserverpb::{PutRequest, TxnRequest};
use crate::store::{ProxyRecord, StoreError};

/// TTL of a replica's session lease: how long the records of a dead replica
/// outlive it.
pub const SESSION_TTL_SECS: i64 = 10;

/// The lease and what was written with it.
pub(super) struct Session {
    lease: AtomicI64,
    /// Serialises re-granting a lost lease.
    renewing: tokio::sync::Mutex<()>,
    /// Record key → JSON, as this replica last wrote them.
    written: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Session {
    pub fn new(lease: i64) -> Self {
        Session {
            lease: AtomicI64::new(lease),
            renewing: tokio::sync::Mutex::new(()),
            written: Mutex::default(),
        }
    }

    pub fn lease(&self) -> i64 {
        self.lease.load(Ordering::Relaxed)
    }

    fn written(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Puts a proxy record on the session lease.
pub(super) async fn report(inner: &Inner, record: ProxyRecord) -> Result<(), StoreError> {
    let key = inner.keys.proxy(&record.key());
    let value = serde_json::to_vec(&record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    inner.session.written().insert(key.clone(), value.clone());
    let lease = inner.session.lease();
    let put = |lease| PutRequest {
        key: key.clone(),
        value: value.clone(),
        lease,
        prev_kv: false,
    };
    match inner.conn.put(put(lease)).await {
        Ok(_) => Ok(()),
        Err(f) if f.lease_not_found() => {
            let lease = renew(inner, lease).await?;
            inner.conn.put(put(lease)).await?;
            Ok(())
        }
        Err(f) => Err(f.into()),
    }
}

/// Every proxy record, sorted by key.
pub(super) async fn proxies(inner: &Inner) -> Result<Vec<ProxyRecord>, StoreError> {
    let answer = inner.conn.range(under(inner.keys.proxies(), false)).await?;
    let mut all = Vec::with_capacity(answer.kvs.len());
    for kv in &answer.kvs {
        let record: ProxyRecord = serde_json::from_slice(&kv.value)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", show(&kv.key))))?;
        all.push(record);
    }
    all.sort_by_key(ProxyRecord::key);
    Ok(all)
}

/// Replaces the lost lease `lost` (unless another caller already did) and puts
/// back the records written with it; the lease now in use.
async fn renew(inner: &Inner, lost: i64) -> Result<i64, Failure> {
    let _one = inner.session.renewing.lock().await;
    let current = inner.session.lease();
    if current != lost {
        return Ok(current);
    }
    let lease = inner.conn.grant(SESSION_TTL_SECS).await?;
    inner.session.lease.store(lease, Ordering::Relaxed);
    tracing::warn!(
        replica = %inner.replica,
        "session lease {lost} was lost (etcd unreachable for its whole TTL); continuing with lease {lease}"
    );
    let written: Vec<(Vec<u8>, Vec<u8>)> = inner
        .session
        .written()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, value) in written {
        // Only where the record vanished with the old lease: a record written
        // since (by a replica that now serves that proxy) wins.
        inner
            .conn
            .txn(TxnRequest {
                compare: vec![absent(key.clone())],
                success: vec![put_op(key, value, lease)],
                failure: Vec::new(),
            })
            .await?;
    }
    Ok(lease)
}

/// Keeps the session lease alive every third of its TTL (sooner, with backoff,
/// while etcd is unreachable), until the store is dropped.
pub(super) async fn keep_alive(store: Weak<Inner>, mut stop: Stop) {
    let period = Duration::from_secs(SESSION_TTL_SECS as u64) / 3;
    let mut delay = period;
    let mut backoff = Backoff::new();
    let mut healthy = true;
    loop {
        if !stop.sleep(delay).await {
            return;
        }
        let Some(inner) = store.upgrade() else { return };
        let Some(result) = stop.until(renew_once(&inner)).await else {
            return;
        };
        match result {
            Ok(()) => {
                if !healthy {
                    tracing::info!(replica = %inner.replica, "session lease renewed again");
                }
                healthy = true;
                backoff.reset();
                delay = period;
            }
            Err(f) => {
                if healthy {
                    tracing::warn!(replica = %inner.replica, error = %f, "cannot renew the session lease; retrying");
                }
                healthy = false;
                delay = backoff.delay();
            }
        }
    }
}

async fn renew_once(inner: &Inner) -> Result<(), Failure> {
    let lease = inner.session.lease();
    let ttl = inner.conn.keep_alive(lease).await?;
    if ttl <= 0 {
        renew(inner, lease).await?;
    }
    Ok(())
}
