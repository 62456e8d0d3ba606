//! Under the simulator only: what the transports of the simulation thread sent, by
//! Raft message kind, and how many Raft batches the links sent, so the simulator can
//! report the messages one client op costs. Counting changes nothing a run does.
//!
//! Not here: network messages in general (the simulator counts those itself).

use std::cell::Cell;

use crate::raft::{Message, MessageKind};

/// The Raft message kinds, in the order [`raft_messages`] counts them.
pub const RAFT_MESSAGE_KINDS: [MessageKind; 10] = [
    MessageKind::PreVote,
    MessageKind::PreVoteResp,
    MessageKind::Vote,
    MessageKind::VoteResp,
    MessageKind::Append,
    MessageKind::AppendResp,
    MessageKind::Heartbeat,
    MessageKind::HeartbeatResp,
    MessageKind::Snapshot,
    MessageKind::TimeoutNow,
];

thread_local! {
    static MESSAGES: Cell<[u64; 10]> = const { Cell::new([0; 10]) };
    static BATCHES: Cell<u64> = const { Cell::new(0) };
    static EMPTY_APPENDS: Cell<u64> = const { Cell::new(0) };
}

/// Raft messages handed to the transports on this thread so far, by kind (in
/// [`RAFT_MESSAGE_KINDS`] order).
pub fn raft_messages() -> [u64; 10] {
    MESSAGES.with(Cell::get)
}

/// Append messages without entries (they only carry a commit index, or probe a
/// follower's log) handed to the transports on this thread so far; also counted as
/// appends in [`raft_messages`].
pub fn empty_appends() -> u64 {
    EMPTY_APPENDS.with(Cell::get)
}

/// Raft batches (probes included) the links on this thread sent so far.
pub fn raft_batches() -> u64 {
    BATCHES.with(Cell::get)
}

/// Counts one message.
pub(crate) fn count_message(message: &Message) {
    let kind = message.kind;
    if kind == MessageKind::Append && message.entries.is_empty() {
        EMPTY_APPENDS.with(|n| n.set(n.get() + 1));
    }
    let slot = RAFT_MESSAGE_KINDS
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(0);
    MESSAGES.with(|m| {
        let mut counts = m.get();
        counts[slot] += 1;
        m.set(counts);
    });
}

/// Counts one batch sent.
pub(crate) fn count_batch() {
    BATCHES.with(|b| b.set(b.get() + 1));
}
