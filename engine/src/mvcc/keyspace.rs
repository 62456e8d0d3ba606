//! The revisioned key space: every version of every key, addressed by revision.
//!
//! Two maps hold the same records from two sides: `index` lists each key's revisions in
//! ascending order (the role of etcd's key index), `records` holds each revision's
//! record in revision order (the role of etcd's backend bucket), which is what event
//! replay and hashing walk. A record is either a live value or a tombstone.
//!
//! This module knows nothing of requests, leases or validation: it reads at a revision,
//! writes at a revision it is given, compacts, replays and hashes. Request semantics
//! live in [`super::store`].

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::record_code::{self, RecordCode, RecordsSource};
use crate::pb::mvccpb::{Event, KeyValue, event::EventType};

/// A point in the key space's history: `main` counts committed writes (one per Put,
/// DeleteRange, Txn or lease revoke that changed something), `sub` orders the changes
/// inside one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Revision {
    /// The store-wide revision this change belongs to.
    pub main: i64,
    /// The change's position inside its revision, from 0.
    pub sub: i64,
}

/// The part of a key's record that does not follow from where it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredValue {
    /// The value bytes.
    pub value: Vec<u8>,
    /// The revision that created the key's current incarnation.
    pub create_revision: i64,
    /// How many times the key was written since its creation (1 after the first put).
    pub version: i64,
    /// The attached lease, 0 for none.
    pub lease: i64,
}

/// One stored change: the key and its new value, or `None` for a deletion (tombstone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The key written.
    pub key: Vec<u8>,
    /// The new value, `None` when the change deleted the key.
    pub value: Option<StoredValue>,
}

/// Which keys a request names, decoded from etcd's `key`/`range_end` conventions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    /// `range_end` empty: exactly this key.
    Single(Vec<u8>),
    /// `range_end` is `"\0"`: every key at or after this one.
    From(Vec<u8>),
    /// Every key in `[start, end)`; empty when `start >= end`.
    Between(Vec<u8>, Vec<u8>),
}

impl KeyRange {
    /// Decodes etcd's conventions: empty `range_end` is one key, `"\0"` means "to the
    /// end of the key space", anything else is a half-open interval.
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::From(key.to_vec()),
            end => KeyRange::Between(key.to_vec(), end.to_vec()),
        }
    }

    /// Whether `key` falls in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(k) => k.as_slice() == key,
            KeyRange::From(start) => key >= start.as_slice(),
            KeyRange::Between(start, end) => key >= start.as_slice() && key < end.as_slice(),
        }
    }

    /// The range as map bounds; `None` when it is empty (so `BTreeMap::range` never
    /// sees a start after its end).
    fn bounds(&self) -> Option<KeyBounds<'_>> {
        match self {
            KeyRange::Single(k) => Some((Bound::Included(k), Bound::Included(k))),
            KeyRange::From(start) => Some((Bound::Included(start), Bound::Unbounded)),
            KeyRange::Between(start, end) if start < end => {
                Some((Bound::Included(start), Bound::Excluded(end)))
            }
            KeyRange::Between(..) => None,
        }
    }
}

/// A key range as `BTreeMap::range` bounds.
type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// Bookkeeping bytes counted per held change on top of its key and value (revision,
/// create revision, version, lease, index entry), for [`KeySpace::size_bytes`].
pub const RECORD_OVERHEAD_BYTES: u64 = 48;

/// All versions of all keys still held (see the module doc).
///
/// Keys, revision lists and records are shared (`Arc`), so a clone copies only the two
/// maps' nodes and counts references: a snapshot takes a copy under the lock and encodes
/// it elsewhere. A revision list is copied on write only while such a copy is alive;
/// records never change once written. The encoding is the same as unshared values'.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySpace {
    index: BTreeMap<Arc<[u8]>, Arc<Vec<Revision>>>,
    records: BTreeMap<Revision, Arc<Record>>,
    /// The sum of [`record_bytes`] over `records`; not encoded, recounted on restore.
    #[serde(skip)]
    size_bytes: u64,
    /// The snapshot encoding of the records so far, shared with copies; a compaction
    /// starts a new one.
    #[serde(skip)]
    encoded: RecordCode,
}

