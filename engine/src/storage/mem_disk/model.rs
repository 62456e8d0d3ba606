//! The state behind a [`super::MemDisk`]: files as page cache and the ordered undo of
//! the changes not yet durable; directories as live and durable entries; and what a
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

/// How to take back one change not yet made durable: what the file held before it.
/// Kept instead of the change itself, so the page cache is the file's only image and
/// a sync just forgets them; the durable content is the page cache with every undo
/// applied, newest first (see [`Inode::durable`]).
pub(super) enum Undo {
    /// A write of `len` bytes at `offset`: the bytes it overwrote inside the written
    /// prefix (an append overwrote none), and the prefix and length before it.
    Write {
        offset: usize,
        len: usize,
        old: Vec<u8>,
        old_written: usize,
        old_len: usize,
    },
    /// A length change: the written bytes it cut off, and the prefix and length
    /// before it.
    SetLen {
        cut: Vec<u8>,
        old_written: usize,
        old_len: usize,
    },
}

/// A file: what reads see (the page cache), and how to go back from it to what is
/// durable, one unsynced change at a time.
#[derive(Default)]
pub(super) struct Inode {
    pub(super) cache: Image,
    /// The unsynced changes, oldest first.
    pub(super) undo: Vec<Undo>,
}

impl Inode {
    /// Writes `data` at `offset` in the page cache, remembering what it replaced.
    pub(super) fn write(&mut self, offset: usize, data: &[u8]) {
        let image = &mut self.cache;
        let old_written = image.bytes.len();
        let overlap = offset.min(old_written)..(offset + data.len()).min(old_written);
        self.undo.push(Undo::Write {
            offset,
            len: data.len(),
            old: image.bytes[overlap].to_vec(),
            old_written,
            old_len: image.len,
        });
        image.write(offset, data);
    }

    /// Sets the page cache's length, remembering what it cut off.
    pub(super) fn set_len(&mut self, len: usize) {
        let image = &mut self.cache;
        let old_written = image.bytes.len();
        self.undo.push(Undo::SetLen {
            cut: image.bytes[len.min(old_written)..].to_vec(),
            old_written,
            old_len: image.len,
        });
        image.set_len(len);
    }

    /// The durable content: the page cache with every unsynced change taken back.
    pub(super) fn durable(&self) -> Image {
        let mut image = self.cache.clone();
        for undo in self.undo.iter().rev() {
            undo.take_back(&mut image);
        }
        image
    }

    /// Flips `mask` in byte `at` of the page cache and of the durable content; false
    /// if `at` is past the end.
    pub(super) fn flip(&mut self, at: usize, mask: u8) -> bool {
        let Some(b) = self.cache.byte_mut(at) else {
            return false;
        };
        *b ^= mask;
        // Where an unsynced write covers the byte, the durable content is what the
        // oldest such write overwrote.
        let oldest = self.undo.iter_mut().find_map(|undo| match undo {
            Undo::Write { offset, old, .. } if (*offset..*offset + old.len()).contains(&at) => {
                Some(&mut old[at - *offset])
            }
            _ => None,
        });
        if let Some(b) = oldest {
            *b ^= mask;
        }
        true
    }
}

impl Undo {
    /// Restores `image` to what it was before this change.
    fn take_back(&self, image: &mut Image) {
        match self {
            Undo::Write {
                offset,
                old,
                old_written,
                old_len,
                ..
            } => {
                image.bytes.resize(*old_written, 0);
                if let Some(range) = image.bytes.get_mut(*offset..*offset + old.len()) {
                    range.copy_from_slice(old);
                }
                image.len = *old_len;
            }
            Undo::SetLen {
                cut,
                old_written,
                old_len,
            } => {
                image.bytes.truncate(old_written.saturating_sub(cut.len()));
                image.bytes.extend_from_slice(cut);
                image.bytes.resize(*old_written, 0);
                image.len = *old_len;
            }
        }
    }
}

