//! The single-stream fsync bound of `detcd-bench compare`: is one client's put rate
//! within 10% of the raw `fdatasync` rate of the same disk?
//!
//! The disk's sync rate drifts by orders of magnitude from minute to minute on a shared
//! host, so one probe before and one after the servers says nothing. Instead the raw
//! probes and each server's 1-connection, 1-client put load run in short alternating
//! windows ([`schedule`]); every round yields one ratio server rate / raw rate measured
//! seconds apart, and the verdict uses the median of those ratios ([`Spread`],
//! [`verdict`]).
//!
//! Two raw probes run per round: a 4 KiB rewrite + `fdatasync` of one block
//! ([`SyncProbe`]) and an append of a [`WAL_PROBE_RECORD_BYTES`]-byte record +
//! `fdatasync` to a preallocated file ([`AppendProbe`]), which is what a WAL does for
//! one put. The verdict uses the append probe; the rewrite ratio is shown alongside.
//!
//! A put's latency is at least one sync plus one request round trip, and over loopback
//! gRPC that round trip is not small next to a fast disk's sync. So each round also
//! times each server's 1×1 serializable range (no disk, no consensus: the request
//! floor) and reports, per server, the ceiling the floor leaves for put / raw append
//! (`floor / (floor + append)` in rates) and how close the put comes to the reachable
//! rate `1 / (1/append + 1/floor)`. These explain a FAIL; they do not change the verdict.
//! Each round also times the ideal server ([`crate::ideal_server`]: a loopback TCP round
//! trip around the same append + `fdatasync`, no protocol at all): its rate over the raw
//! append rate is the physical edge of the ratio on this host, for any server.
//! This module does not start servers or choose workloads; `compare` does.

use crate::bodies::{BodyError, SYNC_PROBE_BLOCK_BYTES, SyncProbe};
use crate::ideal_server::IdealServer;
use crate::stats::{Latencies, StatsError, Summary};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Smallest median ratio server / raw append rate that passes (within 10% of raw).
pub const BOUND_RATIO_MIN: f64 = 0.9;

/// Median ratio above which a server outran the raw probe: the probe then did not
/// bound that disk's sync path in this run, and a PASS says nothing.
pub const PROBE_OUTRUN_RATIO_MIN: f64 = 1.1;

/// Size of one record the append probe writes before each sync, in bytes (a put of a
/// 256-byte value with its framing).
pub const WAL_PROBE_RECORD_BYTES: usize = 512;

/// Size the append probe preallocates (zero-filled and synced once), in bytes; it
/// wraps to the start when full, so no sync ever has to extend the file.
pub const WAL_PROBE_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// One measurement window of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Window {
    /// 4 KiB rewrite + fdatasync of one block.
    RawRewrite,
    /// Record append + fdatasync to a preallocated file.
    RawAppend,
    /// The ideal server: one loopback TCP round trip around a record append + fdatasync.
    Ideal,
    /// Put load, 1 connection and 1 client, on server `i` (0 = a, 1 = b).
    Server(usize),
    /// Serializable range load, 1 connection and 1 client, on server `i`: its request
    /// round trip without disk or consensus.
    Floor(usize),
}

/// The windows of each of `rounds` rounds with `servers` servers: every window kind
/// once per round, in forward order on even rounds and reversed on odd ones, so a
/// steady drift of the disk favours no window kind over the whole run.
pub fn schedule(rounds: usize, servers: usize) -> Vec<Vec<Window>> {
    let mut forward = vec![Window::RawRewrite, Window::RawAppend, Window::Ideal];
    forward.extend((0..servers).map(Window::Server));
    forward.extend((0..servers).map(Window::Floor));
    (0..rounds)
        .map(|r| {
            let mut w = forward.clone();
            if r % 2 == 1 {
                w.reverse();
            }
            w
        })
        .collect()
}

/// A file for timing WAL-like appends: preallocated and zero-filled, each call writes
/// the next record and calls `fdatasync`.
pub struct AppendProbe {
    file: File,
    record: Vec<u8>,
    offset: u64,
}

