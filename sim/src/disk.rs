//! The simulated disk: an engine `MemDisk` (synced vs unsynced bytes per file, power
//! loss keeping a seeded, possibly torn prefix, process crash keeping the page cache,
//! fsync errors, full disk, bit flips) plus a latency profile drawn from a seeded RNG.
//! One `SimDisk` belongs to one member and outlives its restarts. It sleeps with
//! `tokio::time`, so under madsim the latency is simulated time; it does no real I/O.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use detcd_engine::server::transport::timer::{LoopClock, sleep_exactly_until};
use detcd_engine::storage::{Disk, DiskFile, MemDisk, MemFile};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A latency profile for syncs (file data and directory entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskProfile {
    /// A datacenter SSD: syncs take tens to hundreds of microseconds.
    Ssd,
    /// A spinning disk: syncs take milliseconds, with rare long stalls.
    Hdd,
}

/// SSD sync latency range, microseconds.
const SSD_SYNC_US: (u64, u64) = (50, 300);
/// HDD sync latency range, microseconds.
const HDD_SYNC_US: (u64, u64) = (4_000, 12_000);
/// HDD stall: one sync in this many takes [`HDD_STALL_US`] longer.
const HDD_STALL_ONE_IN: u32 = 100;
/// HDD stall length, microseconds.
const HDD_STALL_US: u64 = 50_000;

impl DiskProfile {
    /// Draws one sync latency.
    pub fn sync_latency(self, rng: &mut impl Rng) -> Duration {
        let us = match self {
            DiskProfile::Ssd => rng.random_range(SSD_SYNC_US.0..=SSD_SYNC_US.1),
            DiskProfile::Hdd => {
                let base = rng.random_range(HDD_SYNC_US.0..=HDD_SYNC_US.1);
                if rng.random_ratio(1, HDD_STALL_ONE_IN) {
                    base + HDD_STALL_US
                } else {
                    base
                }
            }
        };
        Duration::from_micros(us)
    }
}

struct Latency {
    profile: DiskProfile,
    rng: ChaCha8Rng,
    /// The simulation's clock, taken at the first sync (a disk may be made before the
    /// runtime runs).
    clock: Option<LoopClock>,
}

/// A member's simulated disk. Clones share the same contents.
#[derive(Clone)]
pub struct SimDisk {
    mem: MemDisk,
    latency: Arc<Mutex<Latency>>,
}

impl SimDisk {
    /// An empty disk with `profile`, its latencies drawn from `seed`.
    pub fn new(profile: DiskProfile, seed: u64) -> SimDisk {
        SimDisk {
            mem: MemDisk::new(),
            latency: Arc::new(Mutex::new(Latency {
                profile,
                rng: ChaCha8Rng::seed_from_u64(seed),
                clock: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Latency> {
        // A poisoned lock means a panic elsewhere; the profile and RNG stay usable.
        self.latency.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The underlying memory disk, for its fault controls (crash, power loss, fsync
    /// errors, capacity, bit flips).
    pub fn mem(&self) -> &MemDisk {
        &self.mem
    }

    /// The current latency profile.
    pub fn profile(&self) -> DiskProfile {
        self.lock().profile
    }

    /// Switches the latency profile.
    pub fn set_profile(&self, profile: DiskProfile) {
        self.lock().profile = profile;
    }

    /// Power loss: unsynced bytes go, except a prefix drawn from `seed` (maybe torn).
    pub fn power_loss(&self, seed: u64) {
        self.mem.power_loss(&mut ChaCha8Rng::seed_from_u64(seed));
    }

    /// Process crash: open handles go stale, the page cache stays.
    pub fn crash(&self) {
        self.mem.crash();
    }

    async fn sync_delay(&self) {
        let done = {
            let mut latency = self.lock();
            let profile = latency.profile;
            let delay = profile.sync_latency(&mut latency.rng);
            latency.clock.get_or_insert_with(LoopClock::new).now() + delay
        };
        // Exactly: a plain simulated sleep waits at least 1 ms, and an SSD sync takes
        // 50-300 us.
        sleep_exactly_until(done).await;
    }
}

/// An open file on a [`SimDisk`].
pub struct SimFile {
    inner: MemFile,
    disk: SimDisk,
}

impl Disk for SimDisk {
    type File = SimFile;

    async fn open(&self, path: &str, create: bool) -> io::Result<SimFile> {
        Ok(SimFile {
            inner: self.mem.open(path, create).await?,
            disk: self.clone(),
        })
    }

    async fn create_dir_all(&self, dir: &str) -> io::Result<()> {
        self.mem.create_dir_all(dir).await
    }

    async fn list_dir(&self, dir: &str) -> io::Result<Vec<String>> {
        self.mem.list_dir(dir).await
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.mem.rename(from, to).await
    }

    async fn remove_file(&self, path: &str) -> io::Result<()> {
        self.mem.remove_file(path).await
    }

    async fn sync_dir(&self, dir: &str) -> io::Result<()> {
        self.sync_delay().await;
        self.mem.sync_dir(dir).await
    }

    async fn exists(&self, path: &str) -> io::Result<bool> {
        self.mem.exists(path).await
    }
}

impl DiskFile for SimFile {
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
        self.disk.sync_delay().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hdd_syncs_are_slower_than_ssd_syncs_and_seeded() {
        let draw = |p: DiskProfile, seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..200)
                .map(|_| p.sync_latency(&mut rng))
                .collect::<Vec<_>>()
        };
        let ssd = draw(DiskProfile::Ssd, 1);
        let hdd = draw(DiskProfile::Hdd, 1);
        assert_eq!(hdd, draw(DiskProfile::Hdd, 1));
        assert!(ssd.iter().max() < hdd.iter().min());
    }

    #[cfg(not(madsim))]
    #[tokio::test]
    async fn power_loss_drops_unsynced_bytes_and_keeps_synced_ones() {
        {
            let disk = SimDisk::new(DiskProfile::Ssd, 7);
            let mut f = disk.open("a", true).await.expect("open");
            f.write_at(0, b"durable").await.expect("write");
            f.sync_data().await.expect("sync");
            disk.sync_dir("").await.expect("sync dir");
            f.write_at(7, &[b'x'; 4096]).await.expect("write");
            let clone = disk.clone();
            clone.power_loss(3);
            let data = disk.read_all("a").await.expect("read");
            assert!(data.starts_with(b"durable"));
            assert!(data.len() <= 7 + 4096);
        }
    }
}
