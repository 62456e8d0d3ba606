//! The values the Raft core exchanges with its driver: log entries, the persistent
//! hard state, membership, snapshots and peer messages.
//!
//! Everything here is plain data (`serde` + `Clone + Debug + PartialEq`), so the driver
//! can encode it to the WAL or the wire as it likes. This module holds no behaviour
//! beyond small constructors and accessors; it deliberately knows nothing about how the
//! values are encoded.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A node's identity. `0` is reserved for "none" (no vote, no known leader).
pub type NodeId = u64;

/// The reserved id meaning "no node".
pub const NODE_NONE: NodeId = 0;

/// What a log entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// Application data, opaque to the core.
    Normal,
    /// A postcard-encoded [`ConfChange`], in force on each node from the moment it is in its log.
    ConfChange,
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: u64,
    /// The position in the log, starting at 1.
    pub index: u64,
    /// Normal data or a membership change.
    pub kind: EntryKind,
    /// The payload (empty for the no-op a new leader appends).
    pub data: Vec<u8>,
}

/// The fixed bytes every entry counts for in batching limits, on top of its payload.
pub const ENTRY_OVERHEAD_BYTES: u64 = 24;

impl Entry {
    /// Bytes this entry counts for in batching limits (payload plus a fixed overhead).
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64 + ENTRY_OVERHEAD_BYTES
    }
}

/// The state that must be durable before the node acts on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: u64,
    /// The node voted for in `term`, or [`NODE_NONE`].
    pub vote: NodeId,
    /// The highest index known to be committed.
    pub commit: u64,
}

/// The membership: who votes and who only follows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfState {
    /// Nodes whose acknowledgements count toward quorums and who may lead.
    pub voters: BTreeSet<NodeId>,
    /// Nodes that receive the log but neither vote in quorums nor campaign.
    pub learners: BTreeSet<NodeId>,
}

impl ConfState {
    /// A membership of the given voters and no learners.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        ConfState {
            voters: voters.into_iter().collect(),
            learners: BTreeSet::new(),
        }
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// The smallest number of voters that forms a majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Applies one change, returning the new membership. Changes that do nothing (adding
    /// a present voter, removing an absent node) are accepted and leave it unchanged.
    pub fn applied(&self, change: &ConfChange) -> ConfState {
        let mut next = self.clone();
        match change.kind {
            ConfChangeKind::AddVoter => {
                next.learners.remove(&change.node_id);
                next.voters.insert(change.node_id);
            }
            ConfChangeKind::AddLearner => {
                next.voters.remove(&change.node_id);
                next.learners.insert(change.node_id);
            }
            ConfChangeKind::RemoveNode => {
                next.voters.remove(&change.node_id);
                next.learners.remove(&change.node_id);
            }
        }
        next
    }
}

/// Which way a membership change goes. Changes are applied one node at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfChangeKind {
    /// Adds a voter, or promotes a learner.
    AddVoter,
    /// Adds a learner, or demotes a voter.
    AddLearner,
    /// Removes a voter or learner.
    RemoveNode,
}

/// A single-node membership change, carried postcard-encoded in a
/// [`EntryKind::ConfChange`] entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfChange {
    /// Add, promote, demote or remove.
    pub kind: ConfChangeKind,
    /// The node concerned.
    pub node_id: NodeId,
    /// Opaque data for the application (for example the new member's addresses).
    pub context: Vec<u8>,
}

/// Where a snapshot sits in the log and which membership holds there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The last log index the snapshot covers.
    pub index: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// The membership in force after applying entries up to `index`.
    pub conf_state: ConfState,
}

/// A snapshot: metadata the core understands plus application data it carries opaque.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Position and membership.
    pub meta: SnapshotMeta,
    /// The application's state machine image at `meta.index`.
    pub data: Vec<u8>,
}

/// The kinds of peer messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageKind {
    /// "Would you vote for me in `term`?" Changes no state on the receiver.
    PreVote,
    /// Answer to [`MessageKind::PreVote`].
    PreVoteResp,
    /// A real vote request for `term`.
    Vote,
    /// Answer to [`MessageKind::Vote`].
    VoteResp,
    /// Log entries after (`index`, `log_term`), plus the leader's commit index.
    Append,
    /// Answer to [`MessageKind::Append`]: success with the last matched index, or a
    /// rejection with a hint.
    AppendResp,
    /// Leader liveness and commit; also sent to confirm leadership for ReadIndex when
    /// no append carries a read's `read_seq` to a voter.
    Heartbeat,
    /// Answer to [`MessageKind::Heartbeat`], echoing `read_seq`.
    HeartbeatResp,
    /// InstallSnapshot: the whole snapshot in `snapshot`.
    Snapshot,
    /// "Campaign now": the last step of a leadership transfer.
    TimeoutNow,
}

