//! The named scenarios: each turns a seed into a full run configuration.
//!
//! A scenario fixes the cluster shape, the disk profile, the workload and the *kind* of
//! faults; the seed picks the victims and the timing. The schedule is plain data, so a
//! failing case replays from its saved JSON even after a scenario changes here.
//! This module does not run anything.

use detcd_sim::disk::DiskProfile;
use detcd_sim::fault::FaultEvent;
use detcd_sim::run::{Profile, RunConfig, WorkloadSpec};

use crate::ScenarioError;
use crate::plan::{Plan, rest};

/// Simulated workload time before the final heal, in milliseconds.
pub const DURATION_MS: u64 = 12_000;
/// The stated bound for liveness after the final heal, in simulated milliseconds.
pub const LIVENESS_MS: u64 = 10_000;
/// Concurrent clients of the default workload.
pub const CLIENTS: u64 = 4;
/// Distinct keys of the default workload.
pub const KEYS: u64 = 8;
/// The time before the first fault, so the cluster has elected a leader, in milliseconds.
pub const WARMUP_MS: u64 = 1_500;

/// A named scenario.
pub struct Scenario {
    /// The name used on the command line.
    pub name: &'static str,
    /// One line saying what it does.
    pub about: &'static str,
    /// Seed → configuration.
    pub build: fn(u64) -> RunConfig,
}

/// All named scenarios, in the order `list` shows them.
pub fn all() -> &'static [Scenario] {
    &[
        Scenario {
            name: "calm",
            about: "no faults: the baseline every other run is compared with",
            build: calm,
        },
        Scenario {
            name: "leader-partition",
            about: "isolate the current leader, heal, three times",
            build: leader_partition,
        },
        Scenario {
            name: "minority-partition",
            about: "5 members: cut a random minority of 2 away, heal, twice",
            build: minority_partition,
        },
        Scenario {
            name: "majority-partition",
            about: "5 members: split into groups 2/2/1 so no side has a quorum, heal",
            build: majority_partition,
        },
        Scenario {
            name: "asymmetric-partition",
            about: "drop traffic one way only between random pairs, heal",
            build: asymmetric_partition,
        },
        Scenario {
            name: "leader-crash-loop",
            about: "power off the leader, bring it back, five times in a row",
            build: leader_crash_loop,
        },
        Scenario {
            name: "power-loss-minority",
            about: "power loss on one member, restart, three rounds on random members",
            build: power_loss_minority,
        },
        Scenario {
            name: "power-loss-all",
            about: "power loss on every member at once, then restart all",
            build: power_loss_all,
        },
        Scenario {
            name: "rolling-restart",
            about: "process crash and restart of each member in turn",
            build: rolling_restart,
        },
        Scenario {
            name: "slow-hdd",
            about: "HDD latency on all members, a leader partition on top",
            build: slow_hdd,
        },
        Scenario {
            name: "flaky-network",
            about: "packet loss, clogged members and pauses under load",
            build: flaky_network,
        },
        Scenario {
            name: "membership-change-under-faults",
            about: "5 members: remove one, power off another, add the first back fresh, isolate the leader",
            build: membership_change_under_faults,
        },
        Scenario {
            name: "lease-expiry-across-leader-change",
            about: "lease clients let leases expire and revoke them while the leader dies and is isolated",
            build: lease_expiry_across_leader_change,
        },
        Scenario {
            name: "watch-across-compaction",
            about: "watchers resume from revisions while Kubernetes-like clients compact, under a power loss",
            build: watch_across_compaction,
        },
        Scenario {
            name: "locks-and-elections",
            about: "Lock and Election clients contend while the leader dies, is isolated and a member pauses",
            build: locks_and_elections,
        },
    ]
}

/// The scenario called `name`.
pub fn find(name: &str) -> Result<&'static Scenario, ScenarioError> {
    all()
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ScenarioError::UnknownScenario(name.to_owned()))
}

/// A configuration with no faults yet: `members` members on `disk`, the default workload.
pub fn base(seed: u64, members: u64, disk: DiskProfile) -> RunConfig {
    RunConfig {
        seed,
        members,
        disk,
        schedule: Plan::new(seed).finish(),
        workload: WorkloadSpec::Kv {
            clients: CLIENTS,
            keys: KEYS,
        },
        duration_ms: DURATION_MS,
        liveness_ms: LIVENESS_MS,
        bugs: Vec::new(),
        knobs: Default::default(),
    }
}

/// Clients of the time-compression bench's run (`detcd-sim bench`'s default).
pub const BENCH_CLIENTS: u64 = 16;
/// Workload time of the time-compression bench's run, simulated ms.
pub const BENCH_DURATION_MS: u64 = 10_000;