/// The least room an image takes when it first grows.
const IMAGE_ROOM_MIN: usize = 64 * 1024;

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

    /// The length of the written prefix: zeros follow it to the file length.
    pub(super) fn written(&self) -> usize {
        self.bytes.len()
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
                // Doubling, but never past the length of a preallocated file (a WAL
                // segment): room for the whole length at once cost a run's short WAL
                // megabytes of zeroed fresh memory (huge pages are zeroed whole on
                // first touch).
                let want = (2 * self.bytes.capacity()).max(IMAGE_ROOM_MIN).max(end);
                let room = if self.len > end {
                    want.min(self.len)
                } else {
                    want
                };
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

/// The durable image plus a seeded prefix of the unsynced writes, the next one torn.
fn prefix_image(file: &Inode, rng: &mut impl Rng) -> Image {
    let kept = rng.random_range(0..=file.undo.len());
    let mut image = file.cache.clone();
    let Some((next, later)) = file.undo[kept..].split_first() else {
        return image;
    };
    for undo in later.iter().rev() {
        undo.take_back(&mut image);
    }
    if let Undo::Write { offset, len, .. } = next {
        // The torn write: what it wrote is in the image until it is taken back.
        let bytes = image.read(*offset, offset + len);
        next.take_back(&mut image);
        let torn = rng.random_range(0..=bytes.len());
        image.write(*offset, &bytes[..torn]);
    } else {
        next.take_back(&mut image);
    }
    image
}

/// Per sector, a seeded choice between the durable and the page-cache content.
fn sector_image(file: &Inode, rng: &mut impl Rng) -> Image {
    if file.undo.is_empty() {
        return file.cache.clone();
    }
    let durable = file.durable();
    let len = if rng.random_bool(0.5) {
        file.cache.len()
    } else {
        durable.len()
    };
    let mut image = Image::default();
    image.set_len(len);
    for from in (0..len).step_by(SECTOR_BYTES) {
        let to = (from + SECTOR_BYTES).min(len);
        let source = if rng.random_bool(0.5) {
            &file.cache
        } else {
            &durable
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
            file.undo.clear();
            file.cache = image;
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

    /// The file `inode`, to change.
    pub(super) fn inode_mut(&mut self, inode: u64) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&inode)
            .ok_or_else(|| not_found("inode"))
    }

    /// Makes the unsynced changes of `inode` durable.
    pub(super) fn sync_file(&mut self, inode: u64) -> io::Result<()> {
        self.inode_mut(inode)?.undo.clear();
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
    use super::{Image, Inode, SECTOR_BYTES, prefix_image, sector_image};
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

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

    /// The model the undo log replaced, kept as the reference: a durable image, the
    /// unsynced changes as made, and the page cache.
    #[derive(Default)]
    struct TwoImages {
        cache: Image,
        durable: Image,
        pending: Vec<Change>,
    }

    fn apply(image: &mut Image, change: &Change) {
        match change {
            Change::Write(o, b) => image.write(*o, b),
            Change::SetLen(n) => image.set_len(*n),
            Change::Flip(_) => unreachable!("not a pending change"),
        }
    }

    impl TwoImages {
        fn prefix(&self, rng: &mut ChaCha8Rng) -> Image {
            let kept = rng.random_range(0..=self.pending.len());
            let mut image = self.durable.clone();
            for change in &self.pending[..kept] {
                apply(&mut image, change);
            }
            if let Some(Change::Write(o, b)) = self.pending.get(kept) {
                let torn = rng.random_range(0..=b.len());
                image.write(*o, &b[..torn]);
            }
            image
        }
    }

    /// Writes, length changes and syncs, for both models.
    fn history() -> impl Strategy<Value = Vec<Option<Change>>> {
        let step = prop_oneof![
            4 => change().prop_filter("no flips", |c| !matches!(c, Change::Flip(_))).prop_map(Some),
            1 => Just(None),
        ];
        prop::collection::vec(step, 0..30)
    }

    fn both(history: &[Option<Change>]) -> (Inode, TwoImages) {
        let mut inode = Inode::default();
        let mut reference = TwoImages::default();
        for step in history {
            match step {
                Some(change) => {
                    match change {
                        Change::Write(o, b) => inode.write(*o, b),
                        Change::SetLen(n) => inode.set_len(*n),
                        Change::Flip(_) => unreachable!(),
                    }
                    apply(&mut reference.cache, change);
                    reference.pending.push(change.clone());
                }
                None => {
                    inode.undo.clear();
                    for change in std::mem::take(&mut reference.pending) {
                        apply(&mut reference.durable, &change);
                    }
                }
            }
        }
        (inode, reference)
    }

    proptest! {
        // Taking the unsynced changes back from the page cache gives what the
        // reference holds as its durable image, and a power loss keeps the same bytes
        // from the same seed, under both loss models.
        #[test]
        fn the_undo_log_loses_what_two_images_lose(history in history(), seed in any::<u64>()) {
            let (inode, reference) = both(&history);
            prop_assert_eq!(inode.cache.read(0, usize::MAX), reference.cache.read(0, usize::MAX));
            prop_assert_eq!(inode.cache.len(), reference.cache.len());
            let durable = inode.durable();
            prop_assert_eq!(durable.read(0, usize::MAX), reference.durable.read(0, usize::MAX));
            prop_assert_eq!(durable.len(), reference.durable.len());

            let kept = prefix_image(&inode, &mut ChaCha8Rng::seed_from_u64(seed));
            let expect = reference.prefix(&mut ChaCha8Rng::seed_from_u64(seed));
            prop_assert_eq!(kept.read(0, usize::MAX), expect.read(0, usize::MAX));
            prop_assert_eq!(kept.len(), expect.len());

            let mixed = sector_image(&inode, &mut ChaCha8Rng::seed_from_u64(seed));
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let reference_sectors = if reference.pending.is_empty() {
                reference.durable.read(0, usize::MAX)
            } else {
                let len = if rng.random_bool(0.5) { reference.cache.len() } else { reference.durable.len() };
                let mut out = Vec::with_capacity(len);
                for from in (0..len).step_by(SECTOR_BYTES) {
                    let to = (from + SECTOR_BYTES).min(len);
                    let source = if rng.random_bool(0.5) { &reference.cache } else { &reference.durable };
                    let mut content = source.read(from, to);
                    content.resize(to - from, 0);
                    out.extend(content);
                }
                out
            };
            prop_assert_eq!(mixed.read(0, usize::MAX), reference_sectors);
        }
    }

    #[test]
    fn a_flip_under_an_unsynced_write_damages_the_durable_bytes_too() {
        let mut inode = Inode::default();
        inode.write(0, b"aaaa");
        inode.undo.clear();
        inode.write(1, b"bb");
        assert!(inode.flip(1, 1));
        assert!(inode.flip(3, 1));
        assert!(!inode.flip(4, 1));
        assert_eq!(inode.cache.read(0, 4), b"acb`");
        assert_eq!(inode.durable().read(0, 4), b"a`a`");
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
