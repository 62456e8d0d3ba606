//! The simulation knobs end to end: a run with the crash-after-vote knob crashes voters
//! right after they vote and brings them back, and still passes every check on a
//! correct server; a run with one-entry Raft appends passes too, and so does one that
//! crashes every new leader a few ms after it wins.
//! Run with `RUSTFLAGS="--cfg madsim" cargo test -p detcd-sim --test knobs_sim`.

#![cfg(madsim)]

use detcd_sim::disk::DiskProfile;
use detcd_sim::fault::{FaultEvent, Schedule};
use detcd_sim::knobs::Knobs;
use detcd_sim::run::{RunConfig, WorkloadSpec, run};

fn config(seed: u64, knobs: Knobs) -> RunConfig {
    let events = vec![
        (1_500, FaultEvent::KillLeader),
        (2_000, FaultEvent::HealAll),
        (4_000, FaultEvent::KillLeader),
        (4_500, FaultEvent::HealAll),
    ];
    RunConfig {
        seed,
        members: 3,
        disk: DiskProfile::Ssd,
        schedule: Schedule::at_times(events),
        workload: WorkloadSpec::Kv {
            clients: 2,
            keys: 5,
        },
        duration_ms: 7_000,
        liveness_ms: 10_000,
        bugs: Vec::new(),
        knobs,
    }
}

#[test]
fn voters_crash_after_voting_and_the_run_still_passes() {
    let knobs = Knobs {
        crash_after_vote_down_ms: 300,
        ..Knobs::default()
    };
    let r = run(&config(3, knobs));
    assert!(r.passed(), "failures: {:?}", r.failures);
    let crashes = r
        .trace
        .iter()
        .filter(|l| l.contains("Crash") && l.contains("(knob: voted in term"))
        .count();
    let restarts = r
        .trace
        .iter()
        .filter(|l| l.contains("Restart") && l.contains("(knob: after its vote)"))
        .count();
    assert!(crashes >= 1, "no knob crash in {:?}", r.trace);
    assert!(restarts >= 1, "no knob restart in {:?}", r.trace);
}

#[test]
fn one_entry_appends_still_pass() {
    let knobs = Knobs {
        raft_append_entries_max: 1,
        raft_inflight_msgs_max: 1,
        ..Knobs::default()
    };
    let r = run(&config(4, knobs));
    assert!(r.passed(), "failures: {:?}", r.failures);
    assert_eq!(r.verdict, "OK");
}

#[test]
fn new_leaders_crash_soon_after_winning_and_the_run_still_passes() {
    let knobs = Knobs {
        raft_append_entries_max: 1,
        raft_inflight_msgs_max: 1,
        crash_new_leader_within_ms: 40,
        crash_new_leader_down_ms: 900,
        ..Knobs::default()
    };
    let r = run(&config(5, knobs));
    assert!(r.passed(), "failures: {:?}", r.failures);
    let crashes = r
        .trace
        .iter()
        .filter(|l| l.contains("Crash") && l.contains("(knob: led term"))
        .count();
    let restarts = r
        .trace
        .iter()
        .filter(|l| l.contains("Restart") && l.contains("(knob: after leading)"))
        .count();
    assert!(crashes >= 2, "too few knob crashes in {:?}", r.trace);
    assert!(restarts >= 1, "no knob restart in {:?}", r.trace);
}
