//! [`MemDisk`]: an in-memory [`Disk`] that models what survives a crash or a power loss.
//!
//! Each file keeps two images: the page cache (what reads see) and the durable bytes
//! (what the last successful `sync_data` made durable), plus the ordered list of
//! writes since then. Each directory likewise keeps its live entries and the entries
//! made durable by the last `sync_dir`. [`MemDisk::crash`] (process crash) keeps the
//! page cache; [`MemDisk::power_loss`] keeps the durable images plus a seeded prefix of
//! each file's pending writes, the last kept write possibly torn mid-way, and reverts
//! unsynced directory changes.
//!
//! Fault knobs for tests and the simulator: fail the next sync (EIO), a capacity
//! (ENOSPC past it), bit flips, and an operation budget after which every mutating
//! operation fails (to cut a run at any write boundary). Everything is deterministic:
//! ordered maps, and randomness only from the RNG the caller passes in.
//!
//! It deliberately models no latency (the simulator wraps it for that), no permissions,
//! no hard links, and no directory renames.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;

use super::disk::{Disk, DiskFile, join, split_parent, validate_path};

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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Node {
    File(u64),
    Dir,
}

#[derive(Default)]
struct DirEntries {
    live: BTreeMap<String, Node>,
    durable: BTreeMap<String, Node>,
}

enum Pending {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Default)]
struct Inode {
    cache: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

struct State {
    inodes: BTreeMap<u64, Inode>,
    inode_next: u64,
    /// Directory path (`""` is the root) to its entries.
    dirs: BTreeMap<String, DirEntries>,
    generation: u64,
    ops: u64,
    ops_limit: Option<u64>,
    syncs_to_fail: u32,
    capacity_bytes: Option<u64>,
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

fn not_found(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{what}: not found"))
}

impl State {
    fn count_op(&mut self) -> io::Result<()> {
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

    fn lookup(&self, path: &str) -> Option<Node> {
        if path.is_empty() {
            return Some(Node::Dir);
        }
        let (parent, name) = split_parent(path);
        self.dirs.get(parent)?.live.get(name).copied()
    }

    fn used_bytes(&self) -> u64 {
        self.inodes.values().map(|i| i.cache.len() as u64).sum()
    }

    fn check_growth(&self, inode: u64, new_len: u64) -> io::Result<()> {
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

    fn take_sync_fault(&mut self) -> io::Result<()> {
        if self.syncs_to_fail > 0 {
            self.syncs_to_fail -= 1;
            return Err(io::Error::other("fsync failed: EIO (injected)"));
        }
        Ok(())
    }

    fn push(&mut self, inode: u64, op: Pending) -> io::Result<()> {
        let file = self
            .inodes
            .get_mut(&inode)
            .ok_or_else(|| not_found("inode"))?;
        apply(&mut file.cache, &op);
        file.pending.push(op);
        Ok(())
    }

    /// Drops directories unreachable from the root and inodes no entry refers to.
    fn collect_garbage(&mut self) {
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
        let mut s = self.lock();
        s.generation += 1;
        s.ops_limit = None;
        s.collect_garbage();
    }

    /// Power loss: every open handle goes stale; each file keeps its durable bytes plus
    /// a prefix (chosen with `rng`) of its unsynced writes, the last one possibly torn;
    /// directories revert to their last synced entries.
    pub fn power_loss(&self, rng: &mut impl Rng) {
        let mut s = self.lock();
        s.generation += 1;
        s.ops_limit = None;
        for file in s.inodes.values_mut() {
            let pending = std::mem::take(&mut file.pending);
            let kept = rng.random_range(0..=pending.len());
            let mut image = std::mem::take(&mut file.durable);
            for op in &pending[..kept] {
                apply(&mut image, op);
            }
            if let Some(Pending::Write { offset, bytes }) = pending.get(kept) {
                let torn = rng.random_range(0..=bytes.len());
                let op = Pending::Write {
                    offset: *offset,
                    bytes: bytes[..torn].to_vec(),
                };
                apply(&mut image, &op);
            }
            file.cache = image.clone();
            file.durable = image;
        }
        for dir in s.dirs.values_mut() {
            dir.live = dir.durable.clone();
        }
        s.collect_garbage();
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
        if at >= file.cache.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path}: offset {offset} past end"),
            ));
        }
        file.cache[at] ^= mask;
        if let Some(b) = file.durable.get_mut(at) {
            *b ^= mask;
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
}

impl DiskFile for MemFile {
    async fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut s = self.state()?;
        s.check_growth(self.inode, offset + buf.len() as u64)?;
        s.count_op()?;
        let op = Pending::Write {
            offset,
            bytes: buf.to_vec(),
        };
        s.push(self.inode, op)
    }

    async fn read_at(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let s = self.state()?;
        let file = s
            .inodes
            .get(&self.inode)
            .ok_or_else(|| not_found("inode"))?;
        let start = (offset as usize).min(file.cache.len());
        let end = (offset.saturating_add(len) as usize).min(file.cache.len());
        Ok(file.cache[start..end].to_vec())
    }