/// What one held change counts toward [`KeySpace::size_bytes`].
fn record_bytes(record: &Record) -> u64 {
    let value = record.value.as_ref().map_or(0, |v| v.value.len());
    (record.key.len() + value) as u64 + RECORD_OVERHEAD_BYTES
}

/// Builds the wire form of a stored value.
pub(crate) fn key_value(key: &[u8], rev: Revision, v: &StoredValue) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        create_revision: v.create_revision,
        mod_revision: rev.main,
        version: v.version,
        value: v.value.clone(),
        lease: v.lease,
    }
}

impl KeySpace {
    /// The record that is current for `key` at revision `at` (its latest change with
    /// `main <= at`), with that change's revision.
    fn latest(&self, key: &[u8], at: i64) -> Option<(Revision, &Record)> {
        let revs = self.index.get(key)?;
        let n = revs.partition_point(|r| r.main <= at);
        let rev = *revs.get(n.checked_sub(1)?)?;
        self.records.get(&rev).map(|rec| (rev, &**rec))
    }

    /// The live value of `key` at revision `at`, if the key existed then.
    pub fn get(&self, key: &[u8], at: i64) -> Option<KeyValue> {
        let (rev, v) = self.live(key, at)?;
        Some(key_value(key, rev, v))
    }

    /// The live value of `key` at revision `at` by reference, with the revision that
    /// wrote it: [`Self::get`] without copying the key and value out.
    pub fn live(&self, key: &[u8], at: i64) -> Option<(Revision, &StoredValue)> {
        let (rev, rec) = self.latest(key, at)?;
        rec.value.as_ref().map(|v| (rev, v))
    }

    /// The live keys of `range` at revision `at`, in key order.
    pub fn range(&self, range: &KeyRange, at: i64) -> Vec<KeyValue> {
        let Some(bounds) = range.bounds() else {
            return Vec::new();
        };
        self.index
            .range::<[u8], _>(bounds)
            .filter_map(|(key, _)| self.get(key, at))
            .collect()
    }

    /// Writes `value` to `key` at `rev`; version and create revision follow from the
    /// key's value just before (the latest one, including earlier changes of the same
    /// `rev.main`). Returns the new value and the one it replaced.
    pub fn put(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
        rev: Revision,
    ) -> (KeyValue, Option<KeyValue>) {
        let prev = self.get(key, rev.main);
        self.put_value(key, value, lease, rev);
        let kv = self.get(key, rev.main);
        debug_assert!(kv.is_some(), "a put value is live at its revision");
        (kv.unwrap_or_default(), prev)
    }

    /// [`Self::put`] without building the new and the replaced value's wire forms (the
    /// write path's form: it copies neither key nor value out).
    pub fn put_value(&mut self, key: &[u8], value: Vec<u8>, lease: i64, rev: Revision) {
        let (create_revision, version) = match self.live(key, rev.main) {
            Some((_, p)) => (p.create_revision, p.version + 1),
            None => (rev.main, 1),
        };
        let stored = StoredValue {
            value,
            create_revision,
            version,
            lease,
        };
        self.insert(
            rev,
            Record {
                key: key.to_vec(),
                value: Some(stored),
            },
        );
    }

    /// Deletes `key` at `rev` if it is live; returns the deleted value.
    pub fn delete(&mut self, key: &[u8], rev: Revision) -> Option<KeyValue> {
        let prev = self.get(key, rev.main)?;
        self.insert(
            rev,
            Record {
                key: key.to_vec(),
                value: None,
            },
        );
        Some(prev)
    }

    fn insert(&mut self, rev: Revision, record: Record) {
        let revs = match self.index.get_mut(record.key.as_slice()) {
            Some(revs) => revs,
            None => self
                .index
                .entry(Arc::from(record.key.as_slice()))
                .or_default(),
        };
        debug_assert!(
            revs.last().is_none_or(|last| *last < rev),
            "revisions go up"
        );
        Arc::make_mut(revs).push(rev);
        self.size_bytes += record_bytes(&record);
        self.records.insert(rev, Arc::new(record));
    }

