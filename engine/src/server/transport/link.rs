//! The sending end of the peer link: one task per peer that drains the peer's bounded
//! queue into batches on one client-streaming `Raft` call, reconnecting with a backoff
//! when the call fails, and a separate call per snapshot so its delivery is known.
//!
//! Not here: retransmission (Raft resends what is lost), ordering across the snapshot
//! call and the message stream (Raft tolerates reordering), choosing peers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

use super::{
    CONNECT_TIMEOUT_MS, KEEPALIVE_INTERVAL_MS, KEEPALIVE_TIMEOUT_MS, PEER_GRPC_MESSAGE_BYTES_MAX,
    PEER_QUEUE_MESSAGES_MAX, PeerFailure, RAFT_BATCH_BYTES_MAX, RECONNECT_BACKOFF_MS_MAX,
    RECONNECT_BACKOFF_MS_MIN, SNAPSHOT_SEND_TIMEOUT_MS, SNAPSHOTS_IN_FLIGHT_PER_PEER_MAX, Shared,
};
use crate::pb::detcdpeerpb::RaftBatch;
use crate::pb::detcdpeerpb::peer_client::PeerClient;
use crate::raft::Message;

/// Batches handed to the gRPC stream but not yet sent; small, so a stalled stream
/// backs up into the peer queue where drops are counted.
const STREAM_BATCHES_IN_FLIGHT_MAX: usize = 4;

/// Encodes a Raft message for the wire.
pub(crate) fn encode_message(message: &Message) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(message)
}

/// Decodes a Raft message from the wire.
pub(crate) fn decode_message(bytes: &[u8]) -> Result<Message, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// The transport's handle on one peer's link. Dropping it ends the link task.
pub(crate) struct LinkHandle {
    /// The peer's URLs, tried in turn.
    pub(crate) urls: Vec<String>,
    /// A lazily connected client for forwarded requests (reconnects by itself).
    pub(crate) forward_client: PeerClient<Channel>,
    peer: u64,
    queue: mpsc::Sender<Message>,
    endpoints: Arc<Vec<Endpoint>>,
    snapshots_in_flight: Arc<AtomicU64>,
    shared: Arc<Shared>,
}

