//! The [`Disk`] trait: the one door through which the engine reaches durable storage.
//!
//! A disk is rooted at one directory and is addressed by relative, `/`-separated names
//! (`wal/0000000000000001-0000000000000001.wal`). Every operation is async so that a
//! simulated disk can await simulated latency inside it; the real implementation may
//! block inside its futures.
//!
//! This module defines the contract only. It deliberately knows nothing about WAL or
//! snapshot formats, and it does not make anything durable on its own: callers say
//! when with [`DiskFile::sync_data`] and [`Disk::sync_dir`].

use std::future::Future;
use std::io;

/// A directory-rooted store of files, real ([`super::FsDisk`]) or in memory
/// ([`super::MemDisk`]).
///
/// Durability contract (what a caller may rely on after a power loss):
/// - bytes written to a file are durable once [`DiskFile::sync_data`] on that file has
///   returned `Ok`;
/// - a created, renamed or removed directory entry is durable once [`Disk::sync_dir`]
///   on its parent directory has returned `Ok`;
/// - anything else may be lost, or kept as a prefix (possibly torn mid-write).
pub trait Disk: Clone + Send + Sync + 'static {
    /// An open file on this disk.
    type File: DiskFile;

    /// Opens `path` for reading and writing; with `create`, creates it (empty) if it
    /// does not exist. The parent directory must exist.
    fn open(&self, path: &str, create: bool)
    -> impl Future<Output = io::Result<Self::File>> + Send;

    /// Creates `dir` and any missing parents (not durable until the parents are synced).
    fn create_dir_all(&self, dir: &str) -> impl Future<Output = io::Result<()>> + Send;

    /// The names (not paths) of the entries of `dir`, sorted.
    fn list_dir(&self, dir: &str) -> impl Future<Output = io::Result<Vec<String>>> + Send;

    /// Renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &str, to: &str) -> impl Future<Output = io::Result<()>> + Send;

    /// Removes the file `path`.
    fn remove_file(&self, path: &str) -> impl Future<Output = io::Result<()>> + Send;

    /// Makes the entries of `dir` (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &str) -> impl Future<Output = io::Result<()>> + Send;

    /// Whether a file or directory named `path` exists.
    fn exists(&self, path: &str) -> impl Future<Output = io::Result<bool>> + Send;

    /// Reads the whole file `path`.
    fn read_all(&self, path: &str) -> impl Future<Output = io::Result<Vec<u8>>> + Send {
        async move {
            let file = self.open(path, false).await?;
            let len = file.len().await?;
            file.read_at(0, len).await
        }
    }
}

/// An open file on a [`Disk`].
// `len` is an I/O call here, and an `is_empty` would only add a second one.
#[allow(clippy::len_without_is_empty)]
pub trait DiskFile: Send + Sync + 'static {
    /// Writes all of `buf` at `offset`, extending the file if needed. A write past the
    /// disk's capacity fails with [`io::ErrorKind::StorageFull`].
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> impl Future<Output = io::Result<()>> + Send;

    /// Reads up to `len` bytes at `offset`; fewer only if the file ends first.
    fn read_at(&self, offset: u64, len: u64) -> impl Future<Output = io::Result<Vec<u8>>> + Send;

    /// The current length of the file in bytes.
    fn len(&self) -> impl Future<Output = io::Result<u64>> + Send;

    /// Makes the file's data (and its length) durable, like `fdatasync`. An error means
    /// the written data is in an unknown state; the caller must not assume it is durable.
    fn sync_data(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> impl Future<Output = io::Result<()>> + Send;

    /// Reserves space so that the file is at least `len` bytes long, reading as zeros
    /// past its old end (like `fallocate` without `KEEP_SIZE`). Never shrinks.
    fn preallocate(&mut self, len: u64) -> impl Future<Output = io::Result<()>> + Send;

    /// An offset from which, as far as the disk knows without reading, the file reads as
    /// zeros to its end (a preallocated tail never written); the length when it does not
    /// know.
    fn data_end(&self) -> impl Future<Output = io::Result<u64>> + Send {
        self.len()
    }
}

/// Longest accepted relative path, in bytes.
pub const PATH_BYTES_MAX: usize = 1024;

/// Checks that `path` is a relative, normalized name on a disk: non-empty `/`-separated
/// components, none of them `.` or `..`, no leading or trailing `/`.
pub fn validate_path(path: &str) -> io::Result<()> {
    let bad = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid disk path {path:?}: {why}"),
        ))
    };
    if path.is_empty() {
        return bad("empty");
    }
    if path.len() > PATH_BYTES_MAX {
        return bad("too long");
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return bad("components must be non-empty and not '.' or '..'");
        }
        if part.contains('\0') || part.contains('\\') {
            return bad("contains NUL or backslash");
        }
    }
    Ok(())
}

/// Splits a validated path into (parent directory, file name); the parent of a
/// top-level name is `""` (the disk's root).
pub fn split_parent(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// Joins a directory (possibly the root `""`) and a name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_validation_rejects_escapes_and_accepts_plain_names() {
        for bad in ["", "/abs", "a//b", "a/", "../x", "a/./b", "a\\b"] {
            assert!(validate_path(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["wal", "wal/0001.wal", "snap/x.snap.tmp"] {
            assert!(validate_path(good).is_ok(), "{good:?} rejected");
        }
    }

    #[test]
    fn split_and_join_are_inverse() {
        assert_eq!(split_parent("wal/a.wal"), ("wal", "a.wal"));
        assert_eq!(split_parent("top"), ("", "top"));
        assert_eq!(join("wal", "a.wal"), "wal/a.wal");
        assert_eq!(join("", "top"), "top");
    }
}
