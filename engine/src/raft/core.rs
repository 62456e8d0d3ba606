//! The Raft state machine itself: roles, terms, votes, ticks, and the follower and
//! candidate sides of the protocol. The leader side lives in `leader.rs`.
//!
//! It only mutates memory and queues outgoing messages; `RawNode` turns that into a
//! `Ready`. It never reads a clock (ticks come from the driver) and draws randomness
//! only from its seeded generator.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracing::{debug, trace};

use super::RaftError;
use super::config::Config;
use super::log::RaftLog;
use super::progress::Progress;
use super::read_index::ReadQueue;
use super::types::{Message, MessageKind, NODE_NONE, NodeId, ReadState, Role};

/// One node's protocol state.
#[derive(Debug)]
pub(crate) struct Raft {
    pub(crate) cfg: Config,
    pub(crate) id: NodeId,
    pub(crate) term: u64,
    pub(crate) vote: NodeId,
    pub(crate) log: RaftLog,
    pub(crate) role: Role,
    pub(crate) leader: NodeId,
    /// Leader only: one entry per voter and learner, including this node.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    /// Votes received in the current (pre-)campaign.
    votes: BTreeMap<NodeId, bool>,
    /// Messages queued for the next `Ready`.
    pub(crate) msgs: Vec<Message>,
    pub(crate) election_elapsed: u32,
    pub(crate) heartbeat_elapsed: u32,
    randomized_election_ticks: u32,
    rng: ChaCha8Rng,
    /// Leader only: the node leadership is being handed to, or `NODE_NONE`.
    pub(crate) transferee: NodeId,
    /// Leader only: ReadIndex requests in progress.
    pub(crate) reads: ReadQueue,
    /// Confirmed reads queued for the next `Ready`.
    pub(crate) read_states_out: Vec<ReadState>,
    /// Follower only: the highest index this node told the current term's leader it
    /// holds (0 after a term change or a restart).
    acked_index: u64,
    /// Follower only: the highest read stamp this node echoed to the current term's
    /// leader (0 after a term change or a restart).
    echoed_read_seq: u64,
}

