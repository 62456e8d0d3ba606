//! `RawNode`: the driver's handle on the core. Inputs go in (`tick`, `step`, `propose`,
//! ...); `ready()` hands out one batch of work; `advance()` acknowledges it.
//!
//! # Handling a `Ready`, in this order
//! 1. persist `snapshot` (if any), then `entries` (overwriting any persisted entries at
//!    the same or higher indexes), then `hard_state` (if any), and sync;
//! 2. only then send `messages` (none of them may leave before step 1 is durable: they
//!    may promise votes, acknowledge entries or carry a commit that depend on it);
//! 3. restore `snapshot` into the state machine, then apply `committed_entries` in order;
//!    serve `read_states` once the applied index reaches their index;
//! 4. call `advance()`. Do not call `step`/`tick`/`propose` between `ready()` and
//!    `advance()`.
//!
//! It does not persist or send anything itself, and does not decode application data.

use super::RaftError;
use super::config::Config;
use super::core::Raft;
use super::log::RaftLog;
use super::progress::ProgressState;
use super::types::NODE_NONE;
use super::types::{
    ConfChange, ConfChangeKind, ConfState, Entry, EntryKind, HardState, Message, NodeId, ReadState,
    Role, Snapshot, SoftState,
};
use std::collections::BTreeMap;
use tracing::warn;

/// One batch of work for the driver (see the module documentation for the order).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ready {
    /// Leader or role changed since the last `Ready`.
    pub soft_state: Option<SoftState>,
    /// Term, vote or commit changed: persist.
    pub hard_state: Option<HardState>,
    /// New log entries to persist (may replace a persisted tail).
    pub entries: Vec<Entry>,
    /// A snapshot received from the leader: persist, then restore the state machine.
    pub snapshot: Option<Snapshot>,
    /// Messages to send once everything above is durable.
    pub messages: Vec<Message>,
    /// Committed entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Reads confirmed linearizable.
    pub read_states: Vec<ReadState>,
}

/// What a restarting node reads back from its durable storage.
///
/// Gaps in the entries or an applied index outside `[snapshot, commit]` are errors. A
/// hard state out of step with the entries (a torn last batch) is repaired: a commit
/// beyond the last entry is lowered, a term below the last entry's is raised (with no
/// vote).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RestartState {
    /// The last persisted hard state.
    pub hard_state: HardState,
    /// The latest persisted snapshot (index 0 with the initial membership if none).
    pub snapshot: Snapshot,
    /// Persisted entries; those at or below the snapshot index are skipped.
    pub entries: Vec<Entry>,
    /// Index the state machine has applied (at least the snapshot's index).
    pub applied: u64,
}

/// A summary of the node for logs, metrics and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Current term.
    pub term: u64,
    /// Vote in the current term.
    pub vote: NodeId,
    /// Role.
    pub role: Role,
    /// Known leader.
    pub leader: NodeId,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Last log index.
    pub last_index: u64,
    /// Snapshot (compaction) index.
    pub snapshot_index: u64,
    /// Membership.
    pub conf_state: ConfState,
    /// Leader only: (matched, next, state) per member.
    pub progress: BTreeMap<NodeId, (u64, u64, ProgressState)>,
}

/// The scalar part of [`Status`], read without allocating: for a caller that asks after
/// every `Ready` (membership is at `log().conf_state()`, by reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Brief {
    /// Current term.
    pub term: u64,
    /// Vote in the current term.
    pub vote: NodeId,
    /// Role.
    pub role: Role,
    /// Known leader.
    pub leader: NodeId,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
}

#[derive(Debug)]
struct Handed {
    last_entry: Option<(u64, u64)>,
    snapshot_index: Option<u64>,
    /// The membership changes among the handed committed entries (copies of the rare
    /// ones only, not of every entry's data).
    committed_conf: Vec<Entry>,
    /// The index of the last handed committed entry.
    committed_last: Option<u64>,
}

/// The driver's handle on one Raft node.
#[derive(Debug)]
pub struct RawNode {
    raft: Raft,
    prev_soft: SoftState,
    prev_hard: HardState,
    handed: Option<Handed>,
}

