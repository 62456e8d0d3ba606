//! The key space's records in a snapshot's form, and the encoded prefix a key space
//! keeps between snapshots so that each snapshot encodes only the records written since
//! the last one.
//!
//! The records section is the number of records, then each record as postcard
//! `(Revision, Record)`, in revision order. Records never change once written and only
//! compaction removes them (from the front), so the encoding of every record up to
//! revision R stays valid for a key space and its copies until it compacts: a key space
//! keeps that encoding (shared with its copies, replaced by a new empty one when it
//! compacts) and a snapshot copies it and appends the rest. The bytes are exactly those
//! of encoding every record afresh (a test checks).
//!
//! This module does not decide what else a snapshot holds (see `snapshot.rs`).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use super::keyspace::{Record, Revision};

/// Largest encoded prefix a key space keeps: beyond it (a large real database, where
/// snapshots are rare anyway) every snapshot encodes all records, and the memory is not
/// held twice.
pub(crate) const RECORD_CODE_KEPT_BYTES_MAX: usize = 64 << 20;

/// The encoded prefix of a key space's records, shared by the key space and its
/// copies. Not part of the key space's value: two key spaces compare equal whatever
/// their caches hold.
#[derive(Clone, Default)]
pub(crate) struct RecordCode(Arc<Mutex<Prefix>>);

/// The encoding of the first `count` records, the last of them at `upto`.
#[derive(Default)]
struct Prefix {
    upto: Option<Revision>,
    count: usize,
    bytes: Vec<u8>,
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

impl RecordCode {
    /// Appends the records section for `records` (all of a key space's records, in
    /// revision order; `after(r)` yields those after `r`) to `out`, reusing and then
    /// extending the kept prefix when it belongs to these records.
    pub(crate) fn encode<'a, A, I>(&self, total: usize, after: A, out: &mut Vec<u8>)
    where
        A: Fn(Option<Revision>) -> I,
        I: Iterator<Item = (&'a Revision, &'a Arc<Record>)>,
    {
        let mut prefix = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // The kept prefix fits when these records hold exactly `count` up to `upto`
        // (a copy taken before the prefix grew past it holds fewer).
        let newer: Vec<_> = after(prefix.upto).collect();
        let fits = prefix.upto.is_some() && total.checked_sub(newer.len()) == Some(prefix.count);
        let (newer, reused) = if fits || prefix.upto.is_none() {
            (newer, fits)
        } else {
            (after(None).collect(), false)
        };
        let mut tail = Vec::new();
        for (rev, record) in &newer {
            put(&(rev, &***record), &mut tail);
        }
        put(&(total as u64), out);
        if reused {
            out.reserve(prefix.bytes.len() + tail.len());
            out.extend_from_slice(&prefix.bytes);
        }
        out.extend_from_slice(&tail);
        let Some(&(&last, _)) = newer.last() else {
            return;
        };
        if reused && prefix.bytes.len() + tail.len() <= RECORD_CODE_KEPT_BYTES_MAX {
            prefix.bytes.extend_from_slice(&tail);
        } else if !reused
            && prefix.upto.is_none_or(|u| u < last)
            && tail.len() <= RECORD_CODE_KEPT_BYTES_MAX
        {
            prefix.bytes = tail;
        } else {
            return;
        }
        prefix.upto = Some(last);
        prefix.count = total;
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
