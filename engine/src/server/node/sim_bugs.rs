//! Deliberate server bugs for the simulator's self-test: each switch breaks one safety
//! property, and the harness must catch every one of them. Compiled only under
//! `--cfg madsim`, so no release binary can carry them.
//!
//! The switches are set per run through [`super::NodeConfig::sim_bugs`] (filled from
//! `ServerConfig::sim_bugs`). Each is read in exactly one place: a disk wrapper here for
//! the unsynced write, one `if` in the node for the others. This module deliberately
//! does not decide which runs turn them on; that is the simulator's job.

use std::io;

use crate::storage::{Disk, DiskFile};

/// Which deliberate bugs a member runs with; all off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimBugs {
    /// The WAL's `fdatasync` is skipped, so an entry counts as persisted (and a write
    /// is acknowledged) while its bytes are still only in the page cache.
    pub ack_write_before_sync: bool,
    /// A follower serves a linearizable read from its own state, without asking the
    /// leader for a read index.
    pub follower_local_linearizable_read: bool,
    /// Raft forgets its persisted vote on restart.
    pub forget_vote_on_restart: bool,
    /// Raft commits an earlier term's entry once a quorum holds it.
    pub commit_earlier_term_by_count: bool,
    /// The leader revokes expired leases (and deletes their keys) in its own state only,
    /// instead of proposing the revoke through Raft.
    pub lease_expiry_without_raft: bool,
}

/// Raft batching limits a simulated run may shrink (0 keeps the default), so that
/// catching up a follower takes many small messages and acknowledgements, as it does
/// on a real cluster whose backlog exceeds one message. Not a bug: any positive value
/// is a valid configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimRaftLimits {
    /// Most entries in one Append message (0: the default).
    pub append_entries_max: usize,
    /// Most unacknowledged Append messages per follower (0: the default).
    pub inflight_msgs_max: usize,
}

impl SimRaftLimits {
    /// Applies the non-zero limits to `cfg`.
    pub fn apply(&self, cfg: &mut crate::raft::Config) {
        if self.append_entries_max > 0 {
            cfg.append_entries_max = self.append_entries_max;
        }
        if self.inflight_msgs_max > 0 {
            cfg.inflight_msgs_max = self.inflight_msgs_max;
        }
    }
}

impl SimBugs {
    /// Whether any switch is on.
    pub fn any(&self) -> bool {
        *self != SimBugs::default()
    }
}

/// A disk whose files skip `sync_data` when `skip_sync` is on (and behave exactly like
/// the wrapped disk otherwise).
#[derive(Clone)]
pub struct BugDisk<D> {
    inner: D,
    skip_sync: bool,
}

impl<D: Disk> BugDisk<D> {
    /// Wraps `inner`.
    pub fn new(inner: D, skip_sync: bool) -> Self {
        Self { inner, skip_sync }
    }
}

/// A file of a [`BugDisk`].
pub struct BugFile<F> {
    inner: F,
    skip_sync: bool,
}

impl<D: Disk> Disk for BugDisk<D> {
    type File = BugFile<D::File>;

    async fn open(&self, path: &str, create: bool) -> io::Result<Self::File> {
        let inner = self.inner.open(path, create).await?;
        Ok(BugFile {
            inner,
            skip_sync: self.skip_sync,
        })
    }

    async fn create_dir_all(&self, dir: &str) -> io::Result<()> {
        self.inner.create_dir_all(dir).await
    }

    async fn list_dir(&self, dir: &str) -> io::Result<Vec<String>> {
        self.inner.list_dir(dir).await
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to).await
    }

    async fn remove_file(&self, path: &str) -> io::Result<()> {
        self.inner.remove_file(path).await
    }

    async fn sync_dir(&self, dir: &str) -> io::Result<()> {
        self.inner.sync_dir(dir).await
    }

    async fn exists(&self, path: &str) -> io::Result<bool> {
        self.inner.exists(path).await
    }
}

impl<F: DiskFile> DiskFile for BugFile<F> {
    async fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, buf).await
    }

    async fn read_at(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        self.inner.read_at(offset, len).await
    }

    async fn len(&self) -> io::Result<u64> {
        self.inner.len().await
    }

    async fn sync_data(&mut self) -> io::Result<()> {
        if self.skip_sync {
            return Ok(());
        }
        self.inner.sync_data().await
    }

    async fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len).await
    }

    async fn preallocate(&mut self, len: u64) -> io::Result<()> {
        self.inner.preallocate(len).await
    }

    async fn data_end(&self) -> io::Result<u64> {
        self.inner.data_end().await
    }
}
