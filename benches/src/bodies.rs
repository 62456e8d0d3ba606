//! Benchmark bodies shared by the criterion benches (`benches/benches/micro.rs`), the
//! smoke test that runs each once, and the disk report.
//!
//! Each body does one unit of work and returns something a caller can check, so a
//! broken body fails its test instead of timing nothing. The end-to-end body (puts
//! through a 1-member or 3-member loopback cluster) is [`crate::e2e`].
//! Simulator time compression needs a `--cfg madsim` build, so its bench lives in the
//! simulator's crate (`scenarios/benches/sim_time.rs`, run by `ci/sim-bench`).

use detcd_checker::etcd;
use detcd_checker::generate::{GenConfig as EtcdGenConfig, generate};
use detcd_checker::history::History;
use detcd_checker::models::generate::{GenConfig, register_history};
use detcd_checker::models::{CasRegister, Keyed, RegisterOp, RegisterOutput};
use detcd_checker::verdict::Verdict;
use detcd_checker::wgl::{Operation, Outcome, check};
use detcd_engine::raft::Config;
use detcd_engine::raft::harness::Cluster;
use detcd_engine::storage::{FsDisk, Wal, WalError, WalOptions};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Value size of the WAL benches, in bytes (as the issue asks).
pub const WAL_VALUE_BYTES: usize = 256;

/// Batch sizes the WAL benches run.
pub const WAL_BATCH_SIZES: [usize; 3] = [1, 8, 64];

/// Payload of each Raft proposal in the core throughput bench, in bytes.
pub const RAFT_PAYLOAD_BYTES: usize = 128;

/// Step budget of the checker bench (never reached by the generated histories).
pub const CHECKER_STEP_BUDGET: u64 = 100_000_000;

/// Errors of the bench bodies.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The WAL failed.
    #[error("wal: {0}")]
    Wal(#[from] WalError),
    /// A plain file operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The Raft harness refused (no leader, bad config).
    #[error("raft: {0}")]
    Raft(String),
    /// A body's result was not what it must be.
    #[error("bench body check failed: {0}")]
    Check(String),
}

/// A WAL on a real directory plus the runtime that drives its async calls.
pub struct WalBench {
    runtime: tokio::runtime::Runtime,
    wal: Wal<FsDisk>,
    payload: Vec<u8>,
}

impl WalBench {
    /// Opens (creating) a WAL in `dir` with default options; payloads are
    /// `value_bytes` long.
    pub fn open(dir: &Path, value_bytes: usize) -> Result<Self, BodyError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let disk = FsDisk::new(dir)?;
        let (wal, _replay) = runtime.block_on(Wal::open(disk, WalOptions::default()))?;
        Ok(WalBench {
            runtime,
            wal,
            payload: vec![b'v'; value_bytes],
        })
    }

    /// Appends `batch` records and syncs once (group commit). Returns the sequence
    /// number of the last record, which is durable when this returns.
    pub fn append_sync(&mut self, batch: usize) -> Result<u64, BodyError> {
        let payloads: Vec<&[u8]> = (0..batch).map(|_| self.payload.as_slice()).collect();
        let WalBench { runtime, wal, .. } = self;
        let last = runtime.block_on(wal.append_sync(&payloads))?;
        if wal.synced_before() <= last {
            return Err(BodyError::Check(format!(
                "record {last} not durable after append_sync (synced before {})",
                wal.synced_before()
            )));
        }
        Ok(last)
    }
}

/// A file for timing raw `fdatasync`: each call overwrites the same block, so it
/// measures the device's flush, not file growth.
pub struct SyncProbe {
    file: File,
    block: Vec<u8>,
}

/// Size of the block [`SyncProbe`] rewrites before each sync, in bytes.
pub const SYNC_PROBE_BLOCK_BYTES: usize = 4096;

impl SyncProbe {
    /// Creates the probe file in `dir`.
    pub fn create(dir: &Path) -> Result<Self, BodyError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(dir.join("fdatasync-probe"))?;
        let mut probe = SyncProbe {
            file,
            block: vec![0u8; SYNC_PROBE_BLOCK_BYTES],
        };
        probe.write_sync()?;
        Ok(probe)
    }

    /// Rewrites the block and calls `fdatasync`; returns how long the sync took.
    pub fn write_sync(&mut self) -> Result<Duration, BodyError> {
        use std::io::{Seek, SeekFrom};
        self.block[0] = self.block[0].wrapping_add(1);
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&self.block)?;
        let started = Instant::now();
        self.file.sync_data()?;
        Ok(started.elapsed())
    }
}

