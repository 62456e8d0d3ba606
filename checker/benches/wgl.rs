//! Benchmarks of the Wing-Gong-Lowe search on generated cas-register histories.
//!
//! The headline case is 10,000 operations from 5 clients with about 1.5% of operations
//! timing out (unknown outcome); the brief asks for under 1 s.

use criterion::{Criterion, criterion_group, criterion_main};
use detcd_checker::models::generate::{GenConfig, kv_history, register_history};
use detcd_checker::models::{CasRegister, Kv};
use detcd_checker::wgl::{Outcome, check, check_partitioned};

/// Operations to invoke for a cas-register history of about 10,000 operations after
/// failed cas operations are left out (10,091 with seed 1).
const CAS_INVOKED_FOR_10K: usize = 12_450;

/// Step budget for every benchmarked check (never reached by these histories).
const STEP_BUDGET: u64 = 100_000_000;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("wgl");
    group.sample_size(10);

    let unique = register_history(&GenConfig::new(1, CAS_INVOKED_FOR_10K, 5, 15), true);
    assert_eq!(check(&CasRegister, &unique, STEP_BUDGET), Outcome::Ok);
    group.bench_function("cas_register_10k_5_clients_1.5pct_timeouts", |b| {
        b.iter(|| check(&CasRegister, &unique, STEP_BUDGET))
    });

    let few_values = register_history(
        &GenConfig {
            values_max: Some(5),
            ..GenConfig::new(1, CAS_INVOKED_FOR_10K, 5, 15)
        },
        true,
    );
    assert_eq!(check(&CasRegister, &few_values, STEP_BUDGET), Outcome::Ok);
    group.bench_function("cas_register_10k_values_0_to_4_1.5pct_timeouts", |b| {
        b.iter(|| check(&CasRegister, &few_values, STEP_BUDGET))
    });

    let kv = kv_history(
        &GenConfig {
            keys: 20,
            ..GenConfig::new(1, 10_000, 10, 15)
        },
        true,
    );
    assert_eq!(check_partitioned(&Kv, &kv, STEP_BUDGET), Outcome::Ok);
    group.bench_function("kv_append_10k_20_keys_partitioned", |b| {
        b.iter(|| check_partitioned(&Kv, &kv, STEP_BUDGET))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
