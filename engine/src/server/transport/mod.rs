//! The peer transport: Raft messages between members, and the requests a follower
//! forwards to the leader, over detcd's own gRPC service `detcdpeerpb.Peer`.
//!
//! - Outbound Raft messages: [`Transport::send`] never blocks. Each peer has one link
//!   task with a bounded queue ([`PEER_QUEUE_MESSAGES_MAX`]); the task batches what is
//!   queued into `RaftBatch`es (at most [`RAFT_BATCH_BYTES_MAX`]) on one long-lived
//!   streaming `Raft` call, and reconnects with a backoff when the call fails. The
//!   receiver acknowledges a batch now and then when asked; a stream whose ack is
//!   overdue counts as broken (`watchdog`), because HTTP/2 keep-alive does not exist in
//!   the simulator.
//!   Snapshot messages travel on their own call so their delivery is known.
//! - Failures (a link that broke or could not connect, a snapshot that was not
//!   delivered) are collected for the node, which hands them to the Raft core
//!   ([`Transport::take_failures`]).
//! - Forwarding: [`Transport::propose`] and [`Transport::read_index`] travel on one
//!   long-lived `Forward` stream per peer, many in flight (`forward`); the lease calls
//!   are unary RPCs. Each has a deadline ([`FORWARD_TIMEOUT_MS_DEFAULT`]); the leader's
//!   error travels back as text and becomes the same [`ServerError`] here.
//! - Inbound: [`Transport::service`] is the gRPC service to mount on the peer listener;
//!   it checks cluster and member ids and passes decoded messages to a [`PeerHandler`].
//!
//! Deliberately not here: deciding what to send or when (the Raft core and the node do),
//! retransmission (Raft retransmits what is lost), TLS, and the listener itself (the
//! node binds it). Everything runs on tokio tasks and tokio time, so the same code runs
//! inside the simulator; tasks are spawned on the runtime (or simulated node) that calls
//! [`Transport::set_peers`] and [`Transport::send`].

mod batch;
mod errors;
mod forward;
mod link;
mod service;
#[cfg(madsim)]
pub mod sim_counts;
#[cfg(madsim)]
mod sim_link;
pub mod timer;
mod watchdog;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::pb::detcdpeerpb::peer_client::PeerClient;
use crate::pb::detcdpeerpb::{
    ForwardResponse, InternalRequest, MembersRequest, MembersResponse, ProposeRequest,
    ReadIndexRequest, forward_request,
};
use crate::pb::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::raft::{Message, MessageKind};
use crate::server::error::ServerError;

pub use errors::server_error_from_message;
pub use forward::FORWARD_STREAM_STALL_MS;
pub use futures_util::future::BoxFuture;
pub use service::{AckStream, ForwardAnswerStream, PeerGrpcServer, PeerHandler, PeerService};
pub use watchdog::{RAFT_ACK_INTERVAL_MS, RAFT_ACK_TIMEOUT_MS};

/// Raft messages queued per peer before [`Transport::send`] drops new ones.
pub const PEER_QUEUE_MESSAGES_MAX: usize = 4096;
/// Encoded bytes of Raft messages gathered into one `RaftBatch` (a single larger
/// message still goes, alone).
pub const RAFT_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Largest gRPC message either end of the Peer service accepts; snapshots travel whole
/// in one message, so this bounds the snapshot size.
pub const PEER_GRPC_MESSAGE_BYTES_MAX: usize = 1024 * 1024 * 1024;
/// First wait before reconnecting a failed link; doubles up to the maximum.
pub const RECONNECT_BACKOFF_MS_MIN: u64 = 50;
/// Longest wait between reconnection attempts.
pub const RECONNECT_BACKOFF_MS_MAX: u64 = 1_000;
/// How long opening a connection to a peer may take.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// How often an open peer connection is pinged (HTTP/2), so a peer that vanished
/// without closing its connections is noticed.
pub const KEEPALIVE_INTERVAL_MS: u64 = 1_000;
/// How long a ping may go unanswered before the connection counts as broken.
pub const KEEPALIVE_TIMEOUT_MS: u64 = 3_000;
/// How long delivering one snapshot may take before it counts as failed.
pub const SNAPSHOT_SEND_TIMEOUT_MS: u64 = 60_000;
/// Snapshots being delivered to one peer at once; more are reported failed at once.
pub const SNAPSHOTS_IN_FLIGHT_PER_PEER_MAX: u64 = 1;
/// Default deadline of a forwarded request (see [`Transport::set_forward_timeout_ms`]).
pub const FORWARD_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// Asks the member at `peer_url` for the cluster's ID and members, as a member joining a
/// running cluster does before its first start. The error says why it failed.
pub async fn fetch_members(peer_url: &str) -> Result<MembersResponse, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(peer_url.to_owned())
        .map_err(|e| format!("{peer_url}: bad URL: {e}"))?
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
    let call = async {
        let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
        PeerClient::new(channel)
            .members(MembersRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| status.to_string())
    };
    let timeout = Duration::from_millis(FETCH_MEMBERS_TIMEOUT_MS);
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(error)) => Err(format!("{peer_url}: {error}")),
        Err(_) => Err(format!(
            "{peer_url}: no answer within {FETCH_MEMBERS_TIMEOUT_MS} ms"
        )),
    }
}

