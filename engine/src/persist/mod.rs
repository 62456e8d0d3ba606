//! Raft's durable state on a [`Disk`]: hard state and log entries in the WAL, snapshots
//! in the snapshot store, and the recovery that turns them back into a
//! [`RestartState`](crate::raft::RestartState).
//!
//! This is the one place that knows both the Raft core's types and the storage layer.
//! The rules it keeps:
//! - everything a [`Ready`] asks to persist is durable (one WAL sync per Ready, group
//!   commit) before [`RaftStorage::persist`] returns, so the driver may then send the
//!   Ready's messages; the one exception is a hard state that only raises the commit
//!   index, which is written without a sync (see [`RaftStorage::must_sync`]);
//! - a snapshot received from the leader is saved (atomically) before the WAL records
//!   that point past it;
//! - after a local snapshot, the hard state is written again after the snapshot mark, so
//!   releasing old WAL segments never loses the current term and vote;
//! - recovery fails with a clear [`PersistError::Corrupt`] rather than guessing when the
//!   log and the snapshots do not fit together.
//!
//! It does not apply entries or decode the state machine's snapshot payload: the caller
//! restores its state machine from [`Recovered::restart`]'s snapshot data and re-applies
//! committed entries as the core hands them out again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::raft::{Entry, HardState, Ready, RestartState, Snapshot, SnapshotMeta};
use crate::storage::{Disk, SnapshotError, SnapshotStore, TornTail, Wal, WalError, WalOptions};

/// How many snapshot files to keep after a new one is saved.
pub const SNAPSHOTS_KEPT: usize = 2;

/// One WAL record.
#[derive(Debug, Serialize, Deserialize)]
enum Record {
    /// The latest term, vote and commit index.
    HardState(HardState),
    /// A log entry; a later entry with the same index replaces it and all after it.
    Entry(Entry),
    /// A snapshot at this position is durable in the snapshot store.
    Snapshot(SnapshotMeta),
}

/// What a snapshot file holds: the Raft position with its membership, and the state
/// machine's payload.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// Why durable Raft state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The WAL failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The snapshot store failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The data on disk is readable but does not make sense.
    #[error("raft storage is corrupt: {0}")]
    Corrupt(String),
    /// A value could not be encoded (should not happen for well-formed state).
    #[error("raft storage: cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's message.
        reason: String,
    },
}

/// Writes snapshot files (see [`RaftStorage::snapshot_writer`]). It writes the file
/// only; the snapshot counts once [`RaftStorage::snapshot_written`] has marked it.
pub struct SnapshotWriter<D: Disk> {
    snapshots: SnapshotStore<D>,
}

impl<D: Disk> SnapshotWriter<D> {
    /// Saves the snapshot at `meta` atomically and durably (a crash leaves the old set of
    /// files, or the old set plus this one). `data` is written as it is, not copied
    /// into the file's encoding first.
    pub async fn write(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), PersistError> {
        let lead = snapshot_file_lead(meta, data.len())?;
        self.snapshots
            .save_parts(meta.index, meta.term, &lead, data)
            .await?;
        Ok(())
    }
}

/// The bytes of a [`SnapshotFile`] before its payload of `data_len` bytes: the encoded
/// meta and the payload's length (postcard writes the payload last, as it is).
fn snapshot_file_lead(meta: &SnapshotMeta, data_len: usize) -> Result<Vec<u8>, PersistError> {
    let encode_error = |e: postcard::Error| PersistError::Encode {
        what: "snapshot",
        reason: e.to_string(),
    };
    let lead = postcard::to_allocvec(meta).map_err(encode_error)?;
    postcard::to_extend(&(data_len as u64), lead).map_err(encode_error)
}

/// Durable state found on disk.
#[derive(Debug)]
pub struct Recovered {
    /// What the Raft core restarts from; `applied` is the snapshot's index, so committed
    /// entries after it are handed out again for the state machine to re-apply.
    pub restart: RestartState,
    /// A torn final WAL record that was cut off (it was never acknowledged).
    pub torn_tail: Option<TornTail>,
    /// Damaged snapshot files that were skipped, with the reason.
    pub skipped_snapshots: Vec<String>,
}

