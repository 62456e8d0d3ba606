//! Randomized schedules against the model cluster: message loss, reordering and
//! duplication, partitions, crashes that lose unpersisted state, restarts, compaction,
//! proposals, membership changes, reads and transfers. After every step the cluster's
//! safety checks must hold; after healing, a leader must commit new work everywhere.
//!
//! The known-bad tests switch on deliberate bugs and expect the same harness to fail.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::harness::Cluster;
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

fn config(id: NodeId, s: &Schedule) -> Config {
    Config {
        election_ticks: 6,
        heartbeat_ticks: 2,
        append_entries_max: 3,
        inflight_msgs_max: 3,
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

/// Coverage of one run, for tuning the schedule generator.
#[derive(Debug, Default)]
struct Coverage {
    applied: u64,
    terms_led: usize,
    snapshots: u64,
    timeout_now: u64,
    reads: usize,
    conf_changes: u64,
}

thread_local! {
    static COVERAGE: std::cell::RefCell<Vec<Coverage>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn record_coverage(c: &Cluster) {
    let conf_changes = c
        .nodes
        .values()
        .filter_map(|n| n.raw.as_ref())
        .map(|r| {
            r.log()
                .entries()
                .iter()
                .filter(|e| e.kind == super::EntryKind::ConfChange && e.term > 1)
                .count() as u64
        })
        .max()
        .unwrap_or(0);
    let cov = Coverage {
        applied: c.max_applied(),
        terms_led: c.terms_led(),
        snapshots: c.delivered.get("Snapshot").copied().unwrap_or(0),
        timeout_now: c.delivered.get("TimeoutNow").copied().unwrap_or(0),
        reads: c.reads.len(),
        conf_changes,
    };
    COVERAGE.with(|v| v.borrow_mut().push(cov));
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
                    c.crash(id);
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
                if let Some(leader) = c.leader()
                    && let Some(raw) = c.raw_mut(leader)
                {
                    let _ = raw.read_index(step.to_le_bytes().to_vec());
                    c.settle(leader);
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
    record_coverage(&c);
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
        if marker.is_none() {
            marker = c.propose(leader, b"final".to_vec()).ok();
            continue;
        }
        let Some(index) = marker else { continue };
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
    let failures = sweep(3, 0..2000, STEPS, BugSwitches::default());
    assert!(
        failures.is_empty(),
        "failing seeds (3 nodes): {:?}",
        &failures[..failures.len().min(5)]
    );
}

#[test]
fn five_node_schedules_are_safe() {
    let failures = sweep(5, 10_000..11_000, STEPS, BugSwitches::default());
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
#[ignore = "debugging aid: RAFT_SEED=n RAFT_VOTERS=n RAFT_TRACE=1"]
fn replay_one_seed() {
    let seed = std::env::var("RAFT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let voters = std::env::var("RAFT_VOTERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let r = run(Schedule {
        seed,
        voters,
        steps: STEPS,
        bugs: BugSwitches::default(),
    });
    assert!(r.is_ok(), "{r:?}");
}

#[test]
#[ignore = "debugging aid"]
fn print_bug_findings() {
    for bugs in [
        BugSwitches {
            vote_twice_in_term: true,
            ..BugSwitches::default()
        },
        BugSwitches {
            forget_vote_on_restart: true,
            ..BugSwitches::default()
        },
        BugSwitches {
            commit_earlier_term_by_count: true,
            ..BugSwitches::default()
        },
    ] {
        let f = sweep(3, 0..400, STEPS, bugs);
        eprintln!(
            "{bugs:?}: {} failures; first: {:?}",
            f.len(),
            f.iter().take(3).collect::<Vec<_>>()
        );
    }
}

#[test]
#[ignore = "tuning aid: prints what the schedules exercise"]
fn print_coverage() {
    for voters in [3, 5] {
        COVERAGE.with(|v| v.borrow_mut().clear());
        let f = sweep(voters, 0..300, STEPS, BugSwitches::default());
        COVERAGE.with(|v| {
            let v = v.borrow();
            let n = v.len().max(1) as f64;
            let avg = |g: &dyn Fn(&Coverage) -> f64| v.iter().map(g).sum::<f64>() / n;
            let frac = |g: &dyn Fn(&Coverage) -> bool| v.iter().filter(|c| g(c)).count() as f64 / n;
            eprintln!(
                "{voters} voters: {} failures; avg applied {:.1}, terms {:.1}; runs with snapshot {:.2}, transfer {:.2}, reads {:.2}, conf change {:.2}",
                f.len(),
                avg(&|c| c.applied as f64),
                avg(&|c| c.terms_led as f64),
                frac(&|c| c.snapshots > 0),
                frac(&|c| c.timeout_now > 0),
                frac(&|c| c.reads > 0),
                frac(&|c| c.conf_changes > 0),
            );
        });
    }
}
