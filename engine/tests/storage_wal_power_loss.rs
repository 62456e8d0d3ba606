//! The WAL survives a power loss or a process crash cut at *every* disk operation of a
//! workload with batches, syncs, segment rotations and releases.

mod storage_util;

use detcd_engine::storage::{LossModel, MemDisk, Preallocation, Wal};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use storage_util::{Workload, append_after_recovery, block_on, check_replay, run};

const POWER_LOSS_SEEDS_PER_CUT: u64 = 6;
const MODES: [Preallocation; 3] = [
    Preallocation::None,
    Preallocation::Allocate,
    Preallocation::ZeroFill,
];

/// Total disk operations of an uninterrupted run (the cut points to try).
fn total_ops(w: &Workload) -> u64 {
    let disk = MemDisk::new();
    let out = block_on(run(&disk, w));
    assert_eq!(
        out.acked,
        out.written.len() as u64,
        "uncut run must ack everything"
    );
    disk.ops()
}

#[test]
fn power_loss_at_every_op_keeps_every_acknowledged_record() {
    power_loss_at_every_op(LossModel::PrefixOfWrites);
}

#[test]
fn power_loss_with_sectors_out_of_order_at_every_op() {
    power_loss_at_every_op(LossModel::SectorsOutOfOrder);
}

fn power_loss_at_every_op(model: LossModel) {
    for (m, mode) in MODES.into_iter().enumerate() {
        let w = Workload::seeded(100 + m as u64, 30, mode);
        let ops = total_ops(&w);
        assert!(ops > 60, "workload too small: {ops} ops");
        let mut torn_seen = 0;
        for cut in 0..=ops {
            for seed in 0..POWER_LOSS_SEEDS_PER_CUT {
                let disk = MemDisk::new();
                disk.set_ops_limit(Some(cut));
                let mut out = block_on(run(&disk, &w));
                disk.power_loss_with(model, &mut ChaCha8Rng::seed_from_u64(cut << 8 | seed));
                let ctx = format!("{model:?} {mode:?} cut {cut}/{ops} seed {seed}");
                let (wal, replay) = block_on(Wal::open(disk.clone(), w.opts.clone()))
                    .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
                torn_seen += usize::from(replay.torn_tail.is_some());
                let last =
                    check_replay(&replay, &out, out.acked).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                drop(wal);
                let mut rng = ChaCha8Rng::seed_from_u64(seed + 1000);
                block_on(append_after_recovery(
                    &disk,
                    &w.opts,
                    &mut out,
                    last,
                    move |d: &MemDisk| d.power_loss_with(model, &mut rng),
                ))
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
            }
        }
        assert!(torn_seen > 0, "{mode:?}: no run produced a torn tail");
    }
}

#[test]
fn crash_at_every_op_loses_nothing_written() {
    for (m, mode) in MODES.into_iter().enumerate() {
        let w = Workload::seeded(200 + m as u64, 30, mode);
        let ops = total_ops(&w);
        for cut in 0..=ops {
            let disk = MemDisk::new();
            disk.set_ops_limit(Some(cut));
            let mut out = block_on(run(&disk, &w));
            disk.crash();
            let ctx = format!("{mode:?} cut {cut}/{ops}");
            let (wal, replay) = block_on(Wal::open(disk.clone(), w.opts.clone()))
                .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
            let last =
                check_replay(&replay, &out, out.appended).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            drop(wal);
            // A power loss after the recovery: what the reopened log holds and appends
            // must now be durable, even what the crash left only in the page cache.
            let mut rng = ChaCha8Rng::seed_from_u64(cut);
            block_on(append_after_recovery(
                &disk,
                &w.opts,
                &mut out,
                last,
                move |d: &MemDisk| d.power_loss(&mut rng),
            ))
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        }
    }
}

#[test]
fn failed_fsync_poisons_the_log_and_reopen_recovers() {
    block_on(async {
        let disk = MemDisk::new();
        let w = Workload::seeded(7, 0, Preallocation::ZeroFill);
        let (mut wal, _) = Wal::open(disk.clone(), w.opts.clone()).await.unwrap();
        wal.append_sync(&[b"one".to_vec()]).await.unwrap();
        wal.append(&[b"two".to_vec()]).await.unwrap();
        disk.fail_next_syncs(1);
        assert!(wal.sync().await.is_err());
        assert_eq!(wal.synced_before(), 2, "a failed sync must not advance");
        let again = wal.append(&[b"three".to_vec()]).await;
        assert!(
            matches!(again, Err(detcd_engine::storage::WalError::Poisoned)),
            "{again:?}"
        );
        drop(wal);
        disk.power_loss(&mut ChaCha8Rng::seed_from_u64(3));
        let (_, replay) = Wal::open(disk.clone(), w.opts.clone()).await.unwrap();
        assert_eq!(replay.records[0].payload, b"one");
        assert!(replay.records.len() <= 2);
    });
}

#[test]
fn full_disk_is_an_error_not_a_panic() {
    block_on(async {
        let disk = MemDisk::new();
        let w = Workload::seeded(8, 0, Preallocation::None);
        let (mut wal, _) = Wal::open(disk.clone(), w.opts.clone()).await.unwrap();
        disk.set_capacity_bytes(Some(disk.files().values().sum::<u64>() + 100));
        let err = wal.append(&[vec![7u8; 200]]).await.unwrap_err();
        assert!(err.to_string().contains("space"), "{err}");
        disk.set_capacity_bytes(None);
        drop(wal);
        let (mut wal, replay) = Wal::open(disk.clone(), w.opts.clone()).await.unwrap();
        assert!(replay.records.is_empty());
        wal.append_sync(&[vec![7u8; 200]]).await.unwrap();
    });
}
