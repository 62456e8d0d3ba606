//! Criterion benches: WAL append+sync per disk and batch size, Raft core throughput
//! with no I/O, and checker throughput.
//!
//! Disks come from `DETCD_BENCH_DISKS=name=path,...` (a temp dir when unset).
//! `e2e_put`: puts through an in-process 1-member and 3-member loopback cluster per disk
//! (`detcd_bench::e2e`), one put at a time and 64 at once. `DETCD_BENCH_QUICK=1` gives
//! it a short warm-up and measurement (the smoke run in `ci/bench-smoke`).
//! Simulator time compression: `scenarios/benches/sim_time.rs` (`ci/sim-bench`), as it
//! needs a `--cfg madsim` build.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use detcd_bench::bodies::{
    WAL_BATCH_SIZES, WAL_VALUE_BYTES, WalBench, cas_history, checker_etcd, checker_wgl,
    etcd_history, raft_cluster, raft_proposals,
};
use detcd_bench::disk::disks_from_env;
use detcd_bench::e2e::{E2E_CLUSTER_SIZES, E2E_VALUE_BYTES, E2eCluster};
use std::time::Duration;

/// Proposals per measured iteration of the Raft bench.
const RAFT_PROPOSALS_PER_ITER: usize = 1_000;

/// Operations in the checker bench's history.
const CHECKER_OPS: usize = 10_000;

/// Puts sent at once per iteration of the end-to-end bench.
const E2E_BATCHES: [usize; 2] = [1, 64];

/// Measurement time per end-to-end bench with `DETCD_BENCH_QUICK=1`.
const QUICK_MEASUREMENT_MS: u64 = 500;

fn quick() -> bool {
    std::env::var("DETCD_BENCH_QUICK").is_ok_and(|v| v == "1")
}

fn wal(c: &mut Criterion) {
    let disks = match disks_from_env() {
        Ok(d) => d,
        Err(e) => panic!("bench setup: {e}"),
    };
    let mut group = c.benchmark_group("wal_append_sync");
    for disk in disks {
        let dir = tempfile::Builder::new()
            .prefix("detcd-bench-wal-")
            .tempdir_in(&disk.path)
            .unwrap_or_else(|e| panic!("temp dir on {}: {e}", disk.name));
        for batch in WAL_BATCH_SIZES {
            let sub = dir.path().join(format!("b{batch}"));
            std::fs::create_dir(&sub).unwrap_or_else(|e| panic!("{}: {e}", sub.display()));
            let mut w =
                WalBench::open(&sub, WAL_VALUE_BYTES).unwrap_or_else(|e| panic!("open wal: {e}"));
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(
                format!("{}/batch_{batch}x{WAL_VALUE_BYTES}B", disk.name),
                |b| {
                    b.iter(|| {
                        w.append_sync(batch)
                            .unwrap_or_else(|e| panic!("append: {e}"))
                    })
                },
            );
        }
    }
    group.finish();
}

fn raft(c: &mut Criterion) {
    let mut group = c.benchmark_group("raft_core");
    group.throughput(Throughput::Elements(RAFT_PROPOSALS_PER_ITER as u64));
    group.sample_size(20);
    group.bench_function(
        format!("3_nodes_{RAFT_PROPOSALS_PER_ITER}_proposals"),
        |b| {
            b.iter_batched(
                || raft_cluster().unwrap_or_else(|e| panic!("cluster: {e}")),
                |mut cl| {
                    raft_proposals(&mut cl, RAFT_PROPOSALS_PER_ITER)
                        .unwrap_or_else(|e| panic!("proposals: {e}"))
                },
                BatchSize::LargeInput,
            )
        },
    );
    group.finish();
}

fn checker(c: &mut Criterion) {
    let mut group = c.benchmark_group("checker");
    group.sample_size(10);
    let h = cas_history(CHECKER_OPS);
    group.throughput(Throughput::Elements(h.len() as u64));
    group.bench_function(format!("wgl_cas_register_{}_ops", h.len()), |b| {
        b.iter(|| checker_wgl(&h).unwrap_or_else(|e| panic!("check: {e}")))
    });
    let h = etcd_history(CHECKER_OPS);
    group.throughput(Throughput::Elements(h.ops.len() as u64));
    group.bench_function(format!("etcd_revision_{}_ops", h.ops.len()), |b| {
        b.iter(|| checker_etcd(&h).unwrap_or_else(|e| panic!("check: {e}")))
    });
    group.finish();
}

fn e2e(c: &mut Criterion) {
    let disks = match disks_from_env() {
        Ok(d) => d,
        Err(e) => panic!("bench setup: {e}"),
    };
    let mut group = c.benchmark_group("e2e_put");
    group.sample_size(10);
    if quick() {
        group.measurement_time(Duration::from_millis(QUICK_MEASUREMENT_MS));
        group.warm_up_time(Duration::from_millis(QUICK_MEASUREMENT_MS));
    }
    for disk in disks {
        for members in E2E_CLUSTER_SIZES {
            let dir = tempfile::Builder::new()
                .prefix("detcd-bench-e2e-")
                .tempdir_in(&disk.path)
                .unwrap_or_else(|e| panic!("temp dir on {}: {e}", disk.name));
            let mut cluster = E2eCluster::start(dir.path(), members)
                .unwrap_or_else(|e| panic!("{members}-member cluster on {}: {e}", disk.name));
            for batch in E2E_BATCHES {
                group.throughput(Throughput::Elements(batch as u64));
                group.bench_function(
                    format!(
                        "{}/{members}_members/batch_{batch}x{E2E_VALUE_BYTES}B",
                        disk.name
                    ),
                    |b| {
                        b.iter(|| {
                            cluster
                                .put_batch(batch)
                                .unwrap_or_else(|e| panic!("put: {e}"))
                        })
                    },
                );
            }
        }
    }
    group.finish();
}

criterion_group!(benches, wal, raft, checker, e2e);
criterion_main!(benches);
