//! Randomized histories: a correct execution with random concurrency and unknown
//! outcomes must be OK; the same with one mutation must be Illegal.

use detcd_checker::etcd::{self, Options};
use detcd_checker::generate::{GenConfig, Mutation, generate, generate_mutated};
use detcd_checker::{Property, Verdict};
use proptest::prelude::*;

fn cfg(seed: u64, ops: usize, clients: usize, keys: usize) -> GenConfig {
    GenConfig {
        seed,
        ops,
        clients,
        keys,
        unknown_write_permille: 50,
        // Without watches many gap revisions are seen by no value: the search must
        // still place the unknown-outcome writes.
        watches: (seed % 5) as usize,
        leases: true,
        compactions: true,
        partitions: false,
    }
}

/// Partition-heavy: a minority of clients cut off in half of the periods, so many
/// writes have unknown outcomes and some apply long after they were sent.
fn partition_cfg(seed: u64, ops: usize, clients: usize, keys: usize) -> GenConfig {
    GenConfig {
        watches: 0,
        leases: false,
        compactions: seed.is_multiple_of(2),
        partitions: true,
        ..cfg(seed, ops, clients, keys)
    }
}

/// Budget for partition histories: a fifth of the default, so a search that does not
/// scale shows up as Unknown.
const PARTITION_STEP_BUDGET: u64 = 1_000_000;

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("DETCD_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48), ..ProptestConfig::default() })]

    #[test]
    fn correct_histories_are_ok(seed in any::<u64>(), ops in 50usize..600, clients in 1usize..12, keys in 1usize..20) {
        let h = generate(&cfg(seed, ops, clients, keys));
        let v = etcd::check(&h, &Options::default());
        prop_assert_eq!(v, Verdict::Ok);
    }

    #[test]
    fn one_mutation_is_illegal(seed in any::<u64>(), ops in 200usize..600, clients in 2usize..12, keys in 1usize..8, m in 0usize..4) {
        let m = [Mutation::StaleRead, Mutation::LostWrite, Mutation::ReorderWatch, Mutation::DuplicateRevision][m];
        let Some(h) = generate_mutated(&cfg(seed, ops, clients, keys), m) else {
            return Ok(());
        };
        let v = etcd::check(&h, &Options::default());
        let want: &[Property] = match m {
            Mutation::StaleRead => &[Property::RealTime],
            Mutation::LostWrite => &[Property::Result, Property::WatchEvent, Property::WatchReliable],
            Mutation::ReorderWatch => &[Property::WatchOrder],
            Mutation::DuplicateRevision => &[Property::DuplicateRevision],
        };
        prop_assert!(v.property().is_some_and(|p| want.contains(&p)), "{:?}: {:?}", m, v);
    }
}

proptest! {
    // Fewer cases: each history has dozens of unknown-outcome writes.
    #![proptest_config(ProptestConfig { cases: std::env::var("DETCD_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(12), ..ProptestConfig::default() })]

    #[test]
    fn partition_histories_are_ok(seed in any::<u64>(), ops in 200usize..400, clients in 3usize..10, keys in 1usize..12) {
        let h = generate(&partition_cfg(seed, ops, clients, keys));
        let unknown = h.ops.iter().filter(|o| matches!(o.rec.outcome, detcd_checker::history::Outcome::Unknown)).count();
        prop_assume!(unknown > 0);
        let v = etcd::check(&h, &Options { step_budget: PARTITION_STEP_BUDGET, ..Options::default() });
        prop_assert_eq!(v, Verdict::Ok, "{} unknown of {}", unknown, h.ops.len());
    }
}

/// Known gap: a partition history the search cannot settle within the partition budget
/// (it is OK, found with a much larger budget). Kept to measure progress.
#[test]
#[ignore]
fn partition_history_known_hard() {
    let h = generate(&partition_cfg(13266031325394419440, 464, 6, 11));
    let v = etcd::check(
        &h,
        &Options {
            step_budget: PARTITION_STEP_BUDGET,
            ..Options::default()
        },
    );
    assert_eq!(v, Verdict::Ok);
}
