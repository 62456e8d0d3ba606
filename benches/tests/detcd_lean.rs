//! Runs the load generator's lean HTTP/2 path (put, txn-put, range) against an
//! in-process detcd: every call answered, the recorded history accepted by the
//! checker, bodies larger than one HTTP/2 frame, and a request the server rejects
//! counted as an error rather than a success or a hang.

use detcd_bench::e2e::E2eCluster;
use detcd_bench::load::{KeyOrder, LoadOpts, Stop, Workload, run};
use detcd_checker::etcd::{Options, check};
use detcd_checker::history::History;
use detcd_checker::verdict::Verdict;

const PUTS_TOTAL: u64 = 300;

#[test]
fn lean_client_against_in_process_detcd() {
    let root = tempfile::tempdir().expect("tempdir");
    let cluster = E2eCluster::start(root.path(), 1).expect("detcd starts");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let history = root.path().join("history.jsonl");
    let opts = LoadOpts {
        endpoints: vec![cluster.leader_endpoint().to_string()],
        conns: 3,
        clients: 20,
        stop: Stop::Total(PUTS_TOTAL),
        target_leader: false,
        record: Some(history.clone()),
        seed: 11,
    };
    rt.block_on(async {
        let put = Workload::Put {
            key_bytes: 8,
            value_bytes: 64,
            key_space: 5,
            order: KeyOrder::Random,
            txn: false,
        };
        let s = run(&opts, &put).await.expect("put run");
        assert_eq!((s.ops, s.errors), (PUTS_TOTAL, 0), "{s:?}");
        let text = std::fs::read_to_string(&history).expect("history");
        let h = History::parse(&text).expect("history parses");
        assert_eq!(h.ops.len(), PUTS_TOTAL as usize);
        assert_eq!(check(&h, &Options::default()), Verdict::Ok);

        // 40 KB values span several DATA frames and the server's stream windows.
        let big = Workload::Put {
            key_bytes: 8,
            value_bytes: 40_000,
            key_space: 5,
            order: KeyOrder::Sequential,
            txn: true,
        };
        let plain = LoadOpts {
            record: None,
            stop: Stop::Total(40),
            ..opts.clone()
        };
        let s = run(&plain, &big).await.expect("big txn-put run");
        assert_eq!((s.ops, s.errors), (40, 0), "{s:?}");

        let range = Workload::Range {
            key: "00000001".into(),
            serializable: false,
        };
        let s = run(&plain, &range).await.expect("range run");
        assert_eq!((s.ops, s.errors), (40, 0), "{s:?}");

        // Known-bad: a range without a key is refused with a gRPC error status.
        let no_key = Workload::Range {
            key: String::new(),
            serializable: true,
        };
        let s = run(&plain, &no_key).await.expect("run completes");
        assert_eq!((s.ops, s.errors), (0, 40), "{s:?}");
    });
    drop(cluster);
}