    async fn len(&self) -> io::Result<u64> {
        let s = self.state()?;
        let file = s
            .inodes
            .get(&self.inode)
            .ok_or_else(|| not_found("inode"))?;
        Ok(file.cache.len() as u64)
    }

    async fn sync_data(&mut self) -> io::Result<()> {
        let mut s = self.state()?;
        s.count_op()?;
        s.take_sync_fault()?;
        let file = s
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| not_found("inode"))?;
        for op in std::mem::take(&mut file.pending) {
            apply(&mut file.durable, &op);
        }
        Ok(())
    }

    async fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut s = self.state()?;
        s.check_growth(self.inode, len)?;
        s.count_op()?;
        s.push(self.inode, Pending::SetLen(len))
    }

    async fn preallocate(&mut self, len: u64) -> io::Result<()> {
        let current = self.len().await?;
        if len > current {
            self.set_len(len).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        pollster::block_on(f)
    }

    #[test]
    fn synced_bytes_survive_power_loss_and_unsynced_entries_do_not() {
        block_on(async {
            let disk = MemDisk::new();
            disk.create_dir_all("d").await.unwrap();
            disk.sync_dir("").await.unwrap();
            let mut f = disk.open("d/a", true).await.unwrap();
            f.write_at(0, b"hello").await.unwrap();
            f.sync_data().await.unwrap();
            disk.sync_dir("d").await.unwrap();
            let mut g = disk.open("d/b", true).await.unwrap();
            g.write_at(0, b"lost").await.unwrap();
            g.sync_data().await.unwrap();
            f.write_at(5, b" world").await.unwrap();

            disk.power_loss(&mut ChaCha8Rng::seed_from_u64(1));
            assert!(f.len().await.is_err(), "handle must be stale");
            assert!(
                !disk.exists("d/b").await.unwrap(),
                "unsynced entry survived"
            );
            let a = disk.read_all("d/a").await.unwrap();
            assert!(a.starts_with(b"hello"));
            assert!(b"hello world".starts_with(&a), "not a prefix: {a:?}");
        });
    }

    #[test]
    fn power_loss_keeps_a_prefix_and_some_seed_tears_a_write() {
        let mut lengths = BTreeSet::new();
        for seed in 0..64 {
            block_on(async {
                let disk = MemDisk::new();
                let mut f = disk.open("f", true).await.unwrap();
                disk.sync_dir("").await.unwrap();
                f.write_at(0, &[1; 10]).await.unwrap();
                f.write_at(10, &[2; 10]).await.unwrap();
                disk.power_loss(&mut ChaCha8Rng::seed_from_u64(seed));
                let data = disk.read_all("f").await.unwrap();
                let mut full = vec![1; 10];
                full.extend([2; 10]);
                assert_eq!(data[..], full[..data.len()]);
                lengths.insert(data.len());
            });
        }
        assert!(
            lengths.len() > 5,
            "too few distinct cut points: {lengths:?}"
        );
    }

    #[test]
    fn crash_keeps_the_page_cache() {
        block_on(async {
            let disk = MemDisk::new();
            let mut f = disk.open("f", true).await.unwrap();
            disk.sync_dir("").await.unwrap();
            f.write_at(0, b"abc").await.unwrap();
            disk.crash();
            assert_eq!(disk.read_all("f").await.unwrap(), b"abc");
        });
    }

    #[test]
    fn faults_fail_sync_fill_disk_and_cut_ops() {
        block_on(async {
            let disk = MemDisk::new();
            let mut f = disk.open("f", true).await.unwrap();
            disk.fail_next_syncs(1);
            assert!(f.sync_data().await.is_err());
            assert!(f.sync_data().await.is_ok());

            disk.set_capacity_bytes(Some(8));
            f.write_at(0, &[0; 8]).await.unwrap();
            let err = f.write_at(8, &[0; 1]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::StorageFull);
            disk.set_capacity_bytes(None);

            disk.set_ops_limit(Some(disk.ops()));
            assert!(f.write_at(0, b"x").await.is_err());
            disk.set_ops_limit(None);
            assert_eq!(disk.read_all("f").await.unwrap(), vec![0; 8]);

            disk.flip_bit("f", 3, 0).unwrap();
            assert_eq!(disk.read_all("f").await.unwrap()[3], 1);
        });
    }

    #[test]
    fn rename_is_reverted_by_power_loss_unless_dir_synced() {
        block_on(async {
            let disk = MemDisk::new();
            let mut f = disk.open("tmp", true).await.unwrap();
            f.write_at(0, b"v1").await.unwrap();
            f.sync_data().await.unwrap();
            disk.sync_dir("").await.unwrap();
            disk.rename("tmp", "final").await.unwrap();
            disk.power_loss(&mut ChaCha8Rng::seed_from_u64(0));
            assert_eq!(disk.list_dir("").await.unwrap(), vec!["tmp".to_string()]);
            disk.rename("tmp", "final").await.unwrap();
            disk.sync_dir("").await.unwrap();
            disk.power_loss(&mut ChaCha8Rng::seed_from_u64(0));
            assert_eq!(disk.read_all("final").await.unwrap(), b"v1");
        });
    }
}
