//! Speed of the etcd checker on a generated 100,000-operation history from 50 clients
//! with 1% of writes of unknown outcome (target: under 2 s including parsing).

use criterion::{Criterion, criterion_group, criterion_main};
use detcd_checker::etcd::{self, Options};
use detcd_checker::generate::{GenConfig, generate};
use detcd_checker::history::History;

fn bench(c: &mut Criterion) {
    let cfg = GenConfig {
        seed: 1,
        ops: 100_000,
        clients: 50,
        keys: 1000,
        unknown_write_permille: 10,
        watches: 4,
        leases: true,
        compactions: true,
        partitions: false,
    };
    let h = generate(&cfg);
    let text = h.to_jsonl();
    let mut g = c.benchmark_group("etcd_check");
    g.sample_size(10);
    g.bench_function("check_100k_ops_50_clients", |b| {
        b.iter(|| {
            let v = etcd::check(&h, &Options::default());
            assert_eq!(v.exit_code(), 0, "{v:?}");
        })
    });
    g.bench_function("parse_and_check_100k_ops", |b| {
        b.iter(|| {
            let h = History::parse(&text).expect("generated history parses");
            let v = etcd::check(&h, &Options::default());
            assert_eq!(v.exit_code(), 0, "{v:?}");
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
