//! The cluster world: boots N real detcd members (the server's own `run::start`) on
//! simulated madsim hosts with [`SimDisk`]s, runs the workload clients, applies the
//! fault schedule at its times, heals, and then checks liveness, convergence (same
//! HashKV at the same revision), lost writes and the checker's verdict. Everything it
//! does is driven by the seed; it reads no clock but the simulator's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use detcd_checker::etcd::{self, Options};
use detcd_checker::history::{History, Meta, Op, OpRecord, OpResult, Outcome, Record};
use detcd_checker::verdict::Verdict;
use detcd_engine::server::config::{self, Command, ServerConfig};
use detcd_engine::server::node::NodeHandle;
use detcd_engine::server::node::sim_bugs::SimRaftLimits;
use detcd_engine::server::run as server_run;
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle as Host, Runtime};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;
use tracing_subscriber::layer::{Layer, SubscriberExt};

use crate::cost::RunCost;
use crate::disk::{DiskProfile, SimDisk};
use crate::fault::FaultEvent;
use crate::logs::{MemberLogs, member_log_filter};
use crate::observe::{self, Observations, VoteNotice};
use crate::run::{Profile, RunConfig, RunResult, WorkloadSpec};
use crate::trace::{self, TraceLog};
use crate::workload::Recorder;
use crate::workload::direct::{self, Reach};
use crate::workload::kv::{self, KvClientConfig};
use crate::workload::{cas, kube, lease, watch};

/// How often the status watcher samples members, simulated ms.
const STATUS_POLL_MS: u64 = 50;
/// How often liveness is re-checked after the heal, simulated ms.
const LIVENESS_POLL_MS: u64 = 100;
/// Extra simulated time allowed beyond duration and liveness before the run is cut.
const TIME_LIMIT_SLACK_MS: u64 = 60_000;

#[path = "world_knobs.rs"]
mod world_knobs;
#[path = "world_membership.rs"]
mod world_membership;

/// Members that are up, by index.
type Nodes = Arc<Mutex<BTreeMap<u64, NodeHandle>>>;
/// What each member's host boots with: its server config and disk (replaced when a
/// removed member is added back as a fresh one).
type Slots = Arc<Mutex<BTreeMap<u64, (ServerConfig, SimDisk)>>>;
/// Members whose last start failed, with the error.
type Failed = Arc<Mutex<BTreeMap<u64, String>>>;
/// Attempts at one membership change before giving up.
const MEMBERSHIP_ATTEMPTS: u32 = 5;
/// Attempts at listing the members before giving up.
const MEMBERSHIP_LIST_ATTEMPTS: u32 = 10;
/// Pause between membership attempts, simulated ms.
const MEMBERSHIP_RETRY_MS: u64 = 300;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Applied entries between a member's snapshots. Far below the server's default
/// (100000), so every run takes snapshots in the background, compacts its log and sends
/// whole snapshots to members that fell behind while writes, crashes and power loss go on.
const MEMBER_SNAPSHOT_COUNT: u64 = 100;

/// Cluster sizes whose member configurations are kept (1 to this many members).
const CONFIG_SIZES_KEPT: usize = 9;

/// Member configurations by cluster size (index: members - 1), each in member order.
/// Parsing one goes through the server's whole command line (clap builds its command
/// twice), a noticeable part of a short run; a run is a forked child, so what the
/// parent parsed before the fork ([`prepare_member_configs`]) costs the child nothing.
///
/// Set once per size and read without a lock: the test harness runs tests on several
/// threads, each forking runs, and a lock another thread held at the moment of a fork
/// stays held for good in the child (a run hung that way).
static MEMBER_CONFIGS: [OnceLock<Vec<Result<ServerConfig, String>>>; CONFIG_SIZES_KEPT] =
    [const { OnceLock::new() }; CONFIG_SIZES_KEPT];

/// The kept configurations of a `members`-member cluster, if that size is kept.
fn config_slot(members: u64) -> Option<&'static OnceLock<Vec<Result<ServerConfig, String>>>> {
    let index = usize::try_from(members).ok()?.checked_sub(1)?;
    MEMBER_CONFIGS.get(index)
}

/// Parses the member configurations of a `members`-member cluster, if not done yet, so
/// that runs forked from this process find them. Call it before forking.
pub fn prepare_member_configs(members: u64) {
    if let Some(slot) = config_slot(members) {
        slot.get_or_init(|| {
            (1..=members)
                .map(|i| parse_member_config(i, members))
                .collect()
        });
    }
}

/// The configuration of member `i` of `members`, as its command line gives it: the
/// prepared one, or parsed now (never stored here, so a forked child takes no lock).
fn member_config(i: u64, members: u64) -> Result<ServerConfig, String> {
    let prepared = config_slot(members)
        .and_then(OnceLock::get)
        .and_then(|all| all.get(usize::try_from(i).ok()?.checked_sub(1)?));
    match prepared {
        Some(config) => config.clone(),
        None => parse_member_config(i, members),
    }
}

