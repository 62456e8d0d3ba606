//! The raft loop: the one task that owns a member's Raft core and storage.
//!
//! Each turn takes a tick or a batch of commands, then drains the core's `Ready`s:
//! persist (one WAL sync), then send, then apply, then advance. Reads waiting for a read
//! index are batched into one ReadIndex request per turn; its confirmation rides on the
//! leader's next messages to the voters, and the loop sends heartbeats to voters no such
//! message reaches: at once, or, while entries wait for their commit (whose appends go
//! to every follower), after a short hold-back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::mvcc::KvSnapshot;
use crate::pb::detcdpeerpb::{InternalRequest, LeaseExpire, internal_request};
use crate::persist::RaftStorage;
use crate::persist::SnapshotWriter;
use crate::raft::{
    ConfChange, ConfChangeKind, Message, RaftError, RawNode, Ready, Role, SnapshotMeta, SoftState,
};
use crate::server::membership::Membership;
use crate::storage::Disk;

use super::reconfig::{self, HeardFrom};
use super::{
    COMMANDS_PER_TURN_MAX, LEASE_EXPIRE_BATCH_MAX, PeerNetwork, Shared, StateSnapshot, lock,
};
use crate::server::error::ServerError;
use crate::server::transport::PeerFailure;
use crate::server::transport::timer::QuietSleep;

/// The share of the leader's log (in percent) a learner must hold before it may be
/// promoted.
const LEARNER_READY_PERCENT: u64 = 90;

/// The longest a read waits for an append to carry its confirmation, while entries wait
/// for their commit, before heartbeats go: the heartbeat interval divided by this.
const READ_HOLD_PER_HEARTBEAT: u64 = 20;

/// Work for the raft loop.
pub enum Command {
    /// Propose a request (this member leads); the reply says whether it entered the log.
    Propose {
        /// The request.
        req: InternalRequest,
        /// Accepted or refused.
        reply: oneshot::Sender<Result<(), ServerError>>,
    },
    /// Propose a write of a client of this member (it leads). There is no reply: a
    /// refusal resolves the request's waiter, an accepted entry resolves it when applied,
    /// so a write costs one channel and one wake-up fewer.
    ProposeWrite {
        /// The request; its waiter is registered under `req.id`.
        req: InternalRequest,
    },
    /// Propose a membership change; the reply comes once it is applied.
    ConfChange {
        /// The change.
        change: ConfChange,
        /// Applied or refused.
        reply: oneshot::Sender<Result<(), ServerError>>,
    },
    /// Confirm leadership and report the commit index.
    ReadIndex {
        /// The read index.
        reply: oneshot::Sender<Result<u64, ServerError>>,
    },
    /// Raft messages from peers.
    Step {
        /// The messages.
        messages: Vec<Message>,
    },
    /// Start a leadership transfer.
    TransferLeader {
        /// The new leader.
        to: u64,
        /// Started or refused.
        reply: oneshot::Sender<Result<(), ServerError>>,
    },
}

fn raft_error(e: RaftError, leader: u64) -> ServerError {
    match e {
        RaftError::NotLeader { .. } if leader == 0 => ServerError::NoLeader,
        RaftError::NotLeader { .. } => ServerError::NotLeader,
        RaftError::ProposalDropped(_) => ServerError::NoLeader,
        RaftError::ConfChangePending { .. } | RaftError::InvalidConfChange(_) => {
            ServerError::UnhealthyCluster
        }
        RaftError::InvalidTransferee(_) => ServerError::BadLeaderTransferee,
        other => ServerError::Internal(other.to_string()),
    }
}

