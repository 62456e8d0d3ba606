//! ReadIndex bookkeeping on the leader: reads wait until the leader has committed an
//! entry of its own term, then until a quorum has answered a heartbeat sent after the
//! read arrived. Only then is the read's index handed out as a `ReadState`.
//!
//! Each read gets a sequence number; heartbeats carry the newest one, and an answer
//! echoing `s` confirms every read numbered `s` or less. This module only counts; it
//! sends nothing itself.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::types::{NodeId, ReadState};

/// Most reads a leader holds unconfirmed before refusing new ones.
pub const READS_PENDING_MAX: usize = 4096;

#[derive(Clone, Debug)]
struct PendingRead {
    seq: u64,
    index: u64,
    ctx: Vec<u8>,
}

/// Reads in progress on a leader.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReadQueue {
    /// Reads that arrived before the leader committed an entry of its term.
    waiting: Vec<Vec<u8>>,
    /// Reads with an index, waiting for a quorum of heartbeat answers.
    pending: VecDeque<PendingRead>,
    /// Highest sequence number handed out.
    last_seq: u64,
    /// Highest sequence number each peer has echoed.
    acked: BTreeMap<NodeId, u64>,
}

impl ReadQueue {
    /// Reads not yet confirmed.
    pub(crate) fn len(&self) -> usize {
        self.waiting.len() + self.pending.len()
    }

    /// The sequence number heartbeats should carry now.
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Parks a read until the leader's term has a committed entry.
    pub(crate) fn wait(&mut self, ctx: Vec<u8>) {
        self.waiting.push(ctx);
    }

    /// Moves parked reads to pending at `commit`; returns whether any moved.
    pub(crate) fn release_waiting(&mut self, commit: u64) -> bool {
        let waiting = std::mem::take(&mut self.waiting);
        let moved = !waiting.is_empty();
        for ctx in waiting {
            self.register(ctx, commit);
        }
        moved
    }

    /// Adds a read that is safe once confirmed, at index `commit`.
    pub(crate) fn register(&mut self, ctx: Vec<u8>, commit: u64) {
        self.last_seq += 1;
        self.pending.push_back(PendingRead {
            seq: self.last_seq,
            index: commit,
            ctx,
        });
    }

    /// Records a heartbeat answer from `from` echoing `seq`.
    pub(crate) fn ack(&mut self, from: NodeId, seq: u64) {
        let slot = self.acked.entry(from).or_insert(0);
        *slot = (*slot).max(seq);
    }

    /// Hands out every read a quorum of `voters` (with `me` always agreeing) confirmed.
    pub(crate) fn confirmed(
        &mut self,
        me: NodeId,
        voters: &BTreeSet<NodeId>,
        quorum: usize,
    ) -> Vec<ReadState> {
        let mut out = Vec::new();
        while let Some(front) = self.pending.front() {
            let acks = voters
                .iter()
                .filter(|&&v| v == me || self.acked.get(&v).is_some_and(|&s| s >= front.seq))
                .count();
            if acks < quorum {
                break;
            }
            if let Some(read) = self.pending.pop_front() {
                out.push(ReadState {
                    index: read.index,
                    ctx: read.ctx,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_needs_a_quorum_of_answers_sent_after_it() {
        let voters: BTreeSet<NodeId> = [1, 2, 3, 4, 5].into();
        let mut q = ReadQueue::default();
        q.ack(2, 0);
        q.ack(3, 0);
        q.register(b"a".to_vec(), 7);
        assert!(
            q.confirmed(1, &voters, 3).is_empty(),
            "answers to older heartbeats must not count"
        );
        q.ack(2, 1);
        assert!(q.confirmed(1, &voters, 3).is_empty());
        q.ack(4, 1);
        let got = q.confirmed(1, &voters, 3);
        assert_eq!(
            got,
            vec![ReadState {
                index: 7,
                ctx: b"a".to_vec()
            }]
        );
        assert_eq!(q.len(), 0);
    }
}