/// A 3-node in-memory Raft cluster with an elected leader, ready for
/// [`raft_proposals`].
pub fn raft_cluster() -> Result<Cluster, BodyError> {
    let mut c =
        Cluster::new(&[1, 2, 3], Config::new).map_err(|e| BodyError::Raft(e.to_string()))?;
    if let Some(raw) = c.raw_mut(1) {
        raw.campaign();
    }
    c.settle(1);
    c.deliver_all(usize::MAX);
    if c.leader().is_none() {
        return Err(BodyError::Raft("no leader after campaign".into()));
    }
    Ok(c)
}

/// Proposes `count` entries at the leader and delivers until every node applied them.
/// Returns how far the commit index moved, which must be at least `count`.
pub fn raft_proposals(c: &mut Cluster, count: usize) -> Result<u64, BodyError> {
    let before = c.max_committed();
    let commit = c
        .run_proposals(count, RAFT_PAYLOAD_BYTES)
        .map_err(|e| BodyError::Raft(e.to_string()))?;
    let moved = commit.saturating_sub(before);
    if moved < count as u64 {
        return Err(BodyError::Check(format!(
            "{count} proposals moved the commit index by only {moved}"
        )));
    }
    Ok(moved)
}

/// A generated cas-register history of about `ops` operations from 5 clients with
/// 1.5% unknown outcomes, for [`checker_wgl`].
pub fn cas_history(ops: usize) -> Vec<Operation<Keyed<RegisterOp>, RegisterOutput>> {
    register_history(&GenConfig::new(1, ops, 5, 15), true)
}

/// Checks `history` with the Wing-Gong-Lowe cas-register search; a generated history
/// must be linearizable, so anything but OK is an error.
pub fn checker_wgl(
    history: &[Operation<Keyed<RegisterOp>, RegisterOutput>],
) -> Result<usize, BodyError> {
    match check(&CasRegister, history, CHECKER_STEP_BUDGET) {
        Outcome::Ok => Ok(history.len()),
        other => Err(BodyError::Check(format!(
            "generated history judged {}",
            other.verdict()
        ))),
    }
}

/// A generated etcd history of `ops` client operations (8 clients, 10 keys, 1% unknown
/// writes, watches, leases and compactions: the generator's defaults), for
/// [`checker_etcd`].
pub fn etcd_history(ops: usize) -> History {
    generate(&EtcdGenConfig {
        seed: 1,
        ops,
        ..EtcdGenConfig::default()
    })
}

/// Checks `history` with the etcd revision checker; a generated history is correct by
/// construction, so anything but OK is an error. Returns the operations checked.
pub fn checker_etcd(history: &History) -> Result<usize, BodyError> {
    match etcd::check(history, &etcd::Options::default()) {
        Verdict::Ok => Ok(history.ops.len()),
        other => Err(BodyError::Check(format!(
            "generated etcd history judged {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_body_runs_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = WalBench::open(dir.path(), WAL_VALUE_BYTES).expect("open wal");
        let mut expected_last = 0;
        for batch in WAL_BATCH_SIZES {
            expected_last += batch as u64;
            assert_eq!(wal.append_sync(batch).expect("append"), expected_last);
        }
        let mut probe = SyncProbe::create(dir.path()).expect("probe");
        assert!(probe.write_sync().expect("sync") < Duration::from_secs(30));

        let mut c = raft_cluster().expect("cluster");
        assert!(raft_proposals(&mut c, 200).expect("proposals") >= 200);

        let h = cas_history(500);
        assert!(h.len() > 300);
        assert_eq!(checker_wgl(&h).expect("check"), h.len());
    }

    #[test]
    fn checker_body_rejects_a_non_linearizable_history() {
        // A read of a value nobody wrote cannot be linearized.
        let mut h = cas_history(50);
        let bad = h
            .iter_mut()
            .find(|op| matches!(op.output, Some(RegisterOutput::Read(_))))
            .expect("a read in 50 ops");
        bad.output = Some(RegisterOutput::Read(Some(-12345)));
        assert!(checker_wgl(&h).is_err());
    }

    #[test]
    fn etcd_checker_body_accepts_generated_and_rejects_broken() {
        let h = etcd_history(300);
        assert_eq!(checker_etcd(&h).expect("check"), h.ops.len());
        let cfg = EtcdGenConfig {
            seed: 1,
            ops: 300,
            ..EtcdGenConfig::default()
        };
        let bad = detcd_checker::generate::generate_mutated(
            &cfg,
            detcd_checker::generate::Mutation::LostWrite,
        )
        .expect("a write to lose in 300 ops");
        assert!(checker_etcd(&bad).is_err());
    }
}
