//! An in-memory cluster of Raft cores with a model network and model disks, for tests,
//! the simulator's unit checks and benchmarks. Nothing here does I/O or reads a clock.
//!
//! The driver follows `RawNode`'s rules exactly: each `Ready` is persisted (to the model
//! disk) before its messages enter the network. A crash drops the node's memory and any
//! message addressed to it; a restart rebuilds it from the model disk only, so whatever
//! was not persisted is lost. The cluster checks Raft's safety properties as it runs and
//! records every violation it sees; it does not decide a schedule (tests do that).

use std::collections::{BTreeMap, BTreeSet};

use super::{
    ConfState, Config, Entry, HardState, Message, MessageKind, NodeId, RaftError, RawNode,
    RestartState, Role, Snapshot,
};

/// What a node has made durable.
#[derive(Clone, Debug, Default)]
pub struct ModelDisk {
    /// Last persisted hard state.
    pub hard_state: HardState,
    /// Last persisted snapshot.
    pub snapshot: Snapshot,
    /// Persisted entries (possibly some at or below the snapshot).
    pub entries: Vec<Entry>,
}

/// The model state machine: how far it applied and a digest of everything applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelState {
    /// Last applied index.
    pub applied: u64,
    /// Chained hash of every applied entry.
    pub digest: u64,
}

