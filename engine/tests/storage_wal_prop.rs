//! Property test: for random batch shapes, record sizes, segment sizes and preallocation
//! modes, a crash or a power loss (either loss model) at a random disk operation keeps every acknowledged
//! record (every written one, for a crash), returns only records that were written, and
//! leaves a log that accepts and keeps new appends.

mod storage_util;

use detcd_engine::storage::{LossModel, MemDisk, Preallocation, Wal, WalOptions};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use storage_util::{Workload, append_after_recovery, block_on, check_replay, run};

fn workload() -> impl Strategy<Value = Workload> {
    (
        310u64..3000,
        prop::collection::vec(prop::collection::vec(0usize..=250, 1..6), 1..25),
        prop::sample::select(vec![
            Preallocation::None,
            Preallocation::Allocate,
            Preallocation::ZeroFill,
        ]),
        0usize..6,
        0u64..10,
    )
        .prop_map(
            |(segment_bytes, batches, preallocation, release_every, release_lag)| Workload {
                batches,
                release_every,
                release_lag,
                opts: WalOptions {
                    segment_bytes,
                    record_bytes_max: 250,
                    preallocation,
                },
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn wal_survives_a_cut_anywhere(
        w in workload(),
        cut_permille in 0u64..=1000,
        loss in prop::option::of(prop::sample::select(vec![
            LossModel::PrefixOfWrites,
            LossModel::SectorsOutOfOrder,
        ])),
        seed in any::<u64>(),
    ) {
        let total = {
            let disk = MemDisk::new();
            block_on(run(&disk, &w));
            disk.ops()
        };
        let disk = MemDisk::new();
        disk.set_ops_limit(Some(total * cut_permille / 1000));
        let mut out = block_on(run(&disk, &w));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let must_have = match loss {
            Some(model) => {
                disk.power_loss_with(model, &mut rng);
                out.acked
            }
            None => {
                disk.crash();
                out.appended
            }
        };
        let (wal, replay) = block_on(Wal::open(disk.clone(), w.opts.clone()))
            .map_err(|e| TestCaseError::fail(format!("reopen: {e}")))?;
        drop(wal);
        let last = check_replay(&replay, &out, must_have).map_err(TestCaseError::fail)?;
        block_on(append_after_recovery(&disk, &w.opts, &mut out, last, |d: &MemDisk| {
            d.power_loss_with(loss.unwrap_or(LossModel::PrefixOfWrites), &mut rng)
        }))
        .map_err(TestCaseError::fail)?;
    }
}
