//! The state behind a [`super::MemDisk`]: files as page cache, durable image and the
//! ordered writes between them; directories as live and durable entries; and what a
//! crash or a power loss does to them.
//!
//! Pure data and rules, no locking and no async: `super` wraps it in a mutex and
//! implements the disk traits on top.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use rand::Rng;

use crate::storage::disk::{join, split_parent};

/// What a directory entry names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Node {
    File(u64),
    Dir,
}

/// A directory: its entries as seen now, and as of its last `sync_dir`.
#[derive(Default)]
pub(super) struct DirEntries {
    pub(super) live: BTreeMap<String, Node>,
    pub(super) durable: BTreeMap<String, Node>,
}

/// A change to a file not yet made durable, in the order it was made.
pub(super) enum Pending {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

/// A file: what reads see, what is durable, and the changes in between.
#[derive(Default)]
pub(super) struct Inode {
    pub(super) cache: Vec<u8>,
    pub(super) durable: Vec<u8>,
    pub(super) pending: Vec<Pending>,
}

/// Everything on one disk, plus its fault knobs.
pub(super) struct State {
    pub(super) inodes: BTreeMap<u64, Inode>,
    pub(super) inode_next: u64,
    /// Directory path (`""` is the root) to its entries.
    pub(super) dirs: BTreeMap<String, DirEntries>,
    pub(super) generation: u64,
    pub(super) ops: u64,
    pub(super) ops_limit: Option<u64>,
    pub(super) syncs_to_fail: u32,
    pub(super) capacity_bytes: Option<u64>,
}

impl Default for State {
    fn default() -> Self {
        let mut dirs = BTreeMap::new();
        dirs.insert(String::new(), DirEntries::default());
        Self {
            inodes: BTreeMap::new(),
            inode_next: 0,
            dirs,
            generation: 0,
            ops: 0,
            ops_limit: None,
            syncs_to_fail: 0,
            capacity_bytes: None,
        }
    }
}

/// Applies one change to a file image.
fn apply(buf: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write { offset, bytes } => {
            let start = *offset as usize;
            let end = start + bytes.len();
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[start..end].copy_from_slice(bytes);
        }
        Pending::SetLen(len) => buf.resize(*len as usize, 0),
    }
}

/// Which unsynced writes a power loss keeps; see [`super::MemDisk::power_loss_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossModel {
    /// The durable image plus a prefix of the unsynced writes, in the order they were
    /// made, the last kept one possibly torn at any byte.
    PrefixOfWrites,
    /// Each [`SECTOR_BYTES`] sector (and the file length) independently holds either
    /// its durable or its page-cache content, as when a device persists sectors out of
    /// order.
    SectorsOutOfOrder,
}

/// Granularity of [`LossModel::SectorsOutOfOrder`].
pub const SECTOR_BYTES: usize = 512;

/// The durable image plus a seeded prefix of the pending writes, the next one torn.
fn prefix_image(file: &Inode, rng: &mut impl Rng) -> Vec<u8> {
    let kept = rng.random_range(0..=file.pending.len());
    let mut image = file.durable.clone();
    for op in &file.pending[..kept] {
        apply(&mut image, op);
    }
    if let Some(Pending::Write { offset, bytes }) = file.pending.get(kept) {
        let torn = rng.random_range(0..=bytes.len());
        let op = Pending::Write {
            offset: *offset,
            bytes: bytes[..torn].to_vec(),
        };
        apply(&mut image, &op);
    }
    image
}

/// Per sector, a seeded choice between the durable and the page-cache content.
fn sector_image(file: &Inode, rng: &mut impl Rng) -> Vec<u8> {
    if file.pending.is_empty() {
        return file.durable.clone();
    }
    let len = if rng.random_bool(0.5) {
        file.cache.len()
    } else {
        file.durable.len()
    };
    let mut image = vec![0u8; len];
    for (i, sector) in image.chunks_mut(SECTOR_BYTES).enumerate() {
        let from = i * SECTOR_BYTES;
        let source = if rng.random_bool(0.5) {
            &file.cache
        } else {
            &file.durable
        };
        if let Some(content) = source.get(from..) {
            let n = content.len().min(sector.len());
            sector[..n].copy_from_slice(&content[..n]);
        }
    }
    image
}

