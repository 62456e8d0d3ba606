//! Tools around the randomized schedules that CI does not run: replaying one seed with
//! a trace, printing what the schedules exercise and what the bug switches trip, a long
//! soak, and a rough throughput figure for the benchmark seam. Run with `--ignored`.

use super::*;

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

pub(super) fn record_coverage(c: &Cluster) {
    let conf_changes = c
        .nodes
        .values()
        .filter_map(|n| n.raw.as_ref())
        .map(|r| {
            r.log()
                .entries()
                .iter()
                .filter(|e| e.kind == crate::raft::EntryKind::ConfChange && e.term > 1)
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
        BugSwitches {
            read_without_quorum_check: true,
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

#[test]
#[ignore = "long soak: RAFT_SEEDS=count RAFT_VOTERS=n RAFT_FIRST=seed"]
fn soak() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let (first, count, voters) = (
        env("RAFT_FIRST", 100_000),
        env("RAFT_SEEDS", 20_000),
        env("RAFT_VOTERS", 3),
    );
    let failures = sweep(voters, first..first + count, STEPS, BugSwitches::default());
    assert!(
        failures.is_empty(),
        "{} failing seeds: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

#[test]
#[ignore = "rough throughput figure for the benchmark seam"]
fn measure_benchmark_seam() {
    let s = Schedule {
        seed: 1,
        voters: 3,
        steps: 0,
        bugs: BugSwitches::default(),
    };
    let mut c = Cluster::new(&[1, 2, 3], |id| Config {
        append_entries_max: 64,
        inflight_msgs_max: 256,
        ..config(id, &s)
    })
    .expect("valid config");
    if let Some(raw) = c.raw_mut(1) {
        raw.campaign();
    }
    c.settle(1);
    c.deliver_all(usize::MAX);
    let count = 50_000;
    let started = std::time::Instant::now();
    let commit = c.run_proposals(count, 128).expect("a leader");
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{count} proposals committed on 3 nodes in {secs:.2} s ({:.0}/s), commit {commit}",
        count as f64 / secs
    );
}