fn mix(mut h: u64, bytes: &[u8]) -> u64 {
    // FNV-1a: a stable, dependency-free hash (the digest must not vary between runs).
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

fn entry_digest(prev: u64, e: &Entry) -> u64 {
    let h = mix(prev ^ 0xcbf2_9ce4_8422_2325, &e.index.to_le_bytes());
    let h = mix(h, &e.term.to_le_bytes());
    mix(h, &e.data)
}

/// One member of the model cluster.
#[derive(Debug)]
pub struct Node {
    /// The core, or `None` while crashed.
    pub raw: Option<RawNode>,
    /// The durable state.
    pub disk: ModelDisk,
    /// The state machine (lost on crash, rebuilt from the snapshot).
    pub state: ModelState,
    /// Its configuration (reused on restart).
    pub cfg: Config,
}

/// An in-memory cluster with a model network.
#[derive(Debug)]
pub struct Cluster {
    /// Members by id.
    pub nodes: BTreeMap<NodeId, Node>,
    /// Messages sent and not yet delivered, oldest first.
    pub in_flight: Vec<Message>,
    /// Partition group of each node; messages between different groups are dropped.
    group_of: BTreeMap<NodeId, u32>,
    /// Every entry applied anywhere: index -> (term, digest of the entry).
    applied: BTreeMap<u64, (u64, u64)>,
    /// State machine digest at each applied index.
    digest_at: BTreeMap<u64, u64>,
    /// Leader seen in each term.
    leaders: BTreeMap<u64, NodeId>,
    /// Read states handed out: (node, index, ctx).
    pub reads: Vec<(NodeId, u64, Vec<u8>)>,
    /// Safety violations found so far.
    pub violations: Vec<String>,
    /// Messages delivered, by kind (coverage statistics for tests).
    pub delivered: BTreeMap<&'static str, u64>,
}

impl Cluster {
    /// A cluster whose founding voters are `ids`, each configured by `cfg_of`.
    pub fn new(ids: &[NodeId], cfg_of: impl Fn(NodeId) -> Config) -> Result<Self, RaftError> {
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            in_flight: Vec::new(),
            group_of: BTreeMap::new(),
            applied: BTreeMap::new(),
            digest_at: BTreeMap::new(),
            leaders: BTreeMap::new(),
            reads: Vec::new(),
            violations: Vec::new(),
            delivered: BTreeMap::new(),
        };
        let initial = ConfState::with_voters(ids.iter().copied());
        for &id in ids {
            cluster.add_node(cfg_of(id), initial.clone())?;
            cluster.settle(id);
        }
        Ok(cluster)
    }

    /// Adds a node with the given initial membership (empty for a joining node).
    pub fn add_node(&mut self, cfg: Config, initial: ConfState) -> Result<(), RaftError> {
        let id = cfg.id;
        let raw = RawNode::new(cfg.clone(), initial)?;
        let disk = ModelDisk::default();
        self.nodes.insert(
            id,
            Node {
                raw: Some(raw),
                disk,
                state: ModelState::default(),
                cfg,
            },
        );
        Ok(())
    }

    /// Ids of all members, crashed or not.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// The running core of `id`, if any.
    pub fn raw(&self, id: NodeId) -> Option<&RawNode> {
        self.nodes.get(&id).and_then(|n| n.raw.as_ref())
    }

    /// The running core of `id`, mutably.
    pub fn raw_mut(&mut self, id: NodeId) -> Option<&mut RawNode> {
        self.nodes.get_mut(&id).and_then(|n| n.raw.as_mut())
    }

    /// The current leader with the highest term among running nodes.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter_map(|n| n.raw.as_ref())
            .map(|r| r.status())
            .filter(|s| s.role == Role::Leader)
            .max_by_key(|s| s.term)
            .map(|s| s.id)
    }

    /// Handles every pending `Ready` of `id`.
    pub fn settle(&mut self, id: NodeId) {
        while self.raw(id).is_some_and(|r| r.has_ready()) {
            self.handle_ready(id);
        }
    }

    /// Handles pending `Ready`s of every running node.
    pub fn settle_all(&mut self) {
        for id in self.ids() {
            self.settle(id);
        }
    }

    fn handle_ready(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let Some(raw) = node.raw.as_mut() else { return };
        let rd = raw.ready();
        // 1. Persist.
        if let Some(snap) = &rd.snapshot {
            node.disk.snapshot = snap.clone();
            node.disk.entries.clear();
        }
        if let Some(first) = rd.entries.first() {
            let first = first.index;
            node.disk.entries.retain(|e| e.index < first);
            node.disk.entries.extend(rd.entries.iter().cloned());
        }
        if let Some(hs) = rd.hard_state {
            node.disk.hard_state = hs;
        }
        // 2. Send.
        self.in_flight.extend(rd.messages.iter().cloned());
        // 3. Apply.
        let node = self.nodes.get_mut(&id).expect("node exists");
        let mut problems = Vec::new();
        if let Some(snap) = &rd.snapshot {
            node.state = decode_state(&snap.data, snap.meta.index);
            if let Some(d) = self.digest_at.get(&snap.meta.index)
                && *d != node.state.digest
            {
                problems.push(format!(
                    "node {id} restored a snapshot at {} with another history",
                    snap.meta.index
                ));
            }
        }
        for e in &rd.committed_entries {
            if e.index != node.state.applied + 1 {
                problems.push(format!(
                    "node {id} applied {} after {}",
                    e.index, node.state.applied
                ));
            }
            node.state.applied = e.index;
            node.state.digest = entry_digest(node.state.digest, e);
            let one = (e.term, entry_digest(0, e));
            match self.applied.get(&e.index) {
                Some(seen) if *seen != one => problems.push(format!(
                    "state machine safety: node {id} applied term {} at {}, another node applied term {}",
                    e.term, e.index, seen.0
                )),
                _ => {
                    self.applied.insert(e.index, one);
                    self.digest_at.entry(e.index).or_insert(node.state.digest);
                }
            }
        }
        for rs in &rd.read_states {
            self.reads.push((id, rs.index, rs.ctx.clone()));
        }
        if let Some(raw) = node.raw.as_mut() {
            raw.advance();
        }
        if let Some(ss) = rd.soft_state
            && ss.role == Role::Leader
        {
            self.on_new_leader(id, &mut problems);
        }
        self.violations.extend(problems);
    }

    fn on_new_leader(&mut self, id: NodeId, problems: &mut Vec<String>) {
        let Some(raw) = self.nodes.get(&id).and_then(|n| n.raw.as_ref()) else {
            return;
        };
        let term = raw.status().term;
        match self.leaders.insert(term, id) {
            Some(other) if other != id => {
                problems.push(format!(
                    "election safety: nodes {other} and {id} both led term {term}"
                ));
            }
            _ => {}
        }
        let log = raw.log();
        for (&index, &(t, _)) in self.applied.range(log.first_index()..) {
            if log.term(index) != Some(t) {
                problems.push(format!(
                    "leader completeness: leader {id} of term {term} lacks committed entry {index} (term {t})"
                ));
                break;
            }
        }
    }

    /// Checks log matching between every pair of running nodes; records violations.
    pub fn check_log_matching(&mut self) {
        let logs: Vec<(NodeId, &super::RaftLog)> = self
            .nodes
            .iter()
            .filter_map(|(id, n)| n.raw.as_ref().map(|r| (*id, r.log())))
            .collect();
        let mut problems = Vec::new();
        for (i, (a_id, a)) in logs.iter().enumerate() {
            for (b_id, b) in logs.iter().skip(i + 1) {
                let lo = a.first_index().max(b.first_index());
                let hi = a.last_index().min(b.last_index());
                let mut agreed = false;
                for index in (lo..=hi).rev() {
                    let (ea, eb) = (a.entry(index), b.entry(index));
                    if !agreed && ea.map(|e| e.term) == eb.map(|e| e.term) {
                        agreed = true;
                    }
                    if agreed && ea != eb {
                        problems.push(format!(
                            "log matching: nodes {a_id} and {b_id} differ at {index}"
                        ));
                        break;
                    }
                }
            }
        }
        self.violations.extend(problems);
    }

    /// Sets partition groups: each slice is one side; unlisted nodes form their own side.
    pub fn partition(&mut self, groups: &[&[NodeId]]) {
        self.group_of.clear();
        for (g, ids) in groups.iter().enumerate() {
            for id in *ids {
                self.group_of.insert(*id, g as u32 + 1);
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.group_of.clear();
    }

    /// Whether `a` and `b` can currently talk.
    pub fn connected(&self, a: NodeId, b: NodeId) -> bool {
        self.group_of.get(&a).copied().unwrap_or(0) == self.group_of.get(&b).copied().unwrap_or(0)
    }

    /// Delivers the in-flight message at `position` (dropped if partitioned or the
    /// receiver is down) and settles the receiver. Returns the message if delivered.
    pub fn deliver(&mut self, position: usize) -> Option<Message> {
        if position >= self.in_flight.len() {
            return None;
        }
        let m = self.in_flight.remove(position);
        if !self.connected(m.from, m.to) {
            return None;
        }
        let to = m.to;
        let raw = self.nodes.get_mut(&to).and_then(|n| n.raw.as_mut())?;
        *self.delivered.entry(kind_name(m.kind)).or_insert(0) += 1;
        if let Err(e) = raw.step(m.clone()) {
            self.violations
                .push(format!("step refused a well-formed message: {e}"));
        }
        self.settle(to);
        Some(m)
    }

    /// Delivers messages oldest first until none are left or `max` were handled; returns
    /// the delivered ones.
    pub fn deliver_all(&mut self, max: usize) -> Vec<Message> {
        let mut out = Vec::new();
        let mut handled = 0;
        while !self.in_flight.is_empty() && handled < max {
            handled += 1;
            if let Some(m) = self.deliver(0) {
                out.push(m);
            }
        }
        out
    }

    /// Ticks `id` once and settles it.
    pub fn tick(&mut self, id: NodeId) {
        if let Some(raw) = self.raw_mut(id) {
            raw.tick();
            self.settle(id);
        }
    }

    /// Proposes `data` at `id`.
    pub fn propose(&mut self, id: NodeId, data: Vec<u8>) -> Result<u64, RaftError> {
        let raw = self.raw_mut(id).ok_or(RaftError::NotLeader { leader: 0 })?;
        let index = raw.propose(data)?;
        self.settle(id);
        Ok(index)
    }

    /// Crashes `id`: memory and messages to it are lost, the model disk survives.
    pub fn crash(&mut self, id: NodeId) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.raw = None;
            n.state = ModelState::default();
        }
        self.in_flight.retain(|m| m.to != id);
    }

    /// Restarts a crashed node from its model disk.
    pub fn restart(&mut self, id: NodeId) -> Result<(), RaftError> {
        let Some(n) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        if n.raw.is_some() {
            return Ok(());
        }
        let snap = n.disk.snapshot.clone();
        n.state = decode_state(&snap.data, snap.meta.index);
        let state = RestartState {
            hard_state: n.disk.hard_state,
            applied: snap.meta.index,
            snapshot: snap,
            entries: n.disk.entries.clone(),
        };
        n.raw = Some(RawNode::restart(n.cfg.clone(), state)?);
        Ok(())
    }

    /// Takes a snapshot of `id`'s state machine and compacts its log up to it.
    pub fn compact(&mut self, id: NodeId) -> Result<u64, RaftError> {
        let Some(n) = self.nodes.get_mut(&id) else {
            return Ok(0);
        };
        let Some(raw) = n.raw.as_mut() else {
            return Ok(0);
        };
        let index = n.state.applied;
        let data = postcard::to_allocvec(&n.state).unwrap_or_default();
        raw.compact(index, data)?;
        n.disk.snapshot = raw.log().snapshot().clone();
        n.disk.entries.retain(|e| e.index > index);
        Ok(index)
    }

    /// Benchmark seam: proposes `count` entries of `payload_bytes` at the leader and
    /// delivers until all are applied everywhere. Returns the leader's commit index.
    pub fn run_proposals(&mut self, count: usize, payload_bytes: usize) -> Result<u64, RaftError> {
        let mut leader = self.leader().ok_or(RaftError::NotLeader { leader: 0 })?;
        for i in 0..count {
            let mut data = vec![0u8; payload_bytes];
            let tag = (i as u64).to_le_bytes();
            let n = tag.len().min(payload_bytes);
            data[..n].copy_from_slice(&tag[..n]);
            if let Err(RaftError::NotLeader { .. }) = self.propose(leader, data) {
                leader = self.leader().ok_or(RaftError::NotLeader { leader: 0 })?;
            }
            if i % 64 == 63 {
                self.deliver_all(usize::MAX);
            }
        }
        self.deliver_all(usize::MAX);
        Ok(self.raw(leader).map_or(0, |r| r.status().commit))
    }

    /// The highest index applied anywhere.
    pub fn max_applied(&self) -> u64 {
        self.applied.keys().next_back().copied().unwrap_or(0)
    }

    /// Nodes whose applied index is below `index`.
    pub fn lagging(&self, index: u64) -> BTreeSet<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.state.applied < index)
            .map(|(id, _)| *id)
            .collect()
    }
}

