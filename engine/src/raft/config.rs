//! Tuning knobs and limits of one Raft node, plus the simulator's bug switches.
//!
//! Every limit has its unit in its name. This module only validates values; it does not
//! decide policy (the driver picks ticks per second, the core counts ticks).

use super::RaftError;
use super::types::{NODE_NONE, NodeId};

/// Configuration of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// Base election timeout in ticks; the actual timeout is drawn from
    /// `[election_ticks, 2 * election_ticks)` after each reset.
    pub election_ticks: u32,
    /// Ticks between leader heartbeats; must be smaller than `election_ticks`.
    pub heartbeat_ticks: u32,
    /// Run a PreVote round before bumping the term.
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a quorum for an election timeout,
    /// and followers ignore vote requests while they hear from a leader.
    pub check_quorum: bool,
    /// Most entries in one Append message.
    pub append_entries_max: usize,
    /// Most entry bytes in one Append message (at least one entry is always sent).
    pub append_bytes_max: u64,
    /// Most unacknowledged Append messages to a follower in the replicate state.
    pub inflight_msgs_max: usize,
    /// Most entries a leader keeps uncommitted before it drops new proposals.
    pub uncommitted_entries_max: usize,
    /// Most committed-entry bytes handed out in one `Ready` (at least one entry).
    pub apply_bytes_max_per_ready: u64,
    /// Seed of the node's random generator (election timeouts).
    pub seed: u64,
    /// Deliberate protocol bugs, for proving that the tests can fail.
    #[cfg(any(test, madsim))]
    pub bugs: BugSwitches,
}

/// Deliberately broken behaviours, switched on only by tests and the simulator to show
/// that the safety checks catch them.
#[cfg(any(test, madsim))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BugSwitches {
    /// Grant a vote even after voting for someone else in the same term.
    pub vote_twice_in_term: bool,
    /// Forget the persisted vote when restarting.
    pub forget_vote_on_restart: bool,
    /// Commit an entry from an earlier term once a quorum holds it.
    pub commit_earlier_term_by_count: bool,
    /// Answer ReadIndex at once, without confirming leadership with a quorum.
    pub read_without_quorum_check: bool,
    /// Take any answer as confirming every pending read, whatever stamp it echoes (an
    /// answer to a message sent before a read arrived then confirms it).
    pub read_ignore_stamps: bool,
}

impl Config {
    /// A configuration with conventional defaults (10-tick elections, 1-tick heartbeats,
    /// PreVote and CheckQuorum on).
    pub fn new(id: NodeId) -> Self {
        Config {
            id,
            election_ticks: 10,
            heartbeat_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            append_entries_max: 64,
            append_bytes_max: 1024 * 1024,
            inflight_msgs_max: 256,
            uncommitted_entries_max: 10_000,
            apply_bytes_max_per_ready: 64 * 1024 * 1024,
            seed: id,
            #[cfg(any(test, madsim))]
            bugs: BugSwitches::default(),
        }
    }

    /// Checks that the values make sense together.
    pub fn validate(&self) -> Result<(), RaftError> {
        let bad = |why: &str| Err(RaftError::InvalidConfig(why.to_string()));
        if self.id == NODE_NONE {
            return bad("id must not be 0");
        }
        if self.heartbeat_ticks == 0 {
            return bad("heartbeat_ticks must be at least 1");
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return bad("election_ticks must be greater than heartbeat_ticks");
        }
        if self.append_entries_max == 0 || self.append_bytes_max == 0 {
            return bad("append limits must be at least 1");
        }
        if self.inflight_msgs_max == 0 {
            return bad("inflight_msgs_max must be at least 1");
        }
        if self.uncommitted_entries_max == 0 || self.apply_bytes_max_per_ready == 0 {
            return bad("uncommitted and apply limits must be at least 1");
        }
        Ok(())
    }
}
