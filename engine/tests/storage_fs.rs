//! The WAL and snapshot store on real files (FsDisk in a temp directory), plus an
//! ignored measurement of fdatasync latency per preallocation mode:
//! `cargo test -p detcd-engine --test storage_fs -- --ignored --nocapture` (set
//! `DETCD_BENCH_DIR` to measure another file system).

#![cfg(all(unix, not(madsim)))]

mod storage_util;

use std::time::{Duration, Instant};

use detcd_engine::storage::{
    Disk, DiskFile, FsDisk, Preallocation, SnapshotStore, Wal, WalOptions,
};
use storage_util::{block_on, payload};

const MODES: [Preallocation; 3] = [
    Preallocation::None,
    Preallocation::Allocate,
    Preallocation::ZeroFill,
];

fn small_opts(preallocation: Preallocation) -> WalOptions {
    WalOptions {
        segment_bytes: 4096,
        record_bytes_max: 1000,
        preallocation,
    }
}

#[test]
fn wal_round_trip_reopen_rotation_release() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let disk = FsDisk::new(dir.path()).unwrap();
        block_on(async {
            let (mut wal, replay) = Wal::open(disk.clone(), small_opts(mode)).await.unwrap();
            assert!(replay.records.is_empty());
            let mut expected = Vec::new();
            for batch in 0..40u64 {
                let payloads: Vec<Vec<u8>> = (0..3)
                    .map(|j| payload(batch * 3 + j + 1, 0, ((batch * 37 + j * 11) % 400) as usize))
                    .collect();
                expected.extend(payloads.iter().cloned());
                wal.append_sync(&payloads).await.unwrap();
            }
            assert!(
                wal.segment_count() >= 5,
                "{mode:?}: {} segments",
                wal.segment_count()
            );
            drop(wal);

            let (mut wal, replay) = Wal::open(disk.clone(), small_opts(mode)).await.unwrap();
            assert!(replay.torn_tail.is_none());
            let got: Vec<Vec<u8>> = replay.records.iter().map(|r| r.payload.clone()).collect();
            assert_eq!(got, expected, "{mode:?}");

            let segments = wal.segment_count();
            let removed = wal.release_before(60).await.unwrap();
            assert!(
                removed > 0 && removed < segments,
                "{mode:?}: removed {removed}"
            );
            assert!(wal.first_seq() <= 60);
            let on_disk = disk.list_dir("wal").await.unwrap();
            assert_eq!(on_disk.len(), segments - removed, "{on_disk:?}");
            let last = wal.append_sync(&[b"after release".to_vec()]).await.unwrap();
            drop(wal);

            let (wal, replay) = Wal::open(disk.clone(), small_opts(mode)).await.unwrap();
            let first = replay.records[0].seq;
            assert!(first <= 60);
            let got: Vec<Vec<u8>> = replay.records.iter().map(|r| r.payload.clone()).collect();
            assert_eq!(
                &got[..got.len() - 1],
                &expected[first as usize - 1..],
                "{mode:?}"
            );
            assert_eq!(replay.records.last().unwrap().seq, last);
            assert_eq!(wal.next_seq(), last + 1);
        });
    }
}

#[test]
fn snapshots_on_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FsDisk::new(dir.path()).unwrap();
    block_on(async {
        let store = SnapshotStore::open(disk.clone()).await.unwrap();
        store.save(3, 1, b"three").await.unwrap();
        store.save(7, 2, b"seven").await.unwrap();
        // A temp file a crash left behind.
        let mut stray = disk
            .open("snap/0000000000000009-0000000000000002.snap.tmp", true)
            .await
            .unwrap();
        stray.write_at(0, b"half").await.unwrap();
        drop(store);
        let store = SnapshotStore::open(disk.clone()).await.unwrap();
        assert_eq!(disk.list_dir("snap").await.unwrap().len(), 2);
        let latest = store.load_latest().await.unwrap().snapshot.unwrap();
        assert_eq!(
            (latest.meta.index, latest.data.as_slice()),
            (7, &b"seven"[..])
        );
        assert_eq!(store.purge(1).await.unwrap(), 1);
        assert_eq!(store.list().await.unwrap().len(), 1);
    });
}

/// Appends one 256-byte record and fdatasyncs it, `SAMPLES` times per mode, in a temp
/// directory under the target directory, and prints latency percentiles.
#[test]
#[ignore = "measurement; run with --ignored --nocapture"]
fn fdatasync_latency_per_preallocation_mode() {
    const SAMPLES: usize = 2000;
    let base = std::env::var("DETCD_BENCH_DIR")
        .unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_string());
    for mode in MODES {
        let dir = tempfile::tempdir_in(&base).unwrap();
        let disk = FsDisk::new(dir.path()).unwrap();
        let opts = WalOptions {
            preallocation: mode,
            ..WalOptions::default()
        };
        let (mut samples, create): (Vec<Duration>, Duration) = block_on(async {
            let start = Instant::now();
            let (mut wal, _) = Wal::open(disk, opts).await.unwrap();
            let create = start.elapsed();
            let record = [vec![0x5Au8; 256]];
            let mut samples = Vec::with_capacity(SAMPLES);
            for _ in 0..SAMPLES {
                let start = Instant::now();
                wal.append_sync(&record).await.unwrap();
                samples.push(start.elapsed());
            }
            (samples, create)
        });
        samples.sort();
        let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        println!(
            "{mode:?} in {base}: segment creation {create:?}; append+sync mean {mean:?} p50 {:?} p90 {:?} p99 {:?} max {:?}",
            pct(50),
            pct(90),
            pct(99),
            samples[samples.len() - 1]
        );
    }
}
