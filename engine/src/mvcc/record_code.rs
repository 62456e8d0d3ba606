//! The key space's records in a snapshot's form, and the encoded prefix a key space
//! keeps between snapshots so that each snapshot encodes only the records written since
//! the last one.
//!
//! The records section is the number of records, then each record as postcard
//! `(Revision, Record)`, in revision order. Records never change once written and only
//! compaction removes them (from the front), so the encoding of every record up to
//! revision R stays valid for a key space and its copies until it compacts: a key space
//! keeps that encoding (shared with its copies, replaced by a new empty one when it
//! compacts) as a chain of immutable chunks, one per snapshot that extended it.
//!
//! A snapshot is taken in two steps. [`RecordCode::capture`] (under the caller's lock,
//! cheap: the records after the kept prefix, as shared references, and the prefix's
//! chain as it is) gives a self-contained [`RecordsSource`]; encoding that source
//! elsewhere writes the prefix's chunks and the newer records, then adds those newer
//! records' encoding to the chain as its next chunk, unless the kept prefix moved on
//! meanwhile (another snapshot extended it first). The bytes are exactly those of
//! encoding every record afresh (a test checks).
//!
//! This module does not decide what else a snapshot holds (see `snapshot.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::keyspace::{Record, Revision};

/// Largest encoded prefix a key space keeps: beyond it (a large real database, where
/// snapshots are rare anyway) the prefix stops growing, every snapshot encodes (and
/// takes, under the caller's lock, as references) all records after it, and the memory
/// is not held twice.
pub(crate) const RECORD_CODE_KEPT_BYTES_MAX: usize = 64 << 20;

/// Bytes assumed per record beyond its key and value when sizing the buffer of the newer
/// records' encoding (revision, lengths, create revision, version, lease as varints).
const RECORD_CODE_OVERHEAD_BYTES_GUESS: usize = 24;

/// The encoded prefix of a key space's records, shared by the key space and its
/// copies. Not part of the key space's value: two key spaces compare equal whatever
/// their caches hold.
#[derive(Clone, Default)]
pub(crate) struct RecordCode(Arc<Mutex<Prefix>>);

/// The encoding of the first `count` records, the last of them `last`.
#[derive(Default)]
struct Prefix {
    /// The last record encoded (the very value: a key space whose record at that
    /// revision is another one has a different history).
    last: Option<(Revision, Arc<Record>)>,
    count: usize,
    /// The encoding, newest chunk first; `None` exactly when `last` is.
    chain: Option<Arc<Chunk>>,
}

/// One snapshot's addition to a kept prefix, after the chunks before it.
struct Chunk {
    before: Option<Arc<Chunk>>,
    bytes: Vec<u8>,
    /// The bytes of this chunk and all before it.
    len_through: usize,
}

impl Drop for Chunk {
    /// Unlinks the chain one chunk at a time (a recursive drop of a long chain could
    /// exhaust the stack).
    fn drop(&mut self) {
        let mut next = self.before.take();
        while let Some(chunk) = next {
            next = match Arc::try_unwrap(chunk) {
                Ok(mut alone) => alone.before.take(),
                Err(_) => None,
            };
        }
    }
}

impl PartialEq for RecordCode {
    fn eq(&self, _: &RecordCode) -> bool {
        true
    }
}

impl Eq for RecordCode {}

impl fmt::Debug for RecordCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecordCode")
    }
}

/// Appends `value`'s postcard encoding to `out`.
fn put<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    match postcard::to_extend(value, std::mem::take(out)) {
        Ok(v) => *out = v,
        // Only a length beyond postcard's varint range fails, which no record reaches.
        Err(e) => unreachable!("postcard cannot encode a record: {e}"),
    }
}

/// The length of `value`'s postcard varint encoding.
fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Both `None`, or the same chunk.
fn same_chain(a: &Option<Arc<Chunk>>, b: &Option<Arc<Chunk>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

impl RecordCode {
    fn lock(&self) -> MutexGuard<'_, Prefix> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What a snapshot of `records` (all of a key space's records) needs, without
    /// encoding anything: the kept prefix when it belongs to these records, and the
    /// records after it (all of them when it does not). Costs the records after the
    /// prefix, not the whole key space (but all records once after each compaction).
    pub(crate) fn capture(&self, records: &BTreeMap<Revision, Arc<Record>>) -> RecordsSource {
        let after = |from: Bound<Revision>| -> Vec<(Revision, Arc<Record>)> {
            records
                .range((from, Bound::Unbounded))
                .map(|(rev, record)| (*rev, Arc::clone(record)))
                .collect()
        };
        let total = records.len();
        let prefix = self.lock();
        // The kept prefix fits when these records hold its last record itself and
        // exactly `count` up to it (a copy taken before the prefix grew past it holds
        // fewer, or not that record).
        let fitting = prefix.last.as_ref().and_then(|(rev, last)| {
            if !records.get(rev).is_some_and(|held| Arc::ptr_eq(held, last)) {
                return None;
            }
            let newer = after(Bound::Excluded(*rev));
            (total.checked_sub(newer.len()) == Some(prefix.count)).then_some(newer)
        });
        let (kept, newer) = match fitting {
            Some(newer) => (prefix.chain.clone(), newer),
            None => (None, after(Bound::Unbounded)),
        };
        drop(prefix);
        RecordsSource {
            code: self.clone(),
            kept,
            newer,
            total,
            tail: None,
        }
    }
}

