//! The node: one member's Raft core, durable storage and applied state, driven by one
//! task (the raft loop), and the [`NodeHandle`] the client services call.
//!
//! The raft loop owns the [`RawNode`](crate::raft::RawNode) and the
//! [`RaftStorage`](crate::persist::RaftStorage): it ticks, steps peer messages, proposes,
//! and for every `Ready` persists first, then sends, then applies committed entries to
//! the key space, member table and watch hub. Client requests reach it through a bounded
//! command channel; their results come back through per-request waiters resolved at
//! apply time, so a write is answered only once it is applied on the member that serves
//! the client. Followers forward proposals and read-index requests to the leader over
//! the [`PeerNetwork`].
//!
//! The same code runs on real tokio and under madsim: time comes from `tokio::time`, the
//! only randomness is a generator seeded from [`NodeConfig::seed`], and no map whose order
//! could matter is a `HashMap`.

mod apply;
mod raft_loop;
mod reconfig;
#[cfg(madsim)]
pub mod sim_bugs;
mod status;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::mvcc::{KvConfig, KvState};
use crate::pb::detcdpeerpb::{InternalRequest, internal_request};
use crate::pb::etcdserverpb::{
    AlarmMember, CompactionResponse, DeleteRangeResponse, LeaseGrantResponse,
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeResponse, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse, PutResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::persist::RaftStorage;
use crate::raft::{ConfChange, ConfChangeKind, Message, NodeId};
use crate::storage::{Disk, WalOptions};
use crate::watch::{Limits, WatchHub};

use super::error::ServerError;
use super::membership::{MemberRecord, Membership};
use super::metrics::Metrics;
use super::transport::PeerFailure;
use super::transport::timer::{LoopClock, quiet_timeout};

pub use raft_loop::Command;

/// A boxed, sendable future (what [`PeerNetwork`] methods return).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Commands queued for the raft loop before callers wait.
pub const COMMAND_QUEUE_MAX: usize = 4096;
/// Commands the raft loop takes in one turn before handling a `Ready` (the batch that
/// one WAL sync covers).
pub const COMMANDS_PER_TURN_MAX: usize = 1024;
/// Leases the leader revokes per expiry proposal.
pub const LEASE_EXPIRE_BATCH_MAX: usize = 16;

/// How a node reaches its peers: Raft messages out, and forwarding to the leader. The
/// real implementation is the gRPC transport; tests use an in-process network.
pub trait PeerNetwork: Send + Sync + 'static {
    /// Queues Raft messages for their addressees; never blocks (drops when full).
    fn send(&self, messages: Vec<Message>);
    /// The current members' peer URLs (this member's own entry is ignored).
    fn set_peers(&self, peers: BTreeMap<u64, Vec<String>>);
    /// Unreachable peers and undelivered snapshots since the last call.
    fn take_failures(&self) -> Vec<PeerFailure>;
    /// Forwards a proposal to the leader `to`; returns once it is in the leader's log.
    fn propose(&self, to: u64, req: InternalRequest) -> BoxFuture<Result<(), ServerError>>;
    /// Asks the leader `to` for a read index.
    fn read_index(&self, to: u64) -> BoxFuture<Result<u64, ServerError>>;
    /// Forwards a lease keep-alive to the leader `to`.
    fn lease_keep_alive(
        &self,
        to: u64,
        req: LeaseKeepAliveRequest,
    ) -> BoxFuture<Result<LeaseKeepAliveResponse, ServerError>>;
    /// Forwards a lease time-to-live query to the leader `to`.
    fn lease_time_to_live(
        &self,
        to: u64,
        req: LeaseTimeToLiveRequest,
    ) -> BoxFuture<Result<LeaseTimeToLiveResponse, ServerError>>;
}

/// The network of a member with no peers (a single-member cluster, tests): nothing is
/// sent, and anything that would go to a leader elsewhere fails with "no leader".
pub struct NoPeers;

