//! The sending end of the peer link: one task per peer that drains the peer's bounded
//! queue into batches on one streaming `Raft` call, reconnecting with a backoff when the
//! call fails or its watchdog ([`super::watchdog`]) finds the receiver silent, and a
//! separate call per snapshot so its delivery is known.
//!
//! Not here: retransmission (Raft resends what is lost), ordering across the snapshot
//! call and the message stream (Raft tolerates reordering), choosing peers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

use super::batch::{Batcher, encode_message};
use super::forward::Forwarder;
use super::timer::{LoopClock, QuietSleep};
use super::watchdog::{Alarm, RAFT_ACK_TIMEOUT_MS, Watchdog};
use super::{
    CONNECT_TIMEOUT_MS, KEEPALIVE_INTERVAL_MS, KEEPALIVE_TIMEOUT_MS, PEER_GRPC_MESSAGE_BYTES_MAX,
    PEER_QUEUE_MESSAGES_MAX, PeerFailure, RECONNECT_BACKOFF_MS_MAX, RECONNECT_BACKOFF_MS_MIN,
    SNAPSHOT_SEND_TIMEOUT_MS, SNAPSHOTS_IN_FLIGHT_PER_PEER_MAX, Shared,
};
use crate::pb::detcdpeerpb::RaftBatch;
use crate::pb::detcdpeerpb::peer_client::PeerClient;
use crate::raft::Message;

/// Batches handed to the gRPC stream but not yet sent; small, so a stalled stream
/// backs up into the peer queue where drops are counted.
#[cfg(not(madsim))]
const STREAM_BATCHES_IN_FLIGHT_MAX: usize = 4;

/// Under the simulator, the least time between two batches on one stream. Its
/// simulated connection hands over at most one message per simulated millisecond, so
/// batches sent faster would queue behind each other with a growing delay instead of
/// merging; waiting lets what comes meanwhile join the next batch.
#[cfg(madsim)]
const SIM_BATCH_SPACING_MS: u64 = 1;

/// Under the simulator, waits until [`SIM_BATCH_SPACING_MS`] after the last batch.
#[cfg(madsim)]
async fn pace(clock: &LoopClock, last_sent: Option<tokio::time::Instant>) {
    let Some(last) = last_sent else {
        return;
    };
    let due = last + Duration::from_millis(SIM_BATCH_SPACING_MS);
    if clock.now() < due {
        super::timer::sleep_exactly_until(due).await;
    }
}

