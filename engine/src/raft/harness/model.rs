//! The model cluster's durable state and state machine: what a node persisted (with
//! torn writes) and a digest of what it applied. No real disk is involved.

use super::super::{Entry, HardState, Ready, Snapshot};

/// What a node has made durable.
#[derive(Clone, Debug, Default)]
pub struct ModelDisk {
    /// Last persisted hard state.
    pub hard_state: HardState,
    /// Last persisted snapshot.
    pub snapshot: Snapshot,
    /// Persisted entries (possibly some at or below the snapshot).
    pub entries: Vec<Entry>,
}

/// `ModelDisk::persist` writes a `Ready`'s snapshot, entries and hard state, in that
/// order; a torn write keeps only the first few of these parts.
pub const PERSIST_PARTS_ALL: usize = 3;

impl ModelDisk {
    /// Persists the first `parts` of (snapshot, entries, hard state) of `rd`.
    pub fn persist(&mut self, rd: &Ready, parts: usize) {
        if parts >= 1
            && let Some(snap) = &rd.snapshot
        {
            self.snapshot = snap.clone();
            self.entries.clear();
        }
        if parts >= 2
            && let Some(first) = rd.entries.first()
        {
            let first = first.index;
            let keep = self.entries.partition_point(|e| e.index < first);
            self.entries.truncate(keep);
            self.entries.extend(rd.entries.iter().cloned());
        }
        if parts >= 3
            && let Some(hs) = rd.hard_state
        {
            self.hard_state = hs;
        }
    }
}

/// The model state machine: how far it applied and a digest of everything applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelState {
    /// Last applied index.
    pub applied: u64,
    /// Chained hash of every applied entry.
    pub digest: u64,
}

fn mix(mut h: u64, bytes: &[u8]) -> u64 {
    // FNV-1a: a stable, dependency-free hash (the digest must not vary between runs).
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Chains entry `e` onto the digest `prev`.
pub(crate) fn entry_digest(prev: u64, e: &Entry) -> u64 {
    let h = mix(prev ^ 0xcbf2_9ce4_8422_2325, &e.index.to_le_bytes());
    let h = mix(h, &e.term.to_le_bytes());
    mix(h, &e.data)
}

/// The model state machine after restoring a snapshot's data at `index`.
pub(crate) fn decode_state(data: &[u8], index: u64) -> ModelState {
    if data.is_empty() {
        return ModelState {
            applied: index,
            digest: 0,
        };
    }
    postcard::from_bytes(data).unwrap_or(ModelState {
        applied: index,
        digest: u64::MAX,
    })
}
