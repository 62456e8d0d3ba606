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
    pub(super) cache: Image,
    pub(super) durable: Image,
    pub(super) pending: Vec<Pending>,
}

/// The bytes of a file: the written prefix held in memory, zeros after it up to the
/// length. A preallocated or extended file costs nothing until it is written (the
/// WAL preallocates each segment, and every member holds two images of it).
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub(super) struct Image {
    /// Bytes from offset 0; never longer than `len`.
    bytes: Vec<u8>,
    /// The file length.
    len: usize,
}

impl Image {
    /// The file length.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Bytes `start..end`, clamped to the length.
    pub(super) fn read(&self, start: usize, end: usize) -> Vec<u8> {
        let end = end.min(self.len);
        let start = start.min(end);
        let mut out = Vec::with_capacity(end - start);
        if start < self.bytes.len() {
            out.extend_from_slice(&self.bytes[start..end.min(self.bytes.len())]);
        }
        out.resize(end - start, 0);
        out
    }

    /// Writes `data` at `offset`, growing the file when it ends past the length.
    fn write(&mut self, offset: usize, data: &[u8]) {
        let end = offset + data.len();
        if self.bytes.len() < end {
            if self.bytes.capacity() < end {
                // Room up to the file's length at once when it was preallocated (a WAL
                // segment): grown by doubling, the image was copied and fresh pages were
                // touched about twice over. Untouched room costs no memory.
                let room = end.max(self.len).max(2 * self.bytes.capacity());
                self.bytes.reserve_exact(room - self.bytes.len());
            }
            self.bytes.resize(end, 0);
        }
        self.bytes[offset..end].copy_from_slice(data);
        self.len = self.len.max(end);
    }

    /// Truncates or extends (with zeros) to `len`.
    fn set_len(&mut self, len: usize) {
        self.bytes.truncate(len);
        self.len = len;
    }

    /// The byte at `at`, for in-place damage; `None` past the end.
    pub(super) fn byte_mut(&mut self, at: usize) -> Option<&mut u8> {
        if at >= self.len {
            return None;
        }
        if self.bytes.len() <= at {
            self.bytes.resize(at + 1, 0);
        }
        self.bytes.get_mut(at)
    }
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
fn apply(image: &mut Image, op: &Pending) {
    match op {
        Pending::Write { offset, bytes } => image.write(*offset as usize, bytes),
        Pending::SetLen(len) => image.set_len(*len as usize),
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
fn prefix_image(file: &Inode, rng: &mut impl Rng) -> Image {
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
fn sector_image(file: &Inode, rng: &mut impl Rng) -> Image {
    if file.pending.is_empty() {
        return file.durable.clone();
    }
    let len = if rng.random_bool(0.5) {
        file.cache.len()
    } else {
        file.durable.len()
    };
    let mut image = Image::default();
    image.set_len(len);
    for from in (0..len).step_by(SECTOR_BYTES) {
        let to = (from + SECTOR_BYTES).min(len);
        let source = if rng.random_bool(0.5) {
            &file.cache
        } else {
            &file.durable
        };
        let content = source.read(from, to);
        if content.iter().any(|&b| b != 0) {
            image.write(from, &content);
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

#[cfg(test)]
mod tests {
    use super::Image;
    use proptest::prelude::*;

    /// A change to both an [`Image`] and a plain byte vector.
    #[derive(Clone, Debug)]
    enum Change {
        Write(usize, Vec<u8>),
        SetLen(usize),
        Flip(usize),
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            (0..3000usize, prop::collection::vec(any::<u8>(), 0..600))
                .prop_map(|(o, b)| Change::Write(o, b)),
            (0..4000usize).prop_map(Change::SetLen),
            (0..4000usize).prop_map(Change::Flip),
        ]
    }

    proptest! {
        // The sparse image reads exactly like a file held as one zero-filled vector.
        #[test]
        fn reads_like_a_plain_vector(changes in prop::collection::vec(change(), 0..40),
                                     start in 0..4000usize, span in 0..4000usize) {
            let mut image = Image::default();
            let mut plain: Vec<u8> = Vec::new();
            for c in &changes {
                match c {
                    Change::Write(o, b) => {
                        image.write(*o, b);
                        if plain.len() < o + b.len() {
                            plain.resize(o + b.len(), 0);
                        }
                        plain[*o..o + b.len()].copy_from_slice(b);
                    }
                    Change::SetLen(n) => {
                        image.set_len(*n);
                        plain.resize(*n, 0);
                    }
                    Change::Flip(at) => {
                        let hit = image.byte_mut(*at).map(|b| *b ^= 1).is_some();
                        prop_assert_eq!(hit, *at < plain.len());
                        if let Some(b) = plain.get_mut(*at) {
                            *b ^= 1;
                        }
                    }
                }
                prop_assert_eq!(image.len(), plain.len());
            }
            prop_assert_eq!(image.read(0, usize::MAX), plain.clone());
            let end = (start + span).min(plain.len());
            let expect = plain.get(start.min(end)..end).unwrap_or(&[]).to_vec();
            prop_assert_eq!(image.read(start, start + span), expect);
        }
    }

    #[test]
    fn a_preallocated_file_holds_no_bytes_until_written() {
        let mut image = Image::default();
        image.set_len(4 << 20);
        assert_eq!(image.len(), 4 << 20);
        assert!(image.bytes.is_empty());
        image.write(10, b"abc");
        assert_eq!(image.bytes.len(), 13);
        assert_eq!(image.read(8, 14), vec![0, 0, b'a', b'b', b'c', 0]);
    }
}
