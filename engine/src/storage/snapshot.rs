//! [`SnapshotStore`]: state-machine snapshots as whole files under `snap/`.
//!
//! A snapshot is `snap/<index:016x>-<term:016x>.snap`: a 40-byte header (magic
//! "DTCDSNP1", index u64, term u64, payload length u64, crc32c of the payload u32,
//! crc32c of the header's first 36 bytes u32; little-endian) and the opaque payload.
//! It is saved atomically: written to a `.snap.tmp` file, synced, renamed, and the
//! directory synced. So a power loss during a save leaves either the old set of
//! snapshots or the old set plus the new one, never a half-written "latest".
//!
//! [`SnapshotStore::load_latest`] returns the newest snapshot that verifies; a damaged
//! newer one is reported, renamed to `.snap.broken` (kept for inspection, out of the way
//! of `purge`) and skipped. The store deliberately knows nothing of what the payload
//! holds, and keeps whole snapshots in memory (no streaming).

use std::io;

use thiserror::Error;

use super::disk::{Disk, join};

/// Directory of snapshots on their disk.
pub const SNAP_DIR: &str = "snap";
/// Bytes of a snapshot header.
pub const SNAPSHOT_HEADER_BYTES: usize = 40;
const MAGIC: &[u8; 8] = b"DTCDSNP1";
const SUFFIX: &str = ".snap";
const TEMP_SUFFIX: &str = ".snap.tmp";
const BROKEN_SUFFIX: &str = ".snap.broken";

/// Errors of the snapshot store (damaged snapshots are not errors: see
/// [`LoadedSnapshot::skipped`]).
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// A disk operation failed.
    #[error("snapshot: {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a str) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: path.to_string(),
        source,
    }
}

/// Which log position a snapshot covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapshotMeta {
    /// Index of the last log entry it includes.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
}

impl SnapshotMeta {
    fn file_name(&self) -> String {
        format!("{:016x}-{:016x}{SUFFIX}", self.index, self.term)
    }

    fn parse(name: &str) -> Option<Self> {
        let (index, term) = name.strip_suffix(SUFFIX)?.split_once('-')?;
        if index.len() != 16 || term.len() != 16 {
            return None;
        }
        Some(Self {
            index: u64::from_str_radix(index, 16).ok()?,
            term: u64::from_str_radix(term, 16).ok()?,
        })
    }
}

/// A loaded snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Its position.
    pub meta: SnapshotMeta,
    /// Its payload.
    pub data: Vec<u8>,
}

/// A snapshot file that failed verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedSnapshot {
    /// The file (before it was renamed to `.snap.broken`).
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

/// What [`SnapshotStore::load_latest`] found.
#[derive(Debug, Default)]
pub struct LoadedSnapshot {
    /// The newest valid snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// Newer snapshots that were damaged and skipped.
    pub skipped: Vec<SkippedSnapshot>,
}

/// The snapshot directory of a disk.
pub struct SnapshotStore<D: Disk> {
    disk: D,
}

impl<D: Disk> Clone for SnapshotStore<D> {
    fn clone(&self) -> Self {
        Self {
            disk: self.disk.clone(),
        }
    }
}