pub(super) struct RaftLoop<D: Disk> {
    pub(super) raw: RawNode,
    storage: RaftStorage<D>,
    pub(super) shared: Arc<Shared>,
    pub(super) network: Arc<dyn PeerNetwork>,
    commands: mpsc::Receiver<Command>,
    /// Reads not yet part of a ReadIndex round.
    reads_waiting: Vec<oneshot::Sender<Result<u64, ServerError>>>,
    /// Reads in a ReadIndex round, by the round's context.
    reads_in_flight: BTreeMap<u64, Vec<oneshot::Sender<Result<u64, ServerError>>>>,
    read_rounds: u64,
    /// Fires when pending reads stop waiting for appends and get heartbeats.
    read_hold: QuietSleep,
    /// Whether `read_hold` is running.
    read_hold_armed: bool,
    /// How long `read_hold` runs.
    read_hold_len: Duration,
    /// Membership changes waiting to be applied, by log index.
    pub(super) conf_waiters: BTreeMap<u64, oneshot::Sender<Result<(), ServerError>>>,
    /// Leases proposed for expiry and not yet applied.
    pub(super) expiring: BTreeSet<i64>,
    soft: SoftState,
    last_snapshot_index: u64,
    /// The local snapshot being encoded and written by a task of its own, if any.
    snapshot_job: Option<SnapshotJob>,
    last_progress_ms: u64,
    /// Ticks so far: the clock of `heard` (reading the time per message costs more).
    ticks: u64,
    /// At which tick each peer was last heard from, for the strict reconfiguration check.
    heard: HeardFrom,
    pub(super) stop: bool,
}

impl<D: Disk> RaftLoop<D> {
    pub(super) fn new(
        raw: RawNode,
        storage: RaftStorage<D>,
        shared: Arc<Shared>,
        network: Arc<dyn PeerNetwork>,
        commands: mpsc::Receiver<Command>,
    ) -> Self {
        let status = raw.status();
        let last_snapshot_index = status.snapshot_index;
        let read_hold_len = read_hold_len(shared.config.tick_ms);
        let now = shared.clock.now();
        RaftLoop {
            soft: SoftState {
                leader: status.leader,
                role: status.role,
            },
            raw,
            storage,
            shared,
            network,
            commands,
            reads_waiting: Vec::new(),
            reads_in_flight: BTreeMap::new(),
            read_rounds: 0,
            read_hold: QuietSleep::until(now),
            read_hold_armed: false,
            read_hold_len,
            conf_waiters: BTreeMap::new(),
            expiring: BTreeSet::new(),
            last_snapshot_index,
            snapshot_job: None,
            last_progress_ms: 0,
            ticks: 0,
            heard: HeardFrom::default(),
            stop: false,
        }
    }

