//! Criterion benches: WAL append+sync per disk and batch size, Raft core throughput
//! with no I/O, and checker throughput.
//!
//! Disks come from `DETCD_BENCH_DISKS=name=path,...` (a temp dir when unset).
//! TODO(bench-e2e): end-to-end put through a 1-node and a 3-node loopback detcd cluster
//! once the server binary is on main (see `detcd_bench::bodies`).
//! TODO(bench-sim): simulator time compression once `detcd-sim` is on main.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use detcd_bench::bodies::{
    WAL_BATCH_SIZES, WAL_VALUE_BYTES, WalBench, cas_history, checker_etcd, checker_wgl,
    etcd_history, raft_cluster, raft_proposals,
};
use detcd_bench::disk::disks_from_env;

/// Proposals per measured iteration of the Raft bench.
const RAFT_PROPOSALS_PER_ITER: usize = 1_000;

/// Operations in the checker bench's history.
const CHECKER_OPS: usize = 10_000;

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

criterion_group!(benches, wal, raft, checker);
criterion_main!(benches);