impl RawNode {
    /// A brand-new node. A founding member passes the bootstrap membership `initial`
    /// (the same on every founder): it becomes committed membership-change entries at
    /// indexes `1..=n` of term 1, handed out in the first `Ready` like any other entries,
    /// so members added later learn the founders from the log. A node that joins an
    /// existing cluster passes an empty `initial` and waits to be contacted.
    pub fn new(cfg: Config, initial: ConfState) -> Result<Self, RaftError> {
        let changes = initial
            .voters
            .iter()
            .map(|&id| (ConfChangeKind::AddVoter, id))
            .chain(
                initial
                    .learners
                    .iter()
                    .map(|&id| (ConfChangeKind::AddLearner, id)),
            );
        let mut entries = Vec::new();
        for (index, (kind, node_id)) in (1..).zip(changes) {
            let change = ConfChange {
                kind,
                node_id,
                context: Vec::new(),
            };
            let data =
                postcard::to_allocvec(&change).map_err(|e| RaftError::Corrupt(e.to_string()))?;
            entries.push(Entry {
                term: 1,
                index,
                kind: EntryKind::ConfChange,
                data,
            });
        }
        let commit = entries.len() as u64;
        let term = u64::from(commit > 0);
        let mut node = Self::restart(cfg, RestartState::default())?;
        let raft = &mut node.raft;
        raft.term = term;
        raft.log = RaftLog::new_unstable(entries);
        raft.log.commit_to(commit);
        Ok(node)
    }

    /// Rebuilds a node from durable state after a restart. Inconsistent state (gaps,
    /// a commit beyond the log, applied outside [snapshot, commit]) is an error.
    pub fn restart(cfg: Config, state: RestartState) -> Result<Self, RaftError> {
        cfg.validate()?;
        let RestartState {
            hard_state,
            snapshot,
            entries,
            applied,
        } = state;
        let snap_index = snapshot.meta.index;
        let entries: Vec<Entry> = entries
            .into_iter()
            .filter(|e| e.index > snap_index)
            .collect();
        let mut expected = snap_index + 1;
        let mut last_term = snapshot.meta.term;
        for e in &entries {
            if e.index != expected {
                return Err(RaftError::Corrupt(format!(
                    "entry {} where {expected} was expected",
                    e.index
                )));
            }
            if e.term < last_term {
                return Err(RaftError::Corrupt(format!(
                    "entry {} has term {} below {last_term}",
                    e.index, e.term
                )));
            }
            expected += 1;
            last_term = e.term;
        }
        let last_index = expected - 1;
        // A batch torn by a crash can leave the hard state and the entries of one
        // `Ready` out of step. Nothing of that `Ready` was sent (messages wait for the
        // sync), so the node may forget it: commit is relearned from the leader, and a
        // term that only the entries reached carries no vote.
        let mut hard_state = hard_state;
        if hard_state.commit > last_index {
            warn!(
                id = cfg.id,
                commit = hard_state.commit,
                last_index,
                "commit beyond the log, lowered"
            );
            hard_state.commit = last_index;
        }
        if hard_state.term < last_term {
            warn!(
                id = cfg.id,
                term = hard_state.term,
                last_term,
                "term below the log's, raised"
            );
            hard_state.term = last_term;
            hard_state.vote = NODE_NONE;
        }
        let commit = hard_state.commit.max(snap_index);
        if applied < snap_index || applied > commit {
            return Err(RaftError::Corrupt(format!(
                "applied {applied} outside [{snap_index}, {commit}]"
            )));
        }
        #[allow(unused_mut)]
        let mut vote = hard_state.vote;
        #[cfg(any(test, madsim))]
        if cfg.bugs.forget_vote_on_restart {
            vote = NODE_NONE;
        }
        let log = RaftLog::new(snapshot, entries, commit, applied);
        let raft = Raft::new(cfg, hard_state.term, vote, log);
        let prev_hard = HardState {
            term: hard_state.term,
            vote,
            commit,
        };
        Ok(RawNode {
            prev_soft: SoftState {
                leader: raft.leader,
                role: raft.role,
            },
            raft,
            prev_hard,
            handed: None,
        })
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Feeds a message from a peer. Messages from older terms are answered or dropped.
    pub fn step(&mut self, m: Message) -> Result<(), RaftError> {
        self.raft.step(m)
    }

    /// Starts an election now (with PreVote when configured).
    pub fn campaign(&mut self) {
        self.raft.hup(false);
    }

    /// Proposes application data; returns the log index it got (leader only).
    pub fn propose(&mut self, data: Vec<u8>) -> Result<u64, RaftError> {
        self.raft.propose(data)
    }

    /// Proposes a one-node membership change; returns its log index (leader only).
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<u64, RaftError> {
        self.raft.propose_conf_change(change)
    }

    /// Requests a linearizable read; the answer comes as a `ReadState` with `ctx`.
    ///
    /// The leader confirms it still leads through the answers to any of its messages
    /// that leave after the read arrived (appends, snapshots and heartbeats carry the
    /// read's stamp, and answers echo it). It sends no heartbeat for the read itself:
    /// the driver calls [`RawNode::send_read_heartbeats`] when
    /// [`RawNode::read_heartbeats_due`] says some voter has no such message on the way,
    /// at once or after a short hold-back in which appends may go out anyway. Without
    /// that call the read waits for the next append or tick heartbeat.
    pub fn read_index(&mut self, ctx: Vec<u8>) -> Result<(), RaftError> {
        self.raft.read_index(ctx)
    }

    /// Whether this leader holds a read that some voter has not been sent (or queued) a
    /// message for since the read arrived.
    pub fn read_heartbeats_due(&self) -> bool {
        self.raft.read_heartbeats_due()
    }

    /// Sends a heartbeat to each voter that `read_heartbeats_due` is waiting on.
    pub fn send_read_heartbeats(&mut self) {
        self.raft.send_read_heartbeats();
    }

    /// Whether this leader has entries not yet committed: their commit will send an
    /// append to every follower soon, which a pending read can ride on.
    pub fn commit_pending(&self) -> bool {
        let log = &self.raft.log;
        self.raft.role == Role::Leader && log.last_index() > log.committed()
    }

    /// Starts handing leadership to `to` (leader only).
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), RaftError> {
        self.raft.transfer_leader(to)
    }