/// The server config of member `i` in a cluster of `members`, parsed from its flags.
fn parse_member_config(i: u64, members: u64) -> Result<ServerConfig, String> {
    let cluster = (1..=members)
        .map(|j| format!("n{j}=http://10.0.0.{j}:2380"))
        .collect::<Vec<_>>()
        .join(",");
    let args = [
        "detcd".to_owned(),
        format!("--name=n{i}"),
        format!("--listen-client-urls=http://10.0.0.{i}:2379"),
        format!("--advertise-client-urls=http://10.0.0.{i}:2379"),
        format!("--listen-peer-urls=http://10.0.0.{i}:2380"),
        format!("--initial-advertise-peer-urls=http://10.0.0.{i}:2380"),
        format!("--initial-cluster={cluster}"),
        format!("--snapshot-count={MEMBER_SNAPSHOT_COUNT}"),
    ];
    match config::parse(args, &BTreeMap::new()) {
        Ok(Command::Serve(c)) => Ok(*c),
        other => Err(format!("bad member configuration: {other:?}")),
    }
}

/// The running cluster and its fault state.
struct World {
    seed: u64,
    members: u64,
    start: Instant,
    handle: Handle,
    hosts: BTreeMap<u64, Host>,
    disks: BTreeMap<u64, SimDisk>,
    nodes: Nodes,
    slots: Slots,
    failed: Failed,
    /// The host membership requests are sent from.
    admin: Host,
    /// Members removed from the cluster (host off) and not added back.
    removed: BTreeSet<u64>,
    /// Members that had bits flipped in their files: they may refuse to start.
    flipped: BTreeSet<u64>,
    /// Members added back so far, to seed each fresh disk differently.
    joins: u64,
    /// Members whose process is down (killed or crashed), not yet restarted.
    down: BTreeSet<u64>,
    paused: BTreeSet<u64>,
    /// Clogged directed member links.
    links: BTreeSet<(u64, u64)>,
    clogged: BTreeSet<u64>,
    /// Which members clients can reach over their direct connections, and in which life.
    reach: Reach,
    /// Power losses so far, to seed each one differently.
    losses: u64,
    trace: TraceLog,
    logs: Arc<Mutex<BTreeMap<u64, Vec<String>>>>,
    /// Leaders named per term and commit-rule checks, from every member's status changes.
    observed: Observations,
    /// Fresh votes members grant (only reported under the crash-after-vote knob); taken
    /// by the schedule loop.
    votes: Option<UnboundedReceiver<VoteNotice>>,
}