/// The transport's handle on one peer's link. Dropping it ends the link task.
pub(crate) struct LinkHandle {
    /// The peer's URLs, tried in turn.
    pub(crate) urls: Vec<String>,
    /// A lazily connected client for forwarded lease calls (reconnects by itself).
    pub(crate) forward_client: PeerClient<Channel>,
    /// The forwarding stream for proposals and read-index requests.
    pub(crate) forwarder: Forwarder,
    /// Linked because the peer reached this member first, not because the member list
    /// names it (see [`super::Transport::add_remote`]).
    pub(crate) remote: bool,
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
        #[cfg(not(madsim))]
        let forward_target = forward_client.clone();
        #[cfg(madsim)]
        let forward_target = first.uri().clone();
        let forwarder = Forwarder::start(Arc::clone(&shared), peer, forward_target);
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
            forwarder,
            remote: false,
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

/// Sends one snapshot message as a one-batch `Raft` call that asks for an ack; the ack
/// means the receiver took it.
async fn deliver_snapshot(
    shared: &Shared,
    peer: u64,
    endpoints: &[Endpoint],
    message: Message,
) -> Result<(), String> {
    let (bytes, _) = encode_message(message).map_err(|e| format!("encoding: {e}"))?;
    let mut batch = Batcher::new(shared, peer).batch(vec![bytes]);
    batch.ack_requested = true;
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
        let mut acks = client(channel)
            .raft(stream)
            .await
            .map_err(|status| format!("peer answered: {status}"))?
            .into_inner();
        return match acks.message().await {
            Ok(Some(ack)) if ack.batches_received >= 1 => Ok(()),
            Ok(Some(ack)) => Err(format!(
                "peer acknowledged {} batches, not the snapshot",
                ack.batches_received
            )),
            Ok(None) => Err("peer closed the stream without an ack".to_string()),
            Err(status) => Err(format!("peer answered: {status}")),
        };
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
        let error = match connect(endpoint).await {
            Ok(connection) => {
                tracing::debug!(peer, uri = %endpoint.uri(), "peer link connected");
                backoff_ms = RECONNECT_BACKOFF_MS_MIN;
                match stream_session(&shared, peer, connection, &mut queue).await {
                    SessionEnd::QueueClosed => return,
                    SessionEnd::Failed(error) => error,
                }
            }
            Err(error) => error,
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

/// A connection to a peer that a `Raft` stream opens on: a gRPC client (under the
/// simulator, a direct connection to the peer's Raft listener, [`super::sim_link`]).
#[cfg(not(madsim))]
type Connection = PeerClient<Channel>;
#[cfg(madsim)]
type Connection = super::sim_link::Connection;

/// Connects to the peer at `endpoint`; the error says why not.
async fn connect(endpoint: &Endpoint) -> Result<Connection, String> {
    #[cfg(not(madsim))]
    {
        endpoint
            .connect()
            .await
            .map(client)
            .map_err(|e| format!("connecting to {}: {e}", endpoint.uri()))
    }
    #[cfg(madsim)]
    {
        super::sim_link::connect(endpoint.uri()).await
    }
}

/// Where a session's batches go (a bounded channel feeding the gRPC request stream).
#[cfg(not(madsim))]
type BatchSink = mpsc::Sender<RaftBatch>;
#[cfg(madsim)]
type BatchSink = super::sim_link::BatchSink;
/// Where a session's acks come from.
#[cfg(not(madsim))]
type Acks = tonic::Streaming<crate::pb::detcdpeerpb::RaftAck>;
#[cfg(madsim)]
type Acks = super::sim_link::Acks;

/// Opens the `Raft` stream on `connection`; the error says why it failed.
async fn open_stream(connection: Connection) -> Result<(BatchSink, Acks), String> {
    #[cfg(not(madsim))]
    {
        let mut client = connection;
        let (batches, batch_receiver) = mpsc::channel::<RaftBatch>(STREAM_BATCHES_IN_FLIGHT_MAX);
        let stream = futures_util::stream::unfold(batch_receiver, |mut receiver| async move {
            receiver.recv().await.map(|batch| (batch, receiver))
        });
        let answer = Duration::from_millis(RAFT_ACK_TIMEOUT_MS);
        match tokio::time::timeout(answer, client.raft(stream)).await {
            Ok(Ok(response)) => Ok((batches, response.into_inner())),
            Ok(Err(status)) => Err(format!("stream refused: {status}")),
            Err(_) => Err(format!(
                "stream not answered within {RAFT_ACK_TIMEOUT_MS} ms"
            )),
        }
    }
    #[cfg(madsim)]
    {
        Ok(connection.split())
    }
}

/// Streams batches from the queue over one `Raft` call until it fails, its watchdog
/// finds the receiver silent, or the queue closes.
async fn stream_session(
    shared: &Shared,
    peer: u64,
    connection: Connection,
    queue: &mut mpsc::Receiver<Message>,
) -> SessionEnd {
    let clock = LoopClock::new();
    let opened = clock.now();
    let (batches, mut acks) = match open_stream(connection).await {
        Ok(stream) => stream,
        Err(error) => return SessionEnd::Failed(error),
    };
    let elapsed_ms = || {
        u64::try_from(clock.now().saturating_duration_since(opened).as_millis()).unwrap_or(u64::MAX)
    };
    let mut batcher = Batcher::new(shared, peer);
    let mut watchdog = Watchdog::new();
    // The batch waiting for room in the stream, if any.
    let mut outgoing: Option<RaftBatch> = None;
    let mut alarm = QuietSleep::until(opened);
    // The watchdog's wake time the alarm is set for; `None` once it fired.
    let mut armed_for: Option<tokio::time::Instant> = None;
    #[cfg(madsim)]
    let mut last_sent: Option<tokio::time::Instant> = None;
    loop {
        if outgoing.is_none() && batcher.has_carry() {
            outgoing = Some(batcher.fill(None, queue));
        }
        // A due alarm waits a millisecond, so a link waiting for room in the stream
        // does not spin on it. It is set again only when the wake time moved or it
        // fired: set on every turn, a due alarm was pushed back a millisecond each
        // time (and queued a new simulated timer event each time).
        let wake = opened + Duration::from_millis(watchdog.wake_at_ms());
        if armed_for != Some(wake) {
            alarm.reset(wake.max(clock.now() + Duration::from_millis(1)));
            armed_for = Some(wake);
        }
        tokio::select! {
            biased;
            ack = acks.message() => match ack {
                Ok(Some(ack)) => {
                    if let Err(error) = watchdog.on_ack(ack.batches_received, elapsed_ms()) {
                        return SessionEnd::Failed(error);
                    }
                }
                Ok(None) => return SessionEnd::Failed("the peer closed the stream".to_string()),
                Err(status) => return SessionEnd::Failed(format!("stream failed: {status}")),
            },
            () = &mut alarm => {
                armed_for = None;
                match watchdog.on_timer(elapsed_ms()) {
                    Alarm::Expired => {
                        return SessionEnd::Failed(format!(
                            "no ack within {RAFT_ACK_TIMEOUT_MS} ms"
                        ));
                    }
                    Alarm::AskDue => {
                        if outgoing.is_none() {
                            outgoing = Some(batcher.batch(Vec::new()));
                        }
                    }
                    Alarm::None => {}
                }
            }
            permit = batches.reserve(), if outgoing.is_some() => {
                let Ok(permit) = permit else {
                    return SessionEnd::Failed("the request stream closed".to_string());
                };
                if let Some(mut batch) = outgoing.take() {
                    batch.ack_requested = watchdog.on_send();
                    permit.send(batch);
                    #[cfg(madsim)]
                    super::sim_counts::count_batch();
                    #[cfg(madsim)]
                    {
                        last_sent = Some(clock.now());
                    }
                }
            },
            message = queue.recv(), if outgoing.is_none() => match message {
                Some(message) => {
                    #[cfg(madsim)]
                    pace(&clock, last_sent).await;
                    let batch = batcher.fill(Some(message), queue);
                    if !batch.messages.is_empty() {
                        outgoing = Some(batch);
                    }
                }
                None => return SessionEnd::QueueClosed,
            },
        }
    }
}
