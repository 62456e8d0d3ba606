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
