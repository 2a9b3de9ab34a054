//! The etcd calls the store makes, as typed one-liners over [`Conn::call`] (each
//! fails over between endpoints), plus builders for ranges and transaction
//! operations.

use futures_util::StreamExt;
use tonic::transport::Channel;

use super::conn::{Conn, Failure, MAX_MESSAGE};
use crate::proto::etcd::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, TxnRequest, TxnResponse, compare, kv_client::KvClient,
    lease_client::LeaseClient, range_request, request_op,
};

fn kv(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
}

fn lease(channel: Channel) -> LeaseClient<Channel> {
    LeaseClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
}

impl Conn {
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, Failure> {
        self.call("range", |ch| {
            let req = req.clone();
            async move { Ok(kv(ch).range(req).await?.into_inner()) }
        })
        .await
    }

    pub async fn put(&self, req: PutRequest) -> Result<PutResponse, Failure> {
        self.call("put", |ch| {
            let req = req.clone();
            async move { Ok(kv(ch).put(req).await?.into_inner()) }
        })
        .await
    }

    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, Failure> {
        self.call("transaction", |ch| {
            let req = req.clone();
            async move { Ok(kv(ch).txn(req).await?.into_inner()) }
        })
        .await
    }

    /// A new lease of `ttl_secs` (etcd may raise it to its minimum).
    pub async fn grant(&self, ttl_secs: i64) -> Result<i64, Failure> {
        let answer = self
            .call("lease grant", |ch| async move {
                let req = LeaseGrantRequest {
                    ttl: ttl_secs,
                    id: 0,
                };
                Ok(lease(ch).lease_grant(req).await?.into_inner())
            })
            .await?;
        if !answer.error.is_empty() {
            let picked = self.pick();
            return Err(Failure::Refused {
                what: "lease grant",
                url: picked.url,
                code: tonic::Code::FailedPrecondition,
                message: answer.error,
            });
        }
        Ok(answer.id)
    }

    pub async fn revoke(&self, id: i64) -> Result<(), Failure> {
        self.call("lease revoke", |ch| async move {
            lease(ch).lease_revoke(LeaseRevokeRequest { id }).await?;
            Ok(())
        })
        .await
    }

    /// Renews a lease once; the remaining TTL in seconds, 0 when the lease no
    /// longer exists.
    pub async fn keep_alive(&self, id: i64) -> Result<i64, Failure> {
        self.call("lease keep-alive", |ch| async move {
            let request = futures_util::stream::iter([LeaseKeepAliveRequest { id }]);
            let mut answers = lease(ch).lease_keep_alive(request).await?.into_inner();
            match answers.next().await {
                Some(answer) => Ok(answer?.ttl),
                None => Err(tonic::Status::unavailable(
                    "keep-alive stream ended without an answer",
                )),
            }
        })
        .await
    }

    /// A lease's remaining TTL and attached keys.
    pub async fn time_to_live(&self, id: i64) -> Result<LeaseTimeToLiveResponse, Failure> {
        self.call("lease lookup", |ch| async move {
            let req = LeaseTimeToLiveRequest { id, keys: true };
            Ok(lease(ch).lease_time_to_live(req).await?.into_inner())
        })
        .await
    }
}

/// The end of the key range holding every key that starts with `prefix`.
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes: etcd's "to the end of the keyspace".
    vec![0]
}

/// One key.
pub(super) fn get(key: Vec<u8>) -> RangeRequest {
    RangeRequest {
        key,
        ..Default::default()
    }
}

/// Every key under `prefix`, in key order (`descending`: reversed).
pub(super) fn under(prefix: Vec<u8>, descending: bool) -> RangeRequest {
    RangeRequest {
        range_end: prefix_end(&prefix),
        key: prefix,
        sort_target: range_request::SortTarget::Key as i32,
        sort_order: if descending {
            range_request::SortOrder::Descend
        } else {
            range_request::SortOrder::Ascend
        } as i32,
        ..Default::default()
    }
}

pub(super) fn put_op(key: Vec<u8>, value: Vec<u8>, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key,
            value,
            lease,
            prev_kv: false,
        })),
    }
}

pub(super) fn range_op(req: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(req)),
    }
}

/// Deletes the keys in `[key, range_end)`.
pub(super) fn delete_op(key: Vec<u8>, range_end: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key,
                range_end,
                prev_kv: false,
            },
        )),
    }
}

/// `key` does not exist (it was never created, or was deleted since).
pub(super) fn absent(key: Vec<u8>) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key,
        range_end: Vec::new(),
        target_union: Some(compare::TargetUnion::CreateRevision(0)),
    }
}

/// `key` holds exactly `value`.
pub(super) fn holds(key: Vec<u8>, value: Vec<u8>) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Value as i32,
        key,
        range_end: Vec::new(),
        target_union: Some(compare::TargetUnion::Value(value)),
    }
}

/// `key` is attached to lease `id`.
pub(super) fn leased_by(key: Vec<u8>, id: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Lease as i32,
        key,
        range_end: Vec::new(),
        target_union: Some(compare::TargetUnion::Lease(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_covers_exactly_the_prefix() {
        assert_eq!(prefix_end(b"/mg/registry/"), b"/mg/registry0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }
}