/// The WAL and snapshot store of one node.
pub struct RaftStorage<D: Disk> {
    wal: Wal<D>,
    snapshots: SnapshotStore<D>,
    hard_state: HardState,
    snapshot_meta: SnapshotMeta,
    /// The WAL sequence number of every live entry after the snapshot, by index.
    entry_seqs: BTreeMap<u64, u64>,
}

fn encode_record(record: &impl Serialize) -> Result<Vec<u8>, PersistError> {
    encode_record_into(record, Vec::new())
}

/// Encodes `record` after the bytes of `out` (an empty buffer sized for it saves the
/// reallocations of growing one from nothing).
fn encode_record_into(record: &impl Serialize, out: Vec<u8>) -> Result<Vec<u8>, PersistError> {
    postcard::to_extend(record, out).map_err(|e| PersistError::Encode {
        what: "wal record",
        reason: e.to_string(),
    })
}

/// Bytes an entry record takes beyond its payload, at most: the variant tag, term, index
/// and kind, and the payload's length (varints).
const ENTRY_RECORD_OVERHEAD_BYTES_MAX: usize = 1 + 10 + 10 + 1 + 10;

/// An entry's WAL record, encoded into a buffer of its size (growing from empty took a
/// few reallocations per entry).
fn encode_entry_record(entry: &Entry) -> Result<Vec<u8>, PersistError> {
    let out = Vec::with_capacity(entry.data.len() + ENTRY_RECORD_OVERHEAD_BYTES_MAX);
    encode_record_into(&EntryRecord::of(entry), out)
}

/// `Record::Entry` borrowed, for writing: the same bytes as the owned record (postcard
/// writes a byte sequence and a `u8` list alike, as a length and the raw bytes), without
/// copying the entry first or writing its payload one byte at a time.
#[derive(Serialize)]
enum EntryRecord<'a> {
    /// Never written: holds `Record::HardState`'s variant index.
    #[allow(dead_code)]
    HardState(HardState),
    /// `Record::Entry`.
    Entry(EntryRef<'a>),
}

/// [`Entry`]'s fields in its serialized order, borrowing the payload.
#[derive(Serialize)]
struct EntryRef<'a> {
    term: u64,
    index: u64,
    kind: crate::raft::EntryKind,
    #[serde(serialize_with = "payload_bytes")]
    data: &'a [u8],
}

impl<'a> EntryRecord<'a> {
    fn of(entry: &'a Entry) -> Self {
        EntryRecord::Entry(EntryRef {
            term: entry.term,
            index: entry.index,
            kind: entry.kind,
            data: &entry.data,
        })
    }
}

fn payload_bytes<S: serde::Serializer>(data: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(data)
}