    /// The held changes' key and value bytes plus [`RECORD_OVERHEAD_BYTES`] each: an
    /// estimate of the backend size (what the quota compares), kept as changes are
    /// written and compacted, so reading it costs nothing.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Recomputes [`Self::size_bytes`] from the held changes (after decoding).
    pub fn recount(&mut self) {
        self.size_bytes = self.records.values().map(|r| record_bytes(r)).sum();
    }

    /// Forgets history before revision `at`: each key keeps its changes from `at` on,
    /// and, when it has none exactly at `at`, its latest earlier change if that is a
    /// live value. Reads at revisions `>= at` answer exactly as before, and the events
    /// of revision `at` stay complete.
    pub fn compact(&mut self, at: i64) {
        // The kept encoding may hold records this drops; copies keep theirs.
        self.encoded = RecordCode::default();
        let mut dropped = Vec::new();
        self.index.retain(|_, revs| {
            let before_at = revs.partition_point(|r| r.main < at);
            let through_at = revs.partition_point(|r| r.main <= at);
            let mut keep_from = before_at;
            if before_at == through_at
                && let Some(last) = before_at.checked_sub(1)
                && self
                    .records
                    .get(&revs[last])
                    .is_some_and(|rec| rec.value.is_some())
            {
                keep_from = last;
            }
            if keep_from > 0 {
                dropped.extend(Arc::make_mut(revs).drain(..keep_from));
            }
            !revs.is_empty()
        });
        for rev in dropped {
            if let Some(record) = self.records.remove(&rev) {
                self.size_bytes -= record_bytes(&record);
            }
        }
    }

    /// The changes to keys in `range` with `from <= main <= to`, in revision order, as
    /// watch events. A deletion's `kv` carries only the key and the deleting revision;
    /// `prev_kv` is the key's value just before the change when it is still held.
    pub fn events(&self, range: &KeyRange, from: i64, to: i64) -> Vec<Event> {
        if from > to {
            return Vec::new();
        }
        let lo = Revision { main: from, sub: 0 };
        let hi = Revision {
            main: to,
            sub: i64::MAX,
        };
        self.records
            .range(lo..=hi)
            .filter(|(_, rec)| range.contains(&rec.key))
            .map(|(rev, rec)| self.event(*rev, rec))
            .collect()
    }