impl PeerNetwork for NoPeers {
    fn send(&self, _messages: Vec<Message>) {}
    fn set_peers(&self, _peers: BTreeMap<u64, Vec<String>>) {}
    fn take_failures(&self) -> Vec<PeerFailure> {
        Vec::new()
    }
    fn propose(&self, _to: u64, _req: InternalRequest) -> BoxFuture<Result<(), ServerError>> {
        Box::pin(async { Err(ServerError::NoLeader) })
    }
    fn read_index(&self, _to: u64) -> BoxFuture<Result<u64, ServerError>> {
        Box::pin(async { Err(ServerError::NoLeader) })
    }
    fn lease_keep_alive(
        &self,
        _to: u64,
        _req: LeaseKeepAliveRequest,
    ) -> BoxFuture<Result<LeaseKeepAliveResponse, ServerError>> {
        Box::pin(async { Err(ServerError::NoLeader) })
    }
    fn lease_time_to_live(
        &self,
        _to: u64,
        _req: LeaseTimeToLiveRequest,
    ) -> BoxFuture<Result<LeaseTimeToLiveResponse, ServerError>> {
        Box::pin(async { Err(ServerError::NoLeader) })
    }
}

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This member's ID.
    pub member_id: u64,
    /// The cluster's ID.
    pub cluster_id: u64,
    /// This member's name and advertised client URLs (published after start).
    pub name: String,
    /// Advertised client URLs.
    pub client_urls: Vec<String>,
    /// The founding members (or, when joining, the members named in the initial
    /// cluster); the member table starts from these.
    pub initial_members: Vec<MemberRecord>,
    /// Join a running cluster instead of founding one.
    pub join_existing: bool,
    /// Length of a Raft tick (the heartbeat interval).
    pub tick_ms: u64,
    /// Election timeout in ticks.
    pub election_ticks: u32,
    /// Whether Raft runs a PreVote round before bumping its term.
    pub pre_vote: bool,
    /// Whether the leader refuses member changes that would leave no quorum of members
    /// it has heard from lately (etcd's `--strict-reconfig-check`).
    pub strict_reconfig_check: bool,
    /// Applied entries between snapshots.
    pub snapshot_count: u64,
    /// Key-space limits.
    pub kv: KvConfig,
    /// Largest accepted request, encoded.
    pub request_bytes_max: usize,
    /// Key-space size above which writes are refused with the NOSPACE alarm.
    pub quota_backend_bytes: u64,
    /// Seed of this run's generator (request and lease IDs, Raft's randomness).
    pub seed: u64,
    /// WAL tuning.
    pub wal: WalOptions,
    /// How often watchers that asked for progress notifications get one.
    pub watch_progress_interval_ms: u64,
    /// Deliberate bugs for the simulator's self-test (all off unless a run sets them).
    #[cfg(madsim)]
    pub sim_bugs: sim_bugs::SimBugs,
    /// Raft batching limits of a simulated run (defaults unless a run shrinks them).
    #[cfg(madsim)]
    pub sim_raft: sim_bugs::SimRaftLimits,
}

impl NodeConfig {
    /// etcd's request timeout: 5 s plus two election timeouts.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(5_000 + 2 * self.tick_ms * u64::from(self.election_ticks))
    }

    /// The election timeout.
    pub fn election_timeout(&self) -> Duration {
        Duration::from_millis(self.tick_ms * u64::from(self.election_ticks))
    }
}

/// What a member knows about the cluster right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// The known leader, or 0.
    pub leader: NodeId,
    /// Current term.
    pub term: u64,
    /// The member this one voted for in the current term, or 0.
    pub vote: NodeId,
    /// Whether this member leads.
    pub is_leader: bool,
    /// Whether this member is a learner.
    pub is_learner: bool,
    /// Commit index.
    pub commit: u64,
    /// Term of the entry at the commit index (0 if compacted away or none).
    pub commit_term: u64,
    /// Applied index.
    pub applied: u64,
    /// Times the leader changed (as seen here).
    pub leader_changes: u64,
    /// The loop stopped (removed from the cluster, or a fatal storage error).
    pub stopped: bool,
}

/// The result of an applied write.
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    /// A put.
    Put(PutResponse),
    /// A delete range.
    DeleteRange(DeleteRangeResponse),
    /// A transaction.
    Txn(TxnResponse),
    /// A compaction.
    Compaction(CompactionResponse),
    /// A lease grant.
    LeaseGrant(LeaseGrantResponse),
    /// A lease revoke.
    LeaseRevoke(LeaseRevokeResponse),
    /// An alarm change: the alarms now raised.
    Alarms(Vec<AlarmMember>),
    /// Something with no response body (member attributes, lease expiry).
    Done,
}

