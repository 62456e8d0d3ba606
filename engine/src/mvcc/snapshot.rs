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
//! Decoding checks everything it can (magic, version, checksum, structure, that the
//! keys' leases exist) and answers with a [`SnapshotError`], never a panic.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::keyspace::KeySpace;
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

impl KvState {
    /// Encodes the whole state (see the module doc).
    pub fn snapshot(&self) -> Vec<u8> {
        let head = Head {
            applied_index: self.applied_index,
            current_revision: self.store.current_revision(),
            compact_revision: self.store.compact_revision(),
            leases: self.leases.ttls(),
        };
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out = match postcard::to_extend(&head, out) {
            Ok(out) => out,
            Err(e) => unreachable!("postcard cannot encode a snapshot head: {e}"),
        };
        self.store.keys().encode_records(&mut out);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
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
    use crate::pb::etcdserverpb::{LeaseGrantRequest, PutRequest};

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
}