    pub(super) async fn run(mut self) {
        let tick = Duration::from_millis(self.shared.config.tick_ms.max(1));
        // A quiet sleep, not an interval: this arm is polled once per turn, and the
        // simulator's timer would queue an event for every such poll.
        let mut ticker = QuietSleep::until(self.shared.clock.now());
        self.publish_status();
        while !self.stop {
            tokio::select! {
                biased;
                () = &mut ticker => {
                    // A late tick delays the next ones rather than bunching them.
                    let now = self.shared.clock.now();
                    let next = ticker.deadline() + tick;
                    ticker.reset(if next <= now { now + tick } else { next });
                    self.on_tick();
                }
                command = self.commands.recv() => match command {
                    Some(command) => self.handle(command),
                    None => break,
                },
                () = &mut self.read_hold, if self.read_hold_armed => {
                    self.read_hold_armed = false;
                    self.raw.send_read_heartbeats();
                }
                written = snapshot_written(&mut self.snapshot_job) => {
                    if let Err(e) = self.on_snapshot_written(written).await {
                        tracing::error!(member = self.shared.config.member_id, error = %e, "raft loop stops");
                        self.stop = true;
                    }
                }
            }
            for _ in 0..COMMANDS_PER_TURN_MAX {
                match self.commands.try_recv() {
                    Ok(command) => self.handle(command),
                    Err(_) => break,
                }
            }
            self.start_read_round();
            if let Err(e) = self.finish_turn().await {
                tracing::error!(member = self.shared.config.member_id, error = %e, "raft loop stops");
                self.stop = true;
            }
        }
        // A snapshot file half-written by a task that outlives the loop would race the
        // next start's clean-up of the directory: let it finish (it is not marked, so
        // it changes nothing the WAL says).
        if let Some(job) = self.snapshot_job.take() {
            let _ = job.done.await;
        }
        self.fail_everything(ServerError::Stopped);
        // Writes queued behind the stop have waiters of their own to fail.
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            if let Command::ProposeWrite { req } = command {
                self.shared.resolve(req.id, Err(ServerError::Stopped));
            }
        }
        self.shared.status.update(|status| {
            status.stopped = true;
            status.leader = 0;
            status.is_leader = false;
        });
        self.shared.metrics.set_leader(false, false);
    }

    fn handle(&mut self, command: Command) {
        let leader = self.soft.leader;
        match command {
            Command::Propose { req, reply } => {
                let data = prost::Message::encode_to_vec(&req);
                let result = self
                    .raw
                    .propose(data)
                    .map(|_| ())
                    .map_err(|e| raft_error(e, leader));
                let _ = reply.send(result);
            }
            Command::ProposeWrite { req } => {
                let data = prost::Message::encode_to_vec(&req);
                if let Err(e) = self.raw.propose(data) {
                    self.shared.resolve(req.id, Err(raft_error(e, leader)));
                }
            }
            Command::ConfChange { change, reply } if !self.promotion_ready(&change) => {
                let _ = reply.send(Err(ServerError::LearnerNotReady));
            }
            Command::ConfChange { change, reply } if !self.keeps_quorum(&change) => {
                let _ = reply.send(Err(ServerError::NotEnoughStartedMembers));
            }
            Command::ConfChange { change, reply } => match self.raw.propose_conf_change(change) {
                Ok(index) => {
                    self.conf_waiters.insert(index, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(raft_error(e, leader)));
                }
            },
            Command::ReadIndex { reply } => self.reads_waiting.push(reply),
            Command::Step { messages } => {
                let mut last_from = 0;
                for m in messages {
                    if m.from != last_from {
                        last_from = m.from;
                        self.heard.record(m.from, self.ticks);
                    }
                    if let Err(e) = self.raw.step(m) {
                        tracing::debug!(error = %e, "dropped a raft message");
                    }
                }
            }
            Command::TransferLeader { to, reply } => {
                let _ = reply.send(
                    self.raw
                        .transfer_leader(to)
                        .map_err(|e| raft_error(e, leader)),
                );
            }
        }
    }

    /// Whether `change` may go ahead: promoting a learner needs the learner to hold at
    /// least [`LEARNER_READY_PERCENT`] of the leader's log, as etcd requires; a learner
    /// that never started would otherwise become a voter that cannot vote.
    fn promotion_ready(&self, change: &ConfChange) -> bool {
        if change.kind != ConfChangeKind::AddVoter {
            return true;
        }
        let status = self.raw.status();
        if !status.conf_state.learners.contains(&change.node_id) {
            return true;
        }
        let learner_match = status.progress.get(&change.node_id).map_or(0, |p| p.0);
        let leader_match = status.last_index;
        learner_match * 100 >= leader_match * LEARNER_READY_PERCENT
    }

    /// Whether `change` passes the strict reconfiguration check (or it is off): the
    /// voters after it must include a quorum this leader heard from within an election
    /// timeout.
    fn keeps_quorum(&self, change: &ConfChange) -> bool {
        if !self.shared.config.strict_reconfig_check {
            return true;
        }
        let window = u64::from(self.shared.config.election_ticks);
        let me = self.shared.config.member_id;
        reconfig::keeps_quorum(self.raw.log().conf_state(), change, me, |peer| {
            self.heard.recent(peer, self.ticks, window)
        })
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        self.raw.tick();
        for failure in self.network.take_failures() {
            match failure {
                PeerFailure::Unreachable(peer) => self.raw.report_unreachable(peer),
                PeerFailure::SnapshotFailed(peer) => self.raw.report_snapshot_failure(peer),
            }
        }
        let now = self.shared.now_ms();
        if self.soft.role == Role::Leader {
            self.expire_leases(now);
        }
        let interval = self.shared.config.watch_progress_interval_ms;
        if interval > 0 && now >= self.last_progress_ms + interval {
            self.last_progress_ms = now;
            let current = lock(&self.shared.kv).store().current_revision();
            let woken = {
                let mut hub = lock(&self.shared.hub);
                hub.progress_tick(current);
                hub.take_woken()
            };
            self.shared.wake_streams(woken);
        }
    }

    /// The leader decides lease expiry on its clock and revokes through Raft.
    fn expire_leases(&mut self, now_ms: u64) {
        let expired: Vec<i64> = lock(&self.shared.kv)
            .expired_leases(now_ms, LEASE_EXPIRE_BATCH_MAX + self.expiring.len())
            .into_iter()
            .filter(|id| !self.expiring.contains(id))
            .take(LEASE_EXPIRE_BATCH_MAX)
            .collect();
        if expired.is_empty() {
            return;
        }
        #[cfg(madsim)]
        if self.shared.config.sim_bugs.lease_expiry_without_raft {
            let mut kv = lock(&self.shared.kv);
            for id in expired {
                let _ = kv.lease_revoke(&crate::pb::etcdserverpb::LeaseRevokeRequest { id });
            }
            return;
        }
        let id = lock(&self.shared.ids).next();
        let req = InternalRequest {
            id,
            request: Some(internal_request::Request::LeaseExpire(LeaseExpire {
                ids: expired.clone(),
            })),
        };
        if self
            .raw
            .propose(prost::Message::encode_to_vec(&req))
            .is_ok()
        {
            self.expiring.extend(expired);
        }
    }

    fn start_read_round(&mut self) {
        if self.reads_waiting.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.reads_waiting);
        self.read_rounds += 1;
        let round = self.read_rounds;
        match self.raw.read_index(round.to_be_bytes().to_vec()) {
            Ok(()) => {
                self.reads_in_flight.insert(round, waiting);
            }
            Err(e) => {
                let err = raft_error(e, self.soft.leader);
                for w in waiting {
                    let _ = w.send(Err(err.clone()));
                }
            }
        }
    }

    /// Hands out the turn's `Ready`s, then the heartbeats pending reads need now.
    async fn finish_turn(&mut self) -> Result<(), ServerError> {
        self.drain_ready().await?;
        if self.plan_read_heartbeats() {
            self.drain_ready().await?;
        }
        Ok(())
    }

    /// After a turn's `Ready`s went out: if a pending read still lacks a stamped message
    /// to some voter, holds it back while entries wait for their commit (the commit's
    /// appends reach every follower and carry the stamp), else sends heartbeats now.
    /// Returns whether it queued heartbeats.
    fn plan_read_heartbeats(&mut self) -> bool {
        if !self.raw.read_heartbeats_due() {
            self.read_hold_armed = false;
            return false;
        }
        if self.read_hold_armed {
            return false;
        }
        if !self.read_hold_len.is_zero() && self.raw.commit_pending() {
            self.read_hold
                .reset(self.shared.clock.now() + self.read_hold_len);
            self.read_hold_armed = true;
            return false;
        }
        self.raw.send_read_heartbeats();
        true
    }

    async fn drain_ready(&mut self) -> Result<(), ServerError> {
        while self.raw.has_ready() && !self.stop {
            let ready = self.raw.ready();
            self.handle_ready(ready).await?;
            self.raw.advance();
            self.publish_status();
            self.maybe_snapshot();
        }
        let woken = {
            let kv = lock(&self.shared.kv);
            let mut hub = lock(&self.shared.hub);
            hub.catch_up(&*kv);
            hub.take_woken()
        };
        self.shared.wake_streams(woken);
        Ok(())
    }

    async fn handle_ready(&mut self, ready: Ready) -> Result<(), ServerError> {
        if let Some(soft) = ready.soft_state {
            self.on_soft_state(soft);
        }
        if ready.snapshot.is_some()
            && let Some(job) = self.snapshot_job.take()
        {
            // One writer at a time in the snapshot directory: the leader's snapshot is
            // newer, so the local one is dropped once its file is complete.
            let _ = job.done.await;
        }
        let syncs = self.storage.must_sync(&ready);
        let started = syncs.then(|| self.shared.clock.now());
        self.storage
            .persist(&ready)
            .await
            .map_err(|e| ServerError::Internal(e.to_string()))?;
        if let Some(started) = started {
            let took = self.shared.clock.now().saturating_duration_since(started);
            self.shared.metrics.wal_fsync.observe(took);
        }
        if let Some(snapshot) = &ready.snapshot {
            self.restore_snapshot(&snapshot.data, snapshot.meta.index)?;
            self.last_snapshot_index = snapshot.meta.index;
        }
        self.network.send(ready.messages);
        for read in ready.read_states {
            let round = <[u8; 8]>::try_from(read.ctx.as_slice()).map(u64::from_be_bytes);
            if let Some(waiters) = round.ok().and_then(|r| self.reads_in_flight.remove(&r)) {
                for w in waiters {
                    let _ = w.send(Ok(read.index));
                }
            }
        }
        self.apply_entries(ready.committed_entries);
        Ok(())
    }

    fn on_soft_state(&mut self, soft: SoftState) {
        let was_leader = self.soft.role == Role::Leader;
        let is_leader = soft.role == Role::Leader;
        if soft.leader != self.soft.leader && soft.leader != 0 {
            self.shared
                .status
                .update(|status| status.leader_changes += 1);
            self.shared.metrics.leader_changed();
        }
        self.soft = soft;
        if is_leader && !was_leader {
            let now = self.shared.now_ms();
            let extend = self.shared.config.election_timeout().as_millis() as u64;
            lock(&self.shared.kv).promote(now, extend);
        } else if was_leader && !is_leader {
            lock(&self.shared.kv).demote();
            self.expiring.clear();
            for (_, waiters) in std::mem::take(&mut self.reads_in_flight) {
                for w in waiters {
                    let _ = w.send(Err(ServerError::LeaderChanged));
                }
            }
            for (_, w) in std::mem::take(&mut self.conf_waiters) {
                let _ = w.send(Err(ServerError::LeaderChanged));
            }
        }
    }

    fn restore_snapshot(&mut self, data: &[u8], index: u64) -> Result<(), ServerError> {
        let state: StateSnapshot = postcard::from_bytes(data).map_err(|e| {
            ServerError::Internal(format!("received snapshot does not decode: {e}"))
        })?;
        let mut kv = crate::mvcc::KvState::restore(&state.kv, self.shared.config.kv)
            .map_err(|e| ServerError::Internal(format!("received snapshot: {e}")))?;
        kv.set_applied_index(index);
        if self.soft.role == Role::Leader {
            kv.promote(self.shared.now_ms(), 0);
        }
        let current_revision = kv.store().current_revision();
        *lock(&self.shared.kv) = kv;
        // Watchers catch up on the revisions the snapshot skipped (in drain_ready).
        lock(&self.shared.hub).history_replaced(current_revision);
        self.network.set_peers(state.members.peer_urls());
        *lock(&self.shared.members) = state.members;
        Ok(())
    }

    /// Starts a snapshot once `snapshot_count` entries were applied since the last one.
    /// The loop only takes a [`KvSnapshot`] (under the kv lock: the head and the changes
    /// since the key space's kept encoding, not a copy of the state) and hands it to a
    /// task, which encodes it and writes the file; the loop compacts the log and marks the WAL when
    /// the task reports the file durable (see [`Self::on_snapshot_written`]).
    fn maybe_snapshot(&mut self) {
        let applied = self.raw.brief().applied;
        let count = self.shared.config.snapshot_count.max(1);
        if self.snapshot_job.is_some()
            || applied < self.last_snapshot_index + count
            // Compaction needs the index persisted here too.
            || applied > self.raw.log().stable_to()
        {
            return;
        }
        let Some(term) = self.raw.log().term(applied) else {
            return;
        };
        let meta = SnapshotMeta {
            index: applied,
            term,
            conf_state: self.raw.log().conf_state_at(applied).clone(),
        };
        let started = tokio::time::Instant::now();
        let (kv, members) = {
            let kv = lock(&self.shared.kv);
            (kv.snapshot_source(), lock(&self.shared.members).clone())
        };
        let copied = started.elapsed();
        tracing::info!(
            member = self.shared.config.member_id,
            index = applied,
            copy_us = copied.as_micros() as u64,
            "snapshot: state taken, encoding and writing it in a task"
        );
        let writer = self.storage.snapshot_writer();
        let (done_tx, done) = oneshot::channel();
        tokio::spawn(async move {
            let result = write_snapshot(writer, meta, kv, members).await;
            let _ = done_tx.send(result);
        });
        self.snapshot_job = Some(SnapshotJob {
            index: applied,
            started,
            done,
        });
    }

    /// The snapshot task finished: on success the file is durable, so the core keeps the
    /// data for followers, the log is compacted up to it, and the WAL marks it (which
    /// releases the segments before it).
    async fn on_snapshot_written(&mut self, written: Written) -> Result<(), ServerError> {
        let (meta, data) = written?;
        let index = meta.index;
        let data_bytes = data.len() as u64;
        match self.raw.compact(index, data) {
            Ok(()) => {}
            // A snapshot from the leader replaced the log meanwhile.
            Err(RaftError::CompactOutOfRange { .. }) => return Ok(()),
            Err(e) => return Err(ServerError::Internal(e.to_string())),
        }
        let started = tokio::time::Instant::now();
        self.storage
            .snapshot_written(meta)
            .await
            .map_err(|e| ServerError::Internal(e.to_string()))?;
        self.shared
            .metrics
            .backend_commit
            .observe(started.elapsed());
        self.shared.metrics.set_db_size(data_bytes);
        self.last_snapshot_index = index;
        tracing::info!(
            member = self.shared.config.member_id,
            index,
            bytes = data_bytes,
            "saved a snapshot"
        );
        Ok(())
    }

    pub(super) fn publish_status(&self) {
        // Called after every Ready: the brief copies no membership or progress.
        let status = self.raw.brief();
        let is_learner = self
            .raw
            .log()
            .conf_state()
            .learners
            .contains(&self.shared.config.member_id);
        let previous = self.shared.status.get();
        let next = super::NodeStatus {
            leader: status.leader,
            term: status.term,
            vote: status.vote,
            is_leader: status.role == Role::Leader,
            is_learner,
            commit: status.commit,
            commit_term: self.raw.log().term(status.commit).unwrap_or(0),
            applied: status.applied,
            leader_changes: previous.leader_changes,
            stopped: self.stop,
        };
        let metrics = &self.shared.metrics;
        metrics.set_leader(next.leader != 0, next.is_leader);
        metrics.set_indexes(next.commit, next.applied);
        self.shared.status.set(next);
    }

    fn fail_everything(&mut self, err: ServerError) {
        for w in self.reads_waiting.drain(..) {
            let _ = w.send(Err(err.clone()));
        }
        for (_, waiters) in std::mem::take(&mut self.reads_in_flight) {
            for w in waiters {
                let _ = w.send(Err(err.clone()));
            }
        }
        for (_, w) in std::mem::take(&mut self.conf_waiters) {
            let _ = w.send(Err(err.clone()));
        }
        let waiters = std::mem::take(&mut *lock(&self.shared.waiters));
        for (_, w) in waiters {
            let _ = w.send(Err(err.clone()));
        }
    }
}

