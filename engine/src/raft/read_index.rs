//! ReadIndex bookkeeping on the leader: reads wait until the leader has committed an
//! entry of its own term, then until a quorum has answered messages of this leader sent
//! after the read arrived. Only then is the read's index handed out as a `ReadState`.
//!
//! Each read gets a sequence number. Every message the leader sends a follower in its
//! term (append, heartbeat, snapshot) is stamped, as it leaves, with the newest number,
//! and the follower's answer echoes it: an echo of `s` confirms every read numbered `s`
//! or less, since the stamped message left after those reads arrived. The queue also
//! remembers the newest number stamped for each peer, so the leader can send a heartbeat
//! only to voters that no stamped message reaches. This module only counts; it sends
//! nothing itself, and it is reset with the leader's term.

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
    /// Highest sequence number stamped on a message to each peer.
    sent: BTreeMap<NodeId, u64>,
}

impl ReadQueue {
    /// Reads not yet confirmed.
    pub(crate) fn len(&self) -> usize {
        self.waiting.len() + self.pending.len()
    }

    /// The newest sequence number handed out (0: no read yet this term).
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Stamps a message leaving for `to` now: returns the number it carries (the newest
    /// handed out) and remembers that `to` was sent it.
    pub(crate) fn stamp(&mut self, to: NodeId) -> u64 {
        if self.last_seq > 0 {
            let slot = self.sent.entry(to).or_insert(0);
            *slot = (*slot).max(self.last_seq);
        }
        self.last_seq
    }

    /// Whether a read is waiting for confirmation that no message stamped for `to` can
    /// give, because every message to `to` left before the newest pending read arrived.
    pub(crate) fn unsent_to(&self, to: NodeId) -> bool {
        self.pending
            .back()
            .is_some_and(|newest| self.sent.get(&to).is_none_or(|&s| s < newest.seq))
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

    /// Records an answer from `from` echoing `seq`; returns whether it confirms more
    /// than that peer's earlier answers did.
    pub(crate) fn ack(&mut self, from: NodeId, seq: u64) -> bool {
        if seq > self.last_seq {
            // Never stamped by this leader: an echo from nothing it sent confirms nothing.
            return false;
        }
        let slot = self.acked.entry(from).or_insert(0);
        let newer = seq > *slot;
        *slot = (*slot).max(seq);
        newer
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
    use proptest::prelude::*;

    proptest! {
        /// Whatever the order of reads, stamped messages and their answers: a read comes
        /// out only once a quorum (the leader included) echoed a stamp handed out after
        /// it arrived, reads come out once each and in order, and once every voter
        /// answers a message stamped after the last read, all are out.
        #[test]
        fn reads_confirm_only_on_a_quorum_of_later_stamps(
            ops in prop::collection::vec((0u8..3, 2u64..6), 0..200)
        ) {
            let voters: BTreeSet<NodeId> = [1, 2, 3, 4, 5].into();
            let mut q = ReadQueue::default();
            let mut in_flight: Vec<(NodeId, u64)> = Vec::new();
            let mut echoed: BTreeMap<NodeId, u64> = BTreeMap::new();
            let mut seq_of: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
            let mut out_seqs: Vec<u64> = Vec::new();
            let check = |q: &mut ReadQueue,
                         echoed: &BTreeMap<NodeId, u64>,
                         seq_of: &BTreeMap<Vec<u8>, u64>,
                         out_seqs: &mut Vec<u64>| {
                for rs in q.confirmed(1, &voters, 3) {
                    let seq = seq_of[&rs.ctx];
                    let acks = voters
                        .iter()
                        .filter(|&&v| v == 1 || echoed.get(&v).is_some_and(|&e| e >= seq))
                        .count();
                    prop_assert!(acks >= 3, "read {seq} out with {acks} answers");
                    prop_assert_eq!(seq, out_seqs.len() as u64 + 1, "out of order");
                    out_seqs.push(seq);
                }
                Ok(())
            };
            for (op, peer) in ops {
                match op {
                    0 => {
                        let ctx = (seq_of.len() as u64).to_be_bytes().to_vec();
                        q.register(ctx.clone(), 7);
                        seq_of.insert(ctx, q.last_seq());
                    }
                    1 => {
                        let s = q.stamp(peer);
                        prop_assert!(!q.unsent_to(peer));
                        in_flight.push((peer, s));
                    }
                    _ => {
                        if let Some(pos) = in_flight.iter().position(|m| m.0 == peer) {
                            let (p, s) = in_flight.remove(pos);
                            q.ack(p, s);
                            let e = echoed.entry(p).or_insert(0);
                            *e = (*e).max(s);
                        }
                    }
                }
                check(&mut q, &echoed, &seq_of, &mut out_seqs)?;
            }
            for peer in 2..6 {
                let s = q.stamp(peer);
                q.ack(peer, s);
                echoed.insert(peer, s);
            }
            check(&mut q, &echoed, &seq_of, &mut out_seqs)?;
            prop_assert_eq!(out_seqs.len(), seq_of.len(), "reads left unconfirmed");
            prop_assert_eq!(q.len(), 0);
        }
    }

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

    #[test]
    fn stamps_show_which_peers_a_read_still_needs_a_message_for() {
        let mut q = ReadQueue::default();
        assert_eq!(q.stamp(2), 0, "no read yet: nothing to stamp");
        assert!(!q.unsent_to(2), "no pending read needs anything");
        q.register(b"a".to_vec(), 3);
        assert!(q.unsent_to(2) && q.unsent_to(3));
        assert_eq!(q.stamp(2), 1);
        assert!(!q.unsent_to(2));
        assert!(q.unsent_to(3));
        q.register(b"b".to_vec(), 3);
        assert!(
            q.unsent_to(2),
            "a message stamped before read b cannot confirm it"
        );
    }

    #[test]
    fn echoes_never_stamped_confirm_nothing() {
        let voters: BTreeSet<NodeId> = [1, 2, 3].into();
        let mut q = ReadQueue::default();
        q.register(b"a".to_vec(), 5);
        assert!(!q.ack(2, 2), "seq 2 was never handed out");
        assert!(q.confirmed(1, &voters, 2).is_empty());
        assert!(q.ack(2, 1));
        assert!(!q.ack(2, 1), "a repeated echo confirms nothing new");
        assert_eq!(q.confirmed(1, &voters, 2).len(), 1);
    }
}
