//! Randomized schedules against the model cluster: message loss, reordering and
//! duplication, partitions, crashes that lose unpersisted state, restarts, compaction,
//! proposals, membership changes, reads and transfers. After every step the cluster's
//! safety checks must hold; after healing, a leader must commit new work everywhere.
//!
//! The known-bad tests switch on deliberate bugs and expect the same harness to fail.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::harness::{Cluster, PERSIST_PARTS_ALL};

mod tools;
use super::{BugSwitches, ConfChange, ConfChangeKind, Config, NodeId};

/// Steps per schedule (before the final heal-and-converge phase).
const STEPS: usize = 800;

/// Shape of one randomized run.
#[derive(Clone, Copy, Debug)]
struct Schedule {
    seed: u64,
    voters: u64,
    steps: usize,
    bugs: BugSwitches,
}

/// Per-schedule configuration: the protocol options and batching limits vary with the
/// seed (the same for every node of a run), so every mix is exercised.
fn config(id: NodeId, s: &Schedule) -> Config {
    Config {
        election_ticks: 6,
        heartbeat_ticks: 2,
        pre_vote: !s.seed.is_multiple_of(4),
        check_quorum: !s.seed.is_multiple_of(3),
        append_entries_max: 1 + (s.seed / 5 % 4) as usize,
        inflight_msgs_max: 1 + (s.seed / 7 % 4) as usize,
        seed: s.seed.wrapping_mul(1_000_003).wrapping_add(id),
        bugs: s.bugs,
        ..Config::new(id)
    }
}

/// Runs one schedule; `Err` describes the first violation (or a panic inside the core,
/// which is an assertion firing).
fn run(s: Schedule) -> Result<(), String> {
    let outcome = std::panic::catch_unwind(|| run_inner(s));
    match outcome {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("assertion failed: {msg}"))
        }
    }
}

/// Swarm testing: each schedule draws its own mix of actions, so some runs are calm
/// and others are storms of one fault kind.
struct Weights([u32; ACTIONS]);

/// Tick, deliver, propose, partition, crash/restart, compact, conf change, read,
/// transfer, campaign.
const ACTIONS: usize = 10;

impl Weights {
    fn swarm(rng: &mut ChaCha8Rng) -> Self {
        let mut w = [0u32; ACTIONS];
        w[0] = rng.random_range(20..50);
        w[1] = rng.random_range(30..80);
        for slot in w.iter_mut().skip(2) {
            *slot = if rng.random_bool(0.25) {
                0
            } else {
                rng.random_range(1..10)
            };
        }
        Weights(w)
    }

    fn pick(&self, rng: &mut ChaCha8Rng) -> usize {
        let total: u32 = self.0.iter().sum();
        let mut roll = rng.random_range(0..total);
        for (action, &w) in self.0.iter().enumerate() {
            if roll < w {
                return action;
            }
            roll -= w;
        }
        ACTIONS - 1
    }
}

