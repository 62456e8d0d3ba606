//! What a leader knows about one follower's log: the matched index, the next index to
//! send, and how aggressively to send (probe, replicate with a bounded in-flight window,
//! or wait for a snapshot).
//!
//! Pure bookkeeping: it decides nothing about when to send, only whether sending is
//! currently allowed and how acknowledgements move the cursors.

use std::collections::VecDeque;

/// How a leader currently replicates to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// The follower's log position is unknown: one Append at a time until one succeeds.
    Probe,
    /// The follower is in sync: stream Appends optimistically, up to the in-flight limit.
    Replicate,
    /// A snapshot was sent; wait until the follower has it (or it times out).
    Snapshot,
}

/// The leader's view of one follower.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to be in the follower's log.
    pub matched: u64,
    /// Next index to send.
    pub next: u64,
    /// Current sending mode.
    pub state: ProgressState,
    /// In probe state: an Append is outstanding, wait for its answer or a heartbeat.
    pub probe_sent: bool,
    /// In snapshot state: the index of the snapshot sent.
    pub pending_snapshot: u64,
    /// In snapshot state: heartbeat answers seen since the snapshot was sent.
    pub snapshot_heartbeats: u32,
    /// Last index of each unacknowledged Append, oldest first (replicate state).
    pub inflights: VecDeque<u64>,
    /// Heard from since the last CheckQuorum round.
    pub recent_active: bool,
    /// A periodic heartbeat went out since the last heartbeat answer that could resend
    /// in-flight entries (see `handle_heartbeat_resp`).
    pub resend_due: bool,
}

/// Heartbeat answers after which a snapshot with no news is assumed lost and resent.
pub const SNAPSHOT_RETRY_HEARTBEATS: u32 = 10;

impl Progress {
    /// A follower about which nothing is known yet: probe from `next`.
    pub fn new(next: u64) -> Self {
        Progress {
            matched: 0,
            next,
            state: ProgressState::Probe,
            probe_sent: false,
            pending_snapshot: 0,
            snapshot_heartbeats: 0,
            inflights: VecDeque::new(),
            recent_active: false,
            resend_due: false,
        }
    }

    fn reset_to(&mut self, state: ProgressState) {
        self.state = state;
        self.probe_sent = false;
        self.pending_snapshot = 0;
        self.snapshot_heartbeats = 0;
        self.inflights.clear();
    }

    /// Switches to probing from just after the matched index (or past the snapshot).
    pub fn become_probe(&mut self) {
        let after = if self.state == ProgressState::Snapshot {
            self.pending_snapshot.max(self.matched) + 1
        } else {
            self.matched + 1
        };
        self.reset_to(ProgressState::Probe);
        self.next = after;
    }

    /// Switches to streaming.
    pub fn become_replicate(&mut self) {
        self.reset_to(ProgressState::Replicate);
        self.next = self.matched + 1;
    }

    /// Switches to waiting for the snapshot at `index`.
    pub fn become_snapshot(&mut self, index: u64) {
        self.reset_to(ProgressState::Snapshot);
        self.pending_snapshot = index;
    }

    /// Whether the leader must hold back Appends for now.
    pub fn is_paused(&self, inflight_msgs_max: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.len() >= inflight_msgs_max,
            ProgressState::Snapshot => true,
        }
    }

    /// Records that an Append ending at `last` was sent.
    pub fn sent_append(&mut self, last: u64, sent_entries: bool) {
        match self.state {
            ProgressState::Replicate => {
                if sent_entries {
                    self.next = last + 1;
                    self.inflights.push_back(last);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {}
        }
    }

    /// A success answer up to `index`; returns whether it moved `matched`.
    pub fn maybe_update(&mut self, index: u64) -> bool {
        let updated = index > self.matched;
        if updated {
            self.matched = index;
            self.probe_sent = false;
        }
        self.next = self.next.max(index + 1);
        while self.inflights.front().is_some_and(|&last| last <= index) {
            self.inflights.pop_front();
        }
        updated
    }

    /// A rejection of the Append at `rejected`, with the follower's last index as
    /// `hint`. Returns false if the rejection is stale (answers an older message).
    pub fn maybe_decr_to(&mut self, rejected: u64, hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next = self.matched + 1;
            return true;
        }
        if self.next == 0 || self.next - 1 != rejected {
            return false;
        }
        self.next = rejected.min(hint + 1).max(self.matched + 1).max(1);
        self.probe_sent = false;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever acknowledgements arrive, in any order, `matched < next` holds and the
        /// in-flight window never exceeds its limit once sending respects `is_paused`.
        #[test]
        fn cursors_stay_ordered(acks in prop::collection::vec((0u64..40, any::<bool>()), 0..60)) {
            let limit = 4;
            let mut pr = Progress::new(1);
            pr.maybe_update(0);
            pr.become_replicate();
            let mut last = 0;
            for (index, reject) in acks {
                if !pr.is_paused(limit) && last < 40 {
                    last += 1;
                    pr.sent_append(last, true);
                }
                if reject {
                    if pr.maybe_decr_to(index, index) {
                        pr.become_probe();
                    }
                } else if index <= last {
                    pr.maybe_update(index);
                }
                prop_assert!(pr.matched < pr.next);
                prop_assert!(pr.inflights.len() <= limit);
                if pr.state == ProgressState::Probe { last = pr.next - 1; pr.become_replicate(); }
            }
        }
    }
}