impl World {
    fn boot(config: &RunConfig, trace: TraceLog) -> Result<World, String> {
        let handle = Handle::current();
        let nodes: Nodes = Arc::default();
        let slots: Slots = Arc::default();
        let failed: Failed = Arc::default();
        let logs: Arc<Mutex<BTreeMap<u64, Vec<String>>>> = Arc::default();
        let observed: Observations = Arc::default();
        let (votes_tx, votes_rx) = tokio::sync::mpsc::unbounded_channel();
        let reach = Reach::default();
        let mut hosts = BTreeMap::new();
        let mut disks = BTreeMap::new();
        for i in 1..=config.members {
            let mut server_config = member_config(i, config.members)?;
            server_config.sim_bugs = crate::bugs::engine_switches(&config.bugs);
            server_config.sim_raft = SimRaftLimits {
                append_entries_max: usize::try_from(config.knobs.raft_append_entries_max)
                    .unwrap_or(usize::MAX),
                inflight_msgs_max: usize::try_from(config.knobs.raft_inflight_msgs_max)
                    .unwrap_or(usize::MAX),
            };
            server_config.sim_wal_segment_bytes = crate::run::SIM_WAL_SEGMENT_BYTES;
            let disk = SimDisk::new(config.disk, config.seed ^ (i << 32));
            disks.insert(i, disk.clone());
            lock(&slots).insert(i, (server_config, disk));
            let slot = Arc::clone(&slots);
            let failures = Arc::clone(&failed);
            let registry = Arc::clone(&nodes);
            let member_logs = Arc::clone(&logs);
            let watched = Arc::clone(&observed);
            let votes = (config.knobs.crash_after_vote_down_ms > 0).then(|| votes_tx.clone());
            let member_reach = reach.clone();
            let seed = config.seed;
            // Each start of the member gets its own seed: the engine draws its proposal
            // IDs from it, and a restarted member reusing its last life's IDs would take an
            // old entry's result for a new request.
            let boots = Arc::new(AtomicU64::new(0));
            let ip = format!("10.0.0.{i}")
                .parse()
                .map_err(|e| format!("member ip: {e}"))?;
            let host = handle
                .create_node()
                .name(format!("n{i}"))
                .ip(ip)
                .init(move || {
                    let booted = lock(&slot).get(&i).cloned();
                    let registry = Arc::clone(&registry);
                    let member_logs = Arc::clone(&member_logs);
                    let failures = Arc::clone(&failures);
                    let watched = Arc::clone(&watched);
                    let votes = votes.clone();
                    let member_reach = member_reach.clone();
                    let boot = boots.fetch_add(1, Ordering::Relaxed);
                    let seed = seed ^ boot.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    async move {
                        let Some((server_config, disk)) = booted else {
                            return;
                        };
                        match server_run::start(&server_config, disk, seed).await {
                            Ok(server) => {
                                lock(&failures).remove(&i);
                                lock(&registry).insert(i, server.node().clone());
                                tokio::spawn(direct::serve(i, server.node().clone()));
                                member_reach.up(i, boot);
                                observe::follow(server.node().clone(), i, watched, votes).await;
                            }
                            Err(e) => {
                                tracing::warn!(member = i, error = %e, "member failed to start");
                                lock(&failures).insert(i, e.to_string());
                                lock(&member_logs)
                                    .entry(i)
                                    .or_default()
                                    .push(format!("start failed: {e}"));
                            }
                        }
                    }
                })
                .build();
            hosts.insert(i, host);
        }
        let admin = handle
            .create_node()
            .name("admin")
            .ip("10.0.2.3".parse().map_err(|e| format!("admin ip: {e}"))?)
            .build();
        Ok(World {
            seed: config.seed,
            members: config.members,
            start: Instant::now(),
            handle,
            hosts,
            disks,
            nodes,
            slots,
            failed,
            admin,
            removed: BTreeSet::new(),
            flipped: BTreeSet::new(),
            joins: 0,
            down: BTreeSet::new(),
            paused: BTreeSet::new(),
            links: BTreeSet::new(),
            clogged: BTreeSet::new(),
            reach,
            losses: 0,
            trace,
            logs,
            observed,
            votes: Some(votes_rx),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn log(&self, member: u64, line: String) {
        let line = format!("{} {line}", self.now_ms());
        lock(&self.logs).entry(member).or_default().push(line);
    }

    fn host_id(&self, member: u64) -> Option<madsim::task::NodeId> {
        self.hosts.get(&member).map(Host::id)
    }

    /// The index of the running member with Raft ID `id`, if any.
    fn index_of_id(&self, id: u64) -> Option<u64> {
        lock(&self.nodes)
            .iter()
            .find(|(_, n)| n.member_id() == id)
            .map(|(i, _)| *i)
    }

    /// The member that leads now, if any up member says it does.
    fn leader(&self) -> Option<u64> {
        lock(&self.nodes)
            .iter()
            .find(|(i, n)| !self.paused.contains(i) && n.status().is_leader)
            .map(|(i, _)| *i)
    }

    fn clog_link(&mut self, from: u64, to: u64) {
        if let (Some(a), Some(b)) = (self.host_id(from), self.host_id(to)) {
            NetSim::current().clog_link(a, b);
            self.links.insert((from, to));
        }
    }

    fn stop_member(&mut self, member: u64, power_loss: bool) {
        let Some(id) = self.host_id(member) else {
            return;
        };
        self.handle.kill(id);
        lock(&self.nodes).remove(&member);
        self.reach.down(member);
        if let Some(disk) = self.disks.get(&member) {
            if power_loss {
                self.losses += 1;
                disk.power_loss(self.seed ^ self.losses.rotate_left(17));
            } else {
                disk.crash();
            }
        }
        self.down.insert(member);
        self.paused.remove(&member);
        self.log(
            member,
            if power_loss {
                "power loss"
            } else {
                "process crash"
            }
            .to_owned(),
        );
    }

    fn restart_member(&mut self, member: u64) {
        let Some(id) = self.host_id(member) else {
            return;
        };
        if !self.down.contains(&member) {
            // A running process is crashed first, keeping its page cache.
            self.handle.kill(id);
            lock(&self.nodes).remove(&member);
            if let Some(disk) = self.disks.get(&member) {
                disk.crash();
            }
        }
        self.reach.down(member);
        self.handle.restart(id);
        self.down.remove(&member);
        self.paused.remove(&member);
        self.log(member, "restart".to_owned());
    }

    /// Applies one fault and records it in the trace.
    fn apply(&mut self, event: &FaultEvent) {
        let note = self.effect(event);
        self.record_fault(event, &note);
    }

    /// Applies one fault, membership changes included (they talk to the cluster), and
    /// records it in the trace.
    async fn apply_async(&mut self, event: &FaultEvent) {
        let note = match event {
            FaultEvent::MemberRemove { member } => self.member_remove(*member).await,
            FaultEvent::MemberAdd { member } => self.member_add(*member).await,
            other => self.effect(other),
        };
        self.record_fault(event, &note);
    }

    fn record_fault(&self, event: &FaultEvent, note: &str) {
        for m in event.members() {
            self.log(m, format!("fault {event:?}{note}"));
        }
        self.trace
            .push(format!("{} fault {event:?}{note}", self.now_ms()));
    }

    /// The effect of one fault; returns a note for the trace.
    fn effect(&mut self, event: &FaultEvent) -> String {
        match event {
            FaultEvent::Partition { groups } => {
                let group_of: BTreeMap<u64, usize> = groups
                    .iter()
                    .enumerate()
                    .flat_map(|(g, ms)| ms.iter().map(move |&m| (m, g)))
                    .collect();
                for (&a, ga) in &group_of {
                    for (&b, gb) in &group_of {
                        if ga != gb {
                            self.clog_link(a, b);
                        }
                    }
                }
                String::new()
            }
            FaultEvent::PartitionLeaderAway => match self.leader() {
                Some(l) => {
                    for m in 1..=self.members {
                        if m != l {
                            self.clog_link(l, m);
                            self.clog_link(m, l);
                        }
                    }
                    format!(" (leader n{l})")
                }
                None => " (no leader: skipped)".to_owned(),
            },
            FaultEvent::Asymmetric { from, to } => {
                self.clog_link(*from, *to);
                String::new()
            }
            FaultEvent::Clog { member } => {
                if let Some(id) = self.host_id(*member) {
                    NetSim::current().clog_node(id);
                    self.clogged.insert(*member);
                    self.reach.set_clogged(*member, true);
                }
                String::new()
            }
            FaultEvent::Unclog { member } => {
                if let Some(id) = self.host_id(*member) {
                    NetSim::current().unclog_node(id);
                    self.clogged.remove(member);
                    self.reach.set_clogged(*member, false);
                }
                String::new()
            }
            FaultEvent::PacketLoss { rate_ppm } => {
                let rate = f64::from((*rate_ppm).min(1_000_000)) / 1e6;
                NetSim::current().update_config(|c| c.packet_loss_rate = rate);
                String::new()
            }
            FaultEvent::Kill { member } => {
                self.stop_member(*member, true);
                String::new()
            }
            FaultEvent::KillLeader => match self.leader() {
                Some(l) => {
                    self.stop_member(l, true);
                    format!(" (leader n{l})")
                }
                None => " (no leader: skipped)".to_owned(),
            },
            FaultEvent::Crash { member } => {
                self.stop_member(*member, false);
                String::new()
            }
            FaultEvent::Restart { member } => {
                self.restart_member(*member);
                String::new()
            }
            FaultEvent::Pause { member } => {
                if let Some(id) = self.host_id(*member)
                    && !self.down.contains(member)
                {
                    self.handle.pause(id);
                    self.paused.insert(*member);
                }
                String::new()
            }
            FaultEvent::Resume { member } => {
                if let Some(id) = self.host_id(*member)
                    && self.paused.remove(member)
                {
                    self.handle.resume(id);
                }
                String::new()
            }
            FaultEvent::DiskSlow { member, profile } => {
                if let Some(d) = self.disks.get(member) {
                    d.set_profile(*profile);
                }
                String::new()
            }
            FaultEvent::FsyncError { member, count } => {
                if let Some(d) = self.disks.get(member) {
                    d.mem().fail_next_syncs(*count);
                }
                String::new()
            }
            FaultEvent::DiskFull { member } => match self.disks.get(member) {
                Some(d) => {
                    let used: u64 = d.mem().files().values().sum();
                    d.mem().set_capacity_bytes(Some(used));
                    format!(" ({used} bytes)")
                }
                None => String::new(),
            },
            FaultEvent::DiskFree { member } => {
                if let Some(d) = self.disks.get(member) {
                    d.mem().set_capacity_bytes(None);
                }
                String::new()
            }
            FaultEvent::BitFlip { member, seed } => self.flip_bit(*member, *seed),
            FaultEvent::MemberRemove { .. } | FaultEvent::MemberAdd { .. } => {
                " (skipped: membership changes go through apply_async)".to_owned()
            }
            FaultEvent::HealAll => {
                self.heal_all();
                String::new()
            }
        }
    }

    fn flip_bit(&mut self, member: u64, seed: u64) -> String {
        let Some(disk) = self.disks.get(&member) else {
            return String::new();
        };
        let files: Vec<(String, u64)> = disk
            .mem()
            .files()
            .into_iter()
            .filter(|(_, len)| *len > 0)
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let Some((path, len)) = files.get(rng.random_range(0..files.len().max(1))) else {
            return " (no files)".to_owned();
        };
        let offset = rng.random_range(0..*len);
        let bit = rng.random_range(0..8u8);
        self.flipped.insert(member);
        match disk.mem().flip_bit(path, offset, bit) {
            Ok(()) => format!(" ({path} byte {offset} bit {bit})"),
            Err(e) => format!(" (flip failed: {e})"),
        }
    }

    fn heal_all(&mut self) {
        let net = NetSim::current();
        for (from, to) in std::mem::take(&mut self.links) {
            if let (Some(a), Some(b)) = (self.host_id(from), self.host_id(to)) {
                net.unclog_link(a, b);
            }
        }
        for m in std::mem::take(&mut self.clogged) {
            if let Some(id) = self.host_id(m) {
                net.unclog_node(id);
            }
            self.reach.set_clogged(m, false);
        }
        net.update_config(|c| c.packet_loss_rate = 0.0);
        for m in std::mem::take(&mut self.paused) {
            if let Some(id) = self.host_id(m) {
                self.handle.resume(id);
            }
        }
        for d in self.disks.values() {
            d.mem().fail_next_syncs(0);
            d.mem().set_capacity_bytes(None);
        }
        // Members whose loop stopped (a fatal storage error, say) restart like down ones.
        let stopped: Vec<u64> = lock(&self.nodes)
            .iter()
            .filter(|(i, n)| n.status().stopped && !self.removed.contains(i))
            .map(|(i, _)| *i)
            .collect();
        for m in stopped {
            self.log(m, "stopped; restarting".to_owned());
            self.trace
                .push(format!("{} n{m} was stopped", self.now_ms()));
            self.restart_member(m);
        }
        // Members whose last start failed (a leftover injected fault, say) get another.
        let failed: Vec<u64> = lock(&self.failed)
            .keys()
            .copied()
            .filter(|m| !self.removed.contains(m) && !self.down.contains(m))
            .collect();
        for m in failed {
            self.log(m, "start had failed; restarting".to_owned());
            self.restart_member(m);
        }
        for m in self.down.clone() {
            self.restart_member(m);
        }
    }

    /// Waits until a leader exists and every member has applied the leader's commit
    /// index; returns a failure message when `bound_ms` passes first.
    async fn await_liveness(&self, bound_ms: u64) -> Result<u64, String> {
        let deadline = Instant::now() + Duration::from_millis(bound_ms);
        let mut last;
        loop {
            // A member that refused its own corrupted files failed clearly: allowed.
            let refused: BTreeSet<u64> = lock(&self.failed)
                .keys()
                .copied()
                .filter(|m| self.flipped.contains(m))
                .collect();
            let expected = (1..=self.members)
                .filter(|m| !self.removed.contains(m) && !refused.contains(m))
                .count() as u64;
            let statuses: BTreeMap<u64, _> = lock(&self.nodes)
                .iter()
                .map(|(i, n)| (*i, n.status()))
                .filter(|(_, s)| !s.stopped)
                .collect();
            let leader = statuses.iter().find(|(_, s)| s.is_leader);
            match leader {
                Some((&l, ls)) if statuses.len() as u64 >= expected => {
                    let behind: Vec<u64> = statuses
                        .iter()
                        .filter(|(_, s)| s.applied < ls.commit || s.leader != ls.leader)
                        .map(|(i, _)| *i)
                        .collect();
                    if behind.is_empty() {
                        return Ok(l);
                    }
                    last = format!("leader n{l} at commit {}, behind: {behind:?}", ls.commit);
                }
                Some((&l, _)) => {
                    let up: Vec<u64> = statuses.keys().copied().collect();
                    last = format!("leader n{l}, but only {up:?} are up");
                }
                None => last = "no leader".to_owned(),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "liveness: not settled {bound_ms} ms after heal: {last}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(LIVENESS_POLL_MS)).await;
        }
    }

    /// Every member's (revision, HashKV hash) now.
    fn hashes(&self) -> BTreeMap<u64, Result<(i64, u32), String>> {
        lock(&self.nodes)
            .iter()
            .map(|(i, n)| {
                let h = n.with_kv(|kv| {
                    let rev = kv.store().current_revision();
                    kv.hash_kv(rev)
                        .map(|r| (rev, r.hash))
                        .map_err(|e| e.to_string())
                });
                (*i, h)
            })
            .collect()
    }
}

/// Traces every member's (leader, term) changes as sampled every [`STATUS_POLL_MS`]
/// (the safety checks are [`observe::follow`]'s, fed by every change).
async fn watch_status(nodes: Nodes, trace: TraceLog, start: Instant) {
    let mut seen: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    loop {
        let now: BTreeMap<u64, (u64, u64)> = lock(&nodes)
            .iter()
            .map(|(i, n)| {
                let s = n.status();
                (*i, (s.leader, s.term))
            })
            .collect();
        for (i, v) in &now {
            if seen.get(i) != Some(v) {
                trace.push(format!(
                    "{} status n{i} leader {} term {}",
                    start.elapsed().as_millis(),
                    v.0,
                    v.1
                ));
            }
        }
        seen = now;
        tokio::time::sleep(Duration::from_millis(STATUS_POLL_MS)).await;
    }
}

/// Lost-write check: each key's final state must reflect its last acknowledged write.
fn lost_writes(ops: &[OpRecord], final_kvs: &BTreeMap<String, i64>) -> Vec<String> {
    let mut last_put: BTreeMap<&str, i64> = BTreeMap::new();
    let mut deletes: BTreeMap<&str, Vec<Option<i64>>> = BTreeMap::new();
    for op in ops {
        let revision = match &op.outcome {
            Outcome::Ok(ok) => Some(ok.revision),
            Outcome::Unknown => None,
            Outcome::Fail(_) => continue,
        };
        match &op.op {
            // Leased keys may vanish with their lease; the checker judges those.
            Op::Put(p) if p.lease == 0 => {
                if let Some(r) = revision {
                    let e = last_put.entry(p.key.as_str()).or_default();
                    *e = (*e).max(r);
                }
            }
            Op::DeleteRange(d) => deletes.entry(d.key.as_str()).or_default().push(revision),
            _ => {}
        }
    }
    let mut failures = Vec::new();
    for (key, put_rev) in last_put {
        match final_kvs.get(key) {
            Some(&mod_rev) if mod_rev >= put_rev => {}
            Some(&mod_rev) => failures.push(format!(
                "lost write: {key} acknowledged at revision {put_rev}, final mod_revision {mod_rev}"
            )),
            None => {
                let explained = deletes
                    .get(key)
                    .is_some_and(|ds| ds.iter().any(|d| d.is_none_or(|r| r > put_rev)));
                if !explained {
                    failures.push(format!(
                        "lost write: {key} acknowledged at revision {put_rev} is gone and no later delete explains it"
                    ));
                }
            }
        }
    }
    failures
}

fn percentile(sorted: &[u64], per_mille: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(sorted.len() - 1) * per_mille / 1000]
}

/// Runs one simulated run in this process. It builds its own madsim runtime from the
/// seed on a fresh thread; a panic inside the simulation (an engine assertion) becomes
/// a failure, not a crash. A second run of the same seed in the same process may
/// diverge (see [`crate::run::run`], which forks to avoid that).
pub fn run_in_process(config: &RunConfig) -> RunResult {
    let wall = std::time::Instant::now();
    // Each client waits at least THINK_MS between operations, and the trace has a line
    // per operation and a few per fault: room for that many at once.
    let ops = config.workload.clients() * (config.duration_ms / kv::THINK_MS + 1);
    let ops = usize::try_from(ops).unwrap_or(0).min(1 << 20);
    let trace = TraceLog::with_capacity(ops + 256);
    let recorder = Recorder::with_capacity(ops);
    let mut result = RunResult {
        seed: config.seed,
        ..RunResult::default()
    };
    if let Err(e) = config.schedule.validate(config.members) {
        result.failures.push(format!("bad schedule: {e}"));
        return result;
    }
    let member_logs = MemberLogs::default();
    let outcome = {
        let config = config.clone();
        let trace = trace.clone();
        let recorder = recorder.clone();
        let member_logs = member_logs.clone();
        // A fresh thread per run: std's hash-map keys are drawn once per thread, so
        // only a thread whose first draw happens inside this seeded runtime replays
        // exactly. A panic inside the simulation ends the thread, not the caller.
        std::thread::Builder::new()
            .name(format!("sim-seed-{}", config.seed))
            .spawn(move || {
                let subscriber = tracing_subscriber::registry()
                    .with(member_logs.layer().with_filter(member_log_filter()));
                let _logging = tracing::subscriber::set_default(subscriber);
                let mut runtime =
                    Runtime::with_seed_and_config(config.seed, madsim::Config::default());
                runtime.set_time_limit(Duration::from_millis(
                    config.duration_ms + config.liveness_ms + TIME_LIMIT_SLACK_MS,
                ));
                let mut sim = runtime.block_on(simulate(config, trace, recorder, member_logs));
                // Every allocation of this run happened on this fresh thread.
                sim.cost.allocs = crate::cost::thread_allocs();
                sim
            })
            .map_err(|e| -> Box<dyn std::any::Any + Send> { Box::new(e.to_string()) })
            .and_then(|t| t.join())
    };
    let mut ops = recorder.take_ops();
    match outcome {
        Ok(sim) => {
            let (spans, events) = member_logs.counts();
            result.cost = RunCost {
                spans,
                events,
                ..sim.cost
            };
            result.sim_ms = sim.sim_ms;
            result.logs = merge_logs(sim.logs, member_logs.lines());
            result.failures.extend(sim.failures);
            if let Some(final_kvs) = &sim.final_kvs {
                result.failures.extend(lost_writes(&ops, final_kvs));
            }
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "non-string panic".to_owned());
            trace.push(format!("panic: {message}"));
            // The members' lines up to the panic are what explains it.
            result.logs = merge_logs(BTreeMap::new(), member_logs.lines());
            result
                .failures
                .push(format!("panic in simulation: {message}"));
        }
    }
    ops.sort_by_key(|o| (o.call, o.client));
    let mut latencies: Vec<u64> = ops
        .iter()
        .filter(|o| matches!(o.op, Op::Put(_) | Op::DeleteRange(_)))
        .filter_map(|o| match (&o.outcome, o.ret) {
            (Outcome::Ok(_), Some(ret)) => Some(ret.saturating_sub(o.call) / 1000),
            _ => None,
        })
        .collect();
    latencies.sort_unstable();
    result.commit_latency_us = (percentile(&latencies, 500), percentile(&latencies, 990));
    let records: Vec<Record> = std::iter::once(Record::Meta(Meta {
        version: 1,
        source: format!("detcd-sim seed {}", config.seed),
    }))
    .chain(ops.into_iter().map(Record::Op))
    .chain(recorder.watch_records())
    .collect();
    result.history = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap_or_default())
        .collect();
    let verdict =
        match History::from_records(records.into_iter().enumerate().map(|(i, r)| (i + 1, r))) {
            Ok(history) => match etcd::check(&history, &Options::default()) {
                Verdict::Ok => "OK".to_owned(),
                Verdict::Illegal(v) => format!("Illegal: {}: {}", v.property, v.message),
                Verdict::Unknown { reason } => format!("Unknown: {reason}"),
            },
            Err(e) => format!("Unknown: history rejected: {e}"),
        };
    if verdict != "OK" {
        result.failures.push(format!("checker: {verdict}"));
    }
    result.verdict = verdict;
    result.trace = trace.take_lines();
    result.trace_hash = trace::hash(&result.trace);
    result.wall_ms = u64::try_from(wall.elapsed().as_millis()).unwrap_or(u64::MAX);
    result
}

/// What the simulated part of a run hands back.
struct SimOutcome {
    sim_ms: u64,
    failures: Vec<String>,
    logs: BTreeMap<u64, Vec<String>>,
    /// Key → mod_revision from the final linearizable read, if it succeeded.
    final_kvs: Option<BTreeMap<String, i64>>,
    /// Tasks, messages and (set by the caller) allocations of the simulation.
    cost: RunCost,
}

/// Tasks spawned in this process so far: madsim numbers tasks from a process-wide
/// counter, so a new task's id is the count. Only called at the end of a run, where
/// the extra task cannot change anything; a run's child process starts at 0.
fn tasks_spawned() -> u64 {
    madsim::task::spawn(async {})
        .id()
        .to_string()
        .parse()
        .unwrap_or(0)
}

/// The world's lines and the members' tracing lines of each member, ordered by their
/// leading simulated millisecond (stable, world lines first on ties).
fn merge_logs(
    mut world: BTreeMap<u64, Vec<String>>,
    members: BTreeMap<u64, Vec<String>>,
) -> BTreeMap<u64, Vec<String>> {
    for (m, lines) in members {
        let all = world.entry(m).or_default();
        all.extend(lines);
        all.sort_by_key(|l| {
            l.split(' ')
                .next()
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(u64::MAX)
        });
    }
    world
}

async fn simulate(
    config: RunConfig,
    trace: TraceLog,
    recorder: Recorder,
    member_logs: MemberLogs,
) -> SimOutcome {
    let mut failures = Vec::new();
    let msgs_before = madsim::net::NetSim::current().stat().msg_count;
    let mut world = match World::boot(&config, trace.clone()) {
        Ok(w) => w,
        Err(e) => {
            return SimOutcome {
                sim_ms: 0,
                failures: vec![e],
                logs: BTreeMap::new(),
                final_kvs: None,
                cost: RunCost::default(),
            };
        }
    };
    let start = world.start;
    member_logs.set_start(start);
    let observer = world
        .handle
        .create_node()
        .name("observer")
        .ip("10.0.2.1".parse().expect("constant ip"))
        .build();
    observer.spawn(watch_status(Arc::clone(&world.nodes), trace.clone(), start));

    let stop = start + Duration::from_millis(config.duration_ms);
    let mut clients = Vec::new();
    let (client_count, keys, profiles) = match &config.workload {
        WorkloadSpec::Kv { clients, keys } => (*clients, *keys, vec![Profile::Kv]),
        WorkloadSpec::Mix {
            clients,
            keys,
            profiles,
        } => (*clients, *keys, profiles.clone()),
    };
    for c in 1..=client_count {
        let host = world
            .handle
            .create_node()
            .name(format!("client{c}"))
            .ip(format!("10.0.1.{c}").parse().expect("client ip"))
            .build();
        let cfg = KvClientConfig {
            client: c,
            members: config.members,
            keys,
            seed: config.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ c,
            start,
            stop,
            reach: world.reach.clone(),
        };
        let index = usize::try_from(c - 1).unwrap_or(0) % profiles.len().max(1);
        let (rec, tr) = (recorder.clone(), trace.clone());
        clients.push(match profiles.get(index).copied().unwrap_or(Profile::Kv) {
            Profile::Kv => host.spawn(kv::run_client(cfg, rec, tr)),
            Profile::Cas => host.spawn(cas::run_client(cfg, rec, tr)),
            Profile::Kube => host.spawn(kube::run_client(cfg, rec, tr)),
            Profile::Lease => host.spawn(lease::run_client(cfg, rec, tr)),
            Profile::Watch => host.spawn(watch::run_client(cfg, rec, tr)),
            Profile::Lock => host.spawn(crate::workload::lock::run_client(cfg, rec, tr)),
        });
    }

    world_knobs::run_schedule(&mut world, &config, stop).await;
    tokio::time::sleep_until(stop).await;
    world.apply(&FaultEvent::HealAll);
    for c in clients {
        let _ = c.await;
    }
    world.reconcile_membership().await;

    let mut final_kvs = None;
    match world.await_liveness(config.liveness_ms).await {
        Err(e) => failures.push(e),
        Ok(leader) => {
            trace.push(format!("{} live: leader n{leader}", world.now_ms()));
            // A final linearizable read of every key through the leader, recorded too.
            let reader = world
                .handle
                .create_node()
                .name("final-reader")
                .ip("10.0.2.2".parse().expect("constant ip"))
                .build();
            let id = client_count + 1;
            let op = Op::Range(detcd_checker::history::RangeRequest {
                key: "\u{0}".to_owned(),
                range_end: Some("\u{0}".to_owned()),
                revision: 0,
                limit: 0,
                count_only: false,
                keys_only: false,
                serializable: false,
            });
            // Retried until the bound, since leadership may still move after the heal.
            let deadline = Instant::now() + Duration::from_millis(config.liveness_ms);
            let mut target = leader;
            let ok = loop {
                let (rec, tr, op) = (recorder.clone(), trace.clone(), op.clone());
                let reach = world.reach.clone();
                let ok = reader
                    .spawn(async move {
                        let mut conns = kv::Connections::new(reach);
                        kv::call(id, target, op, start, &mut conns, &rec, &tr).await
                    })
                    .await
                    .unwrap_or(false);
                if ok || Instant::now() >= deadline {
                    break ok;
                }
                tokio::time::sleep(Duration::from_millis(LIVENESS_POLL_MS)).await;
                target = world.leader().unwrap_or(target);
            };
            if ok {
                final_kvs = recorder.last_op().and_then(|o| match &o.outcome {
                    Outcome::Ok(ok) => match &ok.result {
                        OpResult::Range(r) => Some(
                            r.kvs
                                .iter()
                                .map(|kv| (kv.key.clone(), kv.mod_revision))
                                .collect(),
                        ),
                        _ => None,
                    },
                    _ => None,
                });
            } else {
                failures.push("liveness: the final read through the leader failed".to_owned());
            }
            // Convergence: wait for every member to reach the same revision.
            if let Err(e) = world.await_liveness(config.liveness_ms).await {
                failures.push(e);
            }
            let hashes = world.hashes();
            let distinct: BTreeSet<_> = hashes.values().collect();
            trace.push(format!("{} hashes {hashes:?}", world.now_ms()));
            if distinct.len() != 1 {
                failures.push(format!("convergence: members differ: {hashes:?}"));
            }
        }
    }
    failures.extend(observe::failures(&lock(&world.observed)));
    failures.extend(crate::workload::lock_check::mutual_exclusion(
        &recorder.holds(),
    ));
    let logs = lock(&world.logs).clone();
    let cost = RunCost {
        tasks: tasks_spawned(),
        net_msgs: madsim::net::NetSim::current()
            .stat()
            .msg_count
            .saturating_sub(msgs_before),
        // The run has this thread to itself, so the thread's counts are the run's.
        raft_messages: detcd_engine::server::transport::sim_counts::raft_messages(),
        raft_batches: detcd_engine::server::transport::sim_counts::raft_batches(),
        empty_appends: detcd_engine::server::transport::sim_counts::empty_appends(),
        ..RunCost::default()
    };
    SimOutcome {
        sim_ms: world.now_ms(),
        failures,
        logs,
        final_kvs,
        cost,
    }
}

#[cfg(test)]
mod tests {
    use detcd_checker::history::{OkOutcome, PutRequest, PutResult};

