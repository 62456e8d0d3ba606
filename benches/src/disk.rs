//! Per-disk measurements: which directories to measure (`DETCD_BENCH_DISKS`), raw
//! `fdatasync` and WAL append latency on each, the pass/fail verdict against etcd's
//! disk guidance, detcd's end-to-end put latency with its data on that disk (a
//! single-member detcd started in this process, [`crate::e2e`]), and the report with an
//! SVG latency plot: the physical limit next to what detcd achieves.
//!
//! It does not measure other servers; `detcd-bench compare --data-root` does.

use crate::bodies::{BodyError, SyncProbe, WAL_VALUE_BYTES, WalBench};
use crate::e2e::{E2E_VALUE_BYTES, E2eCluster};
use crate::stats::{Latencies, StatsError, Summary};
use crate::svg::{Series, cdf_svg};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Environment variable naming the disks to measure: `name=path,name=path`.
pub const DISKS_ENV: &str = "DETCD_BENCH_DISKS";

/// etcd's guidance: the 99th percentile of WAL fsync latency should stay below this.
pub const WAL_FSYNC_US_P99_MAX: u64 = 10_000;

/// Puts sent before the timed ones of [`measure_put`] (connections, first WAL segment).
pub const PUT_WARMUP_OPS: usize = 50;

/// Errors of the disk measurements.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// `DETCD_BENCH_DISKS` is malformed.
    #[error("{DISKS_ENV}: entry {entry:?} is not name=path")]
    BadSpec {
        /// The offending entry.
        entry: String,
    },
    /// A named directory is missing or not a directory.
    #[error("{DISKS_ENV}: disk {name} path {path} is not a directory")]
    NotADirectory {
        /// Disk name.
        name: String,
        /// Its path.
        path: PathBuf,
    },
    /// A measurement failed.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// Histogram trouble.
    #[error(transparent)]
    Stats(#[from] StatsError),
    /// A file operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// One disk to measure: a name for reports and a directory on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchDisk {
    /// Name used in reports (`ssd`, `hdd`, `tmp`).
    pub name: String,
    /// A directory on the disk; benches create their files under it.
    pub path: PathBuf,
}

/// Parses a `name=path,...` list. Empty entries are skipped; an entry without `=`,
/// with an empty name or an empty path is an error.
pub fn parse_disks(spec: &str) -> Result<Vec<BenchDisk>, DiskError> {
    spec.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| match entry.split_once('=') {
            Some((name, path)) if !name.trim().is_empty() && !path.trim().is_empty() => {
                Ok(BenchDisk {
                    name: name.trim().to_string(),
                    path: PathBuf::from(path.trim()),
                })
            }
            _ => Err(DiskError::BadSpec {
                entry: entry.to_string(),
            }),
        })
        .collect()
}

/// The disks from `DETCD_BENCH_DISKS`, each checked to be a directory; with the
/// variable unset or empty, one disk named `tmp` at the system temp directory.
pub fn disks_from_env() -> Result<Vec<BenchDisk>, DiskError> {
    let spec = std::env::var(DISKS_ENV).unwrap_or_default();
    let disks = parse_disks(&spec)?;
    if disks.is_empty() {
        return Ok(vec![BenchDisk {
            name: "tmp".into(),
            path: std::env::temp_dir(),
        }]);
    }
    for d in &disks {
        if !d.path.is_dir() {
            return Err(DiskError::NotADirectory {
                name: d.name.clone(),
                path: d.path.clone(),
            });
        }
    }
    Ok(disks)
}

/// What one disk measured.
#[derive(Clone, Debug, Serialize)]
pub struct DiskResult {
    /// Disk name.
    pub disk: String,
    /// Directory measured.
    pub path: PathBuf,
    /// Raw `fdatasync` of a rewritten 4 KiB block.
    pub fdatasync: Summary,
    /// WAL append of one 256-byte record plus sync.
    pub wal_append_sync: Summary,
    /// Whether `wal_append_sync` p99 is under [`WAL_FSYNC_US_P99_MAX`].
    pub pass: bool,
    /// detcd's put latency, one client with one put in flight, its data on this disk
    /// (measured by [`measure_put`]; `None` until then).
    pub detcd_put_1x1: Option<Summary>,
    /// Histograms, kept for the plot.
    #[serde(skip)]
    pub hists: Vec<(String, Latencies)>,
}

/// Measures `samples` raw fdatasyncs and `samples` single-record WAL append+syncs in a
/// fresh temp directory under `disk.path`.
pub fn measure_disk(disk: &BenchDisk, samples: usize) -> Result<DiskResult, DiskError> {
    let dir = tempfile::Builder::new()
        .prefix("detcd-bench-")
        .tempdir_in(&disk.path)?;
    let mut raw = Latencies::new()?;
    let mut probe = SyncProbe::create(dir.path())?;
    let started = Instant::now();
    for _ in 0..samples {
        raw.record(probe.write_sync()?);
    }
    let raw_elapsed = started.elapsed();

    let wal_dir = dir.path().join("wal");
    std::fs::create_dir(&wal_dir)?;
    let mut wal = WalBench::open(&wal_dir, WAL_VALUE_BYTES)?;
    let (wal_lat, wal_elapsed) = time_each(samples, || wal.append_sync(1).map(drop))?;
    let wal_summary = wal_lat.summary("wal append+sync (1 x 256 B)", wal_elapsed, 0);
    Ok(DiskResult {
        disk: disk.name.clone(),
        path: disk.path.clone(),
        fdatasync: raw.summary("fdatasync (4 KiB rewrite)", raw_elapsed, 0),
        pass: wal_summary.latency_us_p99 < WAL_FSYNC_US_P99_MAX,
        wal_append_sync: wal_summary,
        detcd_put_1x1: None,
        hists: vec![
            ("fdatasync".into(), raw),
            ("wal append+sync".into(), wal_lat),
        ],
    })
}

