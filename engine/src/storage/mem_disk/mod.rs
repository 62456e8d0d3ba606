//! [`MemDisk`]: an in-memory [`Disk`] that models what survives a crash or a power loss.
//!
//! Each file keeps one image, the page cache (what reads see), plus how to take back
//! each change made since the last successful `sync_data` (what the change overwrote),
//! so its durable bytes are the page cache with every such change taken back, and a
//! sync just forgets them. Each directory keeps its live entries and the entries made
//! durable by the last `sync_dir`. [`MemDisk::crash`] (process crash) keeps the page
//! cache; [`MemDisk::power_loss`] keeps the durable bytes plus a seeded prefix of each
//! file's unsynced writes, the last kept write possibly torn mid-way, and reverts
//! unsynced directory changes.
//!
//! Fault knobs for tests and the simulator: fail the next sync (EIO), a capacity
//! (ENOSPC past it), bit flips, and an operation budget after which every mutating
//! operation fails (to cut a run at any write boundary). Everything is deterministic:
//! ordered maps, and randomness only from the RNG the caller passes in.
//!
//! It deliberately models no latency (the simulator wraps it for that), no permissions,
//! no hard links, and no directory renames.

mod model;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;

use super::disk::{Disk, DiskFile, join, split_parent, validate_path};
use model::{DirEntries, Inode, Node, State, not_found};
pub use model::{LossModel, SECTOR_BYTES};

/// An in-memory disk; clones share the same contents (an `Arc` inside).
#[derive(Clone, Default)]
pub struct MemDisk {
    state: Arc<Mutex<State>>,
}

/// A handle to a file of a [`MemDisk`]. It goes stale (every call fails) after
/// [`MemDisk::crash`] or [`MemDisk::power_loss`], like the file descriptors of a dead
/// process.
pub struct MemFile {
    disk: MemDisk,
    inode: u64,
    generation: u64,
}

impl MemDisk {
    /// An empty disk (only the root directory exists).
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a test panicked while holding it; the state is
        // still consistent enough to read.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Process crash: every open handle goes stale; the page cache survives.
    pub fn crash(&self) {
        self.lock().crash();
    }

    /// Power loss: every open handle goes stale; each file keeps its durable bytes plus
    /// a prefix (chosen with `rng`) of its unsynced writes, the last one possibly torn;
    /// directories revert to their last synced entries.
    pub fn power_loss(&self, rng: &mut impl Rng) {
        self.power_loss_with(LossModel::PrefixOfWrites, rng);
    }

    /// Power loss under a chosen model of which unsynced writes survive; directories
    /// revert to their last synced entries either way.
    pub fn power_loss_with(&self, model: LossModel, rng: &mut impl Rng) {
        self.lock().power_loss(model, rng);
    }

    /// Makes the next `n` syncs (file or directory) fail with an EIO-like error.
    pub fn fail_next_syncs(&self, n: u32) {
        self.lock().syncs_to_fail = n;
    }

    /// Sets the total capacity in bytes (`None`: unlimited); writes that would grow the
    /// files past it fail with [`io::ErrorKind::StorageFull`].
    pub fn set_capacity_bytes(&self, capacity_bytes: Option<u64>) {
        self.lock().capacity_bytes = capacity_bytes;
    }

    /// Number of mutating operations performed so far (writes, syncs, creations,
    /// renames, removals, length changes).
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// After `limit` mutating operations in total (see [`MemDisk::ops`]), every further
    /// one fails and changes nothing, as if the power had been cut at that point.
    /// Cleared by `crash`/`power_loss` or by passing `None`.
    pub fn set_ops_limit(&self, limit: Option<u64>) {
        self.lock().ops_limit = limit;
    }

    /// Flips bit `bit` (0..8) of byte `offset` of file `path`, in both the page cache and
    /// the durable image (a media error).
    pub fn flip_bit(&self, path: &str, offset: u64, bit: u8) -> io::Result<()> {
        validate_path(path)?;
        let mut s = self.lock();
        let Some(Node::File(inode)) = s.lookup(path) else {
            return Err(not_found(path));
        };
        let file = s.inodes.get_mut(&inode).ok_or_else(|| not_found(path))?;
        let mask = 1u8 << (bit % 8);
        let at = offset as usize;
        if !file.flip(at, mask) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path}: offset {offset} past end"),
            ));
        }
        Ok(())
    }

    /// The page-cache length of every file, by path, sorted (for tests and debugging).
    pub fn files(&self) -> BTreeMap<String, u64> {
        let s = self.lock();
        let mut out = BTreeMap::new();
        for (dir, entries) in &s.dirs {
            for (name, node) in &entries.live {
                if let Node::File(i) = node {
                    let len = s.inodes.get(i).map_or(0, |f| f.cache.len() as u64);
                    out.insert(join(dir, name), len);
                }
            }
        }
        out
    }
}

impl Disk for MemDisk {
    type File = MemFile;

