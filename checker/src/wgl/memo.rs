//! The search's memo: configurations (linearized set, model state) already explored.
//!
//! The linearized set is stored compactly. Operations of known outcome are numbered in
//! call order and are mostly linearized in that order, so the set is kept as a prefix
//! length (every operation below it is linearized) plus the few linearized operations
//! above it. Linearized operations of unknown outcome are listed by number, grouped
//! under the known part and the state so that dominated configurations are found. This keeps a
//! memo entry at a few dozen bytes even for histories of many thousands of operations.
//! The memo does not decide what to explore; it only answers "seen before?".

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher, Hash};

/// The known part of an explored configuration: known operations placed, and state.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Key<S> {
    /// Every known operation numbered below this is linearized.
    prefix: u32,
    /// Linearized known operations above the prefix, ascending.
    extras: Box<[u32]>,
    state: S,
}

/// What [`Memo::insert`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Insert {
    /// A new configuration, now remembered.
    New,
    /// Explored before, or dominated by a configuration explored before.
    Seen,
    /// The memo is full; the configuration was not remembered.
    Full,
}

/// The set of explored configurations, with a cap on its size.
///
/// Besides exact repeats it recognises dominated configurations: with the same known
/// operations placed and the same state, placing fewer unknown operations leaves more
/// options (unknown operations are optional), so a configuration whose placed unknown
/// operations are a superset of an explored one's cannot succeed where that one failed.
pub(super) struct Memo<S> {
    seen: HashMap<Key<S>, Vec<Box<[u32]>>, BuildHasherDefault<DefaultHasher>>,
    entries: usize,
    entries_max: usize,
    /// Estimated bytes held (keys, extras and group counts; not the states' heap).
    bytes: usize,
    bytes_max: usize,
}

impl<S: Eq + Hash> Memo<S> {
    /// An empty memo that holds at most `entries_max` configurations and about
    /// `bytes_max` bytes.
    pub(super) fn new(entries_max: usize, bytes_max: usize) -> Self {
        Memo {
            seen: HashMap::default(),
            entries: 0,
            entries_max,
            bytes: 0,
            bytes_max,
        }
    }

    /// Remembers the configuration given by the placed known operations, the placed
    /// unknown ones as flattened (group, count) pairs ascending by group, and `state`.
    pub(super) fn insert(&mut self, known: &KnownSet, unknown: Vec<u32>, state: S) -> Insert {
        let mut extras = Vec::with_capacity(known.extra_count());
        known.push_extras(&mut extras);
        let key = Key {
            prefix: known.prefix,
            extras: extras.into_boxed_slice(),
            state,
        };
        let full = self.entries >= self.entries_max || self.bytes >= self.bytes_max;
        let unknown_bytes = std::mem::size_of::<Box<[u32]>>() + 4 * unknown.len();
        match self.seen.get_mut(&key) {
            Some(sets) => {
                if sets.iter().any(|s| dominates(s, &unknown)) {
                    return Insert::Seen;
                }
                if full {
                    return Insert::Full;
                }
                sets.push(unknown.into_boxed_slice());
                self.bytes += unknown_bytes;
            }
            None => {
                if full {
                    return Insert::Full;
                }
                self.bytes += std::mem::size_of::<(Key<S>, Vec<Box<[u32]>>)>()
                    + 4 * key.extras.len()
                    + unknown_bytes;
                self.seen.insert(key, vec![unknown.into_boxed_slice()]);
            }
        }
        self.entries += 1;
        Insert::New
    }

    /// Estimated bytes held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many configurations are remembered.
    pub(super) fn len(&self) -> usize {
        self.entries
    }
}

/// Whether the placed-unknown counts `seen` are everywhere at most `now` (both
/// flattened (group, count) pairs ascending by group): then `now` placed a superset.
fn dominates(seen: &[u32], now: &[u32]) -> bool {
    if seen.len() > now.len() {
        return false;
    }
    let mut rest = now.chunks_exact(2);
    seen.chunks_exact(2).all(|pair| {
        rest.by_ref()
            .find(|other| other[0] >= pair[0])
            .is_some_and(|other| other[0] == pair[0] && other[1] >= pair[1])
    })
}

/// The set of linearized operations of known outcome, as a bitset with a tracked prefix.
pub(super) struct KnownSet {
    words: Vec<u64>,
    /// Every number below this is in the set, and this one is not.
    prefix: u32,
    /// How many numbers are in the set.
    count: u32,
}

