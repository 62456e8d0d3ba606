//! Durable storage: the [`Disk`] trait and what is built on it.
//!
//! - [`disk`]: the trait every durable byte goes through (async, so a simulated disk
//!   can await simulated latency).
//! - [`FsDisk`]: real files (not built under the simulator).
//! - [`MemDisk`]: in memory, modelling page cache against durable bytes, crash, power
//!   loss and disk faults; the base the simulator's disk wraps.
//! - [`wal`]: the segmented, CRC-framed write-ahead log with group commit.
//! - [`snapshot`]: atomically saved, verified snapshots.
//!
//! Payloads are opaque bytes here: this layer deliberately knows nothing of Raft
//! entries, hard state or the state machine; the node runtime encodes those.
//!
//! How the node runtime is meant to use it (on any [`Disk`]; here the in-memory one):
//!
//! ```
//! use detcd_engine::storage::{MemDisk, Preallocation, SnapshotStore, Wal, WalOptions};
//!
//! # pollster::block_on(async {
//! let disk = MemDisk::new();
//! // In memory there is no point in reserving 64 MiB per segment.
//! let opts = WalOptions { preallocation: Preallocation::None, ..WalOptions::default() };
//! // Startup: newest valid snapshot, then every retained WAL record after it.
//! let snaps = SnapshotStore::open(disk.clone()).await?;
//! let loaded = snaps.load_latest().await?;
//! assert!(loaded.snapshot.is_none());
//! let (mut wal, replay) = Wal::open(disk.clone(), opts.clone()).await?;
//! assert!(replay.records.is_empty() && replay.torn_tail.is_none());
//!
//! // Each Ready: one batch of encoded entries / hard state, one fdatasync.
//! let last_seq = wal.append_sync(&[b"entry 1".to_vec(), b"hard state".to_vec()]).await?;
//!
//! // After a snapshot at some log position: save it, then drop WAL segments whose
//! // records all precede the first record still needed.
//! snaps.save(1, 1, b"state machine at index 1").await?;
//! wal.release_before(last_seq).await?;
//! snaps.purge(2).await?;
//!
//! // A process crash keeps the page cache; a power loss keeps what was synced.
//! drop(wal);
//! disk.power_loss(&mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7));
//! let (_, replay) = Wal::open(disk.clone(), opts).await?;
//! assert_eq!(replay.records.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

pub mod disk;
#[cfg(all(unix, not(madsim)))]
pub mod fs_disk;
pub mod mem_disk;
pub mod snapshot;
pub mod wal;

pub use disk::{Disk, DiskFile};
#[cfg(all(unix, not(madsim)))]
pub use fs_disk::{FsDisk, FsFile};
pub use mem_disk::{LossModel, MemDisk, MemFile};
pub use snapshot::{LoadedSnapshot, Snapshot, SnapshotError, SnapshotMeta, SnapshotStore};
pub use wal::{Preallocation, TornTail, Wal, WalError, WalOptions, WalRecord, WalReplay};