    use super::*;

    fn put(key: &str, outcome: Outcome) -> OpRecord {
        OpRecord {
            client: 1,
            call: 0,
            ret: None,
            op: Op::Put(PutRequest {
                key: key.to_owned(),
                value: "v".to_owned(),
                lease: 0,
                prev_kv: false,
            }),
            outcome,
        }
    }

    fn ok(revision: i64) -> Outcome {
        Outcome::Ok(OkOutcome {
            revision,
            result: OpResult::Put(PutResult { prev_kv: None }),
        })
    }

    #[test]
    fn an_acknowledged_put_missing_at_the_end_is_a_lost_write() {
        let ops = vec![put("a", ok(5)), put("b", ok(6)), put("c", Outcome::Unknown)];
        let intact: BTreeMap<String, i64> = [("a".to_owned(), 5), ("b".to_owned(), 7)].into();
        assert!(lost_writes(&ops, &intact).is_empty());
        let stale: BTreeMap<String, i64> = [("a".to_owned(), 3), ("b".to_owned(), 6)].into();
        let found = lost_writes(&ops, &stale);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("a acknowledged at revision 5"));
        let gone: BTreeMap<String, i64> = [("b".to_owned(), 6)].into();
        assert_eq!(lost_writes(&ops, &gone).len(), 1);
    }

    #[test]
    fn percentiles_pick_from_the_sorted_samples() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 500), 50);
        assert_eq!(percentile(&samples, 990), 99);
        assert_eq!(percentile(&[], 500), 0);
    }
}
