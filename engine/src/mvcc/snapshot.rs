//! Snapshot encoding of a [`KvState`]: a versioned header, a postcard body and a
//! CRC-32C trailer.
//!
//! Layout: `b"DKVS"`, version (u16 big-endian), body, CRC-32C of everything before it
//! (u32 big-endian). The body holds the applied index, the whole key space (all held
//! revisions, so reads at old revisions and event replay work after a restore) and each
//! lease's id and TTL. Lease expiries are not in it (they are times on one member's
//! clock); lease-key attachments are rebuilt from the keys. A restored table is not
//! primary; the member renews every lease when it becomes leader.
//!
//! Decoding checks everything it can (magic, version, checksum, structure, that the
//! keys' leases exist) and answers with a [`SnapshotError`], never a panic.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::state::{KvConfig, KvState};
use super::store::{Lessor, Store};
use crate::lease::LeaseTable;

const MAGIC: &[u8; 4] = b"DKVS";
/// The snapshot format version written by this build.
pub const SNAPSHOT_VERSION: u16 = 1;
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
    #[error("kv snapshot version {0} is not supported (this build reads {SNAPSHOT_VERSION})")]
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

/// The snapshot body as decoded.
#[derive(Deserialize)]
struct Body {
    applied_index: u64,
    store: Store,
    /// (id, granted TTL in seconds), ascending by id.
    leases: Vec<(i64, i64)>,
}

/// The snapshot body as encoded (same fields as [`Body`], borrowing the store so
/// encoding does not copy it).
#[derive(Serialize)]
struct BodyRef<'a> {
    applied_index: u64,
    store: &'a Store,
    leases: Vec<(i64, i64)>,
}

impl KvState {
    /// Encodes the whole state (see the module doc).
    pub fn snapshot(&self) -> Vec<u8> {
        let body = BodyRef {
            applied_index: self.applied_index,
            store: &self.store,
            leases: self.leases.ttls(),
        };
        // The body's size first, so it is written once into a buffer of the right size
        // (growing a buffer while encoding copied the whole snapshot several times).
        // Encoding a key space only fails if a length does not fit postcard's varint.
        let body_bytes =
            match postcard::serialize_with_flavor(&body, postcard::ser_flavors::Size::default()) {
                Ok(n) => n,
                Err(e) => unreachable!("postcard cannot size a kv snapshot: {e}"),
            };
        let mut out = vec![0u8; HEADER_BYTES + body_bytes + CRC_BYTES];
        out[..4].copy_from_slice(MAGIC);
        out[4..HEADER_BYTES].copy_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        let end = HEADER_BYTES + body_bytes;
        if let Err(e) = postcard::to_slice(&body, &mut out[HEADER_BYTES..end]) {
            unreachable!("postcard encode into a buffer of its own size failed: {e}");
        }
        let crc = crc32c::crc32c(&out[..end]);
        out[end..].copy_from_slice(&crc.to_be_bytes());
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
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let stored = u32::from_be_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let computed = crc32c::crc32c(content);
        if stored != computed {
            return Err(SnapshotError::Checksum { stored, computed });
        }
        let mut body: Body = postcard::from_bytes(&content[HEADER_BYTES..])
            .map_err(|e| SnapshotError::Decode(e.to_string()))?;
        body.store.recount();
        body.store
            .check_consistent()
            .map_err(SnapshotError::Inconsistent)?;
        let mut leases = LeaseTable::new(config.lease_ttl_s_min);
        for (id, ttl_s) in body.leases {
            if id == 0 || leases.lease_exists(id) {
                return Err(SnapshotError::Inconsistent(format!(
                    "lease id {id} is zero or repeated"
                )));
            }
            leases.insert_restored(id, ttl_s);
        }
        for (id, key) in body.store.live_leased_keys() {
            if !leases.lease_exists(id) {
                return Err(SnapshotError::Inconsistent(format!(
                    "a key carries lease {id}, which does not exist"
                )));
            }
            leases.attach(id, &key);
        }
        Ok(KvState {
            store: body.store,
            leases,
            applied_index: body.applied_index,
            config,
        })
    }
}