/// What a snapshot task reports: the position and the encoded state, durable in a file.
type Written = Result<(SnapshotMeta, Vec<u8>), ServerError>;

/// A local snapshot in the making (see [`RaftLoop::maybe_snapshot`]).
struct SnapshotJob {
    /// The applied index it covers.
    index: u64,
    /// When the state was copied.
    started: tokio::time::Instant,
    /// The task's report.
    done: oneshot::Receiver<Written>,
}

/// How long a read waits for an append before heartbeats go (see
/// [`READ_HOLD_PER_HEARTBEAT`]).
fn read_hold_len(tick_ms: u64) -> Duration {
    Duration::from_millis(tick_ms) / READ_HOLD_PER_HEARTBEAT as u32
}

/// Waits for the snapshot task, if there is one (never returns when there is none).
async fn snapshot_written(job: &mut Option<SnapshotJob>) -> Written {
    let Some(running) = job.as_mut() else {
        return std::future::pending().await;
    };
    let result = (&mut running.done)
        .await
        .unwrap_or_else(|_| Err(ServerError::Internal("the snapshot task vanished".into())));
    if let Some(finished) = job.take() {
        tracing::debug!(
            index = finished.index,
            took_ms = finished.started.elapsed().as_millis() as u64,
            "snapshot task done"
        );
    }
    result
}