/// Adds to `r` detcd's end-to-end put latency on its disk: a single-member detcd in this
/// process with its data directory in a fresh temp directory on the disk, one client
/// over loopback gRPC sending `samples` puts of [`E2E_VALUE_BYTES`]-byte values one
/// after another (each answered after fdatasync and apply), after
/// [`PUT_WARMUP_OPS`] untimed ones.
pub fn measure_put(r: &mut DiskResult, samples: usize) -> Result<(), DiskError> {
    let dir = tempfile::Builder::new()
        .prefix("detcd-bench-put-")
        .tempdir_in(&r.path)?;
    let mut cluster = E2eCluster::start(dir.path(), 1)?;
    for _ in 0..PUT_WARMUP_OPS {
        cluster.put_batch(1)?;
    }
    let (lat, elapsed) = time_each(samples, || cluster.put_batch(1).map(drop))?;
    drop(cluster);
    r.detcd_put_1x1 = Some(lat.summary(
        &format!("detcd put 1x1 ({E2E_VALUE_BYTES} B values)"),
        elapsed,
        0,
    ));
    r.hists.push(("detcd put 1x1".into(), lat));
    Ok(())
}

/// Times `samples` calls of `call` one after another: their latencies and the time
/// they took in all.
fn time_each(
    samples: usize,
    mut call: impl FnMut() -> Result<(), BodyError>,
) -> Result<(Latencies, Duration), DiskError> {
    let mut lat = Latencies::new()?;
    let started = Instant::now();
    for _ in 0..samples {
        let t = Instant::now();
        call()?;
        lat.record(t.elapsed());
    }
    Ok((lat, started.elapsed()))
}

/// The disk-check verdict line for one result.
pub fn verdict_line(r: &DiskResult) -> String {
    format!(
        "{} {} ({}): WAL append+sync p99 {:.3} ms (limit {:.1} ms), fdatasync p99 {:.3} ms",
        if r.pass { "PASS" } else { "FAIL" },
        r.disk,
        r.path.display(),
        r.wal_append_sync.latency_us_p99 as f64 / 1000.0,
        WAL_FSYNC_US_P99_MAX as f64 / 1000.0,
        r.fdatasync.latency_us_p99 as f64 / 1000.0,
    )
}

/// Writes `report.json` and `latency.svg` (one CDF curve per disk and measurement)
/// into `out_dir`, returning the SVG path.
pub fn write_report(results: &[DiskResult], out_dir: &Path) -> Result<PathBuf, DiskError> {
    std::fs::create_dir_all(out_dir)?;
    let json = serde_json::to_string_pretty(results).map_err(std::io::Error::other)?;
    std::fs::write(out_dir.join("report.json"), json)?;
    let series: Vec<Series> = results
        .iter()
        .flat_map(|r| {
            r.hists.iter().map(|(what, h)| Series {
                label: format!("{} {}", r.disk, what),
                points: h.cdf_points(),
            })
        })
        .collect();
    let svg_path = out_dir.join("latency.svg");
    std::fs::write(&svg_path, cdf_svg("Disk latency (CDF)", &series))?;
    Ok(svg_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_named_disks_and_rejects_bad_entries() {
        let d = parse_disks("ssd=/mnt/nvme, hdd=/mnt/disk,").expect("valid");
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].name, "hdd");
        assert_eq!(d[1].path, PathBuf::from("/mnt/disk"));
        assert!(parse_disks("").expect("empty").is_empty());
        for bad in ["ssd", "=/x", "ssd=", "a=/x,b"] {
            assert!(parse_disks(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn measures_a_temp_disk_and_writes_a_report() {
        let root = tempfile::tempdir().expect("tempdir");
        let disk = BenchDisk {
            name: "t".into(),
            path: root.path().to_path_buf(),
        };
        let mut r = measure_disk(&disk, 20).expect("measure");
        assert_eq!(r.fdatasync.ops, 20);
        assert_eq!(r.wal_append_sync.ops, 20);
        assert_eq!(
            r.pass,
            r.wal_append_sync.latency_us_p99 < WAL_FSYNC_US_P99_MAX
        );
        assert!(verdict_line(&r).contains("WAL append+sync p99"));
        assert!(r.detcd_put_1x1.is_none());
        measure_put(&mut r, 5).expect("detcd put");
        let put = r.detcd_put_1x1.as_ref().expect("put summary");
        assert_eq!(put.ops, 5);
        assert!(put.latency_us_p50 > 0);
        let out = root.path().join("out");
        let svg = write_report(&[r], &out).expect("report");
        let text = std::fs::read_to_string(svg).expect("svg");
        assert!(text.starts_with("<svg") && text.contains("t fdatasync"));
        assert!(text.contains("t detcd put 1x1"));
        assert!(out.join("report.json").exists());
    }
}