fn decode_state(data: &[u8], index: u64) -> ModelState {
    if data.is_empty() {
        return ModelState {
            applied: index,
            digest: 0,
        };
    }
    postcard::from_bytes(data).unwrap_or(ModelState {
        applied: index,
        digest: u64::MAX,
    })
}

fn kind_name(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::PreVote => "PreVote",
        MessageKind::PreVoteResp => "PreVoteResp",
        MessageKind::Vote => "Vote",
        MessageKind::VoteResp => "VoteResp",
        MessageKind::Append => "Append",
        MessageKind::AppendResp => "AppendResp",
        MessageKind::Heartbeat => "Heartbeat",
        MessageKind::HeartbeatResp => "HeartbeatResp",
        MessageKind::Snapshot => "Snapshot",
        MessageKind::TimeoutNow => "TimeoutNow",
    }
}

/// Number of leaders seen (one per term that had a leader).
impl Cluster {
    /// How many terms had a leader so far.
    pub fn terms_led(&self) -> usize {
        self.leaders.len()
    }
}

/// A one-line rendering of a message for scripts and logs.
pub fn describe(m: &Message) -> String {
    let mut s = format!("{}->{} {:?} term={}", m.from, m.to, m.kind, m.term);
    match m.kind {
        MessageKind::PreVote | MessageKind::Vote => {
            s += &format!(" last={}/{}", m.index, m.log_term);
            if m.transfer {
                s += " transfer";
            }
        }
        MessageKind::Append => {
            s += &format!(" prev={}/{} commit={}", m.index, m.log_term, m.commit);
            if !m.entries.is_empty() {
                let ents: Vec<String> = m
                    .entries
                    .iter()
                    .map(|e| {
                        format!(
                            "{}/{}:{}",
                            e.index,
                            e.term,
                            String::from_utf8_lossy(&e.data)
                        )
                    })
                    .collect();
                s += &format!(" [{}]", ents.join(" "));
            }
        }
        MessageKind::AppendResp => {
            s += &format!(" index={}", m.index);
            if m.reject {
                s += &format!(" reject hint={}", m.reject_hint);
            }
        }
        MessageKind::Heartbeat => s += &format!(" commit={} seq={}", m.commit, m.read_seq),
        MessageKind::HeartbeatResp => s += &format!(" seq={}", m.read_seq),
        MessageKind::Snapshot => {
            if let Some(snap) = &m.snapshot {
                s += &format!(" snap={}/{}", snap.meta.index, snap.meta.term);
            }
        }
        MessageKind::PreVoteResp | MessageKind::VoteResp => {
            if m.reject {
                s += " reject";
            }
        }
        MessageKind::TimeoutNow => {}
    }
    s
}