    /// Tells the leader a snapshot to `to` failed to arrive, so it probes again.
    pub fn report_snapshot_failure(&mut self, to: NodeId) {
        if let Some(pr) = self.raft.progress.get_mut(&to)
            && pr.state == ProgressState::Snapshot
        {
            pr.become_probe();
        }
    }

    /// The transport could not reach `to`: stop streaming to it and probe instead.
    pub fn report_unreachable(&mut self, to: NodeId) {
        if let Some(pr) = self.raft.progress.get_mut(&to)
            && pr.state == ProgressState::Replicate
        {
            pr.become_probe();
        }
    }

    /// The application took a snapshot at `index` (applied and persisted): drop the log
    /// up to it and keep `data` to send to followers that fall behind.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> Result<(), RaftError> {
        let log = &self.raft.log;
        let lo = log.snapshot_meta().index;
        let hi = log.applied().min(log.stable_to());
        if index <= lo || index > hi {
            return Err(RaftError::CompactOutOfRange {
                index,
                lo: lo + 1,
                hi,
            });
        }
        self.raft.log.compact(index, data);
        Ok(())
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            leader: self.raft.leader,
            role: self.raft.role,
        }
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.raft.term,
            vote: self.raft.vote,
            commit: self.raft.log.committed(),
        }
    }

    /// Whether `ready()` has anything to hand out.
    pub fn has_ready(&self) -> bool {
        let log = &self.raft.log;
        self.soft_state() != self.prev_soft
            || self.hard_state() != self.prev_hard
            || !log.unstable_entries().is_empty()
            || log.unstable_snapshot().is_some()
            || !self.raft.msgs.is_empty()
            || !self.raft.read_states_out.is_empty()
            || log.committed() > log.applied().max(log.snapshot_meta().index)
    }

    /// Hands out the next batch of work. Call `advance()` when it is done.
    pub fn ready(&mut self) -> Ready {
        assert!(
            self.handed.is_none(),
            "ready() called twice without advance()"
        );
        let soft = self.soft_state();
        let hard = self.hard_state();
        let prev = self.prev_hard;
        assert!(
            hard.term >= prev.term,
            "term went back from {} to {}",
            prev.term,
            hard.term
        );
        assert!(
            hard.commit >= prev.commit,
            "commit went back from {} to {}",
            prev.commit,
            hard.commit
        );
        assert!(
            hard.term != prev.term || prev.vote == NODE_NONE || hard.vote == prev.vote,
            "vote changed from {} to {} within term {}",
            prev.vote,
            hard.vote,
            hard.term
        );
        self.raft.stamp_reads();
        let log = &self.raft.log;
        let entries = log.unstable_entries().to_vec();
        let snapshot = log.unstable_snapshot().cloned();
        let committed_entries = log.next_committed_entries(self.raft.cfg.apply_bytes_max_per_ready);
        let rd = Ready {
            soft_state: (soft != self.prev_soft).then_some(soft),
            hard_state: (hard != self.prev_hard).then_some(hard),
            messages: std::mem::take(&mut self.raft.msgs),
            read_states: std::mem::take(&mut self.raft.read_states_out),
            entries,
            snapshot,
            committed_entries,
        };
        self.prev_soft = soft;
        self.prev_hard = hard;
        self.handed = Some(Handed {
            last_entry: rd.entries.last().map(|e| (e.index, e.term)),
            snapshot_index: rd.snapshot.as_ref().map(|s| s.meta.index),
            committed_conf: rd
                .committed_entries
                .iter()
                .filter(|e| e.kind == EntryKind::ConfChange)
                .cloned()
                .collect(),
            committed_last: rd.committed_entries.last().map(|e| e.index),
        });
        rd
    }

    /// Acknowledges the last `Ready`: its state is persisted, its messages sent and its
    /// committed entries applied. (Membership changes took effect when appended; a leader
    /// that removed itself starts handing over here, once its removal is applied.)
    pub fn advance(&mut self) {
        let Some(handed) = self.handed.take() else {
            return;
        };
        if let Some(index) = handed.snapshot_index {
            self.raft.log.stable_snapshot_to(index);
            self.raft.log.applied_to(index);
        }
        if let Some((index, term)) = handed.last_entry {
            self.raft.log.stable_entries_to(index, term);
        }
        for e in &handed.committed_conf {
            self.raft.apply_conf_change(e);
            self.raft.log.applied_to(e.index);
        }
        if let Some(last) = handed.committed_last {
            self.raft.log.applied_to(last);
        }
    }

    /// A summary of the node.
    pub fn status(&self) -> Status {
        let r = &self.raft;
        Status {
            id: r.id,
            term: r.term,
            vote: r.vote,
            role: r.role,
            leader: r.leader,
            commit: r.log.committed(),
            applied: r.log.applied(),
            last_index: r.log.last_index(),
            snapshot_index: r.log.snapshot_meta().index,
            conf_state: r.log.conf_state().clone(),
            progress: r
                .progress
                .iter()
                .map(|(id, p)| (*id, (p.matched, p.next, p.state)))
                .collect(),
        }
    }

    /// [`Status`]'s scalar fields, without copying membership or progress.
    pub fn brief(&self) -> Brief {
        let r = &self.raft;
        Brief {
            term: r.term,
            vote: r.vote,
            role: r.role,
            leader: r.leader,
            commit: r.log.committed(),
            applied: r.log.applied(),
        }
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.raft.term
    }

    /// The in-memory log (for inspection by tests and tools).
    pub fn log(&self) -> &RaftLog {
        &self.raft.log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: Vec::new(),
        }
    }

    fn state(term: u64, commit: u64, entries: Vec<Entry>, applied: u64) -> RestartState {
        RestartState {
            hard_state: HardState {
                term,
                vote: 2,
                commit,
            },
            snapshot: Snapshot::default(),
            entries,
            applied,
        }
    }

    #[test]
    fn restart_refuses_gaps_and_impossible_applied_index() {
        let gap = state(2, 1, vec![ent(1, 1), ent(3, 1)], 0);
        assert!(matches!(
            RawNode::restart(Config::new(1), gap),
            Err(RaftError::Corrupt(_))
        ));
        let falling = state(2, 1, vec![ent(1, 2), ent(2, 1)], 0);
        assert!(matches!(
            RawNode::restart(Config::new(1), falling),
            Err(RaftError::Corrupt(_))
        ));
        let applied_ahead = state(2, 1, vec![ent(1, 1), ent(2, 1)], 2);
        assert!(matches!(
            RawNode::restart(Config::new(1), applied_ahead),
            Err(RaftError::Corrupt(_))
        ));
    }

    #[test]
    fn restart_repairs_a_torn_last_batch() {
        let node = RawNode::restart(Config::new(1), state(1, 5, vec![ent(1, 1), ent(2, 3)], 0))
            .expect("repairable");
        let s = node.status();
        assert_eq!((s.term, s.vote, s.commit), (3, NODE_NONE, 2));
        let node = RawNode::restart(Config::new(1), state(4, 1, vec![ent(1, 1), ent(2, 3)], 1))
            .expect("consistent");
        let s = node.status();
        assert_eq!((s.term, s.vote, s.commit, s.applied), (4, 2, 1, 1));
    }

    #[test]
    fn a_single_voter_elects_itself_and_commits_without_messages() {
        let mut node = RawNode::new(Config::new(7), ConfState::with_voters([7])).expect("valid");
        let rd = node.ready();
        assert_eq!(
            rd.committed_entries.len(),
            1,
            "bootstrap membership is applied first"
        );
        node.advance();
        node.campaign();
        let index = node.propose(b"x".to_vec()).expect("leader");
        let rd = node.ready();
        assert!(rd.messages.is_empty());
        assert_eq!(rd.soft_state.map(|s| s.role), Some(Role::Leader));
        assert_eq!(rd.committed_entries.last().map(|e| e.index), Some(index));
        node.advance();
        assert!(!node.has_ready());
        let (s, b) = (node.status(), node.brief());
        assert_eq!(
            (b.term, b.vote, b.role, b.leader, b.commit, b.applied),
            (s.term, s.vote, s.role, s.leader, s.commit, s.applied)
        );
        assert_eq!((b.role, b.leader, b.applied), (Role::Leader, 7, index));
    }
}