/// Encodes a [`StateSnapshot`] of `kv` and `members` into one buffer sized once: the
/// bytes of postcard's encoding of the struct (the key space's encoding as a length and
/// its bytes, then the member table), without encoding the key space apart first.
fn encode_state_snapshot(mut kv: KvSnapshot, members: &Membership) -> Result<Vec<u8>, ServerError> {
    let members = postcard::to_allocvec(members)
        .map_err(|e| ServerError::Internal(format!("cannot encode a snapshot: {e}")))?;
    let kv_len = kv.encoded_len();
    let kv_len_code = postcard::to_allocvec(&(kv_len as u64))
        .map_err(|e| ServerError::Internal(format!("cannot encode a snapshot: {e}")))?;
    let len = kv_len_code.len() + kv_len + members.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&kv_len_code);
    kv.write(&mut out);
    out.extend_from_slice(&members);
    debug_assert_eq!(out.len(), len, "a snapshot's length was computed wrong");
    Ok(out)
}

/// Encodes the state taken and writes it as the snapshot at `meta`. In real mode the
/// encoding and the file's write run on a blocking thread; under the simulator they run
/// in this task.
async fn write_snapshot<D: Disk>(
    writer: SnapshotWriter<D>,
    meta: SnapshotMeta,
    kv: KvSnapshot,
    members: Membership,
) -> Written {
    let encode = move || encode_state_snapshot(kv, &members);
    let write = move |data: Vec<u8>| async move {
        writer
            .write(&meta, &data)
            .await
            .map_err(|e| ServerError::Internal(e.to_string()))?;
        Ok((meta, data))
    };
    // The real disk's calls block: the file is written on the blocking thread too.
    #[cfg(not(madsim))]
    let written = tokio::task::spawn_blocking(move || {
        let data = encode()?;
        tokio::runtime::Handle::current().block_on(write(data))
    })
    .await
    .unwrap_or_else(|e| Err(ServerError::Internal(format!("snapshot task failed: {e}"))));
    #[cfg(madsim)]
    let written = write(encode()?).await;
    written
}

