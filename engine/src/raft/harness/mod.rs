//! An in-memory cluster of Raft cores with a model network and model disks, for tests,
//! the simulator's unit checks and benchmarks. Nothing here does I/O or reads a clock.
//!
//! The driver follows `RawNode`'s rules exactly: each `Ready` is persisted (to the model
//! disk) before its messages enter the network. A crash drops the node's memory and any
//! message addressed to it; a restart rebuilds it from the model disk only, so whatever
//! was not persisted is lost. The cluster checks Raft's safety properties as it runs and
//! records every violation it sees; it does not decide a schedule (tests do that).

use std::collections::{BTreeMap, BTreeSet};

mod describe;
mod model;

use describe::kind_name;
pub use describe::{describe, describe_data};
pub use model::{ModelDisk, ModelState, PERSIST_PARTS_ALL};
use model::{decode_state, entry_digest};

use super::{ConfState, Config, Message, NodeId, RaftError, RawNode, RestartState, Role};

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
    /// The lowest term in which any node saw each index committed (the leader that
    /// committed it sees it first, so this is the term it was committed in).
    commit_term: BTreeMap<u64, u64>,
    /// State machine digest at each applied index.
    digest_at: BTreeMap<u64, u64>,
    /// Leader seen in each term.
    leaders: BTreeMap<u64, NodeId>,
    /// Read states handed out: (node, index, ctx).
    pub reads: Vec<(NodeId, u64, Vec<u8>)>,
    /// Reads asked through `read_index`: the highest commit anywhere when asked.
    read_floors: BTreeMap<(NodeId, Vec<u8>), u64>,
    /// Safety violations found so far.
    pub violations: Vec<String>,
    /// Messages delivered, by kind (coverage statistics for tests).
    pub delivered: BTreeMap<&'static str, u64>,
    /// Whether settling a leader sends heartbeats for its pending reads to voters that
    /// no message reaches (the driver's job; on unless a test sends them itself).
    pub read_heartbeats_auto: bool,
}

impl Cluster {
    /// A cluster whose founding voters are `ids`, each configured by `cfg_of`.
    pub fn new(ids: &[NodeId], cfg_of: impl Fn(NodeId) -> Config) -> Result<Self, RaftError> {
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            in_flight: Vec::new(),
            group_of: BTreeMap::new(),
            applied: BTreeMap::new(),
            commit_term: BTreeMap::new(),
            digest_at: BTreeMap::new(),
            leaders: BTreeMap::new(),
            reads: Vec::new(),
            read_floors: BTreeMap::new(),
            violations: Vec::new(),
            delivered: BTreeMap::new(),
            read_heartbeats_auto: true,
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

    /// Handles every pending `Ready` of `id`; then, unless `read_heartbeats_auto` is
    /// off, sends the heartbeats its pending reads still need, as the node's driver does.
    pub fn settle(&mut self, id: NodeId) {
        loop {
            while self.raw(id).is_some_and(|r| r.has_ready()) {
                self.handle_ready(id);
            }
            if !self.read_heartbeats_auto || !self.raw(id).is_some_and(|r| r.read_heartbeats_due())
            {
                return;
            }
            self.send_read_heartbeats(id);
        }
    }

    /// Has `id` (if it leads) send heartbeats for its pending reads, then settles it.
    pub fn send_read_heartbeats(&mut self, id: NodeId) {
        if let Some(raw) = self.raw_mut(id) {
            raw.send_read_heartbeats();
        }
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
        let term_now = raw.term();
        let rd = raw.ready();
        // 1. Persist.
        node.disk.persist(&rd, PERSIST_PARTS_ALL);
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
            let seen = self.commit_term.entry(e.index).or_insert(term_now);
            *seen = (*seen).min(term_now);
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
            if let Some(floor) = self.read_floors.remove(&(id, rs.ctx.clone()))
                && rs.index < floor
            {
                problems.push(format!(
                    "stale read: node {id} confirmed a read at {} but {floor} was committed before it was asked",
                    rs.index
                ));
            }
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
        // Leader completeness: every entry committed in an earlier term is in its log.
        let log = raw.log();
        for (&index, &(t, _)) in self.applied.range(log.first_index()..) {
            let committed_in = self.commit_term.get(&index).copied().unwrap_or(u64::MAX);
            if committed_in < term && log.term(index) != Some(t) {
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

    /// Asks `id` for a linearizable read. When its `ReadState` comes out, the cluster
    /// checks that its index covers everything committed anywhere before the request.
    pub fn read_index(&mut self, id: NodeId, ctx: Vec<u8>) -> Result<(), RaftError> {
        let floor = self.max_committed();
        let raw = self.raw_mut(id).ok_or(RaftError::NotLeader { leader: 0 })?;
        raw.read_index(ctx.clone())?;
        self.read_floors.insert((id, ctx), floor);
        self.settle(id);
        Ok(())
    }

    /// The highest commit index any node knows, running or persisted.
    pub fn max_committed(&self) -> u64 {
        self.nodes
            .values()
            .map(|n| {
                let live = n.raw.as_ref().map_or(0, |r| r.log().committed());
                live.max(n.disk.hard_state.commit)
            })
            .max()
            .unwrap_or(0)
            .max(self.max_applied())
    }

    /// Crashes `id`: memory and messages to it are lost, the model disk survives.
    pub fn crash(&mut self, id: NodeId) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.raw = None;
            n.state = ModelState::default();
        }
        self.in_flight.retain(|m| m.to != id);
    }

    /// Delivers the in-flight message at `position`, then crashes the receiver while it
    /// persists the resulting `Ready`: only the first `parts` of it reach the disk and
    /// none of its messages leave.
    pub fn deliver_and_crash_torn(&mut self, position: usize, parts: usize) {
        let Some(m) = (position < self.in_flight.len()).then(|| self.in_flight.remove(position))
        else {
            return;
        };
        let to = m.to;
        if !self.connected(m.from, to) {
            return;
        }
        let Some(node) = self.nodes.get_mut(&to) else {
            return;
        };
        let Some(raw) = node.raw.as_mut() else { return };
        if raw.step(m).is_err() {
            return;
        }
        if raw.has_ready() {
            let rd = raw.ready();
            node.disk.persist(&rd, parts);
        }
        self.crash(to);
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

    /// How many terms had a leader so far.
    pub fn terms_led(&self) -> usize {
        self.leaders.len()
    }
}