/// What a state snapshot holds: the key space (its own encoding) and the member table.
#[derive(Debug, Serialize, Deserialize)]
struct StateSnapshot {
    /// Encoded as one run of bytes: the same encoding as a sequence of `u8` in postcard
    /// (a length, then the bytes), written with one copy instead of a call per byte.
    #[serde(serialize_with = "serialize_bytes")]
    kv: Vec<u8>,
    members: Membership,
}

/// Serializes `bytes` as bytes (serde's default for `Vec<u8>` is a sequence of `u8`).
fn serialize_bytes<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

/// Produces unique request and lease IDs: a per-run random prefix and a counter.
#[derive(Debug)]
struct IdGen {
    prefix: u64,
    counter: u64,
}

impl IdGen {
    fn new(rng: &mut ChaCha8Rng) -> Self {
        IdGen {
            prefix: rng.next_u64() & 0xffff_ffff_0000_0000,
            counter: rng.next_u64() & 0xffff_ffff,
        }
    }

    fn next(&mut self) -> u64 {
        self.counter = self.counter.wrapping_add(1);
        self.prefix ^ (self.counter & 0xffff_ffff) ^ ((self.counter >> 32) << 32)
    }
}

/// A waiter for the result of one proposal.
type Waiter = oneshot::Sender<Result<Applied, ServerError>>;

/// State the raft loop and the handles share. Lock order: `kv`, then `hub`, then the rest.
pub(crate) struct Shared {
    pub(crate) config: NodeConfig,
    pub(crate) kv: Mutex<KvState>,
    pub(crate) hub: Mutex<WatchHub>,
    pub(crate) members: Mutex<Membership>,
    pub(crate) alarms: Mutex<Vec<AlarmMember>>,
    waiters: Mutex<BTreeMap<u64, Waiter>>,
    ids: Mutex<IdGen>,
    pub(crate) stream_wakers: Mutex<BTreeMap<u64, Arc<Notify>>>,
    pub(crate) status: status::StatusCell,
    pub(crate) epoch: tokio::time::Instant,
    /// The clock, for the reads made on every write and every turn of the raft loop.
    pub(crate) clock: LoopClock,
    pub(crate) metrics: Arc<Metrics>,
}

impl Shared {
    pub(crate) fn now_ms(&self) -> u64 {
        let since = self.clock.now().saturating_duration_since(self.epoch);
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    fn resolve(&self, id: u64, result: Result<Applied, ServerError>) {
        let waiter = lock(&self.waiters).remove(&id);
        if let Some(w) = waiter {
            let _ = w.send(result);
        }
    }

    /// Wakes the client streams the watch hub has queued responses for.
    pub(crate) fn wake_streams(&self, woken: Vec<u64>) {
        let wakers = lock(&self.stream_wakers);
        for id in woken {
            if let Some(n) = wakers.get(&id) {
                n.notify_one();
            }
        }
    }
}

/// Locks a mutex, recovering the data if a panicking holder poisoned it (a panic is
/// already a bug report; the state it guards stays consistent per operation).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The client services' way into a node. Cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    network: Arc<dyn PeerNetwork>,
}