fn run_inner(s: Schedule) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let founders: Vec<NodeId> = (1..=s.voters).collect();
    let spare = s.voters + 1;
    let mut c = Cluster::new(&founders, |id| config(id, &s)).map_err(|e| e.to_string())?;
    c.add_node(config(spare, &s), Default::default())
        .map_err(|e| e.to_string())?;
    let all: Vec<NodeId> = (1..=spare).collect();
    let mut next_data = 0u64;
    let pick = |rng: &mut ChaCha8Rng| all[rng.random_range(0..all.len())];
    let weights = Weights::swarm(&mut rng);
    // Odd seeds leave read heartbeats to the schedule (reads then ride on appends and
    // tick heartbeats, or on heartbeats sent at random moments). Decided by the seed,
    // not drawn, so the schedules stay what they were.
    c.read_heartbeats_auto = s.seed.is_multiple_of(2);
    for step in 0..s.steps {
        let roll = weights.pick(&mut rng);
        match roll {
            0 => {
                let id = pick(&mut rng);
                c.tick(id);
            }
            1 => {
                if !c.in_flight.is_empty() {
                    let pos = rng.random_range(0..c.in_flight.len());
                    match rng.random_range(0..20) {
                        0 => {
                            c.in_flight.remove(pos);
                        }
                        1 => {
                            let dup = c.in_flight[pos].clone();
                            c.in_flight.push(dup);
                        }
                        _ => {
                            c.deliver(pos);
                        }
                    }
                }
            }
            2 => {
                if let Some(leader) = c.leader() {
                    next_data += 1;
                    let _ = c.propose(leader, format!("v{next_data}").into_bytes());
                }
            }
            3 => {
                if rng.random_bool(0.5) {
                    c.heal();
                } else {
                    let side: Vec<NodeId> = all
                        .iter()
                        .copied()
                        .filter(|_| rng.random_bool(0.5))
                        .collect();
                    c.partition(&[&side]);
                }
            }
            4 => {
                let id = pick(&mut rng);
                if c.raw(id).is_some() {
                    let torn = c.in_flight.iter().position(|m| m.to == id);
                    match torn {
                        Some(pos) if rng.random_bool(0.5) => {
                            c.deliver_and_crash_torn(pos, rng.random_range(0..=PERSIST_PARTS_ALL))
                        }
                        _ => c.crash(id),
                    }
                } else {
                    c.restart(id).map_err(|e| format!("restart failed: {e}"))?;
                }
            }
            5 => {
                let id = pick(&mut rng);
                let _ = c.compact(id);
            }
            6 => {
                if let Some(leader) = c.leader() {
                    let node_id = pick(&mut rng);
                    let kind = match rng.random_range(0..3) {
                        0 => ConfChangeKind::AddVoter,
                        1 => ConfChangeKind::AddLearner,
                        _ => ConfChangeKind::RemoveNode,
                    };
                    let voters = c
                        .raw(leader)
                        .map_or(0, |r| r.status().conf_state.voters.len());
                    if kind != ConfChangeKind::RemoveNode || voters > 2 {
                        let change = ConfChange {
                            kind,
                            node_id,
                            context: Vec::new(),
                        };
                        if let Some(raw) = c.raw_mut(leader) {
                            let _ = raw.propose_conf_change(change);
                        }
                        c.settle(leader);
                    }
                }
            }
            7 => {
                // Ask any node, so stale leaders on the wrong side of a partition are
                // asked too; followers refuse.
                let id = pick(&mut rng);
                if !c.read_heartbeats_auto && step % 2 == 1 {
                    c.send_read_heartbeats(id);
                } else {
                    let _ = c.read_index(id, step.to_le_bytes().to_vec());
                }
            }
            8 => {
                if let Some(leader) = c.leader() {
                    let to = pick(&mut rng);
                    if let Some(raw) = c.raw_mut(leader) {
                        let _ = raw.transfer_leader(to);
                    }
                    c.settle(leader);
                }
            }
            _ => {
                let id = pick(&mut rng);
                if let Some(raw) = c.raw_mut(id) {
                    raw.campaign();
                }
                c.settle(id);
            }
        }
        c.check_log_matching();
        trace(&c, &format!("step {step} action {roll}"));
        if let Some(v) = c.violations.first() {
            return Err(format!("step {step}: {v}"));
        }
    }
    converge(&mut c)?;
    tools::record_coverage(&c);
    check_reads(&c)
}

fn trace(c: &Cluster, what: &str) {
    if std::env::var("RAFT_TRACE").is_err() {
        return;
    }
    let st: Vec<String> = c
        .ids()
        .iter()
        .filter_map(|id| c.raw(*id).map(|r| r.status()))
        .map(|s| {
            format!(
                "{}:{:?}/t{}/v{}/c{}/a{}/l{}/s{}/{:?}",
                s.id,
                s.role,
                s.term,
                s.vote,
                s.commit,
                s.applied,
                s.last_index,
                s.snapshot_index,
                s.conf_state.voters
            )
        })
        .collect();
    eprintln!("{what}: {}", st.join(" "));
}

/// Heals everything and requires a leader that commits a fresh entry on every member.
fn converge(c: &mut Cluster) -> Result<(), String> {
    c.heal();
    for id in c.ids() {
        c.restart(id).map_err(|e| format!("restart failed: {e}"))?;
    }
    let mut marker = None;
    for _round in 0..400 {
        for id in c.ids() {
            c.tick(id);
        }
        c.deliver_all(10_000);
        trace(c, "converge");
        if let Some(v) = c.violations.first() {
            return Err(format!("while converging: {v}"));
        }
        let Some(leader) = c.leader() else { continue };
        // Propose a marker at the current leader; a new leader proposes its own (the
        // old one's marker may be legitimately discarded if it was never committed).
        let index = match marker {
            Some((at, index)) if at == leader => index,
            _ => {
                marker = c
                    .propose(leader, b"final".to_vec())
                    .ok()
                    .map(|i| (leader, i));
                continue;
            }
        };
        let members = c
            .raw(leader)
            .map(|r| r.status().conf_state)
            .unwrap_or_default();
        let behind = c.lagging(index);
        if members
            .voters
            .iter()
            .chain(members.learners.iter())
            .all(|m| !behind.contains(m))
        {
            c.check_log_matching();
            return match c.violations.first() {
                Some(v) => Err(v.clone()),
                None => Ok(()),
            };
        }
    }
    Err(format!(
        "no convergence after healing (leader {:?}, marker {marker:?})",
        c.leader()
    ))
}

