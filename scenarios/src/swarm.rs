//! Swarm mode: per seed, a random subset of fault kinds, a random fault rate, a random
//! cluster size and disk profile.
//!
//! Different seeds stress different mixes, which finds bugs that a fixed mix of every
//! fault at once would mask. Each fault is an episode (fault, then its undo), and episodes
//! do not overlap, so the schedule is always valid. It does not run anything.

use detcd_sim::disk::DiskProfile;
use detcd_sim::fault::FaultEvent;
use detcd_sim::run::{Profile, RunConfig, WorkloadSpec};
use rand::Rng;

use crate::catalog::{KEYS, WARMUP_MS, base};
use crate::plan::{Plan, rest};

/// The name swarm runs carry in sweeps, artifacts and summaries.
pub const NAME: &str = "swarm";

/// The fault kinds swarm mode picks from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Isolate the current leader.
    LeaderPartition,
    /// Cut a random minority away.
    MinorityPartition,
    /// One-way link loss.
    Asymmetric,
    /// Clog a member's links.
    Clog,
    /// Packet loss on every link for a while.
    PacketLoss,
    /// Power loss of one member, then restart.
    Kill,
    /// Power loss of the leader, then heal.
    KillLeader,
    /// Process crash, then restart.
    Crash,
    /// Pause a member, then resume.
    Pause,
    /// fsync errors on one member.
    FsyncError,
    /// A full disk on one member, then freed.
    DiskFull,
    /// A bit flip in one member's files, then a process crash and restart, so it reads
    /// them again. Always the same member within a run, so at most one member may
    /// refuse its data.
    BitFlip,
    /// Remove a member through the Cluster service, then add it back as a fresh one.
    MemberChange,
}

/// Every kind, in a fixed order.
pub const KINDS: [Kind; 13] = [
    Kind::LeaderPartition,
    Kind::MinorityPartition,
    Kind::Asymmetric,
    Kind::Clog,
    Kind::PacketLoss,
    Kind::Kill,
    Kind::KillLeader,
    Kind::Crash,
    Kind::Pause,
    Kind::FsyncError,
    Kind::DiskFull,
    Kind::BitFlip,
    Kind::MemberChange,
];

/// Every workload profile swarm mode may mix in.
pub const PROFILES: [Profile; 6] = [
    Profile::Kv,
    Profile::Cas,
    Profile::Kube,
    Profile::Lease,
    Profile::Watch,
    Profile::Lock,
];

/// Clients of a swarm run's workload.
pub const SWARM_CLIENTS: u64 = 4;

/// Mean gaps between fault episodes swarm mode chooses from, in milliseconds.
pub const GAP_MS_CHOICES: [u64; 4] = [300, 800, 1_500, 3_000];

/// The configuration swarm mode draws for `seed`.
pub fn build(seed: u64) -> RunConfig {
    let mut p = Plan::new(seed ^ 0x5157_4152_4d00_0000);
    let members = if p.rng().random_bool(0.5) { 3 } else { 5 };
    let disk = if p.rng().random_bool(0.25) {
        DiskProfile::Hdd
    } else {
        DiskProfile::Ssd
    };
    let mut kinds: Vec<Kind> = KINDS
        .iter()
        .copied()
        .filter(|_| p.rng().random_bool(0.5))
        .collect();
    if kinds.is_empty() {
        let i = p.rng().random_range(0..KINDS.len());
        kinds.push(KINDS[i]);
    }
    let gap_ms = GAP_MS_CHOICES[p.rng().random_range(0..GAP_MS_CHOICES.len())];
    // The first client always runs the plain KV profile; the rest draw from all.
    let mut profiles = vec![Profile::Kv];
    for _ in 1..SWARM_CLIENTS {
        profiles.push(PROFILES[p.rng().random_range(0..PROFILES.len())]);
    }
    let flipped = p.member(members);
    let config = RunConfig {
        workload: WorkloadSpec::Mix {
            clients: SWARM_CLIENTS,
            keys: KEYS,
            profiles,
        },
        ..base(seed, members, disk)
    };
    let end_ms = config.duration_ms.saturating_sub(1_000);
    let mut t = WARMUP_MS;
    loop {
        t += p.between_ms(gap_ms / 2, gap_ms * 3 / 2);
        let hold_ms = p.between_ms(300, 2_500);
        if t + hold_ms >= end_ms {
            break;
        }
        let kind = kinds[p.rng().random_range(0..kinds.len())];
        episode(&mut p, kind, members, flipped, t, t + hold_ms);
        t += hold_ms;
    }
    RunConfig {
        schedule: p.finish(),
        ..config
    }
}