    async fn open(&self, path: &str, create: bool) -> io::Result<MemFile> {
        validate_path(path)?;
        let mut s = self.lock();
        let generation = s.generation;
        match s.lookup(path) {
            Some(Node::File(inode)) => Ok(MemFile {
                disk: self.clone(),
                inode,
                generation,
            }),
            Some(Node::Dir) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{path}: is a directory"),
            )),
            None if !create => Err(not_found(path)),
            None => {
                let (parent, name) = split_parent(path);
                if !s.dirs.contains_key(parent) {
                    return Err(not_found(parent));
                }
                s.count_op()?;
                let inode = s.inode_next;
                s.inode_next += 1;
                s.inodes.insert(inode, Inode::default());
                if let Some(dir) = s.dirs.get_mut(parent) {
                    dir.live.insert(name.to_string(), Node::File(inode));
                }
                Ok(MemFile {
                    disk: self.clone(),
                    inode,
                    generation,
                })
            }
        }
    }

    async fn create_dir_all(&self, dir: &str) -> io::Result<()> {
        validate_path(dir)?;
        let mut s = self.lock();
        let mut path = String::new();
        for part in dir.split('/') {
            let parent = path.clone();
            path = join(&parent, part);
            match s.lookup(&path) {
                Some(Node::Dir) => continue,
                Some(Node::File(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{path}: is a file"),
                    ));
                }
                None => {
                    s.count_op()?;
                    if let Some(entries) = s.dirs.get_mut(&parent) {
                        entries.live.insert(part.to_string(), Node::Dir);
                    }
                    s.dirs.insert(path.clone(), DirEntries::default());
                }
            }
        }
        Ok(())
    }

    async fn list_dir(&self, dir: &str) -> io::Result<Vec<String>> {
        if !dir.is_empty() {
            validate_path(dir)?;
        }
        let s = self.lock();
        match s.lookup(dir) {
            Some(Node::Dir) => Ok(s
                .dirs
                .get(dir)
                .map(|d| d.live.keys().cloned().collect())
                .unwrap_or_default()),
            _ => Err(not_found(dir)),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        validate_path(from)?;
        validate_path(to)?;
        let mut s = self.lock();
        let Some(Node::File(inode)) = s.lookup(from) else {
            return Err(not_found(from));
        };
        let (to_parent, to_name) = split_parent(to);
        if matches!(s.lookup(to), Some(Node::Dir)) || !s.dirs.contains_key(to_parent) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("rename {from} -> {to}: bad target"),
            ));
        }
        s.count_op()?;
        let (from_parent, from_name) = split_parent(from);
        if let Some(d) = s.dirs.get_mut(from_parent) {
            d.live.remove(from_name);
        }
        if let Some(d) = s.dirs.get_mut(to_parent) {
            d.live.insert(to_name.to_string(), Node::File(inode));
        }
        Ok(())
    }

    async fn remove_file(&self, path: &str) -> io::Result<()> {
        validate_path(path)?;
        let mut s = self.lock();
        let Some(Node::File(_)) = s.lookup(path) else {
            return Err(not_found(path));
        };
        s.count_op()?;
        let (parent, name) = split_parent(path);
        if let Some(d) = s.dirs.get_mut(parent) {
            d.live.remove(name);
        }
        Ok(())
    }

    async fn sync_dir(&self, dir: &str) -> io::Result<()> {
        if !dir.is_empty() {
            validate_path(dir)?;
        }
        let mut s = self.lock();
        if s.lookup(dir) != Some(Node::Dir) {
            return Err(not_found(dir));
        }
        s.count_op()?;
        s.take_sync_fault()?;
        if let Some(d) = s.dirs.get_mut(dir) {
            d.durable = d.live.clone();
        }
        Ok(())
    }

    async fn exists(&self, path: &str) -> io::Result<bool> {
        validate_path(path)?;
        Ok(self.lock().lookup(path).is_some())
    }
}

impl MemFile {
    fn state(&self) -> io::Result<MutexGuard<'_, State>> {
        let s = self.disk.lock();
        if s.generation != self.generation {
            return Err(io::Error::other(
                "stale file handle: the disk crashed since it was opened",
            ));
        }
        Ok(s)
    }

    /// `f` of the file's page-cache image.
    fn with_image<T>(&self, f: impl FnOnce(&model::Image) -> T) -> io::Result<T> {
        let s = self.state()?;
        let file = s
            .inodes
            .get(&self.inode)
            .ok_or_else(|| not_found("inode"))?;
        Ok(f(&file.cache))
    }
}

impl DiskFile for MemFile {
    async fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut s = self.state()?;
        s.check_growth(self.inode, offset + buf.len() as u64)?;
        s.count_op()?;
        s.inode_mut(self.inode)?.write(offset as usize, buf);
        Ok(())
    }

    async fn read_at(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let end = offset.saturating_add(len) as usize;
        self.with_image(|image| image.read(offset as usize, end))
    }

    async fn len(&self) -> io::Result<u64> {
        self.with_image(|image| image.len() as u64)
    }

    async fn data_end(&self) -> io::Result<u64> {
        self.with_image(|image| image.written() as u64)
    }

    async fn sync_data(&mut self) -> io::Result<()> {
        let mut s = self.state()?;
        s.count_op()?;
        s.take_sync_fault()?;
        s.sync_file(self.inode)
    }

    async fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut s = self.state()?;
        s.check_growth(self.inode, len)?;
        s.count_op()?;
        s.inode_mut(self.inode)?.set_len(len as usize);
        Ok(())
    }

    async fn preallocate(&mut self, len: u64) -> io::Result<()> {
        let current = self.len().await?;
        if len > current {
            self.set_len(len).await?;
        }
        Ok(())
    }
}