/// Starts a node on `disk`: recovers its durable state (or founds / joins a cluster when
/// the disk is empty) and spawns its raft loop.
pub async fn start<D: Disk>(
    config: NodeConfig,
    disk: D,
    network: Arc<dyn PeerNetwork>,
) -> Result<NodeHandle, ServerError> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ config.member_id);
    #[cfg(madsim)]
    let disk = sim_bugs::BugDisk::new(disk, config.sim_bugs.ack_write_before_sync);
    let (storage, recovered) = RaftStorage::open(disk, config.wal.clone())
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    let mut raft_config = crate::raft::Config::new(config.member_id);
    raft_config.election_ticks = config.election_ticks;
    raft_config.heartbeat_ticks = 1;
    raft_config.pre_vote = config.pre_vote;
    raft_config.seed = rng.next_u64();
    #[cfg(madsim)]
    {
        raft_config.bugs.forget_vote_on_restart = config.sim_bugs.forget_vote_on_restart;
        raft_config.bugs.commit_earlier_term_by_count =
            config.sim_bugs.commit_earlier_term_by_count;
        config.sim_raft.apply(&mut raft_config);
    }

    let mut kv = KvState::new(config.kv);
    let mut members = Membership::from_initial(config.initial_members.iter().cloned());
    let raw = match recovered {
        Some(recovered) => {
            if let Some(torn) = &recovered.torn_tail {
                tracing::warn!(path = %torn.path, offset = torn.offset, "cut a torn WAL tail on open");
            }
            for skipped in &recovered.skipped_snapshots {
                tracing::warn!(snapshot = %skipped, "skipped a damaged snapshot");
            }
            let snapshot = &recovered.restart.snapshot;
            if !snapshot.data.is_empty() {
                let state: StateSnapshot = postcard::from_bytes(&snapshot.data).map_err(|e| {
                    ServerError::Internal(format!("state snapshot does not decode: {e}"))
                })?;
                kv = KvState::restore(&state.kv, config.kv)
                    .map_err(|e| ServerError::Internal(format!("state snapshot: {e}")))?;
                members = state.members;
            }
            kv.set_applied_index(snapshot.meta.index);
            crate::raft::RawNode::restart(raft_config, recovered.restart)
                .map_err(|e| ServerError::Internal(e.to_string()))?
        }
        None => {
            let initial = if config.join_existing {
                crate::raft::ConfState::default()
            } else {
                crate::raft::ConfState::with_voters(config.initial_members.iter().map(|m| m.id))
            };
            crate::raft::RawNode::new(raft_config, initial)
                .map_err(|e| ServerError::Internal(e.to_string()))?
        }
    };
    network.set_peers(members.peer_urls());

    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE_MAX);
    let limits = Limits {
        response_bytes_max: config.request_bytes_max,
        ..Limits::default()
    };
    let clock = LoopClock::new();
    let shared = Arc::new(Shared {
        kv: Mutex::new(kv),
        hub: Mutex::new(WatchHub::new(limits)),
        members: Mutex::new(members),
        alarms: Mutex::new(Vec::new()),
        waiters: Mutex::new(BTreeMap::new()),
        ids: Mutex::new(IdGen::new(&mut rng)),
        stream_wakers: Mutex::new(BTreeMap::new()),
        status: status::StatusCell::default(),
        epoch: clock.now(),
        clock,
        metrics: Arc::default(),
        config,
    });
    let raft_loop = raft_loop::RaftLoop::new(
        raw,
        storage,
        Arc::clone(&shared),
        Arc::clone(&network),
        command_rx,
    );
    tokio::spawn(raft_loop.run());
    Ok(NodeHandle {
        shared,
        commands,
        network,
    })
}

impl NodeHandle {
    /// This member's ID.
    pub fn member_id(&self) -> u64 {
        self.shared.config.member_id
    }

    /// The cluster's ID.
    pub fn cluster_id(&self) -> u64 {
        self.shared.config.cluster_id
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.shared.config
    }

    /// This member's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// The latest status.
    pub fn status(&self) -> NodeStatus {
        self.shared.status.get()
    }

    /// Waits until `pred` holds for the status and returns that status.
    pub async fn wait_status(&self, pred: impl Fn(&NodeStatus) -> bool) -> NodeStatus {
        self.shared.status.wait_for(pred).await
    }

    /// Waits until the status differs from `last` and returns the new one.
    pub async fn status_change(&self, last: NodeStatus) -> NodeStatus {
        self.shared.status.wait_for(|s| *s != last).await
    }