/// A message between two Raft nodes. Which fields matter depends on `kind`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// What the message is.
    pub kind: MessageKind,
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's term (for a granted PreVoteResp and for PreVote: the term asked for).
    pub term: u64,
    /// Append: term of the entry at `index`; votes: term of the candidate's last entry.
    pub log_term: u64,
    /// Append: index before `entries`; votes: candidate's last index; AppendResp: the
    /// matched index (success) or the rejected index (reject).
    pub index: u64,
    /// Entries to append.
    pub entries: Vec<Entry>,
    /// The sender's commit index (Append, Heartbeat).
    pub commit: u64,
    /// Whether a response refuses the request.
    pub reject: bool,
    /// On a rejected AppendResp: the follower's last log index.
    pub reject_hint: u64,
    /// InstallSnapshot payload (boxed: it is rare, and a message is moved many times on
    /// its way between the cores).
    pub snapshot: Option<Box<Snapshot>>,
    /// Vote/PreVote sent because of a leadership transfer (ignores leader leases).
    pub transfer: bool,
    /// The newest ReadIndex sequence number when the leader's append, snapshot or
    /// heartbeat left, echoed by the answer (AppendResp, HeartbeatResp) to confirm
    /// the reads numbered up to it.
    pub read_seq: u64,
}

impl Message {
    /// A message of `kind` with every other field zero/empty.
    pub fn new(kind: MessageKind, from: NodeId, to: NodeId, term: u64) -> Self {
        Message {
            kind,
            from,
            to,
            term,
            log_term: 0,
            index: 0,
            entries: Vec::new(),
            commit: 0,
            reject: false,
            reject_hint: 0,
            snapshot: None,
            transfer: false,
            read_seq: 0,
        }
    }
}

/// The role a node plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking for pre-votes; has not bumped its term.
    PreCandidate,
    /// Asking for votes in a new term.
    Candidate,
    /// Leads the current term.
    Leader,
}

/// Volatile state the driver may want to observe (not persisted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftState {
    /// The known leader, or [`NODE_NONE`].
    pub leader: NodeId,
    /// This node's role.
    pub role: Role,
}

/// A linearizable read became safe: once the state machine has applied `index`, the
/// read identified by `ctx` may be served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadState {
    /// The commit index at the time the read was confirmed.
    pub index: u64,
    /// The caller's request context, returned unchanged.
    pub ctx: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip_through_postcard() {
        let mut m = Message::new(MessageKind::Snapshot, 1, 2, 7);
        m.entries = vec![Entry {
            term: 7,
            index: 9,
            kind: EntryKind::ConfChange,
            data: vec![1, 2],
        }];
        m.snapshot = Some(Box::new(Snapshot {
            meta: SnapshotMeta {
                index: 8,
                term: 6,
                conf_state: ConfState::with_voters([1, 2, 3]),
            },
            data: b"image".to_vec(),
        }));
        m.read_seq = 3;
        let bytes = postcard::to_allocvec(&m).expect("encodes");
        let back: Message = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(back, m);
        let hs = HardState {
            term: 3,
            vote: 2,
            commit: 10,
        };
        let back: HardState =
            postcard::from_bytes(&postcard::to_allocvec(&hs).expect("encodes")).expect("decodes");
        assert_eq!(back, hs);
        assert!(
            postcard::from_bytes::<Message>(&bytes[..bytes.len() / 2]).is_err(),
            "truncated input is an error"
        );
    }

    proptest! {
        /// Whatever changes are applied, no node is both voter and learner, and the last
        /// change decides the node's place.
        #[test]
        fn membership_changes_keep_roles_disjoint(changes in prop::collection::vec((0u8..3, 1u64..6), 0..40)) {
            let mut conf = ConfState::with_voters([1, 2, 3]);
            for (kind, node_id) in changes {
                let kind = match kind {
                    0 => ConfChangeKind::AddVoter,
                    1 => ConfChangeKind::AddLearner,
                    _ => ConfChangeKind::RemoveNode,
                };
                conf = conf.applied(&ConfChange { kind, node_id, context: Vec::new() });
                prop_assert!(conf.voters.is_disjoint(&conf.learners));
                let placed = match kind {
                    ConfChangeKind::AddVoter => conf.voters.contains(&node_id),
                    ConfChangeKind::AddLearner => conf.learners.contains(&node_id),
                    ConfChangeKind::RemoveNode => !conf.contains(node_id),
                };
                prop_assert!(placed);
            }
        }
    }
}
