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