/// A peer client with the Peer service's message size limits.
fn client(channel: Channel) -> PeerClient<Channel> {
    PeerClient::new(channel)
        .max_decoding_message_size(PEER_GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(PEER_GRPC_MESSAGE_BYTES_MAX)
}

impl LinkHandle {
    /// Starts the link task for `peer`. Fails if a URL is not a valid endpoint.
    pub(crate) fn start(
        shared: Arc<Shared>,
        peer: u64,
        urls: Vec<String>,
    ) -> Result<LinkHandle, String> {
        let mut endpoints = Vec::with_capacity(urls.len());
        for url in &urls {
            let endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| format!("bad peer URL {url:?}: {e}"))?
                .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
                .http2_keep_alive_interval(Duration::from_millis(KEEPALIVE_INTERVAL_MS))
                .keep_alive_timeout(Duration::from_millis(KEEPALIVE_TIMEOUT_MS))
                .keep_alive_while_idle(true);
            endpoints.push(endpoint);
        }
        let Some(first) = endpoints.first() else {
            return Err("no peer URLs".to_string());
        };
        let forward_client = client(first.connect_lazy());
        let endpoints = Arc::new(endpoints);
        let (queue, receiver) = mpsc::channel(PEER_QUEUE_MESSAGES_MAX);
        tokio::spawn(run_link(
            Arc::clone(&shared),
            peer,
            Arc::clone(&endpoints),
            receiver,
        ));
        Ok(LinkHandle {
            urls,
            forward_client,
            peer,
            queue,
            endpoints,
            snapshots_in_flight: Arc::new(AtomicU64::new(0)),
            shared,
        })
    }

    /// Queues a message without waiting; a full queue drops it and counts the drop.
    pub(crate) fn enqueue(&self, message: Message) {
        if self.queue.try_send(message).is_err() {
            self.shared
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts delivering a snapshot message on its own call; reports a failure if too
    /// many are already in flight or the delivery fails.
    pub(crate) fn send_snapshot(&self, message: Message) {
        let in_flight = self.snapshots_in_flight.fetch_add(1, Ordering::Relaxed);
        if in_flight >= SNAPSHOTS_IN_FLIGHT_PER_PEER_MAX {
            self.snapshots_in_flight.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(
                peer = self.peer,
                "snapshot dropped: another one is in flight"
            );
            self.shared.report(PeerFailure::SnapshotFailed(self.peer));
            return;
        }
        let shared = Arc::clone(&self.shared);
        let endpoints = Arc::clone(&self.endpoints);
        let counter = Arc::clone(&self.snapshots_in_flight);
        let peer = self.peer;
        tokio::spawn(async move {
            let timeout = Duration::from_millis(SNAPSHOT_SEND_TIMEOUT_MS);
            let result = tokio::time::timeout(
                timeout,
                deliver_snapshot(&shared, peer, &endpoints, message),
            )
            .await
            .unwrap_or_else(|_| Err("timed out".to_string()));
            counter.fetch_sub(1, Ordering::Relaxed);
            match result {
                Ok(()) => tracing::debug!(peer, "snapshot delivered"),
                Err(error) => {
                    tracing::warn!(peer, %error, "snapshot delivery failed");
                    shared.report(PeerFailure::SnapshotFailed(peer));
                }
            }
        });
    }
}

/// Sends one snapshot message as a one-batch `Raft` call; the call's answer means the
/// receiver took it.
async fn deliver_snapshot(
    shared: &Shared,
    peer: u64,
    endpoints: &[Endpoint],
    message: Message,
) -> Result<(), String> {
    let bytes = encode_message(&message).map_err(|e| format!("encoding: {e}"))?;
    let batch = RaftBatch {
        cluster_id: shared.cluster_id,
        from: shared.member_id,
        to: peer,
        messages: vec![bytes],
    };
    let mut last_error = "no peer URLs".to_string();
    for endpoint in endpoints {
        let channel = match endpoint.connect().await {
            Ok(channel) => channel,
            Err(e) => {
                last_error = format!("connecting to {}: {e}", endpoint.uri());
                continue;
            }
        };
        let stream = futures_util::stream::iter([batch]);
        return client(channel)
            .raft(stream)
            .await
            .map(|_| ())
            .map_err(|status| format!("peer answered: {status}"));
    }
    Err(last_error)
}

/// How a streaming session ended.
enum SessionEnd {
    /// The transport dropped the peer: the task ends.
    QueueClosed,
    /// The call failed (or the peer ended it): reconnect.
    Failed(String),
}

/// The link task: connect, stream until failure, back off, repeat; ends when the
/// transport drops the peer's queue.
async fn run_link(
    shared: Arc<Shared>,
    peer: u64,
    endpoints: Arc<Vec<Endpoint>>,
    mut queue: mpsc::Receiver<Message>,
) {
    let mut backoff_ms = RECONNECT_BACKOFF_MS_MIN;
    let mut attempt = 0usize;
    loop {
        let endpoint = &endpoints[attempt % endpoints.len()];
        attempt = attempt.wrapping_add(1);
        let error = match endpoint.connect().await {
            Ok(channel) => {
                tracing::debug!(peer, uri = %endpoint.uri(), "peer link connected");
                backoff_ms = RECONNECT_BACKOFF_MS_MIN;
                match stream_session(&shared, peer, client(channel), &mut queue).await {
                    SessionEnd::QueueClosed => return,
                    SessionEnd::Failed(error) => error,
                }
            }
            Err(e) => format!("connecting to {}: {e}", endpoint.uri()),
        };
        tracing::debug!(peer, %error, backoff_ms, "peer link down");
        shared.report(PeerFailure::Unreachable(peer));
        if !drain_for(&shared, &mut queue, backoff_ms).await {
            return;
        }
        backoff_ms = (backoff_ms * 2).min(RECONNECT_BACKOFF_MS_MAX);
    }
}

/// Waits `ms`, dropping (and counting) what is queued meanwhile: it is stale by the
/// time the link is back. Returns false if the queue closed.
async fn drain_for(shared: &Shared, queue: &mut mpsc::Receiver<Message>, ms: u64) -> bool {
    let sleep = tokio::time::sleep(Duration::from_millis(ms));
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            biased;
            () = &mut sleep => return true,
            message = queue.recv() => match message {
                Some(_) => {
                    shared.dropped_unreachable.fetch_add(1, Ordering::Relaxed);
                }
                None => return false,
            },
        }
    }
}

/// Streams batches from the queue over one `Raft` call until it fails or the queue
/// closes.
async fn stream_session(
    shared: &Shared,
    peer: u64,
    mut client: PeerClient<Channel>,
    queue: &mut mpsc::Receiver<Message>,
) -> SessionEnd {
    let (batches, batch_receiver) = mpsc::channel::<RaftBatch>(STREAM_BATCHES_IN_FLIGHT_MAX);
    let stream = futures_util::stream::unfold(batch_receiver, |mut receiver| async move {
        receiver.recv().await.map(|batch| (batch, receiver))
    });
    let call = client.raft(stream);
    tokio::pin!(call);
    let mut batcher = Batcher::new(shared, peer);
    loop {
        let first = if batcher.has_carry() {
            None
        } else {
            tokio::select! {
                biased;
                result = &mut call => return ended(result),
                message = queue.recv() => match message {
                    Some(message) => Some(message),
                    None => return SessionEnd::QueueClosed,
                },
            }
        };
        let batch = batcher.fill(first, queue);
        if batch.messages.is_empty() {
            continue;
        }
        tokio::select! {
            biased;
            result = &mut call => return ended(result),
            sent = batches.send(batch) => if sent.is_err() {
                return SessionEnd::Failed("the request stream closed".to_string());
            },
        }
    }
}