    /// The watch event for one stored change.
    pub fn event(&self, rev: Revision, rec: &Record) -> Event {
        let prev_kv = self.get(&rec.key, rev.main - 1);
        match &rec.value {
            Some(v) => Event {
                r#type: EventType::Put as i32,
                kv: Some(key_value(&rec.key, rev, v)),
                prev_kv,
            },
            None => Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue {
                    key: rec.key.clone(),
                    mod_revision: rev.main,
                    ..KeyValue::default()
                }),
                prev_kv,
            },
        }
    }

    /// The changes made at exactly revision `main`, in sub-revision order.
    pub fn events_at(&self, main: i64) -> Vec<Event> {
        self.events(&KeyRange::From(Vec::new()), main, main)
    }

    /// A CRC-32C over every held change with `main <= at` (revision, key, value and
    /// bookkeeping), in revision order, seeded with `compact_revision`.
    pub fn hash(&self, at: i64, compact_revision: i64) -> u32 {
        let mut crc = crc32c::crc32c(&compact_revision.to_be_bytes());
        let hi = Revision {
            main: at,
            sub: i64::MAX,
        };
        for (rev, rec) in self.records.range(..=hi) {
            crc = crc32c::crc32c_append(crc, &rev.main.to_be_bytes());
            crc = crc32c::crc32c_append(crc, &rev.sub.to_be_bytes());
            crc = crc32c::crc32c_append(crc, &(rec.key.len() as u64).to_be_bytes());
            crc = crc32c::crc32c_append(crc, &rec.key);
            match &rec.value {
                None => crc = crc32c::crc32c_append(crc, &[0]),
                Some(v) => {
                    crc = crc32c::crc32c_append(crc, &[1]);
                    crc = crc32c::crc32c_append(crc, &v.create_revision.to_be_bytes());
                    crc = crc32c::crc32c_append(crc, &v.version.to_be_bytes());
                    crc = crc32c::crc32c_append(crc, &v.lease.to_be_bytes());
                    crc = crc32c::crc32c_append(crc, &(v.value.len() as u64).to_be_bytes());
                    crc = crc32c::crc32c_append(crc, &v.value);
                }
            }
        }
        crc
    }

    /// Checks the two maps agree (every indexed revision has a record of that key and
    /// vice versa, revisions ascending per key). Used after restoring a snapshot.
    pub fn check_consistent(&self) -> Result<(), String> {
        let mut indexed = 0usize;
        for (key, revs) in &self.index {
            if revs.is_empty() {
                return Err("a key with no revisions".into());
            }
            if revs.windows(2).any(|w| w[0] >= w[1]) {
                return Err("a key's revisions are not ascending".into());
            }
            for rev in revs.iter() {
                match self.records.get(rev) {
                    Some(rec) if rec.key.as_slice() == &**key => indexed += 1,
                    _ => return Err(format!("revision {}.{} has no record", rev.main, rev.sub)),
                }
            }
        }
        if indexed != self.records.len() {
            return Err("a record is not indexed".into());
        }
        Ok(())
    }

    /// The highest revision held, if any.
    pub fn last_revision(&self) -> Option<Revision> {
        self.records.keys().next_back().copied()
    }

    /// What a snapshot needs of the held changes (see `record_code`): cheap, the
    /// changes since the kept encoding as shared references.
    pub(crate) fn records_source(&self) -> RecordsSource {
        self.encoded.capture(&self.records)
    }

    /// Decodes what a [`RecordsSource`] wrote from the front of `bytes`; returns the
    /// key space and the bytes after it. Revisions must ascend.
    pub(crate) fn decode_records(bytes: &[u8]) -> Result<(KeySpace, &[u8]), String> {
        let mut ks = KeySpace::default();
        let rest = record_code::decode(bytes, |rev, record| {
            if ks.last_revision().is_some_and(|last| last >= rev) {
                return Err(format!(
                    "revision {}.{} does not follow the one before",
                    rev.main, rev.sub
                ));
            }
            ks.insert(rev, record);
            Ok(())
        })?;
        Ok((ks, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision { main, sub: 0 }
    }

    #[test]
    fn range_end_conventions() {
        assert_eq!(KeyRange::new(b"a", b""), KeyRange::Single(b"a".to_vec()));
        assert_eq!(KeyRange::new(b"a", b"\0"), KeyRange::From(b"a".to_vec()));
        assert!(KeyRange::new(b"\0", b"\0").contains(b"\0"));
        assert!(KeyRange::new(b"\0", b"\0").contains(b"zzz"));
        let r = KeyRange::new(b"b", b"d");
        assert!(!r.contains(b"a") && r.contains(b"b") && r.contains(b"c\xff"));
        assert!(!r.contains(b"d"));
        // A start after the end is empty, not a panic.
        let mut ks = KeySpace::default();
        ks.put(b"c", b"1".to_vec(), 0, rev(2));
        assert!(ks.range(&KeyRange::new(b"d", b"b"), 2).is_empty());
        assert_eq!(ks.range(&KeyRange::new(b"a", b"\0"), 2).len(), 1);
    }

    #[test]
    fn a_clone_shares_records_and_keeps_its_view_while_the_original_moves_on() {
        let mut ks = KeySpace::default();
        for i in 2..40 {
            ks.put(format!("k{}", i % 5).as_bytes(), vec![i as u8], 0, rev(i));
        }
        let copy = ks.clone();
        let first = Revision { main: 2, sub: 0 };
        assert!(Arc::ptr_eq(&ks.records[&first], &copy.records[&first]));
        let frozen_hash = copy.hash(39, 0);
        let frozen = copy.range(&KeyRange::From(Vec::new()), 39);
        for i in 40..60 {
            ks.put(format!("k{}", i % 7).as_bytes(), vec![i as u8], 0, rev(i));
        }
        ks.delete(b"k1", rev(60));
        ks.compact(50);
        assert_eq!(
            copy.hash(39, 0),
            frozen_hash,
            "the copy does not see later writes"
        );
        assert_eq!(copy.range(&KeyRange::From(Vec::new()), 39), frozen);
        assert!(copy.check_consistent().is_ok());
        assert_ne!(ks.range(&KeyRange::From(Vec::new()), 60), frozen);
        // The shared form encodes like an unshared one would: it decodes back equal.
        let bytes = postcard::to_allocvec(&copy).expect("encodes");
        let back: KeySpace = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(back.records, copy.records);
        assert_eq!(back.index, copy.index);
    }

    #[test]
    fn versions_and_generations() {
        let mut ks = KeySpace::default();
        let (kv, prev) = ks.put(b"k", b"1".to_vec(), 0, rev(2));
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
        assert!(prev.is_none());
        let (kv, prev) = ks.put(b"k", b"2".to_vec(), 0, rev(3));
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
        assert_eq!(prev.map(|p| p.value), Some(b"1".to_vec()));
        assert!(ks.delete(b"k", rev(4)).is_some());
        assert!(
            ks.delete(b"k", rev(5)).is_none(),
            "deleting a dead key is a no-op"
        );
        let (kv, _) = ks.put(b"k", b"3".to_vec(), 0, rev(5));
        assert_eq!((kv.create_revision, kv.version), (5, 1));
        assert_eq!(ks.get(b"k", 3).map(|k| k.value), Some(b"2".to_vec()));
        assert!(ks.get(b"k", 4).is_none());
        assert!(ks.get(b"k", 1).is_none());
    }

    #[test]
    fn compaction_keeps_reads_at_and_after() {
        let mut ks = KeySpace::default();
        ks.put(b"a", b"1".to_vec(), 0, rev(2));
        ks.put(b"a", b"2".to_vec(), 0, rev(3));
        ks.put(b"b", b"1".to_vec(), 0, rev(4));
        ks.delete(b"b", rev(5));
        ks.put(b"c", b"1".to_vec(), 0, rev(6));
        ks.delete(b"c", rev(7));
        let before: Vec<_> = (6..=7)
            .map(|at| ks.range(&KeyRange::From(vec![]), at))
            .collect();
        ks.compact(6);
        let after: Vec<_> = (6..=7)
            .map(|at| ks.range(&KeyRange::From(vec![]), at))
            .collect();
        assert_eq!(before, after);
        assert!(!ks.index.contains_key(b"b".as_slice()), "dead key dropped");
        assert_eq!(*ks.index[b"a".as_slice()], vec![rev(3)]);
        assert!(ks.check_consistent().is_ok());
        // The tombstone at exactly the compact revision is kept for event replay.
        ks.compact(7);
        assert_eq!(ks.events_at(7).len(), 1);
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use proptest::prelude::*;

    /// One change to a small key space: put (key, value length), delete key, compact.
    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, usize),
        Delete(u8),
        Compact,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6, 0usize..40).prop_map(|(k, n)| Op::Put(k, n)),
            (0u8..6).prop_map(Op::Delete),
            Just(Op::Compact),
        ]
    }

    proptest! {
        /// The running size always equals a recount of what is held, and grows by
        /// exactly one record's bytes per change written.
        #[test]
        fn running_size_matches_a_recount(ops in proptest::collection::vec(op(), 1..60)) {
            let mut ks = KeySpace::default();
            for (i, op) in ops.into_iter().enumerate() {
                let at = Revision { main: i as i64 + 2, sub: 0 };
                let before = ks.size_bytes();
                match op {
                    Op::Put(k, n) => {
                        ks.put(&[k], vec![b'v'; n], 0, at);
                        prop_assert_eq!(ks.size_bytes(), before + 1 + n as u64 + RECORD_OVERHEAD_BYTES);
                    }
                    Op::Delete(k) => {
                        let deleted = ks.delete(&[k], at).is_some();
                        let grew = if deleted { 1 + RECORD_OVERHEAD_BYTES } else { 0 };
                        prop_assert_eq!(ks.size_bytes(), before + grew);
                    }
                    Op::Compact => ks.compact(at.main),
                }
                let mut fresh = ks.clone();
                fresh.recount();
                prop_assert_eq!(fresh.size_bytes(), ks.size_bytes());
            }
        }
    }
}
