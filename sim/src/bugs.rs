//! The deliberate server bugs a run can switch on, by name, for the harness self-test
//! (see `detcd_engine::server::node::sim_bugs`). The names build everywhere so configs
//! and artifacts can carry them; turning them into the engine's switches happens only
//! under `--cfg madsim`. This module does not decide which scenarios catch which bug.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One deliberate bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bug {
    /// The WAL skips `fdatasync`: writes are acknowledged before they are durable.
    AckWriteBeforeSync,
    /// A follower serves linearizable reads from its own state, without ReadIndex.
    FollowerLocalLinearizableRead,
    /// Raft forgets its persisted vote on restart.
    ForgetVoteOnRestart,
    /// Raft commits an earlier term's entry by counting replicas.
    CommitEarlierTermByCount,
    /// The leader expires leases in its own state instead of through Raft.
    LeaseExpiryWithoutRaft,
}

impl Bug {
    /// Every bug, in a fixed order.
    pub const ALL: [Bug; 5] = [
        Bug::AckWriteBeforeSync,
        Bug::FollowerLocalLinearizableRead,
        Bug::ForgetVoteOnRestart,
        Bug::CommitEarlierTermByCount,
        Bug::LeaseExpiryWithoutRaft,
    ];

    /// The bug's command-line name (`ack-write-before-sync`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Bug::AckWriteBeforeSync => "ack-write-before-sync",
            Bug::FollowerLocalLinearizableRead => "follower-local-linearizable-read",
            Bug::ForgetVoteOnRestart => "forget-vote-on-restart",
            Bug::CommitEarlierTermByCount => "commit-earlier-term-by-count",
            Bug::LeaseExpiryWithoutRaft => "lease-expiry-without-raft",
        }
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a bug.
#[derive(Debug, thiserror::Error)]
#[error("unknown bug {0:?}; known: {known}", known = Bug::ALL.map(Bug::name).join(", "))]
pub struct UnknownBug(pub String);

impl FromStr for Bug {
    type Err = UnknownBug;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.replace('_', "-");
        Bug::ALL
            .into_iter()
            .find(|b| b.name() == wanted)
            .ok_or_else(|| UnknownBug(s.to_owned()))
    }
}

/// The engine's switch set for `bugs`.
#[cfg(madsim)]
pub fn engine_switches(bugs: &[Bug]) -> detcd_engine::server::node::sim_bugs::SimBugs {
    let mut s = detcd_engine::server::node::sim_bugs::SimBugs::default();
    for bug in bugs {
        match bug {
            Bug::AckWriteBeforeSync => s.ack_write_before_sync = true,
            Bug::FollowerLocalLinearizableRead => s.follower_local_linearizable_read = true,
            Bug::ForgetVoteOnRestart => s.forget_vote_on_restart = true,
            Bug::CommitEarlierTermByCount => s.commit_earlier_term_by_count = true,
            Bug::LeaseExpiryWithoutRaft => s.lease_expiry_without_raft = true,
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for bug in Bug::ALL {
            assert_eq!(bug.name().parse::<Bug>().ok(), Some(bug));
            let json = serde_json::to_string(&bug).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", bug.name()));
        }
        assert_eq!(
            "forget_vote_on_restart".parse::<Bug>().ok(),
            Some(Bug::ForgetVoteOnRestart)
        );
        assert!("no-such-bug".parse::<Bug>().is_err());
    }
}