/// The end of a `Raft` call: even a clean answer means the peer closed the stream.
fn ended(
    result: Result<tonic::Response<crate::pb::detcdpeerpb::RaftAck>, tonic::Status>,
) -> SessionEnd {
    match result {
        Ok(_) => SessionEnd::Failed("the peer closed the stream".to_string()),
        Err(status) => SessionEnd::Failed(format!("stream failed: {status}")),
    }
}

/// Gathers queued messages into batches of at most [`RAFT_BATCH_BYTES_MAX`] encoded
/// bytes, carrying over the message that did not fit.
struct Batcher<'a> {
    shared: &'a Shared,
    peer: u64,
    carry: Option<Vec<u8>>,
}

impl<'a> Batcher<'a> {
    fn new(shared: &'a Shared, peer: u64) -> Self {
        Batcher {
            shared,
            peer,
            carry: None,
        }
    }

    /// Whether a message that did not fit the last batch waits to be sent.
    fn has_carry(&self) -> bool {
        self.carry.is_some()
    }

    /// A batch starting with whatever was carried over, then `first`, then whatever
    /// else is queued, until the byte limit.
    fn fill(&mut self, first: Option<Message>, queue: &mut mpsc::Receiver<Message>) -> RaftBatch {
        let mut messages = Vec::new();
        let mut bytes_total = 0usize;
        let mut next = first;
        if let Some(carried) = self.carry.take() {
            bytes_total += carried.len();
            messages.push(carried);
        }
        loop {
            let message = match next.take() {
                Some(message) => message,
                None => match queue.try_recv() {
                    Ok(message) => message,
                    Err(_) => break,
                },
            };
            let bytes = match encode_message(&message) {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::warn!(peer = self.peer, %error, "unencodable raft message dropped");
                    continue;
                }
            };
            if !messages.is_empty() && bytes_total + bytes.len() > RAFT_BATCH_BYTES_MAX {
                self.carry = Some(bytes);
                break;
            }
            bytes_total += bytes.len();
            messages.push(bytes);
        }
        RaftBatch {
            cluster_id: self.shared.cluster_id,
            from: self.shared.member_id,
            to: self.peer,
            messages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Entry, EntryKind, MessageKind};
    use proptest::prelude::*;

    /// An Append carrying one entry of `data_bytes` bytes, numbered by `index`.
    fn message(index: u64, data_bytes: usize) -> Message {
        let mut message = Message::new(MessageKind::Append, 1, 2, 1);
        message.index = index;
        message.entries.push(Entry {
            term: 1,
            index: index + 1,
            kind: EntryKind::Normal,
            data: vec![7; data_bytes],
        });
        message
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Batching keeps every message once, in order, and no batch of two or more
        /// messages exceeds the byte limit.
        #[test]
        fn batches_keep_order_and_respect_the_byte_limit(
            sizes in prop::collection::vec(0usize..RAFT_BATCH_BYTES_MAX / 3, 1..24),
            oversize_at in prop::option::of(0usize..24),
        ) {
            let shared = Shared::new(1, 9);
            let (sender, mut queue) = mpsc::channel(PEER_QUEUE_MESSAGES_MAX);
            let mut sent = Vec::new();
            for (i, size) in sizes.iter().enumerate() {
                let size = if oversize_at == Some(i) { RAFT_BATCH_BYTES_MAX + 1 } else { *size };
                let m = message(i as u64, size);
                sent.push(m.clone());
                sender.try_send(m).expect("room in queue");
            }
            let mut batcher = Batcher::new(&shared, 2);
            let mut received = Vec::new();
            loop {
                let first = if batcher.has_carry() { None } else { queue.try_recv().ok() };
                if first.is_none() && !batcher.has_carry() {
                    break;
                }
                let batch = batcher.fill(first, &mut queue);
                prop_assert_eq!((batch.cluster_id, batch.from, batch.to), (9, 1, 2));
                let bytes: usize = batch.messages.iter().map(Vec::len).sum();
                prop_assert!(batch.messages.len() == 1 || bytes <= RAFT_BATCH_BYTES_MAX);
                for encoded in &batch.messages {
                    received.push(decode_message(encoded).expect("decodes"));
                }
            }
            prop_assert_eq!(received, sent);
        }
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(decode_message(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode_message(&[]).is_err());
    }
}
