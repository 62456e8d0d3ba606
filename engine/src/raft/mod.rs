//! The sans-IO Raft core: leader election (PreVote, CheckQuorum), log replication with
//! batching and bounded in-flight windows, commit by quorum, ReadIndex, log compaction
//! and InstallSnapshot, one-node-at-a-time membership changes with learners, and
//! leadership transfer.
//!
//! The core is a value you step ([`RawNode`]): ticks, messages and proposals go in; a
//! [`Ready`] comes out with what to persist, what to send (only after persisting), what
//! to apply and which reads are safe. It deliberately does no I/O, reads no clock, spawns
//! nothing, and draws randomness only from a generator seeded by [`Config::seed`].
//! [`harness`] is an in-memory cluster that drives it with no I/O at all.
//!
//! A driver loop, for a single-voter cluster (persisting and sending left out):
//!
//! ```
//! use detcd_engine::raft::{Config, ConfState, RawNode, Role};
//!
//! let mut node = RawNode::new(Config::new(1), ConfState::with_voters([1])).unwrap();
//! node.campaign();
//! let index = loop {
//!     if node.has_ready() {
//!         let rd = node.ready();
//!         // persist rd.snapshot, rd.entries, rd.hard_state; then send rd.messages;
//!         // then apply rd.committed_entries and serve rd.read_states.
//!         node.advance();
//!         continue;
//!     }
//!     if node.status().role == Role::Leader {
//!         break node.propose(b"hello".to_vec()).unwrap();
//!     }
//!     node.tick();
//! };
//! let rd = node.ready();
//! assert_eq!(rd.committed_entries.last().map(|e| e.index), Some(index));
//! node.advance();
//! ```

#![warn(missing_docs)]

mod config;
mod core;
pub mod harness;
mod leader;
mod log;
mod progress;
mod raw_node;
mod read_index;
mod types;

#[cfg(test)]
mod safety_tests;
#[cfg(test)]
mod script_tests;

#[cfg(any(test, madsim))]
pub use config::BugSwitches;
pub use config::Config;
pub use log::RaftLog;
pub use progress::ProgressState;
pub use raw_node::{Brief, RawNode, Ready, RestartState, Status};
pub use types::{
    ConfChange, ConfChangeKind, ConfState, Entry, EntryKind, HardState, Message, MessageKind,
    NODE_NONE, NodeId, ReadState, Role, Snapshot, SnapshotMeta, SoftState,
};

/// Why the core refused a request or a restart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaftError {
    /// The configuration is unusable.
    #[error("invalid raft config: {0}")]
    InvalidConfig(String),
    /// Only the leader accepts this request; `leader` is the known leader or 0.
    #[error("not the leader (known leader: {leader})")]
    NotLeader {
        /// The known leader, or 0.
        leader: NodeId,
    },
    /// The leader refuses new work for now.
    #[error("proposal dropped: {0}")]
    ProposalDropped(&'static str),
    /// A membership change (or the leader's first entry of its term) is not committed yet.
    #[error("a membership change at index {pending_index} is not committed yet")]
    ConfChangePending {
        /// Index of the pending change.
        pending_index: u64,
    },
    /// The membership change makes no sense.
    #[error("invalid membership change: {0}")]
    InvalidConfChange(&'static str),
    /// Leadership can only go to a voter.
    #[error("cannot transfer leadership to {0}: not a voter")]
    InvalidTransferee(NodeId),
    /// `compact` outside the compactable range.
    #[error("cannot compact to {index}: allowed range is {lo}..={hi}")]
    CompactOutOfRange {
        /// Requested index.
        index: u64,
        /// Lowest allowed.
        lo: u64,
        /// Highest allowed (applied and persisted).
        hi: u64,
    },
    /// A message not meant for this node.
    #[error("message from {from} to {to} delivered to node {id}")]
    Misaddressed {
        /// Sender.
        from: NodeId,
        /// Addressee.
        to: NodeId,
        /// This node.
        id: NodeId,
    },
    /// Restart state is inconsistent.
    #[error("corrupt raft state: {0}")]
    Corrupt(String),
}