/// The bench's runs as scenarios a sweep can run (`--jobs` and all): name, members.
/// Not part of `all`.
pub const BENCH_SCENARIOS: [(&str, u64); 2] = [("bench-3", 3), ("bench-5", 5)];

/// The configuration of the bench scenario `name` for `seed`, if it is one.
pub fn bench_scenario(name: &str, seed: u64) -> Option<RunConfig> {
    BENCH_SCENARIOS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, members)| bench_config(seed, *members, BENCH_CLIENTS, BENCH_DURATION_MS))
}

/// The time-compression bench's run: a fault-free cluster of `members` on SSDs under a
/// KV load of `clients` clients for `duration_ms` simulated ms (`detcd-sim bench` and the
/// criterion bench `sim_time` share it).
pub fn bench_config(seed: u64, members: u64, clients: u64, duration_ms: u64) -> RunConfig {
    RunConfig {
        workload: WorkloadSpec::Kv {
            clients,
            keys: KEYS,
        },
        duration_ms,
        ..base(seed, members, DiskProfile::Ssd)
    }
}

/// Mixes the scenario's own name into the seed, so two scenarios never share a timeline.
fn plan_for(seed: u64, name: &str) -> Plan {
    let salt = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    Plan::new(seed ^ salt)
}

fn with(seed: u64, members: u64, disk: DiskProfile, plan: Plan) -> RunConfig {
    RunConfig {
        schedule: plan.finish(),
        ..base(seed, members, disk)
    }
}

/// A mixed workload: `profiles` assigned round-robin to one client each.
pub fn mix(profiles: &[Profile]) -> WorkloadSpec {
    WorkloadSpec::Mix {
        clients: profiles.len() as u64,
        keys: KEYS,
        profiles: profiles.to_vec(),
    }
}

fn calm(seed: u64) -> RunConfig {
    base(seed, 3, DiskProfile::Ssd)
}

fn leader_partition(seed: u64) -> RunConfig {
    let mut p = plan_for(seed, "leader-partition");
    let mut t = WARMUP_MS;
    for _ in 0..3 {
        t += p.between_ms(200, 800);
        p.at(t, FaultEvent::PartitionLeaderAway);
        t += p.between_ms(1_000, 2_500);
        p.at(t, FaultEvent::HealAll);
    }
    with(seed, 3, DiskProfile::Ssd, p)
}

fn minority_partition(seed: u64) -> RunConfig {
    let mut p = plan_for(seed, "minority-partition");
    let mut t = WARMUP_MS;
    for _ in 0..2 {
        let minority = p.members(5, 2);
        t += p.between_ms(200, 1_500);
        p.at(
            t,
            FaultEvent::Partition {
                groups: vec![rest(5, &minority), minority],
            },
        );
        t += p.between_ms(1_500, 3_500);
        p.at(t, FaultEvent::HealAll);
    }
    with(seed, 5, DiskProfile::Ssd, p)
}

fn majority_partition(seed: u64) -> RunConfig {
    let mut p = plan_for(seed, "majority-partition");
    let order = p.members(5, 5);
    // Shuffle into groups of 2, 2 and 1: no group holds 3 of 5.
    let mut shuffled = order;
    for i in 0..shuffled.len() {
        let j = p.between_ms(i as u64, 4) as usize;
        shuffled.swap(i, j);
    }
    let t = WARMUP_MS + p.between_ms(500, 2_000);
    let groups = vec![
        shuffled[0..2].to_vec(),
        shuffled[2..4].to_vec(),
        shuffled[4..].to_vec(),
    ];
    p.at(t, FaultEvent::Partition { groups });
    let heal = t + p.between_ms(3_000, 6_000);
    p.at(heal, FaultEvent::HealAll);
    with(seed, 5, DiskProfile::Ssd, p)
}

fn asymmetric_partition(seed: u64) -> RunConfig {
    let mut p = plan_for(seed, "asymmetric-partition");
    let mut t = WARMUP_MS;
    for _ in 0..3 {
        let pair = p.members(3, 2);
        let (from, to) = if p.between_ms(0, 1) == 0 {
            (pair[0], pair[1])
        } else {
            (pair[1], pair[0])
        };
        t += p.between_ms(200, 800);
        p.at(t, FaultEvent::Asymmetric { from, to });
        t += p.between_ms(1_000, 2_500);
        p.at(t, FaultEvent::HealAll);
    }
    with(seed, 3, DiskProfile::Ssd, p)
}

fn leader_crash_loop(seed: u64) -> RunConfig {
    let mut p = plan_for(seed, "leader-crash-loop");
    let mut t = WARMUP_MS;
    for _ in 0..5 {
        t += p.between_ms(300, 800);
        p.at(t, FaultEvent::KillLeader);
        // HealAll restarts whoever is down, whichever member led.
        t += p.between_ms(500, 1_000);
        p.at(t, FaultEvent::HealAll);
    }
    with(seed, 3, DiskProfile::Ssd, p)
}

