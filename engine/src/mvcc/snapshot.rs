//! Snapshot encoding of a [`KvState`]: a versioned header, a postcard body and a
//! CRC-32C trailer.
//!
//! Layout: `b"DKVS"`, version (u16 big-endian), body, CRC-32C of everything before it
//! (u32 big-endian). The body (version 2) holds the applied index, the current and
//! compacted revisions, each lease's id and TTL, then every held change of the key space
//! in revision order (so reads at old revisions and event replay work after a restore;
//! record_code.rs writes them, reusing the previous snapshot's encoding of the older
//! ones). Each key's list of revisions is rebuilt from the changes. Lease expiries are
//! not in it (they are times on one member's clock); lease-key attachments are rebuilt
//! from the keys. A restored table is not primary; the member renews every lease when it
//! becomes leader. Version 1 (the whole key space as postcard, written by earlier
//! builds) is still read.
//!
//! A snapshot is taken in two steps: [`KvState::snapshot_source`] (cheap, under the
//! caller's lock) and [`KvSnapshot::write`] (the encoding, anywhere, into a buffer the
//! caller sized with [`KvSnapshot::encoded_len`], so the state is copied once).
//!
//! Decoding checks everything it can (magic, version, checksum, structure, that the
//! keys' leases exist) and answers with a [`SnapshotError`], never a panic.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::keyspace::KeySpace;
use super::record_code::RecordsSource;
use super::state::{KvConfig, KvState};
use super::store::{Lessor, Store};
use crate::lease::LeaseTable;

const MAGIC: &[u8; 4] = b"DKVS";
/// The snapshot format version written by this build.
pub const SNAPSHOT_VERSION: u16 = 2;
/// The earlier format (the whole store as postcard), still read.
const SNAPSHOT_VERSION_STORE: u16 = 1;
const HEADER_BYTES: usize = 6;
const CRC_BYTES: usize = 4;

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    /// Fewer bytes than header and trailer need.
    #[error("kv snapshot too short: {len_bytes} bytes")]
    TooShort {
        /// The length seen.
        len_bytes: usize,
    },
    /// The first bytes are not a kv snapshot's magic.
    #[error("not a kv snapshot (bad magic)")]
    BadMagic,
    /// Written by a newer or unknown format.
    #[error(
        "kv snapshot version {0} is not supported (this build reads {SNAPSHOT_VERSION_STORE} and {SNAPSHOT_VERSION})"
    )]
    UnsupportedVersion(u16),
    /// The trailer does not match the content.
    #[error("kv snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The CRC in the trailer.
        stored: u32,
        /// The CRC of the content.
        computed: u32,
    },
    /// The body does not decode.
    #[error("kv snapshot body does not decode: {0}")]
    Decode(String),
    /// The body decodes but breaks an invariant.
    #[error("kv snapshot is inconsistent: {0}")]
    Inconsistent(String),
}

/// A version 1 body as decoded.
#[derive(Deserialize)]
struct BodyV1 {
    applied_index: u64,
    store: Store,
    /// (id, granted TTL in seconds), ascending by id.
    leases: Vec<(i64, i64)>,
}

/// What a version 2 body holds before the key space's changes.
#[derive(Serialize, Deserialize)]
struct Head {
    applied_index: u64,
    current_revision: i64,
    compact_revision: i64,
    /// (id, granted TTL in seconds), ascending by id.
    leases: Vec<(i64, i64)>,
}

/// A snapshot of a [`KvState`] taken but not yet encoded: the head (applied index,
/// revisions, leases) and the key space's changes as shared references (see
/// `record_code.rs`), self-contained, so the state may move on (writes, compactions)
/// while another task encodes it. Taking one costs the changes since the key space's
/// kept encoding, not the whole state.
#[derive(Debug)]
pub struct KvSnapshot {
    /// The postcard encoding of the [`Head`].
    head: Vec<u8>,
    records: RecordsSource,
}

impl KvSnapshot {
    /// The encoding's length in bytes (encodes the changes since the kept encoding, once;
    /// [`Self::write`] then only copies).
    pub fn encoded_len(&mut self) -> usize {
        HEADER_BYTES + self.head.len() + self.records.encoded_len() + CRC_BYTES
    }

    /// Appends the encoding ([`Self::encoded_len`] bytes, the bytes of
    /// [`KvState::snapshot`]) to `out`. Size `out` with [`Self::encoded_len`] first to
    /// copy the state once.
    pub fn write(self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&self.head);
        self.records.write(out);
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }

    /// The encoding in a buffer of its own, sized once.
    pub fn into_bytes(mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write(&mut out);
        out
    }
}

