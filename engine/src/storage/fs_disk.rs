//! [`FsDisk`]: the real-file [`Disk`], rooted at a data directory.
//!
//! Calls are plain blocking std calls made inside the async methods; this is acceptable
//! in real mode (the WAL's fdatasync blocks the raft loop's persist step anyway, which
//! is what etcd does too). `sync_data` is `fdatasync`; on a multi-threaded tokio runtime
//! it runs in `block_in_place`, so the tasks queued on the syncing worker (the clients
//! the last apply just answered) move to another thread instead of waiting out the sync.
//! `sync_dir` opens the directory and fsyncs it; `preallocate` is `fallocate(2)` on
//! Linux and a zero-extending `set_len` elsewhere.
//!
//! This is the only place in the engine that touches the file system, and it is compiled
//! out under the simulator (`cfg(madsim)`). It deliberately adds no caching and no
//! implicit syncs: durability is decided by the caller.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::disk::{Disk, DiskFile, validate_path};

/// A disk backed by real files under a root directory.
#[derive(Clone, Debug)]
pub struct FsDisk {
    root: PathBuf,
}

/// An open real file.
#[derive(Debug)]
pub struct FsFile {
    file: File,
}

impl FsDisk {
    /// A disk rooted at `root`, which is created if missing.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn resolve(&self, path: &str) -> io::Result<PathBuf> {
        if path.is_empty() {
            return Ok(self.root.clone());
        }
        validate_path(path)?;
        Ok(self.root.join(path))
    }
}

impl Disk for FsDisk {
    type File = FsFile;

    async fn open(&self, path: &str, create: bool) -> io::Result<FsFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(self.resolve(path)?)?;
        Ok(FsFile { file })
    }

    async fn create_dir_all(&self, dir: &str) -> io::Result<()> {
        fs::create_dir_all(self.resolve(dir)?)
    }

    async fn list_dir(&self, dir: &str) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(self.resolve(dir)?)? {
            let name = entry?.file_name();
            match name.into_string() {
                Ok(name) => names.push(name),
                Err(raw) => tracing::warn!(?raw, dir, "skipping a non-UTF-8 file name"),
            }
        }
        names.sort();
        Ok(names)
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.resolve(from)?, self.resolve(to)?)
    }

    async fn remove_file(&self, path: &str) -> io::Result<()> {
        fs::remove_file(self.resolve(path)?)
    }

    async fn sync_dir(&self, dir: &str) -> io::Result<()> {
        File::open(self.resolve(dir)?)?.sync_all()
    }

    async fn exists(&self, path: &str) -> io::Result<bool> {
        self.resolve(path)?.try_exists()
    }
}

impl DiskFile for FsFile {
    async fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    async fn read_at(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let file_len = self.file.metadata()?.len();
        let end = offset.saturating_add(len).min(file_len);
        let mut buf = vec![0; end.saturating_sub(offset) as usize];
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    async fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    async fn sync_data(&mut self) -> io::Result<()> {
        let file = &self.file;
        off_worker(|| file.sync_data())
    }

    async fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    async fn preallocate(&mut self, len: u64) -> io::Result<()> {
        if self.file.metadata()?.len() >= len {
            return Ok(());
        }
        fallocate(&self.file, len)
    }
}

/// Runs the blocking `f` so it does not hold up other tasks: in `block_in_place` on a
/// multi-threaded runtime (the worker's queued tasks go to another thread), else inline
/// (a current-thread runtime, or no runtime at all).
fn off_worker<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(target_os = "linux")]
fn fallocate(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
    // SAFETY: the descriptor is valid for the lifetime of `file`; fallocate reads no
    // memory of ours.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // File systems without fallocate support: fall back to a sparse extension.
    if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
        return file.set_len(len as u64);
    }
    Err(err)
}

#[cfg(not(target_os = "linux"))]
fn fallocate(file: &File, len: u64) -> io::Result<()> {
    file.set_len(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_files_round_trip() {
        pollster::block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let disk = FsDisk::new(dir.path()).unwrap();
            disk.create_dir_all("a/b").await.unwrap();
            let mut f = disk.open("a/b/f", true).await.unwrap();
            f.write_at(3, b"xyz").await.unwrap();
            f.sync_data().await.unwrap();
            disk.sync_dir("a/b").await.unwrap();
            assert_eq!(disk.read_all("a/b/f").await.unwrap(), b"\0\0\0xyz");
            f.preallocate(100).await.unwrap();
            assert_eq!(f.len().await.unwrap(), 100);
            assert_eq!(f.read_at(98, 10).await.unwrap(), vec![0, 0]);
            disk.rename("a/b/f", "a/g").await.unwrap();
            assert_eq!(disk.list_dir("a").await.unwrap(), vec!["b", "g"]);
            disk.remove_file("a/g").await.unwrap();
            assert!(!disk.exists("a/g").await.unwrap());
            assert!(disk.open("../escape", true).await.is_err());
        });
    }
}