fn power_loss_minority(seed: u64) -> RunConfig {
    let mut p = plan_for(seed, "power-loss-minority");
    let mut t = WARMUP_MS;
    for _ in 0..3 {
        let member = p.member(3);
        t += p.between_ms(300, 1_200);
        p.at(t, FaultEvent::Kill { member });
        t += p.between_ms(500, 2_000);
        p.at(t, FaultEvent::Restart { member });
    }
    with(seed, 3, DiskProfile::Ssd, p)
}

fn power_loss_all(seed: u64) -> RunConfig {
    let mut p = plan_for(seed, "power-loss-all");
    let t = WARMUP_MS + p.between_ms(1_000, 4_000);
    for member in 1..=3 {
        p.at(t, FaultEvent::Kill { member });
    }
    let back = t + p.between_ms(500, 2_000);
    for member in 1..=3 {
        let skew = p.between_ms(0, 300);
        p.at(back + skew, FaultEvent::Restart { member });
    }
    with(seed, 3, DiskProfile::Ssd, p)
}

fn rolling_restart(seed: u64) -> RunConfig {
    let mut p = plan_for(seed, "rolling-restart");
    let mut t = WARMUP_MS;
    for member in 1..=3 {
        t += p.between_ms(500, 1_500);
        p.at(t, FaultEvent::Crash { member });
        t += p.between_ms(300, 1_000);
        p.at(t, FaultEvent::Restart { member });
    }
    with(seed, 3, DiskProfile::Ssd, p)
}

fn slow_hdd(seed: u64) -> RunConfig {
    let mut p = plan_for(seed, "slow-hdd");
    let t = WARMUP_MS + p.between_ms(1_000, 3_000);
    p.at(t, FaultEvent::PartitionLeaderAway);
    let heal = t + p.between_ms(1_000, 3_000);
    p.at(heal, FaultEvent::HealAll);
    with(seed, 3, DiskProfile::Hdd, p)
}

fn flaky_network(seed: u64) -> RunConfig {
    let mut p = plan_for(seed, "flaky-network");
    let mut t = WARMUP_MS;
    let rate_ppm = u32::try_from(p.between_ms(10_000, 100_000)).unwrap_or(50_000);
    p.at(t, FaultEvent::PacketLoss { rate_ppm });
    for _ in 0..2 {
        let member = p.member(3);
        t += p.between_ms(500, 1_200);
        p.at(t, FaultEvent::Clog { member });
        t += p.between_ms(300, 1_000);
        p.at(t, FaultEvent::Unclog { member });
        let paused = p.member(3);
        t += p.between_ms(200, 800);
        p.at(t, FaultEvent::Pause { member: paused });
        t += p.between_ms(300, 1_000);
        p.at(t, FaultEvent::Resume { member: paused });
    }
    with(seed, 3, DiskProfile::Ssd, p)
}

fn membership_change_under_faults(seed: u64) -> RunConfig {
    let mut p = plan_for(seed, "membership-change-under-faults");
    let pair = p.members(5, 2);
    let (gone, victim) = (pair[0], pair[1]);
    let mut t = WARMUP_MS + p.between_ms(300, 1_000);
    p.at(t, FaultEvent::MemberRemove { member: gone });
    t += p.between_ms(500, 1_000);
    p.at(t, FaultEvent::Kill { member: victim });
    t += p.between_ms(1_000, 2_000);
    p.at(t, FaultEvent::Restart { member: victim });
    t += p.between_ms(500, 1_000);
    p.at(t, FaultEvent::MemberAdd { member: gone });
    t += p.between_ms(1_500, 2_500);
    p.at(t, FaultEvent::PartitionLeaderAway);
    t += p.between_ms(1_000, 2_000);
    p.at(t, FaultEvent::HealAll);
    RunConfig {
        workload: mix(&[
            Profile::Kv,
            Profile::Cas,
            Profile::Watch,
            Profile::Kv,
            Profile::Cas,
        ]),
        ..with(seed, 5, DiskProfile::Ssd, p)
    }
}

fn lease_expiry_across_leader_change(seed: u64) -> RunConfig {
    let mut p = plan_for(seed, "lease-expiry-across-leader-change");
    let mut t = WARMUP_MS + p.between_ms(1_500, 2_500);
    p.at(t, FaultEvent::KillLeader);
    t += p.between_ms(1_000, 2_000);
    p.at(t, FaultEvent::HealAll);
    t += p.between_ms(1_500, 2_500);
    p.at(t, FaultEvent::PartitionLeaderAway);
    t += p.between_ms(1_000, 2_000);
    p.at(t, FaultEvent::HealAll);
    RunConfig {
        workload: mix(&[
            Profile::Lease,
            Profile::Lease,
            Profile::Kv,
            Profile::Watch,
            Profile::Lease,
        ]),
        ..with(seed, 3, DiskProfile::Ssd, p)
    }
}