/// The error for a missing file, directory or inode.
pub(super) fn not_found(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{what}: not found"))
}

impl State {
    /// See [`super::MemDisk::crash`].
    pub(super) fn crash(&mut self) {
        self.generation += 1;
        self.ops_limit = None;
        self.collect_garbage();
    }

    /// See [`super::MemDisk::power_loss_with`].
    pub(super) fn power_loss(&mut self, model: LossModel, rng: &mut impl Rng) {
        self.generation += 1;
        self.ops_limit = None;
        for file in self.inodes.values_mut() {
            let image = match model {
                LossModel::PrefixOfWrites => prefix_image(file, rng),
                LossModel::SectorsOutOfOrder => sector_image(file, rng),
            };
            file.pending.clear();
            file.cache = image.clone();
            file.durable = image;
        }
        for dir in self.dirs.values_mut() {
            dir.live = dir.durable.clone();
        }
        self.collect_garbage();
    }

    pub(super) fn count_op(&mut self) -> io::Result<()> {
        if let Some(limit) = self.ops_limit
            && self.ops >= limit
        {
            return Err(io::Error::other(
                "disk cut off: operation budget exhausted (simulated power cut)",
            ));
        }
        self.ops += 1;
        Ok(())
    }

    pub(super) fn lookup(&self, path: &str) -> Option<Node> {
        if path.is_empty() {
            return Some(Node::Dir);
        }
        let (parent, name) = split_parent(path);
        self.dirs.get(parent)?.live.get(name).copied()
    }

    pub(super) fn used_bytes(&self) -> u64 {
        self.inodes.values().map(|i| i.cache.len() as u64).sum()
    }

    pub(super) fn check_growth(&self, inode: u64, new_len: u64) -> io::Result<()> {
        let Some(capacity) = self.capacity_bytes else {
            return Ok(());
        };
        let old_len = self.inodes.get(&inode).map_or(0, |i| i.cache.len() as u64);
        if new_len > old_len && self.used_bytes() + (new_len - old_len) > capacity {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (simulated ENOSPC)",
            ));
        }
        Ok(())
    }

    pub(super) fn take_sync_fault(&mut self) -> io::Result<()> {
        if self.syncs_to_fail > 0 {
            self.syncs_to_fail -= 1;
            return Err(io::Error::other("fsync failed: EIO (injected)"));
        }
        Ok(())
    }

    pub(super) fn push(&mut self, inode: u64, op: Pending) -> io::Result<()> {
        let file = self
            .inodes
            .get_mut(&inode)
            .ok_or_else(|| not_found("inode"))?;
        apply(&mut file.cache, &op);
        file.pending.push(op);
        Ok(())
    }

    /// Makes the pending writes of `inode` durable.
    pub(super) fn sync_file(&mut self, inode: u64) -> io::Result<()> {
        let file = self
            .inodes
            .get_mut(&inode)
            .ok_or_else(|| not_found("inode"))?;
        for op in std::mem::take(&mut file.pending) {
            apply(&mut file.durable, &op);
        }
        Ok(())
    }

    /// Drops directories unreachable from the root and inodes no entry refers to.
    pub(super) fn collect_garbage(&mut self) {
        let mut reachable = BTreeSet::new();
        let mut stack = vec![String::new()];
        while let Some(dir) = stack.pop() {
            if let Some(entries) = self.dirs.get(&dir) {
                for (name, node) in &entries.live {
                    if *node == Node::Dir {
                        stack.push(join(&dir, name));
                    }
                }
            }
            reachable.insert(dir);
        }
        self.dirs.retain(|d, _| reachable.contains(d));
        let used: BTreeSet<u64> = self
            .dirs
            .values()
            .flat_map(|d| d.live.values().chain(d.durable.values()))
            .filter_map(|n| match n {
                Node::File(i) => Some(*i),
                Node::Dir => None,
            })
            .collect();
        self.inodes.retain(|i, _| used.contains(i));
    }
}
