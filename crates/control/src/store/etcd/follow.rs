//! Following a key range through etcd's Watch API, resiliently: one loop shared
//! by the config and the registry followers. A follower reads the whole state
//! (`resync`) and then applies the watch events from the revision after that
//! read. When the stream breaks (etcd down, endpoint gone, watch canceled because
//! its start revision was compacted), the loop waits with backoff, re-reads the
//! whole state and watches again from the new revision; in between, what the
//! follower published last stays in place, so the control plane keeps serving.

use std::future::Future;
use std::sync::{Arc, Weak};

use futures_util::StreamExt;
use futures_util::stream;
use tonic::codec::Streaming;

use super::Inner;
use super::conn::{Backoff, Conn, MAX_MESSAGE, REQUEST_TIMEOUT, Stop, describe, unreachable};
use crate::proto::etcd::etcdserverpb::{
    WatchCreateRequest, WatchRequest, WatchResponse, watch_client::WatchClient, watch_request,
};
use crate::proto::etcd::mvccpb::Event;
use crate::store::StoreError;

/// One thing kept in sync with etcd.
pub(super) trait Follower: Send + 'static {
    /// What is followed, for logs.
    const WHAT: &'static str;

    /// The watched key range (`range_end` empty: the key alone).
    fn range(inner: &Inner) -> (Vec<u8>, Vec<u8>);

    /// Reads and publishes the whole state; the etcd revision it reflects.
    fn resync(&mut self, inner: &Inner) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Applies one batch of events (all of one etcd revision or more, in order).
    fn apply(
        &mut self,
        inner: &Inner,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Keeps `follower` in sync from revision `from` on, until the store is dropped.
pub(super) async fn follow<F: Follower>(
    store: Weak<Inner>,
    mut stop: Stop,
    mut follower: F,
    from: i64,
) {
    let mut state = State {
        from,
        resync: false,
        healthy: true,
        backoff: Backoff::new(),
    };
    loop {
        let Some(inner) = store.upgrade() else { return };
        let Some(trouble) = stop
            .until(watch_once(&inner, &mut follower, &mut state))
            .await
        else {
            return;
        };
        // From now on the state must be read again: events may have been missed.
        state.resync = true;
        if state.healthy {
            tracing::warn!(
                what = F::WHAT,
                %trouble,
                "etcd watch interrupted; keeping the last known state while reconnecting"
            );
        } else {
            tracing::debug!(what = F::WHAT, %trouble, "etcd watch still interrupted");
        }
        state.healthy = false;
        drop(inner);
        if !stop.sleep(state.backoff.delay()).await {
            return;
        }
    }
}

struct State {
    /// The revision to watch from.
    from: i64,
    /// Whether the whole state must be read before watching.
    resync: bool,
    /// False from an interruption until the watch is back.
    healthy: bool,
    backoff: Backoff,
}

/// Resyncs if needed, then watches until the stream breaks; why it broke.
async fn watch_once<F: Follower>(
    inner: &Arc<Inner>,
    follower: &mut F,
    state: &mut State,
) -> String {
    if state.resync {
        match follower.resync(inner).await {
            Ok(revision) => state.from = revision + 1,
            Err(e) => return e.to_string(),
        }
    }
    let (key, range_end) = F::range(inner);
    let (index, mut stream) = match open(&inner.conn, key, range_end, state.from).await {
        Ok(opened) => opened,
        Err(trouble) => return trouble,
    };
    if !state.healthy {
        tracing::info!(what = F::WHAT, from = state.from, "etcd watch resumed");
        state.healthy = true;
    }
    state.backoff.reset();
    loop {
        let answer = match stream.message().await {
            Ok(Some(answer)) => answer,
            Ok(None) => return "watch stream ended".into(),
            Err(status) => {
                if unreachable(&status) {
                    inner.conn.fail(index);
                }
                return describe(&status);
            }
        };
        if answer.compact_revision != 0 {
            return format!(
                "watch history compacted up to revision {}",
                answer.compact_revision
            );
        }
        if answer.canceled {
            return format!("watch canceled by etcd: {}", answer.cancel_reason);
        }
        if answer.events.is_empty() {
            continue; // progress notification
        }
        let last = answer
            .events
            .iter()
            .filter_map(|e| e.kv.as_ref())
            .map(|kv| kv.mod_revision)
            .max();
        if let Err(e) = follower.apply(inner, answer.events).await {
            return e.to_string();
        }
        if let Some(last) = last {
            state.from = last + 1;
        }
    }
}

/// Opens a watch on `[key, range_end)` from `start_revision` on the current
/// endpoint and waits until etcd confirms it.
async fn open(
    conn: &Conn,
    key: Vec<u8>,
    range_end: Vec<u8>,
    start_revision: i64,
) -> Result<(usize, Streaming<WatchResponse>), String> {
    let picked = conn.pick();
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key,
                range_end,
                start_revision,
                ..Default::default()
            },
        )),
    };
    // The request side stays open: closing it would end the watch.
    let requests = stream::iter([create]).chain(stream::pending());
    let opening = async {
        let mut client = WatchClient::new(picked.channel).max_decoding_message_size(MAX_MESSAGE);
        let mut stream = client.watch(requests).await?.into_inner();
        match stream.message().await? {
            Some(first) if first.created && !first.canceled => Ok(stream),
            Some(first) => Err(tonic::Status::aborted(format!(
                "watch refused: {}",
                first.cancel_reason
            ))),
            None => Err(tonic::Status::unavailable(
                "watch stream ended before it started",
            )),
        }
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, opening).await {
        Ok(Ok(stream)) => Ok((picked.index, stream)),
        Ok(Err(status)) => {
            if unreachable(&status) {
                conn.fail(picked.index);
            }
            Err(format!("{}: {}", picked.url, describe(&status)))
        }
        Err(_) => {
            conn.fail(picked.index);
            Err(format!(
                "{}: watch not confirmed within {REQUEST_TIMEOUT:?}",
                picked.url
            ))
        }
    }
}