impl<D: Disk> RaftStorage<D> {
    /// Opens the node's storage on `disk`. Returns `None` as the recovered state when the
    /// disk holds no Raft state yet (a new node: start it with
    /// [`crate::raft::RawNode::new`] and persist its first `Ready` like any other).
    pub async fn open(
        disk: D,
        wal_options: WalOptions,
    ) -> Result<(Self, Option<Recovered>), PersistError> {
        let snapshots = SnapshotStore::open(disk.clone()).await?;
        let loaded = snapshots.load_latest().await?;
        let skipped_snapshots: Vec<String> = loaded
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.path, s.reason))
            .collect();
        let snapshot = match loaded.snapshot {
            Some(stored) => {
                let file: SnapshotFile = postcard::from_bytes(&stored.data).map_err(|e| {
                    PersistError::Corrupt(format!(
                        "snapshot at index {} does not decode: {e}",
                        stored.meta.index
                    ))
                })?;
                if file.meta.index != stored.meta.index || file.meta.term != stored.meta.term {
                    return Err(PersistError::Corrupt(format!(
                        "snapshot file named {}/{} holds position {}/{}",
                        stored.meta.index, stored.meta.term, file.meta.index, file.meta.term
                    )));
                }
                Some(Snapshot {
                    meta: file.meta,
                    data: file.data,
                })
            }
            None => None,
        };

        let (wal, replay) = Wal::open(disk, wal_options).await?;
        let mut storage = Self {
            wal,
            snapshots,
            hard_state: HardState::default(),
            snapshot_meta: snapshot
                .as_ref()
                .map(|s| s.meta.clone())
                .unwrap_or_default(),
            entry_seqs: BTreeMap::new(),
        };
        if snapshot.is_none() && replay.records.is_empty() {
            return Ok((storage, None));
        }
        // A node that never took a snapshot starts from the empty log: its founding
        // membership is in the first entries.
        let snapshot = snapshot.unwrap_or_default();
        let snap_index = snapshot.meta.index;
        let mut entries: Vec<Entry> = Vec::new();
        let mut newest_mark = snap_index;
        for record in &replay.records {
            let decoded: Record = postcard::from_bytes(&record.payload).map_err(|e| {
                PersistError::Corrupt(format!("WAL record {} does not decode: {e}", record.seq))
            })?;
            match decoded {
                Record::HardState(hs) => storage.hard_state = hs,
                Record::Snapshot(meta) => newest_mark = newest_mark.max(meta.index),
                Record::Entry(entry) => {
                    if entry.index <= snap_index {
                        continue;
                    }
                    let next = entries.last().map_or(snap_index + 1, |e| e.index + 1);
                    if entry.index > next {
                        return Err(PersistError::Corrupt(if entries.is_empty() {
                            format!(
                                "the WAL continues at entry {} but the newest usable snapshot ends at {snap_index}{}",
                                entry.index,
                                if skipped_snapshots.is_empty() {
                                    String::new()
                                } else {
                                    format!(" (damaged: {})", skipped_snapshots.join("; "))
                                }
                            )
                        } else {
                            format!(
                                "WAL record {} jumps from entry {} to {}",
                                record.seq,
                                next - 1,
                                entry.index
                            )
                        }));
                    }
                    let keep = usize::try_from(entry.index - snap_index - 1).unwrap_or(usize::MAX);
                    entries.truncate(keep);
                    storage.entry_seqs.split_off(&entry.index);
                    storage.entry_seqs.insert(entry.index, record.seq);
                    entries.push(entry);
                }
            }
        }
        if newest_mark > snap_index && entries.first().is_none_or(|e| e.index > snap_index + 1) {
            return Err(PersistError::Corrupt(format!(
                "the WAL says a snapshot at index {newest_mark} was saved, but the newest usable one is at {snap_index} and the log does not reach back to it{}",
                if skipped_snapshots.is_empty() {
                    String::new()
                } else {
                    format!(" (damaged: {})", skipped_snapshots.join("; "))
                }
            )));
        }
        let last_index = entries.last().map_or(snap_index, |e| e.index);
        let mut hard_state = storage.hard_state;
        if hard_state.commit > last_index {
            return Err(PersistError::Corrupt(format!(
                "commit index {} is beyond the last durable entry {last_index}",
                hard_state.commit
            )));
        }
        hard_state.commit = hard_state.commit.max(snap_index);
        storage.hard_state = hard_state;
        let restart = RestartState {
            hard_state,
            applied: snap_index,
            snapshot,
            entries,
        };
        Ok((
            storage,
            Some(Recovered {
                restart,
                torn_tail: replay.torn_tail,
                skipped_snapshots,
            }),
        ))
    }

    /// Makes durable everything `ready` asks to persist: its snapshot (if any), its
    /// entries and its hard state, with one WAL sync. Returns when they are durable; only
    /// then may the Ready's messages be sent.
    pub async fn persist(&mut self, ready: &Ready) -> Result<(), PersistError> {
        if let Some(snapshot) = &ready.snapshot {
            self.install_snapshot(snapshot).await?;
        }
        let mut payloads = Vec::with_capacity(ready.entries.len() + 1);
        for entry in &ready.entries {
            if entry.index <= self.hard_state.commit.max(self.snapshot_meta.index) {
                return Err(PersistError::Corrupt(format!(
                    "refusing to rewrite entry {} at or below the durable commit index {}",
                    entry.index,
                    self.hard_state.commit.max(self.snapshot_meta.index)
                )));
            }
            payloads.push(encode_entry_record(entry)?);
        }
        if let Some(hs) = &ready.hard_state {
            if hs.commit < self.hard_state.commit {
                return Err(PersistError::Corrupt(format!(
                    "commit index would go back from {} to {}",
                    self.hard_state.commit, hs.commit
                )));
            }
            payloads.push(encode_record(&Record::HardState(*hs))?);
        }
        if payloads.is_empty() {
            return Ok(());
        }
        let first_seq = self.wal.next_seq();
        if self.must_sync(ready) {
            self.wal.append_sync(&payloads).await?;
        } else {
            self.wal.append(&payloads).await?;
        }
        for (offset, entry) in ready.entries.iter().enumerate() {
            self.entry_seqs.split_off(&entry.index);
            self.entry_seqs
                .insert(entry.index, first_seq + offset as u64);
        }
        if let Some(hs) = &ready.hard_state {
            self.hard_state = *hs;
        }
        Ok(())
    }

    /// Whether persisting `ready` needs an fdatasync: it carries entries, a snapshot, or a
    /// new term or vote. A hard state whose only change is the commit index is written
    /// but not synced (the commit index can be relearned from the leader, and the next
    /// sync makes it durable anyway); this saves a follower or a multi-member leader one
    /// sync per commit round.
    pub fn must_sync(&self, ready: &Ready) -> bool {
        ready.snapshot.is_some()
            || !ready.entries.is_empty()
            || ready.hard_state.is_some_and(|hs| {
                hs.term != self.hard_state.term || hs.vote != self.hard_state.vote
            })
    }

    /// Saves a snapshot the state machine took at `meta.index` (already applied and
    /// persisted), then releases the WAL segments and old snapshot files it makes
    /// redundant. Call [`crate::raft::RawNode::compact`] with the same data afterwards.
    ///
    /// This is [`SnapshotWriter::write`] followed by [`RaftStorage::snapshot_written`];
    /// a driver that must not wait for a large file calls those two apart.
    pub async fn save_snapshot(
        &mut self,
        meta: SnapshotMeta,
        data: &[u8],
    ) -> Result<(), PersistError> {
        if meta.index <= self.snapshot_meta.index {
            return Ok(());
        }
        self.snapshot_writer().write(&meta, data).await?;
        self.mark_snapshot(meta).await
    }

    /// A writer of snapshot files into this storage's snapshot store, for a task of its
    /// own: writing a file touches neither the WAL nor this value.
    pub fn snapshot_writer(&self) -> SnapshotWriter<D> {
        SnapshotWriter {
            snapshots: self.snapshots.clone(),
        }
    }

    /// Takes note that [`SnapshotWriter::write`] made the snapshot at `meta` durable:
    /// marks it in the WAL and releases the WAL segments and old snapshot files it makes
    /// redundant. A snapshot at or below the current one (a newer one was installed
    /// from the leader meanwhile) is ignored; its file is purged with the other old ones.
    pub async fn snapshot_written(&mut self, meta: SnapshotMeta) -> Result<(), PersistError> {
        if meta.index <= self.snapshot_meta.index {
            return Ok(());
        }
        self.mark_snapshot(meta).await
    }

    /// The hard state last made durable.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The position of the newest durable snapshot.
    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        &self.snapshot_meta
    }

    /// How many WAL segment files are kept.
    pub fn wal_segment_count(&self) -> usize {
        self.wal.segment_count()
    }

    async fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), PersistError> {
        if snapshot.meta.index <= self.snapshot_meta.index {
            return Ok(());
        }
        self.snapshot_writer()
            .write(&snapshot.meta, &snapshot.data)
            .await?;
        // Entries the snapshot covers are superseded; entries after it are not kept by
        // the core either (a snapshot from the leader replaces the whole log).
        self.entry_seqs.clear();
        self.mark_snapshot(snapshot.meta.clone()).await
    }

    /// Records in the WAL that a snapshot is durable, writes the hard state after the mark,
    /// and releases what is now redundant.
    async fn mark_snapshot(&mut self, meta: SnapshotMeta) -> Result<(), PersistError> {
        let mut hard_state = self.hard_state;
        hard_state.commit = hard_state.commit.max(meta.index);
        let mark_seq = self.wal.next_seq();
        let payloads = [
            encode_record(&Record::Snapshot(meta.clone()))?,
            encode_record(&Record::HardState(hard_state))?,
        ];
        self.wal.append_sync(&payloads).await?;
        self.hard_state = hard_state;
        // Entries at or below the snapshot are no longer needed; the oldest record still
        // needed is the first live entry after it, or else the mark itself.
        let after = self.entry_seqs.split_off(&(meta.index + 1));
        self.entry_seqs = after;
        let keep_from = self
            .entry_seqs
            .values()
            .copied()
            .min()
            .unwrap_or(mark_seq)
            .min(mark_seq);
        self.wal.release_before(keep_from).await?;
        self.snapshot_meta = meta;
        self.snapshots.purge(SNAPSHOTS_KEPT).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
