//! Key-space steps the Lock and Election services share, built from the member's own
//! KV operations exactly as etcd's client-side recipes build them: a per-session key
//! `<prefix>/<lease id in hex>` created if absent, ownership by lowest create revision,
//! and waiting until every key created before one's own is gone.
//!
//! Waiting polls linearizable reads every [`RECIPE_POLL_MS`] (simple and obviously
//! correct; a watch would answer sooner). It holds no state between calls.

use tonic::Status;

use crate::pb::detcdpeerpb::internal_request::Request as Write;
use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::pb::etcdserverpb::request_op::Request as Op;
use crate::pb::etcdserverpb::response_op::Response as OpResponse;
use crate::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, TxnResponse,
};
use crate::pb::mvccpb::KeyValue;
use crate::server::error::ServerError;
use crate::server::node::{Applied, NodeHandle};

use super::unexpected;

/// Pause between two reads while waiting for keys to go away.
pub const RECIPE_POLL_MS: u64 = 20;

/// A session's key under `prefix`: `<prefix>/<lease in lower-case hex>`.
pub(crate) fn session_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.push(b'/');
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

/// `name` with the separator: what every session key of `name` starts with.
pub(crate) fn prefix_of(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// The range end that selects every key starting with `prefix` (`"\0"`, all keys from
/// the prefix on, when no byte can be raised).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            if let Some(b) = end.last_mut() {
                *b = last + 1;
            }
            return end;
        }
        end.pop();
    }
    vec![0]
}

fn range_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..RangeRequest::default()
        })),
    }
}

/// A compare that the key's create revision equals `revision` (0: the key is absent).
pub(crate) fn created_at(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
        range_end: Vec::new(),
    }
}

/// Replicates a transaction.
pub(crate) async fn txn(node: &NodeHandle, req: TxnRequest) -> Result<TxnResponse, Status> {
    match node.write(Write::Txn(req)).await? {
        Applied::Txn(response) => Ok(response),
        other => Err(unexpected(&other)),
    }
}

/// Puts `key` with `value` and `lease` unless it exists; returns the key as it is now
/// and whether this call created it.
pub(crate) async fn create_if_absent(
    node: &NodeHandle,
    key: &[u8],
    value: &[u8],
    lease: i64,
) -> Result<(KeyValue, bool), Status> {
    let put = RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..PutRequest::default()
        })),
    };
    let response = txn(
        node,
        TxnRequest {
            compare: vec![created_at(key, 0)],
            success: vec![put, range_op(key)],
            failure: vec![range_op(key)],
        },
    )
    .await?;
    let kv = response
        .responses
        .iter()
        .rev()
        .find_map(|r| match &r.response {
            Some(OpResponse::ResponseRange(range)) => range.kvs.first().cloned(),
            _ => None,
        })
        .ok_or_else(|| Status::internal("etcdserver: session key vanished in its own txn"))?;
    Ok((kv, response.succeeded))
}

/// A linearizable read of `req`.
pub(crate) async fn range(node: &NodeHandle, req: &RangeRequest) -> Result<Vec<KeyValue>, Status> {
    node.read_barrier().await?;
    let response = node
        .with_kv(|kv| kv.range(req))
        .map_err(ServerError::from)?;
    Ok(response.kvs)
}

/// The key under `prefix` with the lowest (`first`) or highest create revision, at most
/// `max_create_revision` when that is positive.
pub(crate) async fn by_create(
    node: &NodeHandle,
    prefix: &[u8],
    first: bool,
    max_create_revision: i64,
) -> Result<Option<KeyValue>, Status> {
    let order = if first {
        SortOrder::Ascend
    } else {
        SortOrder::Descend
    };
    let req = RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision,
        ..RangeRequest::default()
    };
    Ok(range(node, &req).await?.into_iter().next())
}

/// Waits until no key under `prefix` has a create revision at or below
/// `max_create_revision` (everyone queued before us is gone).
pub(crate) async fn wait_deletes(
    node: &NodeHandle,
    prefix: &[u8],
    max_create_revision: i64,
) -> Result<(), Status> {
    if max_create_revision <= 0 {
        return Ok(());
    }
    loop {
        if by_create(node, prefix, false, max_create_revision)
            .await?
            .is_none()
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(RECIPE_POLL_MS)).await;
    }
}

/// Whether `key` still exists with create revision `revision` (our session is alive).
pub(crate) async fn still_held(
    node: &NodeHandle,
    key: &[u8],
    revision: i64,
) -> Result<bool, Status> {
    let req = RangeRequest {
        key: key.to_vec(),
        ..RangeRequest::default()
    };
    let kvs = range(node, &req).await?;
    Ok(kvs.first().is_some_and(|kv| kv.create_revision == revision))
}

/// Deletes `key`; returns the revision after it.
pub(crate) async fn delete(node: &NodeHandle, key: &[u8]) -> Result<i64, Status> {
    let req = DeleteRangeRequest {
        key: key.to_vec(),
        ..DeleteRangeRequest::default()
    };
    match node.write(Write::DeleteRange(req)).await? {
        Applied::DeleteRange(response) => Ok(response.header.map_or(0, |h| h.revision)),
        other => Err(unexpected(&other)),
    }
}

/// Deletes a session key if the call that created it is dropped before it finishes
/// (the client went away while waiting), as etcd's recipes do on cancellation.
pub(crate) struct AbandonGuard {
    node: NodeHandle,
    key: Option<Vec<u8>>,
}

impl AbandonGuard {
    /// Guards `key`, which this call created.
    pub(crate) fn new(node: NodeHandle, key: Vec<u8>) -> Self {
        AbandonGuard {
            node,
            key: Some(key),
        }
    }

    /// The call finished: keep the key.
    pub(crate) fn keep(mut self) {
        self.key = None;
    }
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let node = self.node.clone();
            tokio::spawn(async move {
                if let Err(e) = delete(&node, &key).await {
                    tracing::warn!(error = %e, "could not delete an abandoned session key");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_raise_the_last_byte_that_can_be_raised() {
        assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn session_keys_are_the_prefix_and_the_lease_in_hex() {
        assert_eq!(session_key(b"lk", 0x1f), b"lk/1f".to_vec());
        assert_eq!(prefix_of(b"lk"), b"lk/".to_vec());
    }
}
