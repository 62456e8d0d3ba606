//! Shared helpers for the storage integration tests: a seeded WAL workload whose every
//! record can be checked after a crash or a power loss.

#![allow(dead_code)]

use std::collections::BTreeMap;

use detcd_engine::storage::{Disk, Preallocation, Wal, WalOptions, WalReplay};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Runs a future to completion on the test thread.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

/// The payload written at `seq` by writer generation `generation`: its length comes
/// from `len`, its bytes from both, so a record from another position or another
/// generation never compares equal.
pub fn payload(seq: u64, generation: u8, len: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seq.wrapping_mul(31).wrapping_add(generation.into()));
    let mut p = vec![0u8; len];
    rng.fill(&mut p[..]);
    if let Some(first) = p.first_mut() {
        *first = generation;
    }
    p
}

/// A seeded shape of workload: batch sizes, record sizes, segment size.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Record counts per batch.
    pub batches: Vec<Vec<usize>>,
    /// Release segments before `acked - release_lag` every this many batches (0: never).
    pub release_every: usize,
    /// See `release_every`.
    pub release_lag: u64,
    /// WAL options.
    pub opts: WalOptions,
}

impl Workload {
    /// A workload with `batches` batches drawn from `seed`.
    pub fn seeded(seed: u64, batches: usize, preallocation: Preallocation) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let batches = (0..batches)
            .map(|_| {
                let n = rng.random_range(1..=4);
                (0..n).map(|_| rng.random_range(0..=200)).collect()
            })
            .collect();
        Self {
            batches,
            release_every: 5,
            release_lag: 6,
            opts: WalOptions {
                segment_bytes: 1024,
                record_bytes_max: 256,
                preallocation,
            },
        }
    }
}

/// What a workload run achieved before it stopped (at the end or at the first error).
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every record appended, by seq.
    pub written: BTreeMap<u64, Vec<u8>>,
    /// Highest seq acknowledged as synced (0: none).
    pub acked: u64,
    /// Highest seq whose batch was fully written to the disk (0: none).
    pub appended: u64,
    /// Highest `release_before` argument that was issued.
    pub released_before: u64,
}

/// Runs `w` on `disk` with writer generation 0, stopping at the first error.
pub async fn run<D: Disk>(disk: &D, w: &Workload) -> Outcome {
    let mut out = Outcome::default();
    let Ok((mut wal, _)) = Wal::open(disk.clone(), w.opts.clone()).await else {
        return out;
    };
    for (i, batch) in w.batches.iter().enumerate() {
        let first = wal.next_seq();
        let payloads: Vec<Vec<u8>> = batch
            .iter()
            .enumerate()
            .map(|(j, len)| payload(first + j as u64, 0, *len))
            .collect();
        for (j, p) in payloads.iter().enumerate() {
            out.written.insert(first + j as u64, p.clone());
        }
        let Ok(last) = wal.append(&payloads).await else {
            return out;
        };
        out.appended = last;
        if wal.sync().await.is_err() {
            return out;
        }
        out.acked = last;
        if w.release_every > 0 && (i + 1) % w.release_every == 0 {
            let before = out.acked.saturating_sub(w.release_lag);
            out.released_before = out.released_before.max(before);
            if wal.release_before(before).await.is_err() {
                return out;
            }
        }
    }
    out
}

/// Checks a replay against what was written: contiguous seqs, every record equal to the
/// one written at its seq, nothing acknowledged (and not released) missing, and nothing
/// after `must_have` missing either. Returns the last replayed seq.
pub fn check_replay(replay: &WalReplay, out: &Outcome, must_have: u64) -> Result<u64, String> {
    let records = &replay.records;
    for pair in records.windows(2) {
        if pair[1].seq != pair[0].seq + 1 {
            return Err(format!("gap between {} and {}", pair[0].seq, pair[1].seq));
        }
    }
    for r in records {
        match out.written.get(&r.seq) {
            Some(p) if *p == r.payload => {}
            Some(_) => return Err(format!("record {} differs from the one written", r.seq)),
            None => return Err(format!("record {} was never written", r.seq)),
        }
    }
    let first = records.first().map_or(u64::MAX, |r| r.seq);
    let last = records.last().map_or(0, |r| r.seq);
    if must_have > 0 && last < must_have {
        return Err(format!(
            "lost records: last is {last}, expected at least {must_have}"
        ));
    }
    if must_have > 0 && first > out.released_before.max(1) {
        return Err(format!(
            "first record is {first}, but only records before {} were released",
            out.released_before
        ));
    }
    Ok(last)
}

/// After a recovery: append one more batch (generation 1), sync, reopen (after a crash
/// of `disk` by `kill`), and check that old and new records are all there.
pub async fn append_after_recovery<D: Disk>(
    disk: &D,
    opts: &WalOptions,
    out: &mut Outcome,
    last: u64,
    kill: impl FnOnce(&D),
) -> Result<(), String> {
    let (mut wal, _) = Wal::open(disk.clone(), opts.clone())
        .await
        .map_err(|e| format!("second open: {e}"))?;
    if wal.next_seq() != last + 1 {
        return Err(format!("next_seq {} after last {last}", wal.next_seq()));
    }
    // What was torn or never acknowledged beyond `last` is gone for good.
    out.written.retain(|seq, _| *seq <= last);
    let payloads: Vec<Vec<u8>> = (0..3).map(|j| payload(last + 1 + j, 1, 100)).collect();
    for (j, p) in payloads.iter().enumerate() {
        out.written.insert(last + 1 + j as u64, p.clone());
    }
    let new_last = wal
        .append_sync(&payloads)
        .await
        .map_err(|e| format!("append after recovery: {e}"))?;
    drop(wal);
    kill(disk);
    let (_, replay) = Wal::open(disk.clone(), opts.clone())
        .await
        .map_err(|e| format!("third open: {e}"))?;
    if replay.torn_tail.is_some() {
        return Err("torn tail after a synced append".into());
    }
    let got = check_replay(&replay, out, new_last)?;
    if got != new_last {
        return Err(format!("last record {got}, expected {new_last}"));
    }
    Ok(())
}