/// Every read index handed out is at most the final commit (reads never run ahead).
fn check_reads(c: &Cluster) -> Result<(), String> {
    let max = c.max_applied();
    match c.reads.iter().find(|(_, index, _)| *index > max) {
        Some((id, index, _)) => Err(format!(
            "read at {index} on node {id} beyond anything applied ({max})"
        )),
        None => Ok(()),
    }
}

fn sweep(
    voters: u64,
    seeds: std::ops::Range<u64>,
    steps: usize,
    bugs: BugSwitches,
) -> Vec<(u64, String)> {
    seeds
        .filter_map(|seed| {
            run(Schedule {
                seed,
                voters,
                steps,
                bugs,
            })
            .err()
            .map(|e| (seed, e))
        })
        .collect()
}

#[test]
fn three_node_schedules_are_safe() {
    let failures = sweep(3, 0..3000, STEPS, BugSwitches::default());
    assert!(
        failures.is_empty(),
        "failing seeds (3 nodes): {:?}",
        &failures[..failures.len().min(5)]
    );
}

#[test]
fn five_node_schedules_are_safe() {
    let failures = sweep(5, 10_000..11_500, STEPS, BugSwitches::default());
    assert!(
        failures.is_empty(),
        "failing seeds (5 nodes): {:?}",
        &failures[..failures.len().min(5)]
    );
}

#[test]
fn known_bad_vote_twice_is_caught() {
    let bugs = BugSwitches {
        vote_twice_in_term: true,
        ..BugSwitches::default()
    };
    let failures = sweep(5, 0..200, STEPS, bugs);
    assert!(
        !failures.is_empty(),
        "voting twice in a term went unnoticed in 200 seeds"
    );
}

#[test]
fn known_bad_forget_vote_on_restart_is_caught() {
    let bugs = BugSwitches {
        forget_vote_on_restart: true,
        ..BugSwitches::default()
    };
    let failures = sweep(3, 0..400, STEPS, bugs);
    assert!(
        !failures.is_empty(),
        "forgetting the vote on restart went unnoticed in 400 seeds"
    );
}

#[test]
fn known_bad_read_without_quorum_check_is_caught() {
    let bugs = BugSwitches {
        read_without_quorum_check: true,
        ..BugSwitches::default()
    };
    let failures = sweep(3, 0..400, STEPS, bugs);
    assert!(
        failures.iter().any(|(_, why)| why.contains("stale read")),
        "unconfirmed reads went unnoticed in 400 seeds"
    );
}

#[test]
fn known_bad_read_ignoring_stamps_is_caught() {
    let bugs = BugSwitches {
        read_ignore_stamps: true,
        ..BugSwitches::default()
    };
    // Random schedules rarely hold an answer across an election (about one seed in
    // 2000 here); this range holds one. `read_lost_term_bug.txt` shows the case.
    let failures = sweep(3, 2000..2500, STEPS, bugs);
    assert!(
        failures.iter().any(|(_, why)| why.contains("stale read")),
        "reads confirmed by answers to older messages went unnoticed in 500 seeds"
    );
}

/// A digest of a finished run: the same seed must give the same digest.
fn run_digest(s: Schedule) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let ids: Vec<NodeId> = (1..=s.voters).collect();
    let mut c = Cluster::new(&ids, |id| config(id, &s)).expect("valid config");
    for _ in 0..s.steps {
        let id = ids[rng.random_range(0..ids.len())];
        c.tick(id);
        if !c.in_flight.is_empty() {
            let pos = rng.random_range(0..c.in_flight.len());
            c.deliver(pos);
        }
        if let Some(leader) = c.leader() {
            let _ = c.propose(leader, vec![rng.random()]);
        }
    }
    format!(
        "{:?} {:?}",
        c.ids()
            .iter()
            .map(|id| c.raw(*id).map(|r| r.status()))
            .collect::<Vec<_>>(),
        c.delivered
    )
}

#[test]
fn same_seed_same_run() {
    let s = Schedule {
        seed: 42,
        voters: 5,
        steps: 2000,
        bugs: BugSwitches::default(),
    };
    let first = run_digest(s);
    assert_eq!(first, run_digest(s));
    assert_ne!(
        first,
        run_digest(Schedule { seed: 43, ..s }),
        "different seeds should differ"
    );
}

#[test]
fn benchmark_seam_commits_a_stream_of_proposals() {
    let s = Schedule {
        seed: 1,
        voters: 3,
        steps: 0,
        bugs: BugSwitches::default(),
    };
    let mut c = Cluster::new(&[1, 2, 3], |id| config(id, &s)).expect("valid config");
    if let Some(raw) = c.raw_mut(1) {
        raw.campaign();
    }
    c.settle(1);
    c.deliver_all(usize::MAX);
    let commit = c.run_proposals(1000, 128).expect("a leader");
    assert!(commit >= 1000, "commit {commit}");
    assert!(
        c.lagging(commit).is_empty(),
        "every node applied everything"
    );
    assert!(c.violations.is_empty());
}
