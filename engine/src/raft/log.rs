//! The in-memory Raft log the core reads from: the latest snapshot, the entries after it
//! (a persisted prefix and an unstable tail the driver has not yet persisted), and the
//! commit and apply cursors.
//!
//! It does no I/O: the driver persists what `Ready` hands out and reports back through
//! `advance`. It enforces the log's own invariants (contiguity, commit never decreasing,
//! never overwriting a committed entry) with assertions, because a violation here is a
//! bug in the core, not bad input.

use super::types::{
    ConfChange, ConfState, ENTRY_OVERHEAD_BYTES, Entry, EntryKind, Snapshot, SnapshotMeta,
};

/// The log of one node.
#[derive(Clone, Debug)]
pub struct RaftLog {
    /// The latest snapshot: everything up to `snapshot.meta.index` is compacted into it.
    snapshot: Snapshot,
    /// Whether `snapshot` was received from a leader and not yet handed out to persist.
    snapshot_unstable: bool,
    /// Entries `snapshot.meta.index + 1 ..= last_index`, contiguous.
    entries: Vec<Entry>,
    /// Entries up to this index are persisted by the driver.
    stable_to: u64,
    /// Highest index known committed.
    committed: u64,
    /// Highest index the application has applied.
    applied: u64,
    /// Membership changes in `entries`, oldest first: (index, membership from there on).
    /// Membership takes effect when its entry is appended, not when it commits.
    confs: Vec<(u64, ConfState)>,
}

impl RaftLog {
    /// A log that starts after `snapshot`, with `entries` (already persisted) following
    /// it. The caller has checked that `entries` are contiguous from the snapshot.
    pub(crate) fn new(
        snapshot: Snapshot,
        entries: Vec<Entry>,
        committed: u64,
        applied: u64,
    ) -> Self {
        let stable_to = snapshot.meta.index + entries.len() as u64;
        let mut log = RaftLog {
            snapshot,
            snapshot_unstable: false,
            entries: Vec::new(),
            stable_to,
            committed,
            applied,
            confs: Vec::new(),
        };
        for e in entries {
            log.push(e);
        }
        log
    }

    /// Appends one entry, tracking membership changes.
    fn push(&mut self, e: Entry) {
        if e.kind == EntryKind::ConfChange {
            match postcard::from_bytes::<ConfChange>(&e.data) {
                Ok(change) => {
                    let next = self.conf_state().applied(&change);
                    self.confs.push((e.index, next));
                }
                Err(err) => {
                    tracing::error!(index = e.index, %err, "undecodable membership change ignored")
                }
            }
        }
        self.entries.push(e);
    }

    /// The membership in force: the latest change in the log, or the snapshot's.
    pub fn conf_state(&self) -> &ConfState {
        self.confs
            .last()
            .map_or(&self.snapshot.meta.conf_state, |(_, c)| c)
    }

    /// Index of the latest membership change (the snapshot's index if none follows it).
    pub fn last_conf_index(&self) -> u64 {
        self.confs
            .last()
            .map_or(self.snapshot.meta.index, |(i, _)| *i)
    }

    /// The membership in force right after `index`.
    pub fn conf_state_at(&self, index: u64) -> &ConfState {
        self.confs
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map_or(&self.snapshot.meta.conf_state, |(_, c)| c)
    }

    /// An empty log holding `entries` from index 1 that are not yet persisted.
    pub(crate) fn new_unstable(entries: Vec<Entry>) -> Self {
        let mut log = RaftLog::new(Snapshot::default(), entries, 0, 0);
        log.stable_to = 0;
        log
    }

    /// Index of the first entry still in the log (one past the snapshot).
    pub fn first_index(&self) -> u64 {
        self.snapshot.meta.index + 1
    }

    /// Index of the last entry (the snapshot's index when there are none).
    pub fn last_index(&self) -> u64 {
        self.snapshot.meta.index + self.entries.len() as u64
    }