impl AppendProbe {
    /// Creates and preallocates the probe file in `dir`.
    pub fn create(dir: &Path) -> Result<Self, BodyError> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(dir.join("append-probe"))?;
        let chunk = vec![0u8; 1024 * 1024];
        let mut written = 0u64;
        while written < WAL_PROBE_FILE_BYTES {
            file.write_all(&chunk)?;
            written += chunk.len() as u64;
        }
        file.sync_all()?;
        Ok(AppendProbe {
            file,
            record: vec![0u8; WAL_PROBE_RECORD_BYTES],
            offset: 0,
        })
    }

    /// Writes the next record and calls `fdatasync`.
    pub fn append_sync(&mut self) -> Result<(), BodyError> {
        if self.offset + WAL_PROBE_RECORD_BYTES as u64 > WAL_PROBE_FILE_BYTES {
            self.offset = 0;
        }
        self.record[0] = self.record[0].wrapping_add(1);
        self.file.seek(SeekFrom::Start(self.offset))?;
        self.file.write_all(&self.record)?;
        self.file.sync_data()?;
        self.offset += WAL_PROBE_RECORD_BYTES as u64;
        Ok(())
    }
}

/// Both raw probes and the ideal server, created once in a fresh directory and reused
/// by every window.
pub struct RawProbes {
    rewrite: SyncProbe,
    append: AppendProbe,
    ideal: IdealServer,
    // Last: the files go after the ideal server has stopped.
    _dir: tempfile::TempDir,
}

impl RawProbes {
    /// Creates both probe files in a fresh directory under `data_root`.
    pub fn create(data_root: &Path) -> Result<Self, BodyError> {
        let dir = tempfile::Builder::new()
            .prefix("fsync-bound-")
            .tempdir_in(data_root)?;
        let ideal_dir = dir.path().join("ideal");
        std::fs::create_dir(&ideal_dir)?;
        Ok(RawProbes {
            rewrite: SyncProbe::create(dir.path())?,
            append: AppendProbe::create(dir.path())?,
            ideal: IdealServer::start(&ideal_dir)?,
            _dir: dir,
        })
    }

    /// Runs one raw window (`RawRewrite`, `RawAppend` or `Ideal`) for `window`; `None`
    /// for a server window.
    pub fn run(&mut self, kind: Window, window: Duration) -> Option<Result<Summary, BoundError>> {
        let name = match kind {
            Window::RawRewrite => "raw rewrite",
            Window::RawAppend => "raw append",
            Window::Ideal => "ideal server",
            Window::Server(_) | Window::Floor(_) => return None,
        };
        Some(self.run_raw(kind, name, window))
    }

    fn run_raw(
        &mut self,
        kind: Window,
        name: &str,
        window: Duration,
    ) -> Result<Summary, BoundError> {
        let mut lat = Latencies::new()?;
        let started = Instant::now();
        while started.elapsed() < window {
            let t = Instant::now();
            match kind {
                Window::RawRewrite => {
                    self.rewrite.write_sync()?;
                }
                Window::Ideal => self.ideal.request()?,
                _ => self.append.append_sync()?,
            }
            lat.record(t.elapsed());
        }
        Ok(lat.summary(name, started.elapsed(), 0))
    }
}

