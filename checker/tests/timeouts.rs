//! Timeout-heavy histories: many clients over few keys, dozens of writes of unknown
//! outcome filling most revision gaps (`testdata/timeouts-*.jsonl`, trimmed from
//! simulated runs). They must be decided OK within a small step budget and in well under
//! two seconds, and each known-bad variant (one read's value, one write's revision or one
//! read's key corrupted) must be Illegal within a small budget too.

use std::time::{Duration, Instant};

use detcd_checker::Verdict;
use detcd_checker::etcd::{self, Options};
use detcd_checker::history::{History, Op, OpResult, Outcome};

/// Steps the OK histories need with some room (the search before the interchangeable
/// writes and the supply bound needed more than 5,000,000 and gave up).
const STEP_BUDGET_OK: u64 = 400_000;
/// Steps a corrupted variant may take to be found Illegal.
const STEP_BUDGET_BAD: u64 = 400_000;
/// Wall time allowed per OK history in the test profile.
const CHECK_MS_MAX: u64 = 2_000;

const FILES: [&str; 2] = [
    "testdata/timeouts-64c-3-members.jsonl",
    "testdata/timeouts-64c-5-members.jsonl",
];

fn load(name: &str) -> History {
    let text = std::fs::read_to_string(name).expect("read testdata");
    History::parse(&text).expect("testdata parses")
}

fn opts(step_budget: u64) -> Options {
    Options {
        step_budget,
        ..Options::default()
    }
}

#[test]
fn timeout_heavy_histories_are_ok_fast() {
    for name in FILES {
        let h = load(name);
        let unknown = h
            .ops
            .iter()
            .filter(|o| matches!(o.rec.outcome, Outcome::Unknown))
            .count();
        assert!(unknown >= 40, "{name}: only {unknown} unknown outcomes");
        let t = Instant::now();
        let v = etcd::check(&h, &opts(STEP_BUDGET_OK));
        let took = t.elapsed();
        assert_eq!(v, Verdict::Ok, "{name}");
        assert!(
            took < Duration::from_millis(CHECK_MS_MAX),
            "{name}: check took {took:?}"
        );
    }
}

/// Indexes of acknowledged single-key reads that show a key.
fn reads_with_kv(h: &History) -> Vec<usize> {
    (0..h.ops.len())
        .filter(|&i| match (&h.ops[i].rec.op, &h.ops[i].rec.outcome) {
            (Op::Range(_), Outcome::Ok(ok)) => {
                matches!(&ok.result, OpResult::Range(r) if !r.kvs.is_empty())
            }
            _ => false,
        })
        .collect()
}

fn first_kv(h: &mut History, i: usize) -> &mut detcd_checker::history::KeyValue {
    match &mut h.ops[i].rec.outcome {
        Outcome::Ok(ok) => match &mut ok.result {
            OpResult::Range(r) => &mut r.kvs[0],
            other => panic!("not a range result: {other:?}"),
        },
        other => panic!("not acknowledged: {other:?}"),
    }
}

fn assert_illegal(h: &History, what: &str) {
    let v = etcd::check(h, &opts(STEP_BUDGET_BAD));
    assert!(
        matches!(v, Verdict::Illegal(_)),
        "{what}: expected Illegal, got {v:?}"
    );
}

#[test]
fn a_corrupted_read_value_is_illegal() {
    for name in FILES {
        let h = load(name);
        let reads = reads_with_kv(&h);
        assert!(reads.len() > 20, "{name}: too few reads");
        // Reads early, in the middle of the gaps and after them.
        for &i in reads.iter().step_by(reads.len() / 8) {
            let mut bad = h.clone();
            first_kv(&mut bad, i).value.push('x');
            assert_illegal(&bad, &format!("{name}: value of line {}", h.ops[i].line));
        }
    }
}

#[test]
fn a_read_showing_another_key_is_illegal() {
    for name in FILES {
        let h = load(name);
        let reads = reads_with_kv(&h);
        for &i in reads.iter().step_by(reads.len() / 4) {
            let mut bad = h.clone();
            let kv = first_kv(&mut bad, i);
            kv.key = if kv.key == "k0" { "k1" } else { "k0" }.to_owned();
            assert_illegal(&bad, &format!("{name}: key of line {}", h.ops[i].line));
        }
    }
}

#[test]
fn a_corrupted_write_revision_is_illegal() {
    for name in FILES {
        let h = load(name);
        // Acknowledged puts whose value a read shows: moving one to another revision
        // leaves that read pointing at a revision nothing could have written it in.
        let shown: Vec<(String, String, i64)> = reads_with_kv(&h)
            .into_iter()
            .map(|i| {
                let mut c = h.clone();
                let kv = first_kv(&mut c, i);
                (kv.key.clone(), kv.value.clone(), kv.mod_revision)
            })
            .collect();
        let mut tried = 0;
        for (i, o) in h.ops.iter().enumerate() {
            let (Op::Put(p), Outcome::Ok(ok)) = (&o.rec.op, &o.rec.outcome) else {
                continue;
            };
            let seen = shown
                .iter()
                .any(|(k, v, m)| *k == p.key && *v == p.value && *m == ok.revision);
            if !seen {
                continue;
            }
            for delta in [-1, 1] {
                let mut bad = h.clone();
                if let Outcome::Ok(ok) = &mut bad.ops[i].rec.outcome {
                    ok.revision += delta;
                }
                assert_illegal(
                    &bad,
                    &format!("{name}: revision of line {} {delta:+}", o.line),
                );
            }
            tried += 1;
            if tried == 6 {
                break;
            }
        }
        assert_eq!(tried, 6, "{name}: too few acknowledged puts read back");
    }
}