    /// Term of the last entry.
    pub fn last_term(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot.meta.term, |e| e.term)
    }

    /// Highest committed index.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Highest applied index.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Entries up to this index are persisted.
    pub fn stable_to(&self) -> u64 {
        self.stable_to
    }

    /// The latest snapshot (compaction point).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Metadata of the latest snapshot.
    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        &self.snapshot.meta
    }

    /// Term of the entry at `index`, or `None` if compacted away or beyond the end.
    pub fn term(&self, index: u64) -> Option<u64> {
        let snap = &self.snapshot.meta;
        if index == snap.index {
            return Some(snap.term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// The entry at `index`, if still in the log.
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        if index < self.first_index() {
            return None;
        }
        self.entries.get((index - self.first_index()) as usize)
    }

    /// All entries still in the log.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Whether the entry at `index` has term `term`.
    pub fn matches(&self, index: u64, term: u64) -> bool {
        self.term(index) == Some(term)
    }

    /// Whether a candidate whose log ends at (`last_index`, `last_term`) is at least as
    /// up to date as this log.
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Entries `lo..=hi`, at most `entries_max` of them and `bytes_max` bytes (always at
    /// least one entry when the range is non-empty). `None` if `lo` is compacted.
    pub fn slice(
        &self,
        lo: u64,
        hi: u64,
        entries_max: usize,
        bytes_max: u64,
    ) -> Option<Vec<Entry>> {
        if lo < self.first_index() {
            return None;
        }
        // Sized for the most entries the range and both limits allow, so a large batch
        // is not regrown entry by entry.
        let available = (self.last_index().min(hi) + 1).saturating_sub(lo);
        let fit = bytes_max / ENTRY_OVERHEAD_BYTES + 1;
        let mut out = Vec::with_capacity(available.min(fit).min(entries_max as u64) as usize);
        let mut bytes = 0u64;
        let mut index = lo;
        while index <= hi && out.len() < entries_max {
            let Some(e) = self.entry(index) else { break };
            bytes += e.size_bytes();
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            out.push(e.clone());
            index += 1;
        }
        Some(out)
    }

    /// Appends entries a leader created; they must follow the last entry.
    pub(crate) fn append(&mut self, entries: Vec<Entry>) {
        for e in entries {
            assert_eq!(
                e.index,
                self.last_index() + 1,
                "leader append must be contiguous"
            );
            assert!(
                e.term >= self.last_term(),
                "leader append must not lower the term"
            );
            self.push(e);
        }
    }

    /// Follower side of Append: if the entry at `prev_index` has `prev_term`, merges
    /// `entries` (truncating a conflicting tail), raises commit to
    /// `min(commit, last new index)` and returns the last new index.
    pub(crate) fn maybe_append(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        commit: u64,
        entries: Vec<Entry>,
    ) -> Option<u64> {
        if !self.matches(prev_index, prev_term) {
            return None;
        }
        let last_new = prev_index + entries.len() as u64;
        let mut conflict_at = None;
        for (offset, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index,
                prev_index + 1 + offset as u64,
                "append must be contiguous"
            );
            // Entries at or below the snapshot are committed and match by construction.
            if e.index <= self.snapshot.meta.index {
                continue;
            }
            if self.term(e.index) != Some(e.term) {
                conflict_at = Some(offset);
                break;
            }
        }
        if let Some(offset) = conflict_at {
            let first_new = entries[offset].index;
            assert!(
                first_new > self.committed,
                "conflicting entry at {first_new} would overwrite committed index {}",
                self.committed
            );
            self.truncate_after(first_new - 1);
            for e in entries.into_iter().skip(offset) {
                self.push(e);
            }
        }
        self.commit_to(commit.min(last_new));
        Some(last_new)
    }

    /// Drops every entry after `index`.
    fn truncate_after(&mut self, index: u64) {
        let keep = index.saturating_sub(self.snapshot.meta.index) as usize;
        self.entries.truncate(keep);
        self.stable_to = self.stable_to.min(index);
        self.confs.retain(|(i, _)| *i <= index);
    }

    /// Raises the commit index; it never decreases and never passes the last entry.
    pub(crate) fn commit_to(&mut self, index: u64) {
        if index <= self.committed {
            return;
        }
        assert!(
            index <= self.last_index(),
            "commit {index} beyond last index {}",
            self.last_index()
        );
        self.committed = index;
    }

    /// Records that the application applied up to `index`.
    pub(crate) fn applied_to(&mut self, index: u64) {
        assert!(
            index <= self.committed,
            "applied {index} beyond commit {}",
            self.committed
        );
        if index > self.applied {
            self.applied = index;
        }
    }

    /// Entries the driver has not yet persisted.
    pub fn unstable_entries(&self) -> &[Entry] {
        let from = self.stable_to.max(self.snapshot.meta.index) + 1;
        let skip = (from - self.first_index()) as usize;
        self.entries.get(skip..).unwrap_or(&[])
    }

    /// The received snapshot still to be persisted, if any.
    pub fn unstable_snapshot(&self) -> Option<&Snapshot> {
        self.snapshot_unstable.then_some(&self.snapshot)
    }

    /// The driver persisted entries up to (`index`, `term`). Ignored if the log changed
    /// since (that entry was replaced).
    pub(crate) fn stable_entries_to(&mut self, index: u64, term: u64) {
        if self.matches(index, term) && index > self.stable_to {
            self.stable_to = index;
        }
    }

    /// The driver persisted the received snapshot at `index`.
    pub(crate) fn stable_snapshot_to(&mut self, index: u64) {
        if self.snapshot_unstable && self.snapshot.meta.index == index {
            self.snapshot_unstable = false;
        }
    }

    /// Committed entries not yet applied, up to `bytes_max` (at least one). Entries
    /// covered by the snapshot are never returned: the snapshot replaces them.
    pub fn next_committed_entries(&self, bytes_max: u64) -> Vec<Entry> {
        let lo = self.applied.max(self.snapshot.meta.index) + 1;
        if lo > self.committed {
            return Vec::new();
        }
        self.slice(lo, self.committed, usize::MAX, bytes_max)
            .unwrap_or_default()
    }

    /// Replaces the whole log with a snapshot received from a leader.
    pub(crate) fn restore(&mut self, snapshot: Snapshot) {
        assert!(
            snapshot.meta.index >= self.committed,
            "snapshot at {} behind commit {}",
            snapshot.meta.index,
            self.committed
        );
        self.committed = snapshot.meta.index;
        self.stable_to = snapshot.meta.index;
        self.entries.clear();
        self.confs.clear();
        self.snapshot = snapshot;
        self.snapshot_unstable = true;
    }

    /// Compacts everything up to `index` into a snapshot the application took. The
    /// caller checked `snapshot index < index <= min(applied, stable_to)`.
    pub(crate) fn compact(&mut self, index: u64, data: Vec<u8>) {
        let term = self
            .term(index)
            .expect("compact index checked to be in the log");
        let conf_state = self.conf_state_at(index).clone();
        self.confs.retain(|(i, _)| *i > index);
        let drop = (index - self.snapshot.meta.index) as usize;
        self.entries.drain(..drop);
        self.snapshot = Snapshot {
            meta: SnapshotMeta {
                index,
                term,
                conf_state,
            },
            data,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::EntryKind;
    use proptest::prelude::*;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: vec![index as u8],
        }
    }

    fn log_of(terms: &[u64]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, t)| ent(i as u64 + 1, *t))
            .collect();
        RaftLog::new(Snapshot::default(), entries, 0, 0)
    }

    #[test]
    fn conflicting_tail_is_replaced_and_stable_cursor_falls_back() {
        let mut log = log_of(&[1, 1, 2, 2]);
        assert_eq!(log.maybe_append(2, 1, 0, vec![ent(3, 3)]), Some(3));
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.term(3), Some(3));
        assert_eq!(log.stable_to(), 2);
        assert_eq!(log.unstable_entries().len(), 1);
    }

    #[test]
    fn mismatched_previous_entry_is_refused() {
        let mut log = log_of(&[1, 1]);
        assert_eq!(log.maybe_append(2, 2, 0, vec![ent(3, 2)]), None);
        assert_eq!(log.maybe_append(5, 1, 0, vec![]), None);
    }

    #[test]
    #[should_panic(expected = "would overwrite committed")]
    fn overwriting_a_committed_entry_is_caught() {
        let mut log = log_of(&[1, 1, 1]);
        log.commit_to(3);
        log.maybe_append(1, 1, 0, vec![ent(2, 2)]);
    }

    proptest! {
        /// Appending the same matching batch twice (a duplicated message) changes nothing,
        /// and whatever is appended stays contiguous.
        #[test]
        fn duplicated_appends_are_idempotent(base in prop::collection::vec(1u64..3, 0..8),
                                             extra in prop::collection::vec(0u64..2, 0..8),
                                             prev in 0u64..8) {
            let mut base = base;
            base.sort();
            let mut log = log_of(&base);
            prop_assume!(prev <= log.last_index());
            let prev_term = log.term(prev).unwrap_or(0);
            let top = base.last().copied().unwrap_or(1).max(prev_term);
            let new: Vec<Entry> = extra.iter().enumerate()
                .map(|(i, d)| ent(prev + 1 + i as u64, top + d)).collect();
            let mut sorted = new.clone();
            sorted.sort_by_key(|e| e.term);
            prop_assume!(sorted == new);
            let first = log.maybe_append(prev, prev_term, 0, new.clone());
            let snapshot: Vec<Entry> = log.entries().to_vec();
            let second = log.maybe_append(prev, prev_term, 0, new);
            prop_assert_eq!(first, second);
            prop_assert_eq!(log.entries(), &snapshot[..]);
            for (i, e) in log.entries().iter().enumerate() {
                prop_assert_eq!(e.index, i as u64 + 1);
            }
        }
    }
}