impl KnownSet {
    /// An empty set over numbers `0..len`.
    pub(super) fn new(len: usize) -> Self {
        KnownSet {
            words: vec![0; len.div_ceil(64)],
            prefix: 0,
            count: 0,
        }
    }

    /// How many numbers are in the set.
    pub(super) fn count(&self) -> u32 {
        self.count
    }

    fn contains(&self, n: u32) -> bool {
        let n = n as usize;
        self.words
            .get(n / 64)
            .is_some_and(|w| w & (1u64 << (n % 64)) != 0)
    }

    /// Adds `n` (which must not be in the set).
    pub(super) fn insert(&mut self, n: u32) {
        let i = n as usize;
        if let Some(w) = self.words.get_mut(i / 64) {
            *w |= 1u64 << (i % 64);
            self.count += 1;
        }
        while self.contains(self.prefix) {
            self.prefix += 1;
        }
    }

    /// Removes `n` (which must be in the set).
    pub(super) fn remove(&mut self, n: u32) {
        let i = n as usize;
        if let Some(w) = self.words.get_mut(i / 64) {
            *w &= !(1u64 << (i % 64));
            self.count -= 1;
        }
        self.prefix = self.prefix.min(n);
    }

    fn extra_count(&self) -> usize {
        (self.count - self.prefix) as usize
    }

    /// Appends the members above the prefix, ascending.
    fn push_extras(&self, out: &mut Vec<u32>) {
        let mut left = self.extra_count();
        let mut word_index = self.prefix as usize / 64;
        while left > 0 && word_index < self.words.len() {
            let mut w = self.words[word_index];
            while w != 0 {
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                let n = (word_index * 64 + bit) as u32;
                if n > self.prefix {
                    out.push(n);
                    left -= 1;
                }
            }
            word_index += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_set_tracks_prefix_and_extras() {
        let mut s = KnownSet::new(200);
        for n in [0, 1, 2, 70, 130] {
            s.insert(n);
        }
        assert_eq!(s.prefix, 3);
        let mut extras = Vec::new();
        s.push_extras(&mut extras);
        assert_eq!(extras, vec![70, 130]);
        s.remove(1);
        assert_eq!(s.prefix, 1);
        extras.clear();
        s.push_extras(&mut extras);
        assert_eq!(extras, vec![2, 70, 130]);
    }

    #[test]
    fn memo_distinguishes_sets_and_states_and_caps() {
        let mut known = KnownSet::new(10);
        let mut memo = Memo::new(3, usize::MAX);
        assert_eq!(memo.insert(&known, vec![], 1u8), Insert::New);
        assert_eq!(memo.insert(&known, vec![], 1u8), Insert::Seen);
        assert_eq!(memo.insert(&known, vec![], 2u8), Insert::New);
        known.insert(4);
        assert_eq!(memo.insert(&known, vec![], 1u8), Insert::New);
        // Placing more unknown operations in a seen configuration is dominated.
        assert_eq!(memo.insert(&known, vec![7, 1], 1u8), Insert::Seen);
        assert_eq!(memo.insert(&known, vec![7, 1], 3u8), Insert::Full);
        assert_eq!(memo.len(), 3);
        // (group, count) pairs: more of a group, or more groups, is dominated.
        let mut memo = Memo::new(10, usize::MAX);
        assert_eq!(memo.insert(&known, vec![2, 1, 5, 2], 1u8), Insert::New);
        assert_eq!(
            memo.insert(&known, vec![2, 1, 4, 1, 5, 2], 1u8),
            Insert::Seen
        );
        assert_eq!(memo.insert(&known, vec![2, 3, 5, 2], 1u8), Insert::Seen);
        assert_eq!(memo.insert(&known, vec![2, 1, 5, 1], 1u8), Insert::New);
        assert_eq!(memo.insert(&known, vec![2, 1, 4, 1], 1u8), Insert::New);
        assert_eq!(memo.insert(&known, vec![5, 2], 1u8), Insert::New);
        // The byte cap counts too.
        let mut memo = Memo::new(10, 1);
        assert_eq!(memo.insert(&known, vec![], 1u8), Insert::New);
        assert_eq!(memo.insert(&known, vec![], 2u8), Insert::Full);
    }
}