/// The header of a snapshot file whose payload has `payload_len` bytes with CRC-32C
/// `payload_crc`.
fn header(meta: SnapshotMeta, payload_len: usize, payload_crc: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&meta.index.to_le_bytes());
    out.extend_from_slice(&meta.term.to_le_bytes());
    out.extend_from_slice(&(payload_len as u64).to_le_bytes());
    out.extend_from_slice(&payload_crc.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A whole snapshot file's bytes (what [`SnapshotStore::save_parts`] writes in two).
#[cfg(test)]
fn encode(meta: SnapshotMeta, data: &[u8]) -> Vec<u8> {
    let mut out = header(meta, data.len(), crc32c::crc32c(data));
    out.extend_from_slice(data);
    out
}

fn field<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

/// Verifies a snapshot file's bytes against the position its name claims.
fn decode(meta: SnapshotMeta, mut bytes: Vec<u8>) -> Result<Snapshot, String> {
    let Some(h) = bytes.get(..SNAPSHOT_HEADER_BYTES) else {
        return Err(format!("{} bytes, shorter than the header", bytes.len()));
    };
    if &h[..8] != MAGIC {
        return Err("bad magic".into());
    }
    if u32::from_le_bytes(field(h, 36)) != crc32c::crc32c(&h[..36]) {
        return Err("header checksum mismatch".into());
    }
    let index = u64::from_le_bytes(field(h, 8));
    let term = u64::from_le_bytes(field(h, 16));
    if (SnapshotMeta { index, term }) != meta {
        return Err(format!(
            "header says index {index} term {term}, unlike the name"
        ));
    }
    let len = u64::from_le_bytes(field(h, 24));
    let crc = u32::from_le_bytes(field(h, 32));
    let actual = (bytes.len() - SNAPSHOT_HEADER_BYTES) as u64;
    if len != actual {
        return Err(format!(
            "header says {len} payload bytes, file has {actual}"
        ));
    }
    let data = bytes.split_off(SNAPSHOT_HEADER_BYTES);
    if crc32c::crc32c(&data) != crc {
        return Err("payload checksum mismatch".into());
    }
    Ok(Snapshot { meta, data })
}

impl<D: Disk> SnapshotStore<D> {
    /// Opens (creating if needed) the snapshot directory, removes temp files left by a
    /// crash during a save, and makes the directory's entries durable.
    pub async fn open(disk: D) -> Result<Self, SnapshotError> {
        if !disk
            .exists(SNAP_DIR)
            .await
            .map_err(io_err("stat", SNAP_DIR))?
        {
            disk.create_dir_all(SNAP_DIR)
                .await
                .map_err(io_err("create", SNAP_DIR))?;
            disk.sync_dir("").await.map_err(io_err("sync dir", "."))?;
        }
        let store = Self { disk };
        for name in store.names().await? {
            if name.ends_with(TEMP_SUFFIX) {
                let path = join(SNAP_DIR, &name);
                tracing::info!(%path, "snapshot: removing a temp file left by a crash");
                store
                    .disk
                    .remove_file(&path)
                    .await
                    .map_err(io_err("remove", &path))?;
            }
        }
        // After a process crash, a rename seen here may not be durable yet; a snapshot
        // the caller loads must not vanish in a later power loss.
        store
            .disk
            .sync_dir("")
            .await
            .map_err(io_err("sync dir", "."))?;
        store.sync_dir().await?;
        Ok(store)
    }

    async fn names(&self) -> Result<Vec<String>, SnapshotError> {
        self.disk
            .list_dir(SNAP_DIR)
            .await
            .map_err(io_err("list", SNAP_DIR))
    }

    async fn sync_dir(&self) -> Result<(), SnapshotError> {
        self.disk
            .sync_dir(SNAP_DIR)
            .await
            .map_err(io_err("sync dir", SNAP_DIR))
    }

    /// Saved snapshots by position, oldest first (not verified).
    pub async fn list(&self) -> Result<Vec<SnapshotMeta>, SnapshotError> {
        let mut metas: Vec<SnapshotMeta> = self
            .names()
            .await?
            .iter()
            .filter_map(|n| SnapshotMeta::parse(n))
            .collect();
        metas.sort();
        Ok(metas)
    }

    /// Saves a snapshot atomically and durably (see the module documentation).
    pub async fn save(&self, index: u64, term: u64, data: &[u8]) -> Result<(), SnapshotError> {
        self.save_parts(index, term, &[], data).await
    }

    /// [`Self::save`] of the payload `lead` followed by `body`, without joining them:
    /// the header and `lead` (small) go in one write, `body` in a second. The file's
    /// bytes are those of saving the two joined.
    pub async fn save_parts(
        &self,
        index: u64,
        term: u64,
        lead: &[u8],
        body: &[u8],
    ) -> Result<(), SnapshotError> {
        let meta = SnapshotMeta { index, term };
        let path = join(SNAP_DIR, &meta.file_name());
        let temp = format!("{path}.tmp");
        let crc = crc32c::crc32c_append(crc32c::crc32c(lead), body);
        let mut head = header(meta, lead.len() + body.len(), crc);
        head.extend_from_slice(lead);
        let mut file = self
            .disk
            .open(&temp, true)
            .await
            .map_err(io_err("create", &temp))?;
        use super::disk::DiskFile as _;
        file.set_len(0).await.map_err(io_err("truncate", &temp))?;
        file.write_at(0, &head)
            .await
            .map_err(io_err("write", &temp))?;
        if !body.is_empty() {
            file.write_at(head.len() as u64, body)
                .await
                .map_err(io_err("write", &temp))?;
        }
        file.sync_data().await.map_err(io_err("sync", &temp))?;
        self.disk
            .rename(&temp, &path)
            .await
            .map_err(io_err("rename", &temp))?;
        self.sync_dir().await
    }

    /// Loads the newest snapshot that verifies, quarantining damaged newer ones.
    pub async fn load_latest(&self) -> Result<LoadedSnapshot, SnapshotError> {
        let mut loaded = LoadedSnapshot::default();
        for meta in self.list().await?.into_iter().rev() {
            let path = join(SNAP_DIR, &meta.file_name());
            let bytes = self
                .disk
                .read_all(&path)
                .await
                .map_err(io_err("read", &path))?;
            match decode(meta, bytes) {
                Ok(snapshot) => {
                    loaded.snapshot = Some(snapshot);
                    break;
                }
                Err(reason) => {
                    tracing::warn!(%path, %reason, "snapshot: skipping a damaged snapshot");
                    let broken = format!("{}{BROKEN_SUFFIX}", &path[..path.len() - SUFFIX.len()]);
                    self.disk
                        .rename(&path, &broken)
                        .await
                        .map_err(io_err("rename", &path))?;
                    self.sync_dir().await?;
                    loaded.skipped.push(SkippedSnapshot { path, reason });
                }
            }
        }
        Ok(loaded)
    }

    /// Removes all but the newest `keep` snapshots; returns how many were removed.
    pub async fn purge(&self, keep: usize) -> Result<usize, SnapshotError> {
        let metas = self.list().await?;
        let excess = metas.len().saturating_sub(keep);
        for meta in &metas[..excess] {
            let path = join(SNAP_DIR, &meta.file_name());
            self.disk
                .remove_file(&path)
                .await
                .map_err(io_err("remove", &path))?;
        }
        if excess > 0 {
            self.sync_dir().await?;
        }
        Ok(excess)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_index() {
        let a = SnapshotMeta { index: 9, term: 3 };
        let b = SnapshotMeta { index: 10, term: 1 };
        assert_eq!(SnapshotMeta::parse(&a.file_name()), Some(a));
        assert!(a.file_name() < b.file_name());
        assert_eq!(SnapshotMeta::parse("x.snap.tmp"), None);
    }

    #[test]
    fn decode_rejects_every_single_byte_flip() {
        let meta = SnapshotMeta { index: 5, term: 2 };
        let good = encode(meta, b"state machine");
        assert_eq!(decode(meta, good.clone()).unwrap().data, b"state machine");
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            assert!(decode(meta, bad).is_err(), "flip at {at} not caught");
        }
        assert!(decode(meta, good[..good.len() - 1].to_vec()).is_err());
        assert!(decode(SnapshotMeta { index: 6, term: 2 }, good).is_err());
    }

    #[test]
    fn saving_in_parts_writes_the_joined_file() {
        use crate::storage::{Disk as _, MemDisk};
        pollster::block_on(async {
            let disk = MemDisk::new();
            let store = SnapshotStore::open(disk.clone()).await.expect("opens");
            let payload: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
            for (at, split) in [0usize, 1, 17, 4999, 5000].into_iter().enumerate() {
                let index = at as u64 + 1;
                let (lead, body) = payload.split_at(split);
                store.save_parts(index, 3, lead, body).await.expect("saves");
                let meta = SnapshotMeta { index, term: 3 };
                let path = join(SNAP_DIR, &meta.file_name());
                let file = disk.read_all(&path).await.expect("reads");
                assert_eq!(file, encode(meta, &payload), "split at {split}");
            }
            let loaded = store.load_latest().await.expect("loads");
            assert_eq!(loaded.snapshot.map(|s| s.data), Some(payload));
        });
    }
}
