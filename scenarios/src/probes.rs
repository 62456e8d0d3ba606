//! The self-test's own scenarios: fault patterns aimed at one Raft safety rule each,
//! with simulation knobs ([`detcd_sim::knobs::Knobs`]) that make the rare timing the
//! rule guards against common. Every one of them must pass on a correct server (the
//! self-test reruns each catching seed without the bug); they are not part of `all`.
//!
//! This module only builds configurations; judging runs is [`crate::selftest`]'s job.

use detcd_sim::disk::DiskProfile;
use detcd_sim::fault::FaultEvent;
use detcd_sim::knobs::Knobs;
use detcd_sim::run::{RunConfig, WorkloadSpec};

use crate::catalog;
use crate::plan::{self, Plan};

/// 3 members whose processes all crash and restart at once while the link between two
/// of them is cut, so both campaign through the third (the hub); the hub crashes right
/// after each vote it grants and comes back later, while the candidate it voted for is
/// cut off (knobs), so the other candidate of the same term can ask it again.
pub const VOTE_SPLIT: &str = "vote-split";

/// 3 members with Raft batching shrunk to one entry per message (knob); a follower is
/// cut off while the leader keeps writing, the leader loses power, and the follower
/// comes back: the new leader catches it up entry by entry, from entries of the old
/// term that the new leader does not yet know to be committed.
pub const CATCH_UP: &str = "catch-up-after-leader-loss";

/// Raft's Figure 8 on 3 members: one-entry appends (knob), and every new leader is
/// process-crashed a few ms after it wins (knob), often before its first entry reaches
/// anyone, and comes back later. A leader can then count an earlier term's entry onto a
/// majority, die before its own entry follows, and a member holding a later (but still
/// older) term's entry wins the next election and overwrites it.
pub const FIGURE_8: &str = "figure-8";

/// Every self-test scenario, with a line on what it does.
pub const ALL: [(&str, &str); 3] = [
    (
        VOTE_SPLIT,
        "3 members: cut one link, crash and restart all; voters crash right after voting",
    ),
    (
        CATCH_UP,
        "3 members, one-entry appends: isolate a follower, power off the leader, heal",
    ),
    (
        FIGURE_8,
        "3 members, one-entry appends: crash each new leader a few ms after it wins",
    ),
];

/// Workload time of [`FIGURE_8`], simulated ms: every leader dies young, so elections
/// take most of it.
const FIGURE_8_DURATION_MS: u64 = 20_000;
/// Clients of [`FIGURE_8`]: few, since every leader crash leaves writes of unknown
/// outcome for the checker to resolve (with 4 the checker's step budget can run out).
const FIGURE_8_CLIENTS: u64 = 2;

/// Workload time of [`VOTE_SPLIT`], simulated ms (longer than the catalog's, for more
/// elections per run).
const VOTE_SPLIT_DURATION_MS: u64 = 24_000;
/// Clients of [`VOTE_SPLIT`]: few, since every crash leaves writes of unknown outcome
/// for the checker to resolve.
const VOTE_SPLIT_CLIENTS: u64 = 2;

/// The configuration of a self-test scenario, or `None` for another name.
pub fn config_for(scenario: &str, seed: u64) -> Option<RunConfig> {
    match scenario {
        VOTE_SPLIT => Some(vote_split(seed)),
        CATCH_UP => Some(catch_up(seed)),
        FIGURE_8 => Some(figure_8(seed)),
        _ => None,
    }
}

/// The catalog's base configuration with a longer workload of `clients` KV clients.
fn kv_base(seed: u64, members: u64, duration_ms: u64, clients: u64) -> RunConfig {
    RunConfig {
        duration_ms,
        workload: WorkloadSpec::Kv {
            clients,
            keys: catalog::KEYS,
        },
        ..catalog::base(seed, members, DiskProfile::Ssd)
    }
}

