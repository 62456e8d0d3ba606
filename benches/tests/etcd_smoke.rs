//! Runs the load generator against a real etcd 3.4 (`/usr/bin/etcd`) started by the
//! test. Without etcd the test prints "SKIPPED: etcd not installed" and returns, unless
//! `DETCD_BENCH_REQUIRE_ETCD=1`, which turns the absence into a failure (CI sets it
//! after installing etcd).

use detcd_bench::compare::{ETCD_COMMAND, ServerSpec, start};
use detcd_bench::load::{KeyOrder, LoadOpts, Stop, Workload, run};
use std::path::Path;

const ETCD_PATH: &str = "/usr/bin/etcd";
const PUTS_TOTAL: u64 = 200;

#[test]
fn put_and_range_against_real_etcd() {
    if !Path::new(ETCD_PATH).exists() {
        assert!(
            std::env::var("DETCD_BENCH_REQUIRE_ETCD").as_deref() != Ok("1"),
            "DETCD_BENCH_REQUIRE_ETCD=1 but {ETCD_PATH} is absent"
        );
        eprintln!("SKIPPED: etcd not installed ({ETCD_PATH} absent)");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let root = tempfile::tempdir().expect("tempdir");
    let spec = ServerSpec {
        name: "etcd".into(),
        command: ETCD_COMMAND.into(),
    };
    rt.block_on(async {
        let server = start(&spec, root.path()).await.expect("etcd starts");
        let history = root.path().join("history.jsonl");
        let opts = LoadOpts {
            endpoints: vec![server.endpoint.clone()],
            conns: 2,
            clients: 4,
            stop: Stop::Total(PUTS_TOTAL),
            target_leader: true,
            record: Some(history.clone()),
            seed: 7,
        };
        let put = Workload::Put {
            key_bytes: 8,
            value_bytes: 16,
            key_space: 10,
            order: KeyOrder::Random,
            txn: false,
        };
        let s = run(&opts, &put).await.expect("put run");
        assert_eq!((s.ops, s.errors), (PUTS_TOTAL, 0), "{s:?}");
        assert!(s.latency_us_p50 > 0 && s.latency_us_p50 <= s.latency_us_p99);

        // Every acknowledged put got its own revision: etcd starts at 1, so 2..=201.
        let text = std::fs::read_to_string(&history).expect("history");
        let mut revisions: Vec<i64> = text
            .lines()
            .skip(1)
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json line");
                v["outcome"]["ok"]["revision"]
                    .as_i64()
                    .expect("ok revision")
            })
            .collect();
        revisions.sort_unstable();
        assert_eq!(revisions, (2..=PUTS_TOTAL as i64 + 1).collect::<Vec<_>>());

        let txn = Workload::Put {
            key_bytes: 8,
            value_bytes: 16,
            key_space: 10,
            order: KeyOrder::Sequential,
            txn: true,
        };
        let opts = LoadOpts {
            record: None,
            ..opts
        };
        let s = run(&opts, &txn).await.expect("txn-put run");
        assert_eq!((s.ops, s.errors), (PUTS_TOTAL, 0));

        let range = Workload::Range {
            key: "00000001".into(),
            serializable: false,
        };
        let s = run(
            &LoadOpts {
                stop: Stop::Total(50),
                ..opts.clone()
            },
            &range,
        )
        .await
        .expect("range run");
        assert_eq!((s.ops, s.errors), (50, 0));

        // Values larger than one HTTP/2 frame, and a request etcd refuses (no key):
        // the refusal is an error, not a success or a hang.
        let big = Workload::Put {
            key_bytes: 8,
            value_bytes: 40_000,
            key_space: 10,
            order: KeyOrder::Sequential,
            txn: false,
        };
        let few = LoadOpts {
            stop: Stop::Total(20),
            ..opts.clone()
        };
        let s = run(&few, &big).await.expect("big put run");
        assert_eq!((s.ops, s.errors), (20, 0));
        let no_key = Workload::Range {
            key: String::new(),
            serializable: true,
        };
        let s = run(&few, &no_key).await.expect("run completes");
        assert_eq!((s.ops, s.errors), (0, 20));

        let lease = run(
            &LoadOpts {
                stop: Stop::Total(50),
                ..opts.clone()
            },
            &Workload::LeaseKeepalive,
        )
        .await
        .expect("lease run");
        assert_eq!((lease.ops, lease.errors), (50, 0));

        let watch = run(
            &LoadOpts {
                stop: Stop::Total(20),
                clients: 3,
                ..opts
            },
            &Workload::WatchLatency { puts_per_s: 200 },
        )
        .await
        .expect("watch run");
        // 20 puts seen by 3 watchers each.
        assert_eq!((watch.ops, watch.errors), (60, 0), "{watch:?}");
        drop(server);
    });
}