/// The records section of one snapshot, self-contained (see the module doc): the kept
/// prefix as captured and the records after it, shared with the key space.
pub(crate) struct RecordsSource {
    /// Where the prefix lives, to extend it once encoded.
    code: RecordCode,
    /// The kept prefix this section reuses, if any.
    kept: Option<Arc<Chunk>>,
    /// The records after `kept`, in revision order.
    newer: Vec<(Revision, Arc<Record>)>,
    /// All records of the section.
    total: usize,
    /// The encoding of `newer`, once made.
    tail: Option<Vec<u8>>,
}

impl fmt::Debug for RecordsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordsSource")
            .field(
                "kept_bytes",
                &self.kept.as_ref().map_or(0, |c| c.len_through),
            )
            .field("newer", &self.newer.len())
            .field("total", &self.total)
            .finish()
    }
}

impl RecordsSource {
    /// The encoding of the records after the kept prefix (made on the first call).
    fn tail(&mut self) -> &[u8] {
        let newer = &self.newer;
        self.tail.get_or_insert_with(|| {
            let guess: usize = newer
                .iter()
                .map(|(_, r)| {
                    let value = r.value.as_ref().map_or(0, |v| v.value.len());
                    r.key.len() + value + RECORD_CODE_OVERHEAD_BYTES_GUESS
                })
                .sum();
            let mut tail = Vec::with_capacity(guess);
            for (rev, record) in newer {
                put(&(rev, &**record), &mut tail);
            }
            tail
        })
    }

    /// The section's length in bytes (encodes the newer records, once).
    pub(crate) fn encoded_len(&mut self) -> usize {
        let kept = self.kept.as_ref().map_or(0, |c| c.len_through);
        varint_len(self.total as u64) + kept + self.tail().len()
    }

    /// Appends the section ([`Self::encoded_len`] bytes) to `out`, then extends the
    /// kept prefix with the newer records' encoding when it is still the one captured.
    pub(crate) fn write(mut self, out: &mut Vec<u8>) {
        self.tail();
        let tail = self.tail.take().unwrap_or_default();
        put(&(self.total as u64), out);
        let mut chunks = Vec::new();
        let mut at = self.kept.as_deref();
        while let Some(chunk) = at {
            chunks.push(chunk.bytes.as_slice());
            at = chunk.before.as_deref();
        }
        for bytes in chunks.into_iter().rev() {
            out.extend_from_slice(bytes);
        }
        out.extend_from_slice(&tail);
        self.keep(tail);
    }

    /// Makes `tail` (the encoding of `newer`) the kept prefix's next chunk, if the
    /// prefix is still the one this section reused (or is empty and this section reused
    /// none: a prefix that did not fit is never replaced) and stays within
    /// [`RECORD_CODE_KEPT_BYTES_MAX`].
    fn keep(self, tail: Vec<u8>) {
        let Some((last_rev, last)) = self.newer.last() else {
            return;
        };
        let len_through = self.kept.as_ref().map_or(0, |c| c.len_through) + tail.len();
        if len_through > RECORD_CODE_KEPT_BYTES_MAX {
            return;
        }
        let mut prefix = self.code.lock();
        if !same_chain(&prefix.chain, &self.kept) {
            return;
        }
        prefix.chain = Some(Arc::new(Chunk {
            before: self.kept.clone(),
            bytes: tail,
            len_through,
        }));
        prefix.last = Some((*last_rev, Arc::clone(last)));
        prefix.count = self.total;
    }
}

/// Decodes a records section from the front of `bytes`, handing each record to `push`
/// (which checks it); returns the bytes after the section.
pub(crate) fn decode(
    bytes: &[u8],
    mut push: impl FnMut(Revision, Record) -> Result<(), String>,
) -> Result<&[u8], String> {
    let (count, mut rest) =
        postcard::take_from_bytes::<u64>(bytes).map_err(|e| format!("record count: {e}"))?;
    for i in 0..count {
        let ((rev, record), after) = postcard::take_from_bytes::<(Revision, Record)>(rest)
            .map_err(|e| format!("record {i} of {count}: {e}"))?;
        push(rev, record)?;
        rest = after;
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_len_matches_postcard() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let bytes = postcard::to_allocvec(&v).expect("encodes");
            assert_eq!(varint_len(v), bytes.len(), "{v}");
        }
    }

    #[test]
    fn a_long_chain_drops_without_recursion() {
        let mut chain: Option<Arc<Chunk>> = None;
        for i in 0..200_000usize {
            chain = Some(Arc::new(Chunk {
                before: chain.take(),
                bytes: Vec::new(),
                len_through: i,
            }));
        }
        drop(chain);
    }
}