    /// A response header for `revision`, with this member's IDs and term.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id(),
            member_id: self.member_id(),
            revision,
            raft_term: self.status().term,
        }
    }

    /// Runs `f` on the applied key space (serializable: this member's view).
    pub fn with_kv<R>(&self, f: impl FnOnce(&KvState) -> R) -> R {
        f(&lock(&self.shared.kv))
    }

    /// Evaluates a transaction that only reads (checked here) on the applied key space.
    pub fn read_only_txn(&self, req: &TxnRequest) -> Result<TxnResponse, ServerError> {
        if !crate::mvcc::is_read_only(req) {
            return Err(ServerError::InvalidArgument(
                "etcdserver: a transaction that writes must be replicated".to_owned(),
            ));
        }
        let written = lock(&self.shared.kv).txn(req)?;
        debug_assert!(written.events.is_empty(), "a read-only txn produced events");
        Ok(written.response)
    }

    /// Runs `f` on the key space and the watch hub together (lock order kv, hub), then
    /// wakes the streams `f` queued responses for.
    pub fn with_watch_hub<R>(&self, f: impl FnOnce(&KvState, &mut WatchHub) -> R) -> R {
        let (result, woken) = {
            let kv = lock(&self.shared.kv);
            let mut hub = lock(&self.shared.hub);
            let result = f(&kv, &mut hub);
            (result, hub.take_woken())
        };
        self.shared.wake_streams(woken);
        result
    }

    /// Registers a client watch stream: its ID and the notifier woken when it has
    /// responses to drain.
    pub fn open_watch_stream(&self) -> (u64, Arc<Notify>) {
        let id = lock(&self.shared.ids).next();
        let notify = Arc::new(Notify::new());
        lock(&self.shared.stream_wakers).insert(id, Arc::clone(&notify));
        lock(&self.shared.hub).open_stream(id);
        (id, notify)
    }

    /// Forgets a client watch stream.
    pub fn close_watch_stream(&self, id: u64) {
        lock(&self.shared.hub).close_stream(id);
        lock(&self.shared.stream_wakers).remove(&id);
    }

    /// The member table.
    pub fn members(&self) -> Membership {
        lock(&self.shared.members).clone()
    }

    /// The alarms currently raised.
    pub fn alarms(&self) -> Vec<AlarmMember> {
        lock(&self.shared.alarms).clone()
    }

    /// A fresh positive lease ID.
    pub fn next_lease_id(&self) -> i64 {
        loop {
            let id = (lock(&self.shared.ids).next() & (i64::MAX as u64)) as i64;
            if id != 0 {
                return id;
            }
        }
    }

    /// Replicates a write and returns its result once it is applied on this member.
    pub async fn write(&self, request: internal_request::Request) -> Result<Applied, ServerError> {
        let id = lock(&self.shared.ids).next();
        let req = InternalRequest {
            id,
            request: Some(request),
        };
        let bytes = prost::Message::encoded_len(&req);
        if bytes > self.shared.config.request_bytes_max {
            return Err(ServerError::RequestTooLarge);
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.waiters).insert(id, tx);
        let timeout = self.shared.config.request_timeout();
        self.shared.metrics.proposals_pending_add(1);
        let deadline = self.shared.clock.now() + timeout;
        // The usual case (this member leads, the loop's queue has room) hands the write
        // over at once and only waits for its result; anything else takes the general
        // path, boxed so that its larger future does not grow every write's.
        let outcome = match self.try_propose_here(req) {
            Ok(()) => {
                quiet_timeout(deadline, async {
                    rx.await.map_err(|_| ServerError::Stopped)?
                })
                .await
            }
            Err(req) => {
                Box::pin(quiet_timeout(deadline, async {
                    self.submit(req).await?;
                    rx.await.map_err(|_| ServerError::Stopped)?
                }))
                .await
            }
        };
        self.shared.metrics.proposals_pending_add(-1);
        // A result that came from the loop was sent by `Shared::resolve`, which removed
        // the waiter; a refused submission or a timeout leaves it.
        if !matches!(outcome, Ok(Ok(_))) {
            lock(&self.shared.waiters).remove(&id);
        }
        let result = outcome.unwrap_or(Err(ServerError::Timeout));
        if result.is_err() {
            self.shared.metrics.proposal_failed();
        }
        result
    }

    /// Queues `req` for this member's raft loop without waiting, when this member leads
    /// and the queue has room (what [`Self::submit`] would do then, minus its future);
    /// gives `req` back otherwise.
    fn try_propose_here(&self, req: InternalRequest) -> Result<(), InternalRequest> {
        let now = self.shared.status.get();
        if now.stopped || now.leader == 0 || now.leader != self.member_id() {
            return Err(req);
        }
        match self.commands.try_reserve() {
            Ok(permit) => {
                permit.send(Command::ProposeWrite { req });
                Ok(())
            }
            Err(_) => Err(req),
        }
    }

    /// Puts a proposal into the leader's log (here, or forwarded).
    async fn submit(&self, req: InternalRequest) -> Result<(), ServerError> {
        let leader = self.wait_for_leader().await?;
        if leader == self.member_id() {
            // The outcome, refusal included, comes through the request's waiter.
            self.send_command(Command::ProposeWrite { req }).await
        } else {
            self.network.propose(leader, req).await
        }
    }

    /// Proposes `req` in this member's log (it must lead). For forwarded proposals.
    pub async fn propose_local(&self, req: InternalRequest) -> Result<(), ServerError> {
        let (tx, rx) = oneshot::channel();
        self.send_command(Command::Propose { req, reply: tx })
            .await?;
        rx.await.map_err(|_| ServerError::Stopped)?
    }

    /// Waits until a leader is known (up to an election timeout and a half).
    async fn wait_for_leader(&self) -> Result<NodeId, ServerError> {
        let now = self.shared.status.get();
        if now.leader != 0 && !now.stopped {
            return Ok(now.leader);
        }
        let wait = self.shared.config.election_timeout() * 3 / 2;
        let found = tokio::time::timeout(
            wait,
            self.shared.status.wait_for(|s| s.leader != 0 || s.stopped),
        )
        .await;
        match found {
            Ok(status) if !status.stopped => Ok(status.leader),
            Ok(_) => Err(ServerError::Stopped),
            Err(_) => Err(ServerError::NoLeader),
        }
    }

    async fn send_command(&self, command: Command) -> Result<(), ServerError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| ServerError::Stopped)
    }

    /// The read index this member's leader confirms now (the leader's own, or forwarded).
    pub async fn read_index(&self) -> Result<u64, ServerError> {
        #[cfg(madsim)]
        if self.shared.config.sim_bugs.follower_local_linearizable_read && !self.status().is_leader
        {
            return Ok(self.status().applied);
        }
        let leader = self.wait_for_leader().await?;
        if leader == self.member_id() {
            self.read_index_local().await
        } else {
            self.network.read_index(leader).await
        }
    }

    /// Confirms leadership and returns the commit index (this member must lead).
    pub async fn read_index_local(&self) -> Result<u64, ServerError> {
        let (tx, rx) = oneshot::channel();
        self.send_command(Command::ReadIndex { reply: tx }).await?;
        rx.await.map_err(|_| ServerError::Stopped)?
    }

    /// A linearizable read barrier: returns once this member has applied everything
    /// committed when the barrier was requested.
    pub async fn read_barrier(&self) -> Result<(), ServerError> {
        // The applied index wakes the wait on every apply: a quiet timeout keeps that
        // from queueing a simulator timer event per wake-up.
        let deadline = self.shared.clock.now() + self.shared.config.request_timeout();
        quiet_timeout(deadline, async {
            let index = self.read_index().await?;
            self.wait_applied(index).await
        })
        .await
        .unwrap_or(Err(ServerError::Timeout))
    }

    /// Waits until this member has applied `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<(), ServerError> {
        let status = self
            .shared
            .status
            .wait_for(|s| s.applied >= index || s.stopped)
            .await;
        if status.stopped {
            Err(ServerError::Stopped)
        } else {
            Ok(())
        }
    }

    /// Renews a lease (on the leader, which tracks expiries).
    pub async fn lease_keep_alive(
        &self,
        req: LeaseKeepAliveRequest,
    ) -> Result<LeaseKeepAliveResponse, ServerError> {
        let leader = self.wait_for_leader().await?;
        if leader == self.member_id() {
            self.lease_keep_alive_local(&req)
        } else {
            self.network.lease_keep_alive(leader, req).await
        }
    }

    /// Renews a lease here (this member must lead).
    pub fn lease_keep_alive_local(
        &self,
        req: &LeaseKeepAliveRequest,
    ) -> Result<LeaseKeepAliveResponse, ServerError> {
        let now = self.shared.now_ms();
        let mut response = lock(&self.shared.kv).lease_keep_alive(req, now)?;
        response.header = Some(self.header(response.header.map_or(0, |h| h.revision)));
        Ok(response)
    }

    /// A lease's remaining time (asked of the leader, which tracks expiries).
    pub async fn lease_time_to_live(
        &self,
        req: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, ServerError> {
        let leader = self.wait_for_leader().await?;
        if leader == self.member_id() {
            self.lease_time_to_live_local(&req)
        } else {
            self.network.lease_time_to_live(leader, req).await
        }
    }

    /// A lease's remaining time as this member (the leader) tracks it.
    pub fn lease_time_to_live_local(
        &self,
        req: &LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, ServerError> {
        let now = self.shared.now_ms();
        let mut response = lock(&self.shared.kv).lease_time_to_live(req, now)?;
        response.header = Some(self.header(response.header.map_or(0, |h| h.revision)));
        Ok(response)
    }

    /// Delivers Raft messages from a peer (never blocks; drops when the loop is behind).
    pub fn step(&self, messages: Vec<Message>) {
        if !messages.is_empty() {
            let _ = self.commands.try_send(Command::Step { messages });
        }
    }

    /// Adds a member (voter or learner) and returns the member table after it.
    pub async fn member_add(&self, member: MemberRecord) -> Result<Vec<MemberRecord>, ServerError> {
        self.require_leader().await?;
        if self.members().peer_url_in_use(&member.peer_urls) {
            return Err(ServerError::PeerUrlExists);
        }
        if self.members().get(member.id).is_some() {
            return Err(ServerError::MemberExists);
        }
        // A removed ID never rejoins (its member would replay its own removal); etcd
        // answers this with "member not found".
        if self.members().is_removed(member.id) {
            return Err(ServerError::MemberNotFound);
        }
        let kind = if member.is_learner {
            ConfChangeKind::AddLearner
        } else {
            ConfChangeKind::AddVoter
        };
        self.conf_change(ConfChange {
            kind,
            node_id: member.id,
            context: member.to_context(),
        })
        .await
    }

    /// Removes a member and returns the member table after it.
    pub async fn member_remove(&self, id: u64) -> Result<Vec<MemberRecord>, ServerError> {
        self.require_leader().await?;
        if self.members().get(id).is_none() {
            return Err(ServerError::MemberNotFound);
        }
        self.conf_change(ConfChange {
            kind: ConfChangeKind::RemoveNode,
            node_id: id,
            context: Vec::new(),
        })
        .await
    }

    /// Promotes a learner that has caught up, and returns the member table after it.
    pub async fn member_promote(&self, id: u64) -> Result<Vec<MemberRecord>, ServerError> {
        self.require_leader().await?;
        match self.members().get(id) {
            None => return Err(ServerError::MemberNotFound),
            Some(m) if !m.is_learner => return Err(ServerError::MemberNotLearner),
            Some(_) => {}
        }
        self.conf_change(ConfChange {
            kind: ConfChangeKind::AddVoter,
            node_id: id,
            context: Vec::new(),
        })
        .await
    }

    /// `NotLeader` unless this member leads. Membership calls check this before looking
    /// at the member table: a follower's table may not yet hold a change the leader has
    /// applied (a member just added), so it must not answer "member not found" itself.
    async fn require_leader(&self) -> Result<(), ServerError> {
        if self.wait_for_leader().await? != self.member_id() {
            return Err(ServerError::NotLeader);
        }
        Ok(())
    }

    async fn conf_change(&self, change: ConfChange) -> Result<Vec<MemberRecord>, ServerError> {
        self.require_leader().await?;
        let (tx, rx) = oneshot::channel();
        self.send_command(Command::ConfChange { change, reply: tx })
            .await?;
        let timeout = self.shared.config.request_timeout();
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(()))) => Ok(self.members().members().cloned().collect()),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => Err(ServerError::Timeout),
        }
    }

    /// Hands leadership to `target` (this member must lead) and waits until it leads.
    pub async fn move_leader(&self, target: u64) -> Result<(), ServerError> {
        let (tx, rx) = oneshot::channel();
        self.send_command(Command::TransferLeader {
            to: target,
            reply: tx,
        })
        .await?;
        rx.await.map_err(|_| ServerError::Stopped)??;
        let timeout = self.shared.config.request_timeout();
        let status = self
            .shared
            .status
            .wait_for(|s| s.leader == target || s.stopped);
        match tokio::time::timeout(timeout, status).await {
            Ok(s) if s.stopped => Err(ServerError::Stopped),
            Ok(_) => Ok(()),
            Err(_) => Err(ServerError::Timeout),
        }
    }
}
