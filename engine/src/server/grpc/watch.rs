//! The `etcdserverpb.Watch` service: one bidirectional stream per call, any number of
//! watchers on it.
//!
//! One task per stream reads the client's create / cancel / progress requests and hands
//! them to the node's [`WatchHub`](crate::watch::WatchHub), and sends what the hub has
//! queued for the stream, in the hub's order, whenever the node wakes it. Headers get
//! this member's IDs and term but keep the hub's revision. The hub bounds each stream's
//! queue and catches slow streams up, so this layer only drains in batches. It does not
//! decide which events a watcher sees (the hub does) and keeps no state of its own.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use tonic::codegen::tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::pb::etcdserverpb::watch_request::RequestUnion;
use crate::pb::etcdserverpb::watch_server::Watch;
use crate::pb::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use crate::server::node::NodeHandle;

use super::{ResponseStream, STREAM_BUFFER_RESPONSES_MAX, receiver_stream};

/// Responses taken from the hub per drain.
pub const WATCH_DRAIN_BATCH_RESPONSES_MAX: usize = 64;

/// etcd's refusal of a create request whose range is empty (a range end not above the
/// key).
pub const EMPTY_WATCHER_RANGE: &str = "mvcc: watcher range is empty";

/// The Watch service of one member.
#[derive(Clone)]
pub struct WatchService {
    node: NodeHandle,
}

/// Closes the hub stream when the stream's task ends, however it ends.
struct StreamGuard {
    node: NodeHandle,
    id: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.node.close_watch_stream(self.id);
    }
}

impl WatchService {
    /// The service for `node`.
    pub fn new(node: NodeHandle) -> Self {
        WatchService { node }
    }

    /// Serves one watch stream over any stream of requests (the gRPC method passes the
    /// client's stream; tests pass their own). The stream ends when the client stops
    /// sending or stops receiving.
    pub fn watch_stream<S>(&self, requests: S) -> ResponseStream<WatchResponse>
    where
        S: Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER_RESPONSES_MAX);
        let (id, notify) = self.node.open_watch_stream();
        let guard = StreamGuard {
            node: self.node.clone(),
            id,
        };
        tokio::spawn(serve(guard, notify, requests, tx));
        receiver_stream(rx)
    }
}

async fn serve<S>(
    guard: StreamGuard,
    notify: Arc<Notify>,
    mut requests: S,
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
) where
    S: Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
{
    let node = &guard.node;
    let id = guard.id;
    loop {
        if !drain(node, id, &tx).await {
            return;
        }
        tokio::select! {
            biased;
            _ = tx.closed() => return,
            item = requests.next() => match item {
                Some(Ok(req)) => {
                    if let Some(refusal) = handle(node, id, req)
                        && tx.send(Ok(refusal)).await.is_err()
                    {
                        return;
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(stream = id, error = %e, "watch stream ended by the client");
                    return;
                }
                None => return,
            },
            _ = notify.notified() => {}
        }
    }
}

/// Sends everything the hub has queued for the stream; false once the client is gone.
async fn drain(
    node: &NodeHandle,
    id: u64,
    tx: &mpsc::Sender<Result<WatchResponse, Status>>,
) -> bool {
    loop {
        let batch = node.with_watch_hub(|_, hub| hub.drain(id, WATCH_DRAIN_BATCH_RESPONSES_MAX));
        if batch.is_empty() {
            return true;
        }
        for mut response in batch {
            response.header = Some(node.header(response.header.map_or(0, |h| h.revision)));
            if tx.send(Ok(response)).await.is_err() {
                return false;
            }
        }
    }
}

/// Hands one client request to the hub; returns a response to send directly when the
/// request is refused before reaching the hub.
fn handle(node: &NodeHandle, id: u64, req: WatchRequest) -> Option<WatchResponse> {
    match req.request_union? {
        RequestUnion::CreateRequest(create) => {
            if range_is_empty(&create) {
                let revision = node.with_kv(|kv| kv.store().current_revision());
                return Some(WatchResponse {
                    header: Some(node.header(revision)),
                    watch_id: -1,
                    created: true,
                    canceled: true,
                    cancel_reason: EMPTY_WATCHER_RANGE.to_owned(),
                    ..WatchResponse::default()
                });
            }
            node.with_watch_hub(|kv, hub| hub.create(id, &create, kv));
        }
        RequestUnion::CancelRequest(cancel) => {
            node.with_watch_hub(|kv, hub| {
                hub.cancel(id, cancel.watch_id, kv.store().current_revision());
            });
        }
        RequestUnion::ProgressRequest(_) => {
            node.with_watch_hub(|kv, hub| {
                hub.request_progress(id, kv.store().current_revision());
            });
        }
    }
    None
}

/// A range end that is set, is not `"\0"` (every key from the key on), and is not above
/// the key selects nothing: etcd refuses such a watch.
fn range_is_empty(req: &WatchCreateRequest) -> bool {
    !req.range_end.is_empty() && req.range_end != [0] && req.key >= req.range_end
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ResponseStream<WatchResponse>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Ok(Response::new(self.watch_stream(request.into_inner())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(key: &[u8], end: &[u8]) -> WatchCreateRequest {
        WatchCreateRequest {
            key: key.to_vec(),
            range_end: end.to_vec(),
            ..WatchCreateRequest::default()
        }
    }

    #[test]
    fn an_end_not_above_the_key_is_an_empty_range() {
        assert!(range_is_empty(&create(b"b", b"a")));
        assert!(range_is_empty(&create(b"b", b"b")));
        assert!(!range_is_empty(&create(b"b", b"c")));
        assert!(!range_is_empty(&create(b"b", b"")));
        assert!(!range_is_empty(&create(b"b", b"\0")));
    }
}