/// How long asking one peer for the member list may take.
pub const FETCH_MEMBERS_TIMEOUT_MS: u64 = 2_000;

/// Something the node must tell the Raft core about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerFailure {
    /// The link to this peer failed or could not connect: `report_unreachable(peer)`.
    Unreachable(u64),
    /// A snapshot for this peer was not delivered: `report_snapshot_failure(peer)`.
    SnapshotFailed(u64),
}

/// Counters of what the transport dropped, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Outbound messages dropped because the peer's queue was full.
    pub dropped_queue_full: u64,
    /// Outbound messages dropped because the peer was unreachable when they were due.
    pub dropped_unreachable: u64,
    /// Outbound messages addressed to a member that is not a known peer.
    pub dropped_unknown_peer: u64,
    /// Inbound messages dropped because they failed to decode or were misaddressed.
    pub dropped_inbound_invalid: u64,
}

/// The peer transport of one member. Cheap to clone: clones share everything.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

/// What the transport owns. Link tasks hold only [`Shared`], so dropping the last
/// `Transport` drops the peer queues and the link tasks end.
pub(crate) struct Inner {
    shared: Arc<Shared>,
    peers: Mutex<BTreeMap<u64, link::LinkHandle>>,
    forward_timeout_ms: AtomicU64,
    /// Under the simulator, the direct Raft listener's stop signal (sent by dropping
    /// it, with the transport); `None` until [`Transport::service`] started it.
    #[cfg(madsim)]
    raft_listener_stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

/// State shared with the link tasks and the service.
pub(crate) struct Shared {
    pub(crate) member_id: u64,
    pub(crate) cluster_id: u64,
    /// This member's peer URLs as its member list gives them (empty until it does).
    own_peer_urls: Mutex<Vec<String>>,
    /// Bumped by every [`Transport::set_peers`], after the links changed.
    peers_generation: AtomicU64,
    failures: Mutex<BTreeSet<PeerFailure>>,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_unreachable: AtomicU64,
    pub(crate) dropped_unknown_peer: AtomicU64,
    pub(crate) dropped_inbound_invalid: AtomicU64,
}

impl Shared {
    pub(crate) fn new(member_id: u64, cluster_id: u64) -> Self {
        Shared {
            member_id,
            cluster_id,
            own_peer_urls: Mutex::new(Vec::new()),
            peers_generation: AtomicU64::new(0),
            failures: Mutex::new(BTreeSet::new()),
            dropped_queue_full: AtomicU64::new(0),
            dropped_unreachable: AtomicU64::new(0),
            dropped_unknown_peer: AtomicU64::new(0),
            dropped_inbound_invalid: AtomicU64::new(0),
        }
    }

    pub(crate) fn report(&self, failure: PeerFailure) {
        lock(&self.failures).insert(failure);
    }

    /// How many times the peer list was set.
    pub(crate) fn peers_generation(&self) -> u64 {
        self.peers_generation.load(Ordering::Acquire)
    }