impl Raft {
    /// A follower at `term` with `vote`, over `log` (which also holds the membership).
    pub(crate) fn new(cfg: Config, term: u64, vote: NodeId, log: RaftLog) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut raft = Raft {
            id: cfg.id,
            cfg,
            term,
            vote,
            log,
            role: Role::Follower,
            leader: NODE_NONE,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            msgs: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_ticks: 0,
            rng,
            transferee: NODE_NONE,
            reads: ReadQueue::default(),
            read_states_out: Vec::new(),
            acked_index: 0,
            echoed_read_seq: 0,
        };
        raft.reset_timers();
        raft
    }

    /// Whether this node is a voter in the latest membership in its log.
    pub(crate) fn promotable(&self) -> bool {
        self.log.conf_state().voters.contains(&self.id)
    }

    /// Whether this node may start an election: it is a voter in its latest membership
    /// or in its latest committed one. The second case matters when the latest entry
    /// removes this node but is not committed yet: the remaining voters may still need
    /// this node, whose log is longer than theirs, to lead (votes are always counted by
    /// the candidate's latest membership, so this is safe).
    pub(crate) fn may_campaign(&self) -> bool {
        self.promotable()
            || self
                .log
                .conf_state_at(self.log.committed())
                .voters
                .contains(&self.id)
    }

    pub(crate) fn send(&mut self, mut m: Message) {
        m.from = self.id;
        trace!(id = self.id, ?m.kind, to = m.to, term = m.term, "send");
        self.msgs.push(m);
    }

    fn reset_timers(&mut self) {
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let base = self.cfg.election_ticks;
        self.randomized_election_ticks = self.rng.random_range(base..2 * base);
    }

    /// Common part of every role change: new term (forgetting the vote), fresh timers,
    /// no leader-only state.
    fn reset(&mut self, term: u64) {
        if term != self.term {
            assert!(
                term > self.term,
                "term must never decrease ({} -> {term})",
                self.term
            );
            self.term = term;
            self.vote = NODE_NONE;
            self.acked_index = 0;
            self.echoed_read_seq = 0;
        }
        self.leader = NODE_NONE;
        self.reset_timers();
        self.votes.clear();
        self.progress.clear();
        self.transferee = NODE_NONE;
        self.reads = ReadQueue::default();
    }

    pub(crate) fn become_follower(&mut self, term: u64, leader: NodeId) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
        debug!(id = self.id, term, leader, "became follower");
    }

    fn become_pre_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader never pre-campaigns");
        // The term and vote stay: a pre-vote changes nothing durable.
        self.role = Role::PreCandidate;
        self.votes.clear();
        self.leader = NODE_NONE;
        debug!(id = self.id, term = self.term, "became pre-candidate");
    }

    fn become_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader never campaigns");
        self.reset(self.term + 1);
        self.vote = self.id;
        self.role = Role::Candidate;
        debug!(id = self.id, term = self.term, "became candidate");
    }

    /// Election timer or `campaign()`: start an election if allowed.
    pub(crate) fn hup(&mut self, transfer: bool) {
        if self.role == Role::Leader || !self.may_campaign() {
            return;
        }
        self.campaign(!transfer && self.cfg.pre_vote, transfer);
    }

    fn campaign(&mut self, pre: bool, transfer: bool) {
        let (kind, vote_term) = if pre {
            self.become_pre_candidate();
            (MessageKind::PreVote, self.term + 1)
        } else {
            self.become_candidate();
            (MessageKind::Vote, self.term)
        };
        if self.record_vote(self.id, true) {
            return;
        }
        let voters: Vec<NodeId> = self
            .log
            .conf_state()
            .voters
            .iter()
            .copied()
            .filter(|&v| v != self.id)
            .collect();
        for to in voters {
            let mut m = Message::new(kind, self.id, to, vote_term);
            m.index = self.log.last_index();
            m.log_term = self.log.last_term();
            m.transfer = transfer;
            self.send(m);
        }
    }

    /// Records a vote answer; returns true if the campaign was decided by it.
    fn record_vote(&mut self, from: NodeId, granted: bool) -> bool {
        self.votes.entry(from).or_insert(granted);
        let quorum = self.log.conf_state().quorum();
        let yes = self
            .log
            .conf_state()
            .voters
            .iter()
            .filter(|v| self.votes.get(v) == Some(&true))
            .count();
        let no = self
            .log
            .conf_state()
            .voters
            .iter()
            .filter(|v| self.votes.get(v) == Some(&false))
            .count();
        if yes >= quorum {
            if self.role == Role::PreCandidate {
                self.campaign(false, false);
            } else {
                self.become_leader();
            }
            true
        } else if no >= quorum {
            self.become_follower(self.term, NODE_NONE);
            true
        } else {
            false
        }
    }

    /// One tick of the driver's clock.
    pub(crate) fn tick(&mut self) {
        if self.role == Role::Leader {
            self.tick_leader();
            return;
        }
        self.election_elapsed += 1;
        if self.may_campaign() && self.election_elapsed >= self.randomized_election_ticks {
            self.election_elapsed = 0;
            self.hup(false);
        }
    }

    /// Whether this node heard from a leader recently enough to refuse disruptions.
    fn in_leader_lease(&self) -> bool {
        self.cfg.check_quorum
            && self.leader != NODE_NONE
            && self.election_elapsed < self.cfg.election_ticks
    }

    /// Feeds one message from a peer.
    pub(crate) fn step(&mut self, m: Message) -> Result<(), RaftError> {
        if m.to != self.id || m.from == NODE_NONE || m.from == self.id {
            return Err(RaftError::Misaddressed {
                from: m.from,
                to: m.to,
                id: self.id,
            });
        }
        let is_vote_req = matches!(m.kind, MessageKind::PreVote | MessageKind::Vote);
        if m.term > self.term {
            if is_vote_req && !m.transfer && self.in_leader_lease() {
                debug!(
                    id = self.id,
                    from = m.from,
                    "ignoring vote request inside leader lease"
                );
                return Ok(());
            }
            match m.kind {
                MessageKind::PreVote => {}
                MessageKind::PreVoteResp if !m.reject => {}
                MessageKind::Append | MessageKind::Heartbeat | MessageKind::Snapshot => {
                    self.become_follower(m.term, m.from)
                }
                _ => self.become_follower(m.term, NODE_NONE),
            }
        } else if m.term < self.term {
            if matches!(m.kind, MessageKind::Append | MessageKind::Heartbeat) {
                // Tell a stale leader about the newer term so it steps down. Always, not
                // only with PreVote/CheckQuorum: a node whose membership is out of date
                // may send its vote requests to nodes other than the leader, and would
                // otherwise never be heard.
                let to = m.from;
                self.send(Message::new(
                    MessageKind::AppendResp,
                    self.id,
                    to,
                    self.term,
                ));
            } else if m.kind == MessageKind::PreVote {
                let mut resp = Message::new(MessageKind::PreVoteResp, self.id, m.from, self.term);
                resp.reject = true;
                self.send(resp);
            }
            return Ok(());
        }
        if is_vote_req {
            self.handle_vote_request(m);
            return Ok(());
        }
        match self.role {
            Role::Leader => self.step_leader(m),
            Role::PreCandidate | Role::Candidate => self.step_candidate(m),
            Role::Follower => self.step_follower(m),
        }
        Ok(())
    }

    fn handle_vote_request(&mut self, m: Message) {
        let pre = m.kind == MessageKind::PreVote;
        #[allow(unused_mut)]
        let mut can_vote = self.vote == m.from
            || (self.vote == NODE_NONE && self.leader == NODE_NONE)
            || (pre && m.term > self.term);
        #[cfg(any(test, madsim))]
        if self.cfg.bugs.vote_twice_in_term && !pre && self.leader == NODE_NONE {
            can_vote = true;
        }
        let resp_kind = if pre {
            MessageKind::PreVoteResp
        } else {
            MessageKind::VoteResp
        };
        if can_vote && self.log.is_up_to_date(m.index, m.log_term) {
            self.send(Message::new(resp_kind, self.id, m.from, m.term));
            if !pre {
                self.election_elapsed = 0;
                self.vote = m.from;
            }
        } else {
            let mut resp = Message::new(resp_kind, self.id, m.from, self.term);
            resp.reject = true;
            self.send(resp);
        }
    }

    fn step_candidate(&mut self, m: Message) {
        match m.kind {
            MessageKind::Append | MessageKind::Heartbeat | MessageKind::Snapshot => {
                self.become_follower(self.term, m.from);
                self.step_follower(m);
            }
            MessageKind::PreVoteResp if self.role == Role::PreCandidate => {
                self.record_vote(m.from, !m.reject);
            }
            MessageKind::VoteResp if self.role == Role::Candidate => {
                self.record_vote(m.from, !m.reject);
            }
            _ => {}
        }
    }

    fn step_follower(&mut self, m: Message) {
        match m.kind {
            MessageKind::Append => {
                self.election_elapsed = 0;
                self.leader = m.from;
                self.handle_append(m);
            }
            MessageKind::Heartbeat => {
                self.election_elapsed = 0;
                self.leader = m.from;
                self.handle_heartbeat(m);
            }
            MessageKind::Snapshot => {
                self.election_elapsed = 0;
                self.leader = m.from;
                self.handle_snapshot(m);
            }
            MessageKind::TimeoutNow => {
                debug!(
                    id = self.id,
                    from = m.from,
                    "asked to campaign by leadership transfer"
                );
                self.hup(true);
            }
            _ => {}
        }
    }

    /// An answer to the leader's append or snapshot that echoed `read_seq`: every
    /// answer echoes the stamp of the message it answers, so it confirms the leader's
    /// pending reads (see `read_index.rs`).
    fn append_resp(&mut self, to: NodeId, index: u64, read_seq: u64) -> Message {
        let mut resp = Message::new(MessageKind::AppendResp, self.id, to, self.term);
        resp.index = index;
        resp.read_seq = self.echo(read_seq);
        resp
    }

    /// Notes that `read_seq` is echoed to this term's leader; returns it.
    fn echo(&mut self, read_seq: u64) -> u64 {
        self.echoed_read_seq = self.echoed_read_seq.max(read_seq);
        read_seq
    }

    fn handle_append(&mut self, m: Message) {
        let (from, read_seq) = (m.from, m.read_seq);
        if m.index < self.log.committed() {
            let resp = self.append_resp(from, self.log.committed(), read_seq);
            self.send(resp);
            return;
        }
        let (prev_index, prev_term) = (m.index, m.log_term);
        let no_entries = m.entries.is_empty();
        let committed_before = self.log.committed();
        match self
            .log
            .maybe_append(prev_index, prev_term, m.commit, m.entries)
        {
            // An append that only brought a higher commit index, at an index this node
            // already acknowledged to this leader, with a read stamp already echoed:
            // the answer would tell the leader nothing, so none is sent (the leader
            // broadcasts one such append per commit, and every follower answered
            // each). If the earlier answer was lost, the next heartbeat's answer makes
            // the leader send an append that is answered. A new stamp is always
            // answered: the leader's reads may be waiting for it.
            Some(last)
                if no_entries
                    && last <= self.acked_index
                    && read_seq <= self.echoed_read_seq
                    && self.log.committed() > committed_before => {}
            Some(last) => {
                self.acked_index = self.acked_index.max(last);
                let resp = self.append_resp(from, last, read_seq);
                self.send(resp);
            }
            None => {
                let mut resp = self.append_resp(from, prev_index, read_seq);
                resp.reject = true;
                resp.reject_hint = self.log.last_index();
                self.send(resp);
            }
        }
    }

    fn handle_heartbeat(&mut self, m: Message) {
        // The leader sends min(its commit, our matched index), so we hold those entries.
        self.log.commit_to(m.commit);
        let mut resp = Message::new(MessageKind::HeartbeatResp, self.id, m.from, self.term);
        resp.read_seq = self.echo(m.read_seq);
        self.send(resp);
    }

    fn handle_snapshot(&mut self, m: Message) {
        let (from, read_seq) = (m.from, m.read_seq);
        let Some(snap) = m.snapshot.map(|s| *s) else {
            return;
        };
        let (index, term) = (snap.meta.index, snap.meta.term);
        if index <= self.log.committed() {
            let resp = self.append_resp(from, self.log.committed(), read_seq);
            self.send(resp);
            return;
        }
        if self.log.matches(index, term) {
            // We already hold the snapshot's last entry: just learn that it is committed.
            self.log.commit_to(index);
        } else {
            debug!(id = self.id, index, term, "restoring snapshot from leader");
            self.log.restore(snap);
        }
        let resp = self.append_resp(from, self.log.committed(), read_seq);
        self.send(resp);
    }
}