#[cfg(test)]
mod snapshot_encoding_tests {
    use super::*;
    use crate::mvcc::{KvConfig, KvState};
    use crate::pb::etcdserverpb::PutRequest;

    /// The state snapshot encoded in one buffer has exactly the bytes of postcard's
    /// encoding of the struct, whatever the key space's size (the length's varint
    /// crosses byte widths), taken before and after the key space keeps an encoding.
    #[test]
    fn state_snapshots_encode_in_place_as_the_struct_does() {
        let mut kv = KvState::new(KvConfig::default());
        let members = Membership::default();
        for round in 0..40u32 {
            for i in 0..round * round {
                let req = PutRequest {
                    key: format!("k{}", i % 97).into_bytes(),
                    value: vec![b'v'; (i % 13) as usize],
                    ..PutRequest::default()
                };
                kv.put(&req).expect("puts");
            }
            let struct_bytes = postcard::to_allocvec(&StateSnapshot {
                kv: kv.snapshot(),
                members: members.clone(),
            })
            .expect("encodes");
            let in_place = encode_state_snapshot(kv.snapshot_source(), &members).expect("encodes");
            assert_eq!(in_place, struct_bytes, "round {round}");
            assert_eq!(in_place.capacity(), in_place.len(), "sized once");
        }
    }
}