    /// This member's peer URLs, which its links name to the peers they reach.
    pub(crate) fn own_peer_urls(&self) -> Vec<String> {
        lock(&self.own_peer_urls).clone()
    }
}

/// Locks a mutex, taking the data over from a panicked holder (the data here stays
/// consistent at every await-free step, so a poisoned lock is still usable).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Transport {
    /// A transport for member `member_id` of cluster `cluster_id`, with no peers yet.
    pub fn new(member_id: u64, cluster_id: u64) -> Self {
        Transport {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared::new(member_id, cluster_id)),
                peers: Mutex::new(BTreeMap::new()),
                forward_timeout_ms: AtomicU64::new(FORWARD_TIMEOUT_MS_DEFAULT),
                #[cfg(madsim)]
                raft_listener_stop: Mutex::new(None),
            }),
        }
    }

    /// Sets the deadline of forwarded requests (default [`FORWARD_TIMEOUT_MS_DEFAULT`]).
    pub fn set_forward_timeout_ms(&self, forward_timeout_ms: u64) {
        self.inner
            .forward_timeout_ms
            .store(forward_timeout_ms, Ordering::Relaxed);
    }

    /// This member's id.
    pub fn member_id(&self) -> u64 {
        self.inner.shared.member_id
    }

    /// The members to talk to (id -> peer URLs such as `http://127.0.0.1:2380`); this
    /// member's own entry gives the URLs its links introduce it by. Adds and removes
    /// per-peer links; a peer whose URLs changed gets a new link. A remote
    /// ([`Transport::add_remote`]) the list does not name stays; one it names becomes a
    /// peer like the others. Must be called inside the runtime that runs the links.
    pub fn set_peers(&self, peers: BTreeMap<u64, Vec<String>>) {
        let shared = &self.inner.shared;
        if let Some(own) = peers.get(&shared.member_id) {
            own.clone_into(&mut lock(&shared.own_peer_urls));
        }
        let mut current = lock(&self.inner.peers);
        current.retain(|id, link| match peers.get(id) {
            Some(urls) => *urls == link.urls,
            None => link.remote,
        });
        for (id, urls) in peers {
            if id == shared.member_id {
                continue;
            }
            if let Some(link) = current.get_mut(&id) {
                link.remote = false;
                continue;
            }
            match link::LinkHandle::start(Arc::clone(shared), id, urls) {
                Ok(link) => {
                    current.insert(id, link);
                }
                Err(error) => tracing::warn!(peer = id, %error, "not linking to peer"),
            }
        }
        shared.peers_generation.fetch_add(1, Ordering::Release);
    }

    /// Links to `member`, which reached this member with its peer `urls`, if no link to
    /// it exists: this member's member list does not name `member`, because it is behind
    /// on membership changes (it was down or cut off while `member` joined, or a
    /// snapshot from the leader brought an older list). Without the link nothing this
    /// member says reaches `member` (a new leader, say) and it never catches up. The
    /// link stays until a member list names the member (it becomes an ordinary peer) or
    /// names it with other URLs.
    pub fn add_remote(&self, member: u64, urls: Vec<String>) {
        let shared = &self.inner.shared;
        let mut current = lock(&self.inner.peers);
        if member == shared.member_id || urls.is_empty() || current.contains_key(&member) {
            return;
        }
        match link::LinkHandle::start(Arc::clone(shared), member, urls) {
            Ok(mut link) => {
                tracing::info!(peer = member, urls = ?link.urls, "linked to a member not in the member list yet");
                link.remote = true;
                current.insert(member, link);
            }
            Err(error) => tracing::warn!(peer = member, %error, "not linking to remote member"),
        }
    }

    /// Drops the link to `member` if [`Transport::add_remote`] made it.
    pub fn drop_remote(&self, member: u64) {
        let mut current = lock(&self.inner.peers);
        if current.get(&member).is_some_and(|link| link.remote) {
            current.remove(&member);
            tracing::info!(peer = member, "unlinked a removed member");
        }
    }

    /// Whether a link to `member` exists (a peer or a remote).
    pub fn is_linked(&self, member: u64) -> bool {
        lock(&self.inner.peers).contains_key(&member)
    }

    /// Queues Raft messages for their addressees. Never blocks or awaits: a full queue
    /// drops the message (Raft retransmits) and counts it; so does an unknown addressee.
    pub fn send(&self, messages: Vec<Message>) {
        let shared = &self.inner.shared;
        let peers = lock(&self.inner.peers);
        for message in messages {
            #[cfg(madsim)]
            sim_counts::count_message(&message);
            let Some(link) = peers.get(&message.to) else {
                tracing::debug!(to = message.to, "message to an unknown peer dropped");
                shared.dropped_unknown_peer.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if message.kind == MessageKind::Snapshot {
                link.send_snapshot(message);
            } else {
                link.enqueue(message);
            }
        }
    }

    /// Failures since the last call, each at most once, in a fixed order.
    pub fn take_failures(&self) -> Vec<PeerFailure> {
        std::mem::take(&mut *lock(&self.inner.shared.failures))
            .into_iter()
            .collect()
    }

    /// What was dropped so far.
    pub fn stats(&self) -> TransportStats {
        let s = &self.inner.shared;
        TransportStats {
            dropped_queue_full: s.dropped_queue_full.load(Ordering::Relaxed),
            dropped_unreachable: s.dropped_unreachable.load(Ordering::Relaxed),
            dropped_unknown_peer: s.dropped_unknown_peer.load(Ordering::Relaxed),
            dropped_inbound_invalid: s.dropped_inbound_invalid.load(Ordering::Relaxed),
        }
    }

    /// The gRPC service to mount on the peer listener, calling `handler` for what
    /// arrives. Message size limits are raised to [`PEER_GRPC_MESSAGE_BYTES_MAX`].
    ///
    /// Under the simulator the first call also starts the direct Raft listener on the
    /// current simulated host, which serves the links' Raft streams ([`sim_link`]).
    pub fn service<H: PeerHandler>(&self, handler: Arc<H>) -> PeerGrpcServer<H> {
        #[cfg(madsim)]
        {
            let mut stop = lock(&self.inner.raft_listener_stop);
            if stop.is_none() {
                let (sender, receiver) = tokio::sync::oneshot::channel();
                *stop = Some(sender);
                sim_link::listen(
                    PeerService::new(
                        Arc::clone(&self.inner.shared),
                        Arc::downgrade(&self.inner),
                        Arc::clone(&handler),
                    ),
                    receiver,
                );
            }
        }
        PeerService::server(
            Arc::clone(&self.inner.shared),
            Arc::downgrade(&self.inner),
            handler,
        )
    }

    /// Forwards a proposal to `to` (the leader); returns once the leader accepted it
    /// into its log. A failure of the transport itself is [`ServerError::Timeout`]
    /// (the proposal may or may not have reached the leader), except for a `to` that is
    /// not a known peer ([`ServerError::NoLeader`]).
    pub async fn propose(&self, to: u64, request: InternalRequest) -> Result<(), ServerError> {
        let forwarder = self.forwarder(to)?;
        let call = forwarder.call(forward_request::Request::Propose(ProposeRequest {
            request: Some(request),
        }));
        let response = self
            .forward_deadline(call)
            .await
            .map_err(|e| e.into_server_error(errors::Outcome::MaybeApplied))?;
        errors::result_from_text(&response.error)
    }

    /// Asks `to` (the leader) for a read index: it confirms its leadership and answers
    /// with its commit index. A transport failure is [`ServerError::NoLeader`].
    pub async fn read_index(&self, to: u64) -> Result<u64, ServerError> {
        let forwarder = self.forwarder(to)?;
        let call = forwarder.call(forward_request::Request::ReadIndex(ReadIndexRequest {}));
        let response = self
            .forward_deadline(call)
            .await
            .map_err(|e| e.into_server_error(errors::Outcome::NotApplied))?;
        errors::result_from_text(&response.error)?;
        Ok(response.index)
    }

    /// Forwards one lease keep-alive to `to` (the leader, the primary lessor).
    pub async fn lease_keep_alive(
        &self,
        to: u64,
        request: LeaseKeepAliveRequest,
    ) -> Result<LeaseKeepAliveResponse, ServerError> {
        let mut client = self.client(to)?;
        self.deadline(client.lease_keep_alive(request))
            .await
            .map_err(|e| e.into_server_error(errors::Outcome::NotApplied))
    }

    /// Forwards a lease time-to-live query to `to` (the leader).
    pub async fn lease_time_to_live(
        &self,
        to: u64,
        request: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, ServerError> {
        let mut client = self.client(to)?;
        self.deadline(client.lease_time_to_live(request))
            .await
            .map_err(|e| e.into_server_error(errors::Outcome::NotApplied))
    }

    /// The forwarding client of peer `to`, or NoLeader for an unknown peer.
    fn client(&self, to: u64) -> Result<PeerClient<tonic::transport::Channel>, ServerError> {
        match lock(&self.inner.peers).get(&to) {
            Some(link) => Ok(link.forward_client.clone()),
            None => {
                tracing::debug!(to, "forwarding to an unknown peer");
                Err(ServerError::NoLeader)
            }
        }
    }

    /// The forwarding stream's handle of peer `to`, or NoLeader for an unknown peer.
    fn forwarder(&self, to: u64) -> Result<forward::Forwarder, ServerError> {
        match lock(&self.inner.peers).get(&to) {
            Some(link) => Ok(link.forwarder.clone()),
            None => {
                tracing::debug!(to, "forwarding to an unknown peer");
                Err(ServerError::NoLeader)
            }
        }
    }

    /// Waits for one request on the forwarding stream under the forwarding deadline.
    async fn forward_deadline(
        &self,
        call: impl Future<Output = forward::ForwardReply>,
    ) -> Result<ForwardResponse, errors::ForwardError> {
        let timeout = Duration::from_millis(self.inner.forward_timeout_ms.load(Ordering::Relaxed));
        let deadline = tokio::time::Instant::now() + timeout;
        match timer::quiet_timeout(deadline, call).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(status)) => Err(errors::ForwardError::Status(status)),
            Err(()) => Err(errors::ForwardError::Deadline),
        }
    }

    /// Runs one forwarding call under the forwarding deadline.
    async fn deadline<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, errors::ForwardError> {
        let timeout = Duration::from_millis(self.inner.forward_timeout_ms.load(Ordering::Relaxed));
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(errors::ForwardError::Status(status)),
            Err(_) => Err(errors::ForwardError::Deadline),
        }
    }
}