fn watch_across_compaction(seed: u64) -> RunConfig {
    let mut p = plan_for(seed, "watch-across-compaction");
    let member = p.member(3);
    let mut t = WARMUP_MS + p.between_ms(1_000, 2_500);
    p.at(t, FaultEvent::Kill { member });
    t += p.between_ms(1_000, 2_500);
    p.at(t, FaultEvent::Restart { member });
    t += p.between_ms(1_000, 2_000);
    p.at(t, FaultEvent::PartitionLeaderAway);
    t += p.between_ms(1_000, 2_000);
    p.at(t, FaultEvent::HealAll);
    RunConfig {
        workload: mix(&[
            Profile::Watch,
            Profile::Kube,
            Profile::Watch,
            Profile::Kube,
            Profile::Kv,
        ]),
        ..with(seed, 3, DiskProfile::Ssd, p)
    }
}

fn locks_and_elections(seed: u64) -> RunConfig {
    let mut p = plan_for(seed, "locks-and-elections");
    let mut t = WARMUP_MS + p.between_ms(500, 1_500);
    p.at(t, FaultEvent::KillLeader);
    t += p.between_ms(800, 1_500);
    p.at(t, FaultEvent::HealAll);
    t += p.between_ms(800, 1_500);
    p.at(t, FaultEvent::PartitionLeaderAway);
    t += p.between_ms(800, 2_000);
    p.at(t, FaultEvent::HealAll);
    let member = p.member(3);
    t += p.between_ms(300, 1_000);
    p.at(t, FaultEvent::Pause { member });
    t += p.between_ms(300, 1_000);
    p.at(t, FaultEvent::Resume { member });
    RunConfig {
        workload: mix(&[
            Profile::Lock,
            Profile::Lock,
            Profile::Lock,
            Profile::Kv,
            Profile::Watch,
        ]),
        ..with(seed, 3, DiskProfile::Ssd, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_is_deterministic_sorted_and_in_range() {
        for s in all() {
            for seed in 0..20 {
                let a = (s.build)(seed);
                let b = (s.build)(seed);
                let ja = serde_json::to_string(&a.schedule).expect("json");
                assert_eq!(
                    ja,
                    serde_json::to_string(&b.schedule).expect("json"),
                    "{}",
                    s.name
                );
                assert_eq!(a.seed, seed);
                a.schedule.validate(a.members).expect("members exist");
                let events = &a.schedule.events;
                assert!(
                    events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms),
                    "{}",
                    s.name
                );
                assert!(
                    events.iter().all(|e| e.at_ms < a.duration_ms),
                    "{}: fault after the end",
                    s.name
                );
                for e in events {
                    let in_range = |m: &u64| (1..=a.members).contains(m);
                    let ok = match &e.event {
                        FaultEvent::Partition { groups } => {
                            let mut all: Vec<u64> = groups.iter().flatten().copied().collect();
                            all.sort_unstable();
                            all == (1..=a.members).collect::<Vec<_>>()
                        }
                        FaultEvent::Asymmetric { from, to } => {
                            in_range(from) && in_range(to) && from != to
                        }
                        FaultEvent::Kill { member }
                        | FaultEvent::Crash { member }
                        | FaultEvent::Restart { member }
                        | FaultEvent::Clog { member }
                        | FaultEvent::Unclog { member }
                        | FaultEvent::Pause { member }
                        | FaultEvent::Resume { member }
                        | FaultEvent::DiskSlow { member, .. }
                        | FaultEvent::FsyncError { member, .. } => in_range(member),
                        _ => true,
                    };
                    assert!(ok, "{}: bad event {e:?}", s.name);
                }
            }
        }
    }

    #[test]
    fn seeds_change_the_timeline_and_names_are_unique() {
        let names: std::collections::BTreeSet<_> = all().iter().map(|s| s.name).collect();
        assert_eq!(names.len(), all().len());
        let s = find("leader-partition").expect("exists");
        assert_ne!((s.build)(1).schedule, (s.build)(2).schedule);
        assert!(find("no-such").is_err());
    }

    #[test]
    fn majority_partition_leaves_no_quorum() {
        for seed in 0..50 {
            let c = majority_partition(seed);
            let FaultEvent::Partition { groups } = &c.schedule.events[0].event else {
                panic!("first event is the split");
            };
            assert!(
                groups.iter().all(|g| (g.len() as u64) * 2 <= c.members),
                "{groups:?}"
            );
        }
    }
}