impl KvState {
    /// Takes a snapshot to encode later or elsewhere (see [`KvSnapshot`]).
    pub fn snapshot_source(&self) -> KvSnapshot {
        let head = Head {
            applied_index: self.applied_index,
            current_revision: self.store.current_revision(),
            compact_revision: self.store.compact_revision(),
            leases: self.leases.ttls(),
        };
        let head = match postcard::to_allocvec(&head) {
            Ok(head) => head,
            Err(e) => unreachable!("postcard cannot encode a snapshot head: {e}"),
        };
        KvSnapshot {
            head,
            records: self.store.keys().records_source(),
        }
    }

    /// Encodes the whole state (see the module doc).
    pub fn snapshot(&self) -> Vec<u8> {
        self.snapshot_source().into_bytes()
    }

    /// Decodes a snapshot written by [`KvState::snapshot`].
    pub fn restore(bytes: &[u8], config: KvConfig) -> Result<KvState, SnapshotError> {
        if bytes.len() < HEADER_BYTES + CRC_BYTES {
            return Err(SnapshotError::TooShort {
                len_bytes: bytes.len(),
            });
        }
        let (content, trailer) = bytes.split_at(bytes.len() - CRC_BYTES);
        if &content[..4] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let version = u16::from_be_bytes([content[4], content[5]]);
        if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_STORE {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let stored = u32::from_be_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let computed = crc32c::crc32c(content);
        if stored != computed {
            return Err(SnapshotError::Checksum { stored, computed });
        }
        let body = &content[HEADER_BYTES..];
        let (applied_index, store, lease_ttls) = if version == SNAPSHOT_VERSION_STORE {
            let mut v1: BodyV1 =
                postcard::from_bytes(body).map_err(|e| SnapshotError::Decode(e.to_string()))?;
            v1.store.recount();
            (v1.applied_index, v1.store, v1.leases)
        } else {
            let (head, rest) = postcard::take_from_bytes::<Head>(body)
                .map_err(|e| SnapshotError::Decode(e.to_string()))?;
            let (keys, rest) = KeySpace::decode_records(rest).map_err(SnapshotError::Decode)?;
            if !rest.is_empty() {
                return Err(SnapshotError::Decode(format!(
                    "{} bytes after the last record",
                    rest.len()
                )));
            }
            let store = Store::from_parts(keys, head.current_revision, head.compact_revision);
            (head.applied_index, store, head.leases)
        };
        store
            .check_consistent()
            .map_err(SnapshotError::Inconsistent)?;
        let mut leases = LeaseTable::new(config.lease_ttl_s_min);
        for (id, ttl_s) in lease_ttls {
            if id == 0 || leases.lease_exists(id) {
                return Err(SnapshotError::Inconsistent(format!(
                    "lease id {id} is zero or repeated"
                )));
            }
            leases.insert_restored(id, ttl_s);
        }
        for (id, key) in store.live_leased_keys() {
            if !leases.lease_exists(id) {
                return Err(SnapshotError::Inconsistent(format!(
                    "a key carries lease {id}, which does not exist"
                )));
            }
            leases.attach(id, &key);
        }
        Ok(KvState {
            store,
            leases,
            applied_index,
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::{
        CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, PutRequest,
    };
    use proptest::prelude::*;

    /// A version 1 snapshot, as earlier builds wrote it: the whole store as postcard.
    fn snapshot_v1(s: &KvState) -> Vec<u8> {
        let body = (s.applied_index, &s.store, s.leases.ttls());
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&SNAPSHOT_VERSION_STORE.to_be_bytes());
        out.extend_from_slice(&postcard::to_allocvec(&body).expect("encodes"));
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    #[test]
    fn version_1_snapshots_still_restore() {
        let mut s = KvState::new(KvConfig::default());
        s.lease_grant(&LeaseGrantRequest { ttl: 30, id: 5 }, 0)
            .expect("grants");
        for (i, key) in ["a", "b", "a", "c"].iter().enumerate() {
            let req = PutRequest {
                key: key.as_bytes().to_vec(),
                value: vec![i as u8],
                lease: if *key == "b" { 5 } else { 0 },
                ..PutRequest::default()
            };
            s.put(&req).expect("puts");
        }
        s.set_applied_index(9);
        let v1 = snapshot_v1(&s);
        let restored = KvState::restore(&v1, s.config()).expect("restores");
        assert_eq!(restored, s);
        assert_eq!(restored.applied_index(), 9);
        assert_eq!(restored.store().size_bytes(), s.store().size_bytes());
        // Written again, it is a version 2 snapshot of the same state.
        let v2 = restored.snapshot();
        assert_eq!(u16::from_be_bytes([v2[4], v2[5]]), SNAPSHOT_VERSION);
        assert_eq!(KvState::restore(&v2, s.config()).expect("restores"), s);
    }

    /// A source taken, then more writes and a compaction of the live state, then the
    /// source encoded: it holds the state as taken, and the live state's next snapshot
    /// (which starts a new kept encoding) holds the live state.
    #[test]
    fn a_source_outlives_writes_and_a_compaction() {
        let mut s = KvState::new(KvConfig::default());
        for i in 0..30u8 {
            put(&mut s, i % 4, i);
        }
        // The first snapshot starts the kept encoding, the source below reuses it.
        let first = s.snapshot();
        for i in 30..40u8 {
            put(&mut s, i % 4, i);
        }
        let taken = s.clone();
        let source = s.snapshot_source();
        for i in 40..50u8 {
            put(&mut s, i % 5, i);
        }
        let revision = s.store().current_revision() - 3;
        s.compact(&CompactionRequest {
            revision,
            physical: false,
        })
        .expect("compacts");
        put(&mut s, 9, 9);
        let bytes = source.into_bytes();
        assert_eq!(
            KvState::restore(&bytes, s.config()).expect("restores"),
            taken
        );
        assert_ne!(bytes, first);
        let live = s.snapshot();
        let restored = KvState::restore(&live, s.config()).expect("restores");
        assert_eq!(restored, s);
        assert_eq!(restored.snapshot(), live, "a fresh encoding differs");
        // The copy taken before the compaction still snapshots as it was.
        assert_eq!(taken.snapshot(), bytes);
    }

    /// A step of [`sources_encoded_later_match_their_state`].
    #[derive(Clone, Debug)]
    enum Step {
        Put(u8, u8),
        Delete(u8),
        Compact,
        /// Keep a copy of the state as it is now.
        Copy,
        /// Take a snapshot source of the live state, or of the copy this index picks.
        Take(Option<prop::sample::Index>),
        /// Encode the pending source this index picks.
        Encode(prop::sample::Index),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..6u8, any::<u8>()).prop_map(|(k, v)| Step::Put(k, v)),
            1 => (0..6u8).prop_map(Step::Delete),
            1 => Just(Step::Compact),
            1 => Just(Step::Copy),
            2 => proptest::option::of(any::<prop::sample::Index>()).prop_map(Step::Take),
            2 => any::<prop::sample::Index>().prop_map(Step::Encode),
        ]
    }

    fn put(s: &mut KvState, key: u8, value: u8) {
        let req = PutRequest {
            key: vec![b'k', key],
            value: vec![value],
            ..PutRequest::default()
        };
        s.put(&req).expect("puts");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// A snapshot source is self-contained: taken, then followed by more writes,
        /// compactions, copies and other sources taken and encoded in any order, it
        /// encodes to the state it was taken of, with a fresh encoding's bytes (a
        /// restored state keeps no encoding) and the length it announced.
        #[test]
        fn sources_encoded_later_match_their_state(steps in prop::collection::vec(step(), 1..100)) {
            let mut s = KvState::new(KvConfig::default());
            let mut copies: Vec<KvState> = Vec::new();
            let mut pending: Vec<(KvSnapshot, KvState)> = Vec::new();
            for st in steps {
                match st {
                    Step::Put(k, v) => put(&mut s, k, v),
                    Step::Delete(k) => {
                        let req = DeleteRangeRequest { key: vec![b'k', k], ..Default::default() };
                        s.delete_range(&req).expect("deletes");
                    }
                    Step::Compact => {
                        let revision = s.store().current_revision();
                        if revision > s.store().compact_revision() {
                            s.compact(&CompactionRequest { revision, physical: false }).expect("compacts");
                        }
                    }
                    Step::Copy => copies.push(s.clone()),
                    Step::Take(pick) => {
                        let taken = match pick {
                            Some(i) if !copies.is_empty() => &copies[i.index(copies.len())],
                            _ => &s,
                        };
                        // The expected state: a copy that is never snapshotted itself.
                        pending.push((taken.snapshot_source(), taken.clone()));
                    }
                    Step::Encode(i) if !pending.is_empty() => {
                        let (mut source, expected) = pending.remove(i.index(pending.len()));
                        let len = source.encoded_len();
                        let bytes = source.into_bytes();
                        prop_assert_eq!(bytes.len(), len);
                        let restored = KvState::restore(&bytes, expected.config()).expect("restores");
                        prop_assert_eq!(&restored, &expected);
                        prop_assert!(restored.snapshot() == bytes, "a fresh encoding differs");
                    }
                    Step::Encode(_) => {}
                }
            }
        }
    }
}