/// Errors of the bound measurement.
#[derive(Debug, thiserror::Error)]
pub enum BoundError {
    /// A raw probe failed.
    #[error("raw fdatasync probe: {0}")]
    Probe(#[from] BodyError),
    /// A probe file could not be written.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The latency histogram failed.
    #[error("{0}")]
    Stats(#[from] StatsError),
}

/// The measured rates of one round, in operations per second.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Round {
    /// Raw 4 KiB rewrite + fdatasync rate.
    pub raw_rewrite_qps: f64,
    /// Raw record append + fdatasync rate.
    pub raw_append_qps: f64,
    /// The ideal server's rate (one client).
    pub ideal_qps: f64,
    /// Each server's 1×1 put rate, in server order.
    pub server_qps: Vec<f64>,
    /// Each server's 1×1 serializable range rate (its request floor), in server order.
    pub floor_qps: Vec<f64>,
}

/// The put rate one client could reach with a sync at `append` per second and a
/// request round trip at `floor` per second done one after the other; NaN without both.
pub fn reachable(append: f64, floor: f64) -> f64 {
    if append > 0.0 && floor > 0.0 {
        1.0 / (1.0 / append + 1.0 / floor)
    } else {
        f64::NAN
    }
}

/// Median, quartiles and extremes of a set of ratios (NaN entries dropped).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Spread {
    /// Ratios that entered (finite ones).
    pub n: usize,
    /// Median.
    pub median: f64,
    /// Lower quartile (nearest rank).
    pub p25: f64,
    /// Upper quartile (nearest rank).
    pub p75: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

/// `x / y`, NaN when `y` is not positive (a window with no completed sync).
pub fn ratio(x: f64, y: f64) -> f64 {
    if y > 0.0 { x / y } else { f64::NAN }
}

/// The spread of `values` (non-finite ones dropped); `None` when none is left. The
/// median of an even count is the mean of the two middle values.
pub fn spread(values: &[f64]) -> Option<Spread> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let rank = |q: f64| v[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    Some(Spread {
        n,
        median,
        p25: rank(0.25),
        p75: rank(0.75),
        min: v[0],
        max: v[n - 1],
    })
}

/// PASS when the median ratio is at least [`BOUND_RATIO_MIN`]; `None` (no verdict)
/// without a finite ratio.
pub fn verdict(s: Option<&Spread>) -> Option<bool> {
    s.map(|s| s.median >= BOUND_RATIO_MIN)
}

/// One server's ratios over all rounds.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ServerBound {
    /// Server name.
    pub name: String,
    /// Per-round 1×1 put rate / raw append rate.
    pub ratios_append: Vec<f64>,
    /// Per-round 1×1 put rate / raw rewrite rate.
    pub ratios_rewrite: Vec<f64>,
    /// Spread of `ratios_append` (the verdict's).
    pub append: Option<Spread>,
    /// Spread of `ratios_rewrite`.
    pub rewrite: Option<Spread>,
    /// Median append ratio ≥ [`BOUND_RATIO_MIN`]; `None` without data.
    pub pass: Option<bool>,
    /// Per-round best possible put / raw append given this server's request floor.
    pub ceilings_append: Vec<f64>,
    /// Spread of `ceilings_append`.
    pub ceiling: Option<Spread>,
    /// Per-round put rate / [`reachable`] rate (raw append and this server's floor).
    pub ratios_reachable: Vec<f64>,
    /// Spread of `ratios_reachable`.
    pub reachable: Option<Spread>,
}

/// The interleaved bound measurement: the rounds and each server's ratios.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BoundReport {
    /// Length of one window, in milliseconds.
    pub window_ms: u64,
    /// Measured rounds.
    pub rounds: Vec<Round>,
    /// Per server, in order.
    pub servers: Vec<ServerBound>,
    /// Per-round ideal server rate / raw append rate: the physical edge of the ratio.
    pub ratios_ideal: Vec<f64>,
    /// Spread of `ratios_ideal`.
    pub ideal: Option<Spread>,
}

