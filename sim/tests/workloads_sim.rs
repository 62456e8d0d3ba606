//! Whole simulated runs with every workload profile and the newer fault kinds
//! (membership change, full disk, bit flips): the run passes, each profile shows up in
//! the history in the checker's format, and each fault takes effect.
//! Run with `RUSTFLAGS="--cfg madsim" cargo test -p detcd-sim --test workloads_sim`.

#![cfg(madsim)]

use detcd_sim::disk::DiskProfile;
use detcd_sim::fault::{FaultEvent, Schedule};
use detcd_sim::run::{Profile, RunConfig, RunResult, WorkloadSpec, run};

fn config(seed: u64, members: u64, events: Vec<(u64, FaultEvent)>) -> RunConfig {
    RunConfig {
        seed,
        members,
        disk: DiskProfile::Ssd,
        schedule: Schedule::at_times(events),
        workload: WorkloadSpec::Mix {
            clients: 5,
            keys: 5,
            profiles: vec![
                Profile::Kv,
                Profile::Cas,
                Profile::Kube,
                Profile::Lease,
                Profile::Watch,
            ],
        },
        duration_ms: 9_000,
        liveness_ms: 10_000,
        bugs: Vec::new(),
        knobs: Default::default(),
    }
}

fn show(r: &RunResult) -> String {
    format!("{:?}\n{}", r.failures, r.trace.join("\n"))
}

#[test]
fn every_profile_records_what_the_checker_reads() {
    let r = run(&config(
        3,
        3,
        vec![
            (2_000, FaultEvent::KillLeader),
            (4_000, FaultEvent::HealAll),
        ],
    ));
    assert!(r.passed(), "{}", show(&r));
    let history = r.history.join("\n");
    for needle in [
        "\"txn\"",
        "\"compact\"",
        "\"limit\"",
        "\"lease_grant\"",
        "\"lease_keep_alive\"",
        "\"lease_time_to_live\"",
        "\"type\":\"watch\"",
        "\"type\":\"watch_events\"",
    ] {
        assert!(history.contains(needle), "no {needle} in the history");
    }
    // The members' own tracing lines reach the per-member logs, with simulated time.
    let member_lines: Vec<&String> = r
        .logs
        .values()
        .flatten()
        .filter(|l| l.contains(" detcd_engine::"))
        .collect();
    assert!(!member_lines.is_empty(), "{:?}", r.logs);
    assert!(
        r.logs.keys().all(|m| (1..=3).contains(m)),
        "{:?}",
        r.logs.keys()
    );
}

#[test]
fn a_member_is_removed_and_added_back_fresh_under_load() {
    let r = run(&config(
        5,
        5,
        vec![
            (2_000, FaultEvent::MemberRemove { member: 2 }),
            (3_000, FaultEvent::Kill { member: 4 }),
            (4_000, FaultEvent::Restart { member: 4 }),
            (5_000, FaultEvent::MemberAdd { member: 2 }),
        ],
    ));
    assert!(r.passed(), "{}", show(&r));
    let trace = r.trace.join("\n");
    assert!(trace.contains("(removed)"), "{trace}");
    assert!(trace.contains("(added as"), "{trace}");
}

/// A member removed and added back twice: each add gets its own peer port and so its
/// own ID (the same URL under the simulated clock would get the removed ID back, which
/// the cluster refuses), and the member is up and caught up after the heal.
#[test]
fn a_member_added_back_twice_rejoins_under_a_new_id_each_time() {
    let r = run(&config(
        7,
        3,
        vec![
            (1_500, FaultEvent::MemberRemove { member: 2 }),
            (2_500, FaultEvent::MemberAdd { member: 2 }),
            (4_500, FaultEvent::MemberRemove { member: 2 }),
            (5_500, FaultEvent::MemberAdd { member: 2 }),
        ],
    ));
    assert!(r.passed(), "{}", show(&r));
    let added: Vec<&str> = r
        .trace
        .iter()
        .filter_map(|l| l.split("(added as ").nth(1))
        .collect();
    assert_eq!(added.len(), 2, "{}", show(&r));
    let ids: Vec<&str> = added
        .iter()
        .filter_map(|a| a.split_whitespace().next())
        .collect();
    assert_ne!(ids.first(), ids.get(1), "{}", show(&r));
    assert!(
        r.trace.iter().any(|l| l.contains(" live: ")),
        "{}",
        show(&r)
    );
}

#[test]
fn full_disks_and_bit_flips_are_survived_or_refused_clearly() {
    let r = run(&config(
        7,
        3,
        vec![
            (2_000, FaultEvent::DiskFull { member: 1 }),
            (3_500, FaultEvent::DiskFree { member: 1 }),
            (
                4_000,
                FaultEvent::BitFlip {
                    member: 3,
                    seed: 11,
                },
            ),
            (4_000, FaultEvent::Crash { member: 3 }),
            (5_000, FaultEvent::Restart { member: 3 }),
        ],
    ));
    assert!(r.passed(), "{}", show(&r));
    let trace = r.trace.join("\n");
    assert!(trace.contains("DiskFull { member: 1 } ("), "{trace}");
    assert!(trace.contains("byte "), "{trace}");
}
