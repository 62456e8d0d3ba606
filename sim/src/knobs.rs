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
        };
        assert!(!on.is_off());
        let json = serde_json::to_string(&on).unwrap_or_default();
        let back: Knobs = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, on);
        let parsed: Knobs = serde_json::from_str("{}").unwrap_or(on);
        assert_eq!(parsed, off);
    }
}