/// One fault of `kind` at `start_ms`, undone at `end_ms`; bit flips hit `flipped`.
fn episode(p: &mut Plan, kind: Kind, members: u64, flipped: u64, start_ms: u64, end_ms: u64) {
    match kind {
        Kind::LeaderPartition => {
            p.at(start_ms, FaultEvent::PartitionLeaderAway);
            p.at(end_ms, FaultEvent::HealAll);
        }
        Kind::MinorityPartition => {
            let minority = p.members(members, (members - 1) / 2);
            p.at(
                start_ms,
                FaultEvent::Partition {
                    groups: vec![rest(members, &minority), minority],
                },
            );
            p.at(end_ms, FaultEvent::HealAll);
        }
        Kind::Asymmetric => {
            let pair = p.members(members, 2);
            p.at(
                start_ms,
                FaultEvent::Asymmetric {
                    from: pair[0],
                    to: pair[1],
                },
            );
            p.at(end_ms, FaultEvent::HealAll);
        }
        Kind::Clog => {
            let member = p.member(members);
            p.at(start_ms, FaultEvent::Clog { member });
            p.at(end_ms, FaultEvent::Unclog { member });
        }
        Kind::PacketLoss => {
            let rate_ppm = p.rng().random_range(5_000..=150_000);
            p.at(start_ms, FaultEvent::PacketLoss { rate_ppm });
            p.at(end_ms, FaultEvent::PacketLoss { rate_ppm: 0 });
        }
        Kind::Kill => {
            let member = p.member(members);
            p.at(start_ms, FaultEvent::Kill { member });
            p.at(end_ms, FaultEvent::Restart { member });
        }
        Kind::KillLeader => {
            p.at(start_ms, FaultEvent::KillLeader);
            p.at(end_ms, FaultEvent::HealAll);
        }
        Kind::Crash => {
            let member = p.member(members);
            p.at(start_ms, FaultEvent::Crash { member });
            p.at(end_ms, FaultEvent::Restart { member });
        }
        Kind::Pause => {
            let member = p.member(members);
            p.at(start_ms, FaultEvent::Pause { member });
            p.at(end_ms, FaultEvent::Resume { member });
        }
        Kind::FsyncError => {
            let member = p.member(members);
            let count = p.rng().random_range(1..=3);
            p.at(start_ms, FaultEvent::FsyncError { member, count });
        }
        Kind::DiskFull => {
            let member = p.member(members);
            p.at(start_ms, FaultEvent::DiskFull { member });
            p.at(end_ms, FaultEvent::DiskFree { member });
        }
        Kind::BitFlip => {
            let seed = p.rng().random();
            p.at(
                start_ms,
                FaultEvent::BitFlip {
                    member: flipped,
                    seed,
                },
            );
            p.at(start_ms, FaultEvent::Crash { member: flipped });
            p.at(end_ms, FaultEvent::Restart { member: flipped });
        }
        Kind::MemberChange => {
            let member = p.member(members);
            p.at(start_ms, FaultEvent::MemberRemove { member });
            p.at(end_ms, FaultEvent::MemberAdd { member });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_is_deterministic_and_varies_across_seeds() {
        let mut shapes = std::collections::BTreeSet::new();
        for seed in 0..40 {
            let a = build(seed);
            assert_eq!(a.schedule, build(seed).schedule);
            a.schedule.validate(a.members).expect("members exist");
            assert!(
                a.schedule
                    .events
                    .windows(2)
                    .all(|w| w[0].at_ms <= w[1].at_ms)
            );
            assert!(a.schedule.events.iter().all(|e| e.at_ms < a.duration_ms));
            shapes.insert((a.members, a.schedule.events.len()));
        }
        assert!(shapes.len() > 3, "swarm should vary the mix: {shapes:?}");
    }

    #[test]
    fn every_fault_is_undone_within_the_run() {
        for seed in 0..60 {
            let c = build(seed);
            let mut down = std::collections::BTreeSet::new();
            let mut paused = std::collections::BTreeSet::new();
            for e in &c.schedule.events {
                match e.event {
                    FaultEvent::Kill { member } | FaultEvent::Crash { member } => {
                        down.insert(member);
                    }
                    FaultEvent::Restart { member } => {
                        down.remove(&member);
                    }
                    FaultEvent::Pause { member } => {
                        paused.insert(member);
                    }
                    FaultEvent::Resume { member } => {
                        paused.remove(&member);
                    }
                    _ => {}
                }
            }
            assert!(
                down.is_empty() && paused.is_empty(),
                "seed {seed}: {:?}",
                c.schedule
            );
        }
    }
}
