//! Key-space steps the Lock and Election services share, built from the member's own
//! KV operations exactly as etcd's client-side recipes build them: a per-session key
//! `<prefix>/<lease id in hex>` created if absent, ownership by lowest create revision,
//! and waiting until every key created before one's own is gone.
//!
//! Waiting is driven by the node's watch hub, as etcd's recipes wait on watches: read
//! the key to wait for (linearizably), then watch it from the revision after the read,
//! so no change between the read and the watch is missed, and read again when an event
//! arrives. A watch the hub cancels (its start revision compacted away) also means
//! "read again". It holds no state between calls.

use std::sync::Arc;

use tokio::sync::Notify;
use tonic::Status;

use crate::pb::detcdpeerpb::internal_request::Request as Write;
use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::pb::etcdserverpb::request_op::Request as Op;
use crate::pb::etcdserverpb::response_op::Response as OpResponse;
use crate::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, TxnResponse,
    WatchCreateRequest,
};
use crate::pb::mvccpb::KeyValue;
use crate::pb::mvccpb::event::EventType;
use crate::server::error::ServerError;
use crate::server::node::{Applied, NodeHandle};

use super::unexpected;

/// Responses taken from the hub per drain while a recipe waits.
pub const RECIPE_DRAIN_RESPONSES_MAX: usize = 16;

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

/// A linearizable read of `req`: the keys and the revision they were read at.
pub(crate) async fn range(
    node: &NodeHandle,
    req: &RangeRequest,
) -> Result<(Vec<KeyValue>, i64), Status> {
    node.read_barrier().await?;
    let response = node
        .with_kv(|kv| kv.range(req))
        .map_err(ServerError::from)?;
    Ok((response.kvs, response.header.map_or(0, |h| h.revision)))
}

/// The key under `prefix` with the lowest (`first`) or highest create revision, at most
/// `max_create_revision` when that is positive; and the revision of the read.
pub(crate) async fn by_create(
    node: &NodeHandle,
    prefix: &[u8],
    first: bool,
    max_create_revision: i64,
) -> Result<(Option<KeyValue>, i64), Status> {
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
    let (kvs, revision) = range(node, &req).await?;
    Ok((kvs.into_iter().next(), revision))
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
        let (last, revision) = by_create(node, prefix, false, max_create_revision).await?;
        let Some(last) = last else {
            return Ok(());
        };
        // The newest key queued before us: wait for its deletion, then look again.
        let mut watch = HubWatch::open(node, &last.key, &[], revision + 1);
        loop {
            let events = watch.next_events().await;
            // No events: the hub canceled the watch.
            if events.is_empty() || events.iter().any(is_delete) {
                break;
            }
        }
    }
}

fn is_delete(event: &crate::pb::mvccpb::Event) -> bool {
    event.r#type == EventType::Delete as i32
}

/// A watch on the node's hub for a recipe's wait, outside any client stream; the hub
/// forgets it when it is dropped (also when the waiting call is abandoned).
pub(crate) struct HubWatch {
    node: NodeHandle,
    id: u64,
    notify: Arc<Notify>,
    canceled: bool,
}

impl HubWatch {
    /// Watches `key` (to `range_end`, as in a watch request) from `start_revision`.
    pub(crate) fn open(
        node: &NodeHandle,
        key: &[u8],
        range_end: &[u8],
        start_revision: i64,
    ) -> HubWatch {
        let (id, notify) = node.open_watch_stream();
        let create = WatchCreateRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            start_revision,
            ..WatchCreateRequest::default()
        };
        node.with_watch_hub(|kv, hub| hub.create(id, &create, kv));
        HubWatch {
            node: node.clone(),
            id,
            notify,
            canceled: false,
        }
    }

    /// The events of the next responses that carry any; empty once the hub has
    /// canceled the watch (the caller reads the key space again then).
    pub(crate) async fn next_events(&mut self) -> Vec<crate::pb::mvccpb::Event> {
        loop {
            if self.canceled {
                return Vec::new();
            }
            let batch = self
                .node
                .with_watch_hub(|_, hub| hub.drain(self.id, RECIPE_DRAIN_RESPONSES_MAX));
            let mut events = Vec::new();
            for response in batch {
                self.canceled |= response.canceled;
                events.extend(response.events);
            }
            if !events.is_empty() || self.canceled {
                return events;
            }
            // The hub wakes with `notify_one`, so a wake between the drain and this
            // wait is kept as a permit, not lost.
            self.notify.notified().await;
        }
    }
}

impl Drop for HubWatch {
    fn drop(&mut self) {
        self.node.close_watch_stream(self.id);
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
    let (kvs, _) = range(node, &req).await?;
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