impl BoundReport {
    /// Derives the per-round ratios, spreads and verdicts from measured rounds.
    pub fn from_rounds(names: &[String], window_ms: u64, rounds: Vec<Round>) -> Self {
        let servers = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let per = |raw: fn(&Round) -> f64| -> Vec<f64> {
                    rounds
                        .iter()
                        .map(|r| ratio(r.server_qps.get(i).copied().unwrap_or(f64::NAN), raw(r)))
                        .collect()
                };
                let ratios_append = per(|r| r.raw_append_qps);
                let ratios_rewrite = per(|r| r.raw_rewrite_qps);
                let append = spread(&ratios_append);
                let floor = |r: &Round| r.floor_qps.get(i).copied().unwrap_or(f64::NAN);
                let ceilings_append: Vec<f64> = rounds
                    .iter()
                    .map(|r| ratio(reachable(r.raw_append_qps, floor(r)), r.raw_append_qps))
                    .collect();
                let ratios_reachable: Vec<f64> = rounds
                    .iter()
                    .map(|r| {
                        ratio(
                            r.server_qps.get(i).copied().unwrap_or(f64::NAN),
                            reachable(r.raw_append_qps, floor(r)),
                        )
                    })
                    .collect();
                ServerBound {
                    name: name.clone(),
                    pass: verdict(append.as_ref()),
                    ceiling: spread(&ceilings_append),
                    ceilings_append,
                    reachable: spread(&ratios_reachable),
                    ratios_reachable,
                    rewrite: spread(&ratios_rewrite),
                    append,
                    ratios_append,
                    ratios_rewrite,
                }
            })
            .collect();
        let ratios_ideal: Vec<f64> = rounds
            .iter()
            .map(|r| ratio(r.ideal_qps, r.raw_append_qps))
            .collect();
        BoundReport {
            window_ms,
            ideal: spread(&ratios_ideal),
            ratios_ideal,
            rounds,
            servers,
        }
    }

    /// The report as text: one line per round, then per server the median and spread of
    /// both ratios and the verdict.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "\nsingle-stream fsync bound: {} rounds of {} ms windows (raw rewrite {} B, raw append {} B into a preallocated file, put 1x1 per server)\n",
            self.rounds.len(),
            self.window_ms,
            SYNC_PROBE_BLOCK_BYTES,
            WAL_PROBE_RECORD_BYTES
        );
        out.push_str(&format!(
            "{:<6} {:>12} {:>12} {:>12}",
            "round", "rewrite/s", "append/s", "ideal/s"
        ));
        for s in &self.servers {
            out.push_str(&format!(
                " {:>12} {:>8}",
                format!("{}/s", s.name),
                "/append"
            ));
        }
        out.push('\n');
        for (k, r) in self.rounds.iter().enumerate() {
            out.push_str(&format!(
                "{:<6} {:>12.1} {:>12.1} {:>12.1}",
                k, r.raw_rewrite_qps, r.raw_append_qps, r.ideal_qps
            ));
            for (i, s) in self.servers.iter().enumerate() {
                out.push_str(&format!(
                    " {:>12.1} {:>8.2}",
                    r.server_qps.get(i).copied().unwrap_or(f64::NAN),
                    s.ratios_append.get(k).copied().unwrap_or(f64::NAN)
                ));
            }
            out.push('\n');
        }
        let fmt = |s: &Option<Spread>| match s {
            Some(s) => format!(
                "median {:.2} (p25 {:.2}, p75 {:.2}, min {:.2}, max {:.2}, n {})",
                s.median, s.p25, s.p75, s.min, s.max, s.n
            ),
            None => "no data".to_string(),
        };
        out.push_str(&format!(
            "ideal server (loopback TCP round trip around the same append + fdatasync, no protocol) / raw append: {}\n",
            fmt(&self.ideal)
        ));
        for s in &self.servers {
            out.push_str(&format!(
                "{} put 1x1 / raw append:  {}\n{} put 1x1 / raw rewrite: {}\n",
                s.name,
                fmt(&s.append),
                s.name,
                fmt(&s.rewrite)
            ));
        }
        for (i, s) in self.servers.iter().enumerate() {
            let floors: Vec<f64> = self
                .rounds
                .iter()
                .map(|r| r.floor_qps.get(i).copied().unwrap_or(f64::NAN))
                .collect();
            let floor = spread(&floors).map_or(f64::NAN, |f| f.median);
            out.push_str(&format!(
                "{} request floor (1x1 serializable range): median {:.1}/s, {:.3} ms; best put 1x1 / raw append it allows: {}\n{} put 1x1 / reachable (raw append then the floor, in series): {}\n",
                s.name,
                floor,
                1000.0 / floor,
                fmt(&s.ceiling),
                s.name,
                fmt(&s.reachable)
            ));
        }
        for s in &self.servers {
            let v = match s.pass {
                Some(true) => "PASS",
                Some(false) => "FAIL",
                None => "NO DATA",
            };
            out.push_str(&format!(
                "{v}: {} median put 1x1 / raw append {} {BOUND_RATIO_MIN}\n",
                s.name,
                match s.append {
                    Some(a) => format!(
                        "{:.2} {}",
                        a.median,
                        if a.median >= BOUND_RATIO_MIN {
                            ">="
                        } else {
                            "<"
                        }
                    ),
                    None => "n/a vs".to_string(),
                }
            ));
        }
        if self
            .servers
            .iter()
            .any(|s| s.append.is_some_and(|a| a.median > PROBE_OUTRUN_RATIO_MIN))
        {
            out.push_str(&format!(
                "WARNING: a server outran the raw append probe (median > {PROBE_OUTRUN_RATIO_MIN}): the probe did not bound this disk's sync path in this run; the verdict is not meaningful\n"
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_has_every_window_once_per_round_alternating_order() {
        let s = schedule(3, 2);
        assert_eq!(s.len(), 3);
        for round in &s {
            let mut sorted = round.clone();
            sorted.sort();
            assert_eq!(
                sorted,
                vec![
                    Window::RawRewrite,
                    Window::RawAppend,
                    Window::Ideal,
                    Window::Server(0),
                    Window::Server(1),
                    Window::Floor(0),
                    Window::Floor(1)
                ]
            );
        }
        assert_eq!(s[0][0], Window::RawRewrite);
        assert_eq!(s[1][0], Window::Floor(1));
        assert_eq!(s[2], s[0]);
        assert!(schedule(0, 2).is_empty());
    }

    #[test]
    fn spread_takes_the_median_and_drops_nan() {
        let s = spread(&[3.0, f64::NAN, 1.0, 2.0]).expect("spread");
        assert_eq!((s.n, s.median, s.min, s.max), (3, 2.0, 1.0, 3.0));
        let even = spread(&[4.0, 1.0, 2.0, 3.0]).expect("spread");
        assert_eq!(even.median, 2.5);
        assert_eq!((even.p25, even.p75), (1.0, 3.0));
        assert!(spread(&[f64::NAN]).is_none());
        assert!(spread(&[]).is_none());
    }

    #[test]
    fn ratio_of_a_dead_window_is_nan() {
        assert!(ratio(5.0, 0.0).is_nan());
        assert_eq!(ratio(5.0, 10.0), 0.5);
    }

    fn rounds(pairs: &[(f64, f64)]) -> Vec<Round> {
        pairs
            .iter()
            .map(|&(raw, server)| Round {
                raw_rewrite_qps: raw * 2.0,
                raw_append_qps: raw,
                ideal_qps: raw * 0.8,
                server_qps: vec![server],
                floor_qps: vec![f64::NAN],
            })
            .collect()
    }

    #[test]
    fn the_request_floor_caps_the_reachable_ratio() {
        // A sync and a round trip that each take 0.1 ms: one client can reach at best
        // half the raw rate, and a server at 0.45 of raw comes within 0.9 of that.
        assert_eq!(reachable(10_000.0, 10_000.0), 5_000.0);
        assert!(reachable(10_000.0, 0.0).is_nan());
        let round = Round {
            raw_rewrite_qps: 12_000.0,
            raw_append_qps: 10_000.0,
            ideal_qps: 8_000.0,
            server_qps: vec![4_500.0],
            floor_qps: vec![10_000.0],
        };
        let r = BoundReport::from_rounds(&["detcd".into()], 1000, vec![round]);
        let s = &r.servers[0];
        assert_eq!(s.ceiling.map(|c| c.median), Some(0.5));
        assert_eq!(s.reachable.map(|c| c.median), Some(0.9));
        assert_eq!(r.ideal.map(|c| c.median), Some(0.8));
        // The verdict still compares against the raw rate alone.
        assert_eq!(s.pass, Some(false));
        let text = r.to_text();
        assert!(text.contains("detcd request floor (1x1 serializable range): median 10000.0/s"));
        assert!(text.contains("best put 1x1 / raw append it allows: median 0.50"));
        assert!(
            text.contains(
                "put 1x1 / reachable (raw append then the floor, in series): median 0.90"
            )
        );
        // Without a floor window there is no ceiling to report.
        let none = BoundReport::from_rounds(&["x".into()], 1000, rounds(&[(100.0, 90.0)]));
        assert!(none.servers[0].ceiling.is_none());
    }

    #[test]
    fn half_the_raw_rate_fails() {
        // Known-bad: the server does half the raw rate in every window.
        let r = BoundReport::from_rounds(
            &["detcd".into()],
            1000,
            rounds(&[(1000.0, 500.0), (300.0, 150.0), (8000.0, 4000.0)]),
        );
        let s = &r.servers[0];
        assert_eq!(s.append.map(|a| a.median), Some(0.5));
        assert_eq!(s.rewrite.map(|a| a.median), Some(0.25));
        assert_eq!(s.pass, Some(false));
        assert!(
            r.to_text()
                .contains("FAIL: detcd median put 1x1 / raw append 0.50 < 0.9")
        );
    }

    #[test]
    fn the_median_ignores_one_outlier_window() {
        // The disk swings between rounds; ratios are per round, so a fast-disk window
        // next to a slow-server window does not decide the verdict.
        let r = BoundReport::from_rounds(
            &["detcd".into()],
            1000,
            rounds(&[(1000.0, 950.0), (300.0, 290.0), (8000.0, 400.0)]),
        );
        let s = &r.servers[0];
        assert_eq!(s.append.map(|a| a.median), Some(0.95));
        assert_eq!(s.pass, Some(true));
        assert!(r.to_text().contains("PASS: detcd"));
        assert!(!r.to_text().contains("WARNING"));
        let outran = BoundReport::from_rounds(&["x".into()], 1000, rounds(&[(400.0, 1600.0)]));
        assert_eq!(outran.servers[0].pass, Some(true));
        assert!(outran.to_text().contains("WARNING: a server outran"));
        let exact = BoundReport::from_rounds(&["x".into()], 1000, rounds(&[(100.0, 90.0)]));
        assert_eq!(exact.servers[0].pass, Some(true));
        let none = BoundReport::from_rounds(&["x".into()], 1000, rounds(&[(0.0, 90.0)]));
        assert_eq!(none.servers[0].pass, None);
    }

    #[test]
    fn raw_windows_measure_both_probes() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut p = RawProbes::create(root.path()).expect("probes");
        for kind in [Window::RawRewrite, Window::RawAppend, Window::Ideal] {
            let s = p
                .run(kind, Duration::from_millis(30))
                .expect("raw window")
                .expect("probe");
            assert!(s.ops > 0 && s.qps > 0.0, "{kind:?}: {s:?}");
        }
        assert!(p.run(Window::Server(0), Duration::from_millis(1)).is_none());
    }

    #[test]
    fn the_append_probe_wraps_without_growing_the_file() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut p = AppendProbe::create(root.path()).expect("probe");
        p.offset = WAL_PROBE_FILE_BYTES - WAL_PROBE_RECORD_BYTES as u64;
        p.append_sync().expect("last");
        p.append_sync().expect("wrapped");
        assert_eq!(p.offset, WAL_PROBE_RECORD_BYTES as u64);
        let len = std::fs::metadata(root.path().join("append-probe"))
            .expect("meta")
            .len();
        assert_eq!(len, WAL_PROBE_FILE_BYTES);
    }
}
