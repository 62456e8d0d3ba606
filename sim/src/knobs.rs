//! Simulation-only knobs ("buggify"): ways a run can make rare but legal timings
//! common, so the self-test can show that the checks catch bugs which need such a
//! timing. A knob is part of the run config (saved with it and replayed), never a
//! hidden change: with every knob at its default a run is an ordinary run.
//!
//! Each knob is a fault a real cluster can suffer or a setting etcd exposes; none makes
//! a correct server fail. This module only holds the values; the world applies them.

use serde::{Deserialize, Serialize};

/// The knobs of one run; all off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Knobs {
    /// When non-zero: while the workload runs, the first member that grants its vote to
    /// another member in a term is process-crashed [`VOTE_CRASH_DELAY_MS`] later (its
    /// vote reply already sent, its vote persisted) and restarted this many simulated ms
    /// after the crash. One crash per term, so the cluster still gets work done.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub crash_after_vote_down_ms: u64,
    /// With [`Knobs::crash_after_vote_down_ms`]: when a voter is crashed, the candidate
    /// it voted for is cut off from everyone (a clog, until the schedule's next heal),
    /// so the voter comes back hearing from no leader, as after a partition.
    #[serde(default, skip_serializing_if = "is_false")]
    pub isolate_voted_candidate: bool,
    /// When non-zero: most entries in one Raft Append message (a valid but small
    /// batching limit, so a follower catching up acknowledges old entries one by one).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub raft_append_entries_max: u64,
    /// When non-zero: most unacknowledged Raft Append messages per follower.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub raft_inflight_msgs_max: u64,
    /// When non-zero (with [`Knobs::crash_new_leader_down_ms`]): while the workload
    /// runs, a member seen leading a new term is process-crashed (log kept) between 1 and
    /// this many simulated ms after it is first seen leading, the delay drawn from the
    /// run's seed and the term ([`new_leader_crash_delay_ms`]). Leaders then often die
    /// before their first entry reaches a quorum, as in Raft's Figure 8.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub crash_new_leader_within_ms: u64,
    /// Simulated ms a leader crashed by [`Knobs::crash_new_leader_within_ms`] stays down.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub crash_new_leader_down_ms: u64,
}

/// How long after first being seen leading `term` a leader is crashed under
/// [`Knobs::crash_new_leader_within_ms`] (`within_ms`): a value in `1..=within_ms`
/// mixed from the run's `seed` and the term, so a replay crashes at the same times.
pub fn new_leader_crash_delay_ms(seed: u64, term: u64, within_ms: u64) -> u64 {
    use rand::{Rng, SeedableRng};
    /// Separates this knob's stream from other uses of the run's seed.
    const STREAM: u64 = 0x6c65_6164_6572_0000;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ STREAM);
    rng.set_stream(term);
    rng.random_range(1..=within_ms.max(1))
}

/// Time between a member publishing a fresh vote and its crash under
/// [`Knobs::crash_after_vote_down_ms`], simulated ms: enough for the reply to leave.
pub const VOTE_CRASH_DELAY_MS: u64 = 10;

/// Time between a voter's crash and its candidate's isolation under
/// [`Knobs::isolate_voted_candidate`], simulated ms: enough for the vote reply to arrive.
pub const CANDIDATE_ISOLATE_DELAY_MS: u64 = 30;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Knobs {
    /// Whether every knob is off.
    pub fn is_off(&self) -> bool {
        *self == Knobs::default()
    }

    /// Whether the crash-new-leader knob is on (both of its values set).
    pub fn crashes_new_leaders(&self) -> bool {
        self.crash_new_leader_within_ms > 0 && self.crash_new_leader_down_ms > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_knobs_serialize_to_nothing_and_round_trip() {
        let off = Knobs::default();
        assert!(off.is_off());
        assert_eq!(serde_json::to_string(&off).unwrap_or_default(), "{}");
        let on = Knobs {
            crash_after_vote_down_ms: 40,
            isolate_voted_candidate: true,
            raft_append_entries_max: 1,
            raft_inflight_msgs_max: 2,
            crash_new_leader_within_ms: 30,
            crash_new_leader_down_ms: 400,
        };
        assert!(on.crashes_new_leaders());
        assert!(!on.is_off());
        let json = serde_json::to_string(&on).unwrap_or_default();
        let back: Knobs = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, on);
        let parsed: Knobs = serde_json::from_str("{}").unwrap_or(on);
        assert_eq!(parsed, off);
        assert!(!off.crashes_new_leaders());
    }

    #[test]
    fn new_leader_crash_delays_stay_in_range_and_vary_by_term() {
        let delays: Vec<u64> = (1..200)
            .map(|term| new_leader_crash_delay_ms(7, term, 30))
            .collect();
        assert!(delays.iter().all(|d| (1..=30).contains(d)), "{delays:?}");
        let distinct: std::collections::BTreeSet<u64> = delays.iter().copied().collect();
        assert!(distinct.len() > 20, "{distinct:?}");
        assert_eq!(new_leader_crash_delay_ms(7, 5, 30), delays[4]);
        assert_eq!(new_leader_crash_delay_ms(7, 5, 0), 1);
    }
}
