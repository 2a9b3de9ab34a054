//! Config versions in etcd: the compare-and-set commit (one transaction), reads
//! of kept versions, and the follower that publishes the current version.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Inner;
use super::conn::Conn;
use super::follow::Follower;
use super::keys::{Keys, show};
use super::rpc::{absent, delete_op, get, holds, put_op, range_op, under};
use crate::proto::etcd::etcdserverpb::{TxnRequest, response_op};
use crate::proto::etcd::mvccpb::{Event, event::EventType};
use crate::store::{NewRevision, Revision, StoreError, now_ms};

/// The value of a version key: the revision and who committed it.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    revision: Revision,
    /// The replica that committed it.
    #[serde(default)]
    committed_by: String,
    /// Random per commit: a commit whose answer was lost (and was retried on
    /// another endpoint) recognises its own write instead of reporting a
    /// conflict with itself.
    #[serde(default)]
    commit_id: u64,
}

/// Stores `next` as version `expected + 1` in one transaction: if `current`
/// still holds `expected` (is absent for 0), put the version, move `current`
/// and delete the versions beyond the kept history; else read `current` back.
pub(super) async fn commit(
    inner: &Inner,
    expected: u64,
    next: NewRevision,
) -> Result<Arc<Revision>, StoreError> {
    let keys = &inner.keys;
    let version = expected
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupt(format!("version {expected} cannot grow")))?;
    let stored = Stored {
        revision: Revision {
            version,
            yaml: next.yaml,
            source: next.source,
            applied_at_ms: now_ms(),
            note: next.note,
        },
        committed_by: inner.replica.clone(),
        commit_id: fastrand::u64(..),
    };
    let value = serde_json::to_vec(&stored).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let current = keys.current();
    let compare = if expected == 0 {
        absent(current.clone())
    } else {
        holds(current.clone(), expected.to_string().into_bytes())
    };
    let mut success = vec![
        put_op(keys.version(version), value, 0),
        put_op(current.clone(), version.to_string().into_bytes(), 0),
    ];
    let oldest_kept = version.saturating_sub(inner.keep as u64 - 1);
    if oldest_kept > 1 {
        success.push(delete_op(keys.versions(), keys.version(oldest_kept)));
    }
    let answer = inner
        .conn
        .txn(TxnRequest {
            compare: vec![compare],
            success,
            failure: vec![range_op(get(current))],
        })
        .await?;
    let at = answer.header.map_or(0, |h| h.revision);
    if answer.succeeded {
        let revision = Arc::new(stored.revision);
        inner.publish_config(Some(revision.clone()), at);
        return Ok(revision);
    }
    let found = answer.responses.into_iter().find_map(|r| match r.response {
        Some(response_op::Response::ResponseRange(range)) => Some(range),
        _ => None,
    });
    let current = match found.and_then(|r| r.kvs.into_iter().next()) {
        Some(kv) => parse_version(&kv.key, &kv.value)?,
        None => 0,
    };
    if current == version {
        // Our own write, answered on a connection that broke before the retry?
        if let Ok(Some(theirs)) = read(&inner.conn, keys, version).await
            && theirs.commit_id == stored.commit_id
        {
            let revision = Arc::new(theirs.revision);
            inner.publish_config(Some(revision.clone()), at);
            return Ok(revision);
        }
    }
    Err(StoreError::Conflict { expected, current })
}

/// A kept version.
pub(super) async fn get_version(inner: &Inner, version: u64) -> Result<Arc<Revision>, StoreError> {
    match read(&inner.conn, &inner.keys, version).await? {
        Some(stored) => Ok(Arc::new(stored.revision)),
        None => Err(StoreError::VersionNotFound(version)),
    }
}

/// Kept versions, newest first (key order is version order).
pub(super) async fn history(inner: &Inner) -> Result<Vec<Arc<Revision>>, StoreError> {
    let answer = inner.conn.range(under(inner.keys.versions(), true)).await?;
    answer
        .kvs
        .iter()
        .map(|kv| parse_stored(&kv.key, &kv.value).map(|s| Arc::new(s.revision)))
        .collect()
}

/// The current version and the etcd revision the read reflects.
pub(super) async fn load(
    conn: &Conn,
    keys: &Keys,
) -> Result<(Option<Arc<Revision>>, i64), StoreError> {
    let answer = conn.range(get(keys.current())).await?;
    let at = answer.header.map_or(0, |h| h.revision);
    let Some(kv) = answer.kvs.first() else {
        return Ok((None, at));
    };
    let version = parse_version(&kv.key, &kv.value)?;
    match read(conn, keys, version).await? {
        Some(stored) => Ok((Some(Arc::new(stored.revision)), at)),
        None => Err(StoreError::Corrupt(format!(
            "{} names version {version}, which is not stored",
            show(&kv.key)
        ))),
    }
}

async fn read(conn: &Conn, keys: &Keys, version: u64) -> Result<Option<Stored>, StoreError> {
    let answer = conn.range(get(keys.version(version))).await?;
    answer
        .kvs
        .first()
        .map(|kv| parse_stored(&kv.key, &kv.value))
        .transpose()
}

fn parse_stored(key: &[u8], value: &[u8]) -> Result<Stored, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt(format!("{}: {e}", show(key))))
}

fn parse_version(key: &[u8], value: &[u8]) -> Result<u64, StoreError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{} holds {:?}, not a version number",
                show(key),
                String::from_utf8_lossy(value)
            ))
        })
}

/// Publishes the current version as `<prefix>/config/current` changes.
pub(super) struct ConfigFollower;

impl Follower for ConfigFollower {
    const WHAT: &'static str = "config";

    fn range(inner: &Inner) -> (Vec<u8>, Vec<u8>) {
        (inner.keys.current(), Vec::new())
    }

    async fn resync(&mut self, inner: &Inner) -> Result<i64, StoreError> {
        let (current, at) = load(&inner.conn, &inner.keys).await?;
        inner.publish_config(current, at);
        Ok(at)
    }

    async fn apply(&mut self, inner: &Inner, events: Vec<Event>) -> Result<(), StoreError> {
        for event in events {
            let Some(kv) = event.kv else { continue };
            if event.r#type == EventType::Delete as i32 {
                tracing::warn!(key = %show(&kv.key), "the current config version was deleted from etcd");
                inner.publish_config(None, kv.mod_revision);
                continue;
            }
            let version = match parse_version(&kv.key, &kv.value) {
                Ok(version) => version,
                Err(e) => {
                    tracing::error!(error = %e, "ignoring a config change");
                    continue;
                }
            };
            match read(&inner.conn, &inner.keys, version).await {
                Ok(Some(stored)) => {
                    inner.publish_config(Some(Arc::new(stored.revision)), kv.mod_revision)
                }
                // Pruned already: a newer version follows in a later event.
                Ok(None) => tracing::debug!(version, "config version gone before it was read"),
                Err(StoreError::Corrupt(e)) => {
                    tracing::error!(error = %e, "ignoring a config change")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
