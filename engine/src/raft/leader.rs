//! The leader side of the protocol: becoming leader, replication (batched Appends within
//! each follower's in-flight window, snapshots for followers that fell behind the
//! compacted log), commit by quorum of current-term entries, CheckQuorum, proposals,
//! membership changes, ReadIndex and leadership transfer.
//!
//! Membership changes go one node at a time and take effect when appended (each node
//! uses the latest membership in its log). A leader accepts a new change only once the
//! previous one is committed and an entry of its own term is committed; a leader that
//! removes itself keeps leading just long enough to hand over (see
//! `hand_over_after_removal`).

use tracing::{debug, error, warn};

use super::RaftError;
use super::core::Raft;
use super::progress::{Progress, ProgressState, SNAPSHOT_RETRY_HEARTBEATS};
use super::types::{ConfChange, Entry, EntryKind, Message, MessageKind, NODE_NONE, NodeId, Role};

impl Raft {
    pub(crate) fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            Role::Candidate,
            "only a candidate becomes leader"
        );
        let term = self.term;
        // Same term: this clears per-role state but keeps the vote.
        self.become_follower(term, NODE_NONE);
        self.role = Role::Leader;
        self.leader = self.id;
        let next = self.log.last_index() + 1;
        self.sync_progress();
        if let Some(me) = self.progress.get_mut(&self.id) {
            me.matched = next - 1;
            me.become_replicate();
        }
        debug!(id = self.id, term, "became leader");
        // A no-op of the new term lets earlier entries commit and unlocks ReadIndex.
        self.append_and_broadcast(vec![(EntryKind::Normal, Vec::new())]);
    }

    pub(crate) fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.cfg.election_ticks {
            self.election_elapsed = 0;
            if self.cfg.check_quorum {
                let quorum = self.log.conf_state().quorum();
                let active = self
                    .log
                    .conf_state()
                    .voters
                    .iter()
                    .filter(|&&v| {
                        v == self.id || self.progress.get(&v).is_some_and(|p| p.recent_active)
                    })
                    .count();
                if active < quorum {
                    debug!(
                        id = self.id,
                        term = self.term,
                        "stepping down: quorum not heard from"
                    );
                    self.become_follower(self.term, NODE_NONE);
                    return;
                }
                let me = self.id;
                for (id, pr) in self.progress.iter_mut() {
                    pr.recent_active = *id == me;
                }
            }
            if self.transferee != NODE_NONE {
                debug!(
                    id = self.id,
                    to = self.transferee,
                    "leadership transfer timed out"
                );
                self.transferee = NODE_NONE;
            }
            if !self.promotable() && self.log.committed() >= self.log.last_conf_index() {
                debug!(id = self.id, "removed leader stepping down");
                self.become_follower(self.term, NODE_NONE);
                return;
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            for pr in self.progress.values_mut() {
                pr.resend_due = true;
            }
            self.broadcast_heartbeat();
        }
    }

    fn peers(&self) -> Vec<NodeId> {
        self.progress
            .keys()
            .copied()
            .filter(|&id| id != self.id)
            .collect()
    }

    fn broadcast_heartbeat(&mut self) {
        for to in self.peers() {
            self.send_heartbeat(to);
        }
    }

    /// A heartbeat to `to` (its read stamp is set as it leaves, in `stamp_reads`).
    fn send_heartbeat(&mut self, to: NodeId) {
        let matched = self.progress.get(&to).map_or(0, |p| p.matched);
        let mut m = Message::new(MessageKind::Heartbeat, self.id, to, self.term);
        m.commit = matched.min(self.log.committed());
        self.send(m);
    }

    /// Stamps every queued message of this leader's term to a voter with the newest
    /// read's sequence number. Called as the messages are handed to the driver, which
    /// sends them only afterwards: each leaves after every read registered so far
    /// arrived, so an answer in this term echoing the number confirms those reads.
    /// (Learners' answers count for no quorum, so their messages stay unstamped and
    /// they need not answer for a stamp.)
    pub(crate) fn stamp_reads(&mut self) {
        if self.role != Role::Leader || self.reads.last_seq() == 0 {
            return;
        }
        let term = self.term;
        let voters = &self.log.conf_state().voters;
        for m in self.msgs.iter_mut() {
            if stampable(m, term) && voters.contains(&m.to) {
                m.read_seq = self.reads.stamp(m.to);
            }
        }
    }

    /// Whether voter `v` (not this leader) was sent or queued no message carrying the
    /// newest pending read's stamp: the read may need its answer.
    fn read_needs_heartbeat(&self, v: NodeId) -> bool {
        v != self.id
            && self.reads.unsent_to(v)
            && !self
                .msgs
                .iter()
                .any(|m| m.to == v && stampable(m, self.term))
    }

    /// Whether some voter needs a heartbeat for a pending read (see
    /// `read_needs_heartbeat`).
    pub(crate) fn read_heartbeats_due(&self) -> bool {
        self.role == Role::Leader
            && self
                .log
                .conf_state()
                .voters
                .iter()
                .any(|&v| self.read_needs_heartbeat(v))
    }

    /// Sends a heartbeat to each voter a pending read needs one for.
    pub(crate) fn send_read_heartbeats(&mut self) {
        if !self.read_heartbeats_due() {
            return;
        }
        let targets: Vec<NodeId> = self
            .log
            .conf_state()
            .voters
            .iter()
            .copied()
            .filter(|&v| self.read_needs_heartbeat(v))
            .collect();
        for to in targets {
            self.send_heartbeat(to);
        }
    }

    fn broadcast_append(&mut self) {
        for to in self.peers() {
            self.maybe_send_append(to, true);
        }
    }

    /// Sends `to` the next batch of entries (or a snapshot if they are compacted).
    /// Returns whether anything was sent.
    pub(crate) fn maybe_send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let inflight_max = self.cfg.inflight_msgs_max;
        let Some(pr) = self.progress.get(&to) else {
            return false;
        };
        if pr.is_paused(inflight_max) {
            return false;
        }
        let next = pr.next;
        let prev = next - 1;
        let prev_term = self.log.term(prev);
        let entries = self.log.slice(
            next,
            self.log.last_index(),
            self.cfg.append_entries_max,
            self.cfg.append_bytes_max,
        );
        let (Some(prev_term), Some(entries)) = (prev_term, entries) else {
            let snapshot = self.log.snapshot().clone();
            let index = snapshot.meta.index;
            debug!(id = self.id, to, index, "sending snapshot");
            let mut m = Message::new(MessageKind::Snapshot, self.id, to, self.term);
            m.snapshot = Some(Box::new(snapshot));
            self.send(m);
            if let Some(pr) = self.progress.get_mut(&to) {
                pr.become_snapshot(index);
            }
            return true;
        };
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let last = entries.last().map_or(prev, |e| e.index);
        let sent_entries = !entries.is_empty();
        let mut m = Message::new(MessageKind::Append, self.id, to, self.term);
        m.index = prev;
        m.log_term = prev_term;
        m.entries = entries;
        m.commit = self.log.committed();
        self.send(m);
        if let Some(pr) = self.progress.get_mut(&to) {
            pr.sent_append(last, sent_entries);
        }
        true
    }

    /// Appends new entries of this term and starts replicating them.
    fn append_and_broadcast(&mut self, items: Vec<(EntryKind, Vec<u8>)>) -> u64 {
        let mut index = self.log.last_index();
        let entries: Vec<Entry> = items
            .into_iter()
            .map(|(kind, data)| {
                index += 1;
                Entry {
                    term: self.term,
                    index,
                    kind,
                    data,
                }
            })
            .collect();
        let changes_membership = entries.iter().any(|e| e.kind == EntryKind::ConfChange);
        self.log.append(entries);
        if changes_membership {
            self.sync_progress();
        }
        if let Some(me) = self.progress.get_mut(&self.id) {
            me.maybe_update(index);
        }
        self.maybe_commit();
        self.broadcast_append();
        index
    }

    /// Raises the commit index to what a quorum of voters holds, if that entry is from
    /// this term. Returns whether it moved.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        let mut matched: Vec<u64> = self
            .log
            .conf_state()
            .voters
            .iter()
            .map(|v| self.progress.get(v).map_or(0, |p| p.matched))
            .collect();
        if matched.is_empty() {
            return false;
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matched[self.log.conf_state().quorum() - 1];
        if candidate <= self.log.committed() {
            return false;
        }
        #[allow(unused_mut)]
        let mut allowed = self.log.term(candidate) == Some(self.term);
        #[cfg(any(test, madsim))]
        if self.cfg.bugs.commit_earlier_term_by_count {
            allowed = true;
        }
        if !allowed {
            return false;
        }
        self.log.commit_to(candidate);
        if self.log.term(self.log.committed()) == Some(self.term)
            && self.reads.release_waiting(self.log.committed())
        {
            self.after_read_registered();
        }
        true
    }

    pub(crate) fn step_leader(&mut self, m: Message) {
        match m.kind {
            MessageKind::AppendResp => {
                let (from, seq) = (m.from, m.read_seq);
                self.handle_append_resp(m);
                self.read_echoed(from, seq);
            }
            MessageKind::HeartbeatResp => {
                let (from, seq) = (m.from, m.read_seq);
                self.handle_heartbeat_resp(m);
                self.read_echoed(from, seq);
            }
            MessageKind::Append | MessageKind::Heartbeat | MessageKind::Snapshot => {
                error!(
                    id = self.id,
                    from = m.from,
                    term = self.term,
                    "another leader in my term"
                );
            }
            _ => {}
        }
    }

    fn handle_append_resp(&mut self, m: Message) {
        let inflight_max = self.cfg.inflight_msgs_max;
        let last_index = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&m.from) else {
            return;
        };
        pr.recent_active = true;
        if m.reject {
            if pr.maybe_decr_to(m.index, m.reject_hint) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.maybe_send_append(m.from, true);
            }
            return;
        }
        let was_paused = pr.is_paused(inflight_max);
        if !pr.maybe_update(m.index) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot if pr.matched >= pr.pending_snapshot => pr.become_replicate(),
            _ => {}
        }
        let matched = pr.matched;
        if self.maybe_commit() {
            self.broadcast_append();
        } else if was_paused {
            self.maybe_send_append(m.from, true);
        }
        while self.maybe_send_append(m.from, false) {}
        if m.from == self.transferee && matched == last_index {
            debug!(
                id = self.id,
                to = m.from,
                "transferee caught up, sending TimeoutNow"
            );
            self.send(Message::new(
                MessageKind::TimeoutNow,
                self.id,
                m.from,
                self.term,
            ));
        }
    }

    fn handle_heartbeat_resp(&mut self, m: Message) {
        let inflight_max = self.cfg.inflight_msgs_max;
        let last_index = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&m.from) else {
            return;
        };
        pr.recent_active = true;
        pr.probe_sent = false;
        // A follower behind the log with appends in flight is sent one more append (an
        // empty one when everything is in flight: it resends nothing, but a follower
        // that lost an append rejects it, which rewinds `next`) only on the first answer
        // after a periodic heartbeat. Answers to the heartbeats that confirm reads come
        // as often as reads and would each send it while the entries are merely on the
        // way; in flight, they are answered anyway.
        let mut resend = pr.state != ProgressState::Replicate
            || pr.inflights.is_empty()
            || std::mem::take(&mut pr.resend_due);
        match pr.state {
            ProgressState::Replicate if pr.inflights.len() >= inflight_max => {
                pr.inflights.pop_front();
                resend = true;
            }
            ProgressState::Snapshot => {
                pr.snapshot_heartbeats += 1;
                if pr.snapshot_heartbeats >= SNAPSHOT_RETRY_HEARTBEATS {
                    warn!(
                        id = self.id,
                        to = m.from,
                        "no news of snapshot, probing again"
                    );
                    pr.become_probe();
                }
            }
            _ => {}
        }
        if pr.matched < last_index && resend {
            self.maybe_send_append(m.from, true);
        }
    }

    /// An answer of this term from `from` echoed read stamp `seq` (accepted or rejected
    /// appends, snapshots and heartbeats alike: each was sent by this leader in this
    /// term, and the answer shows `from` still followed it after the stamp left).
    fn read_echoed(&mut self, from: NodeId, seq: u64) {
        #[cfg(any(test, madsim))]
        let seq = if self.cfg.bugs.read_ignore_stamps {
            self.reads.last_seq()
        } else {
            seq
        };
        if self.role == Role::Leader && self.reads.ack(from, seq) {
            self.collect_reads();
        }
    }

    fn collect_reads(&mut self) {
        let quorum = self.log.conf_state().quorum();
        let ready = self
            .reads
            .confirmed(self.id, &self.log.conf_state().voters, quorum);
        self.read_states_out.extend(ready);
    }

    /// After registering reads: confirm at once when this node is the only voter.
    /// Otherwise the confirmation rides on the next messages to the voters; the driver
    /// sends heartbeats to those no message reaches (`send_read_heartbeats`).
    fn after_read_registered(&mut self) {
        self.collect_reads();
    }

    /// A client proposal. Returns the index the entry got.
    pub(crate) fn propose(&mut self, data: Vec<u8>) -> Result<u64, RaftError> {
        self.check_can_propose()?;
        Ok(self.append_and_broadcast(vec![(EntryKind::Normal, data)]))
    }

    fn check_can_propose(&self) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader {
                leader: self.leader,
            });
        }
        if self.transferee != NODE_NONE {
            return Err(RaftError::ProposalDropped(
                "leadership transfer in progress",
            ));
        }
        let uncommitted = self.log.last_index() - self.log.committed();
        if uncommitted >= self.cfg.uncommitted_entries_max as u64 {
            return Err(RaftError::ProposalDropped("too many uncommitted entries"));
        }
        Ok(())
    }

    /// A membership change proposal (one node at a time). It takes effect as soon as it
    /// is appended, so the next one waits until it is committed; and a new leader
    /// first commits an entry of its own term, so a change it inherited uncommitted
    /// cannot overlap with its own.
    pub(crate) fn propose_conf_change(&mut self, change: ConfChange) -> Result<u64, RaftError> {
        self.check_can_propose()?;
        let pending_index = self.log.last_conf_index();
        if pending_index > self.log.committed() {
            return Err(RaftError::ConfChangePending { pending_index });
        }
        if self.log.term(self.log.committed()) != Some(self.term) {
            return Err(RaftError::ConfChangePending {
                pending_index: self.log.last_index(),
            });
        }
        if change.node_id == NODE_NONE {
            return Err(RaftError::InvalidConfChange("node id 0"));
        }
        if self.log.conf_state().applied(&change).voters.is_empty() {
            return Err(RaftError::InvalidConfChange("would leave no voters"));
        }
        let data = postcard::to_allocvec(&change)
            .map_err(|_| RaftError::InvalidConfChange("cannot encode"))?;
        let index = self.append_and_broadcast(vec![(EntryKind::ConfChange, data)]);
        Ok(index)
    }

    /// Brings the leader's progress map in line with the membership in its log.
    fn sync_progress(&mut self) {
        let next = self.log.last_index() + 1;
        let conf = self.log.conf_state().clone();
        self.progress.retain(|id, _| conf.contains(*id));
        for id in conf.voters.iter().chain(conf.learners.iter()) {
            self.progress.entry(*id).or_insert_with(|| {
                let mut pr = Progress::new(next);
                pr.recent_active = true;
                pr
            });
        }
        if !conf.voters.contains(&self.transferee) {
            self.transferee = NODE_NONE;
        }
    }

    /// The driver applied a membership change entry. The change is already in force
    /// (since it was appended); what remains is a removed leader handing over.
    pub(crate) fn apply_conf_change(&mut self, entry: &Entry) {
        debug!(
            id = self.id,
            index = entry.index,
            "membership change applied"
        );
        if self.role == Role::Leader
            && !self.promotable()
            && entry.index == self.log.last_conf_index()
        {
            self.hand_over_after_removal();
        }
    }

    /// This leader is no longer a voter. It keeps leading (not counting itself) only
    /// to bring the most up-to-date remaining voter level and hand it leadership; if
    /// that does not happen within an election timeout it steps down. Stepping down at
    /// once could leave the remaining voters unable to elect anyone: a voter that has
    /// not learned that the removal is committed still needs this node's vote, which
    /// its shorter log would not get.
    fn hand_over_after_removal(&mut self) {
        let target = self
            .log
            .conf_state()
            .voters
            .iter()
            .map(|v| (self.progress.get(v).map_or(0, |p| p.matched), *v))
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(_, v)| v);
        let Some(target) = target else {
            self.become_follower(self.term, NODE_NONE);
            return;
        };
        debug!(
            id = self.id,
            to = target,
            "removed from the voters, handing over leadership"
        );
        self.maybe_commit();
        self.broadcast_append();
        self.transferee = NODE_NONE;
        if self.transfer_leader(target).is_err() {
            self.become_follower(self.term, NODE_NONE);
        }
    }

    /// Starts handing leadership to `to`.
    pub(crate) fn transfer_leader(&mut self, to: NodeId) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader {
                leader: self.leader,
            });
        }
        if to == self.id || to == self.transferee {
            return Ok(());
        }
        if !self.log.conf_state().voters.contains(&to) {
            return Err(RaftError::InvalidTransferee(to));
        }
        self.transferee = to;
        self.election_elapsed = 0;
        let caught_up = self
            .progress
            .get(&to)
            .is_some_and(|p| p.matched == self.log.last_index());
        if caught_up {
            self.send(Message::new(
                MessageKind::TimeoutNow,
                self.id,
                to,
                self.term,
            ));
        } else {
            self.maybe_send_append(to, true);
        }
        Ok(())
    }

    /// A linearizable read request identified by `ctx`.
    pub(crate) fn read_index(&mut self, ctx: Vec<u8>) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader {
                leader: self.leader,
            });
        }
        if self.reads.len() >= super::read_index::READS_PENDING_MAX {
            return Err(RaftError::ProposalDropped("too many pending reads"));
        }
        if self.log.term(self.log.committed()) != Some(self.term) {
            self.reads.wait(ctx);
            return Ok(());
        }
        #[cfg(any(test, madsim))]
        if self.cfg.bugs.read_without_quorum_check {
            let index = self.log.committed();
            self.read_states_out
                .push(super::types::ReadState { index, ctx });
            return Ok(());
        }
        self.reads.register(ctx, self.log.committed());
        self.after_read_registered();
        Ok(())
    }
}

/// Whether `m` is a message of this leader in `term` that a follower answers, and so can
/// carry a read stamp.
fn stampable(m: &Message, term: u64) -> bool {
    m.term == term
        && matches!(
            m.kind,
            MessageKind::Append | MessageKind::Heartbeat | MessageKind::Snapshot
        )
}