fn vote_split(seed: u64) -> RunConfig {
    const MEMBERS: u64 = 3;
    let config = kv_base(seed, MEMBERS, VOTE_SPLIT_DURATION_MS, VOTE_SPLIT_CLIENTS);
    let mut p = Plan::new(seed ^ 0x7370_6c69_7400_0000);
    let end_ms = config.duration_ms.saturating_sub(1_000);
    let mut t = catalog::WARMUP_MS;
    while t + 4_500 < end_ms {
        let cut = p.members(MEMBERS, 2);
        let [a, b] = cut[..] else { break };
        let hub = plan::rest(MEMBERS, &cut)
            .first()
            .copied()
            .unwrap_or(MEMBERS);
        p.at(t, FaultEvent::Asymmetric { from: a, to: b });
        p.at(t, FaultEvent::Asymmetric { from: b, to: a });
        for member in 1..=MEMBERS {
            p.at(t + 1, FaultEvent::Crash { member });
        }
        // The two cut members come back first, so one of them (not the hub) is the
        // first to time out and campaign.
        for member in [a, b] {
            let up = t + p.between_ms(20, 100);
            p.at(up, FaultEvent::Restart { member });
        }
        let up = t + p.between_ms(500, 800);
        p.at(up, FaultEvent::Restart { member: hub });
        t += p.between_ms(4_000, 4_500);
        p.at(t, FaultEvent::HealAll);
        t += p.between_ms(300, 600);
    }
    let down_ms = p.between_ms(1_500, 2_200);
    RunConfig {
        schedule: p.finish(),
        knobs: Knobs {
            crash_after_vote_down_ms: down_ms,
            isolate_voted_candidate: true,
            ..Knobs::default()
        },
        ..config
    }
}

fn catch_up(seed: u64) -> RunConfig {
    const MEMBERS: u64 = 3;
    let config = catalog::base(seed, MEMBERS, DiskProfile::Ssd);
    let mut p = Plan::new(seed ^ 0x6361_7463_6800_0000);
    let end_ms = config.duration_ms.saturating_sub(1_000);
    let mut t = catalog::WARMUP_MS;
    while t + 3_500 < end_ms {
        let member = p.member(MEMBERS);
        p.at(t, FaultEvent::Clog { member });
        t += p.between_ms(500, 1_200);
        p.at(t, FaultEvent::KillLeader);
        t += p.between_ms(50, 300);
        p.at(t, FaultEvent::Unclog { member });
        t += p.between_ms(2_000, 2_500);
        p.at(t, FaultEvent::HealAll);
        t += p.between_ms(200, 500);
    }
    RunConfig {
        schedule: p.finish(),
        knobs: Knobs {
            raft_append_entries_max: 1,
            raft_inflight_msgs_max: 1,
            ..Knobs::default()
        },
        ..config
    }
}

fn figure_8(seed: u64) -> RunConfig {
    const MEMBERS: u64 = 3;
    let config = kv_base(seed, MEMBERS, FIGURE_8_DURATION_MS, FIGURE_8_CLIENTS);
    let mut p = Plan::new(seed ^ 0x6669_6738_0000_0000);
    let within_ms = p.between_ms(20, 60);
    let down_ms = p.between_ms(800, 1_600);
    RunConfig {
        schedule: p.finish(),
        knobs: Knobs {
            raft_append_entries_max: 1,
            raft_inflight_msgs_max: 1,
            crash_new_leader_within_ms: within_ms,
            crash_new_leader_down_ms: down_ms,
            ..Knobs::default()
        },
        ..config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_scenario_builds_a_valid_schedule() {
        for (name, _) in ALL {
            for seed in 0..4 {
                let c = config_for(name, seed).expect("listed");
                assert!(c.schedule.validate(c.members).is_ok(), "{name} {seed}");
                let faults = !c.schedule.events.is_empty() || !c.knobs.is_off();
                assert!(faults, "{name} {seed}");
            }
        }
        assert!(config_for("no-such", 0).is_none());
        let split = config_for(VOTE_SPLIT, 3).expect("listed");
        assert!(split.knobs.crash_after_vote_down_ms > 0);
        let fig = config_for(FIGURE_8, 3).expect("listed");
        assert!(fig.knobs.crashes_new_leaders() && fig.members == 3);
    }
}
