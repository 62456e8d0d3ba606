//! Fault-heavy swarm histories (`testdata/swarm-seed*.jsonl`: partitions, fsync errors,
//! KV, lease, lock and election clients, about a fifth of the requests of unknown
//! outcome) that once ran out of the default step budget. Each must be decided OK within
//! the default budget and well under two seconds, and known-bad variants (a read's value
//! corrupted, an acknowledged write moved to another revision, a key dropped from the
//! final full read, a lock key shown in a range read where it cannot be) must be Illegal.

use std::time::{Duration, Instant};

use detcd_checker::Verdict;
use detcd_checker::etcd::{self, Options};
use detcd_checker::history::{History, KeyValue, Op, OpResult, Outcome};

/// Wall time allowed per OK history in the test profile.
const CHECK_MS_MAX: u64 = 2_000;

/// Histories that check OK within the default budget, with the fewest unknown outcomes
/// each must have (so that a trimmed copy cannot make the test easy).
const FILES_OK: [(&str, usize); 8] = [
    ("testdata/swarm-seed374.jsonl", 90),
    ("testdata/swarm-seed631.jsonl", 90),
    ("testdata/swarm-seed631-b.jsonl", 90),
    ("testdata/swarm-seed2707.jsonl", 50),
    ("testdata/swarm-seed2824.jsonl", 110),
    ("testdata/swarm-seed3008.jsonl", 80),
    ("testdata/swarm-seed3462.jsonl", 60),
    ("testdata/swarm-seed3608.jsonl", 40),
];

/// Every swarm history, for the known-bad variants.
const FILES_ALL: [&str; 8] = [
    FILES_OK[0].0,
    FILES_OK[1].0,
    FILES_OK[2].0,
    FILES_OK[3].0,
    FILES_OK[4].0,
    FILES_OK[5].0,
    FILES_OK[6].0,
    FILES_OK[7].0,
];

fn load(name: &str) -> History {
    let text = std::fs::read_to_string(name).expect("read testdata");
    History::parse(&text).expect("testdata parses")
}

#[test]
fn swarm_histories_are_ok_within_the_default_budget() {
    for (name, unknown_min) in FILES_OK {
        let h = load(name);
        let unknown = h
            .ops
            .iter()
            .filter(|o| matches!(o.rec.outcome, Outcome::Unknown))
            .count();
        assert!(
            unknown >= unknown_min,
            "{name}: only {unknown} unknown outcomes"
        );
        let t = Instant::now();
        let v = etcd::check(&h, &Options::default());
        let took = t.elapsed();
        eprintln!("{name}: {v:?} in {took:?}");
        assert_eq!(v, Verdict::Ok, "{name}");
        assert!(
            took < Duration::from_millis(CHECK_MS_MAX),
            "{name}: check took {took:?}"
        );
    }
}

/// How many key-values a result shows (ranges, txn ranges).
fn kv_count(res: &OpResult) -> usize {
    match res {
        OpResult::Range(r) => r.kvs.len(),
        OpResult::Txn(t) => t.responses.iter().map(kv_count).sum(),
        _ => 0,
    }
}

/// The `n`th key-value a result shows, in the order of [`kv_count`].
fn nth_kv<'a>(res: &'a mut OpResult, n: &mut usize) -> Option<&'a mut KeyValue> {
    match res {
        OpResult::Range(r) => {
            let len = r.kvs.len();
            if *n < len {
                r.kvs.get_mut(*n)
            } else {
                *n -= len;
                None
            }
        }
        OpResult::Txn(t) => t.responses.iter_mut().find_map(|r| nth_kv(r, n)),
        _ => None,
    }
}

/// (op index, position) of every key-value acknowledged reads show.
fn reads_with_kv(h: &History) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, o) in h.ops.iter().enumerate() {
        if let Outcome::Ok(ok) = &o.rec.outcome {
            out.extend((0..kv_count(&ok.result)).map(|j| (i, j)));
        }
    }
    out
}

/// Applies `f` to the `j`th key-value op `i` shows.
fn edit_kv(h: &mut History, i: usize, j: usize, f: impl FnOnce(&mut KeyValue)) {
    let Outcome::Ok(ok) = &mut h.ops[i].rec.outcome else {
        panic!("not acknowledged");
    };
    let mut n = j;
    f(nth_kv(&mut ok.result, &mut n).expect("key-value exists"));
}

/// Steps a known-bad variant may take.
const STEP_BUDGET_BAD: u64 = 400_000;

/// Checks a known-bad variant: it must never pass. Returns whether it was proven
/// Illegal (a violation only the search can see may run out of budget: Unknown).
fn assert_illegal(h: &History, what: &str) -> bool {
    let opts = Options {
        step_budget: STEP_BUDGET_BAD,
        ..Options::default()
    };
    let v = etcd::check(h, &opts);
    assert!(v != Verdict::Ok, "{what}: a known-bad variant passed");
    let illegal = matches!(v, Verdict::Illegal(_));
    if !illegal {
        eprintln!("{what}: {v:?}");
    }
    illegal
}

/// Share of a file's known-bad variants of one kind that must be proven Illegal
/// within [`STEP_BUDGET_BAD`], in percent (the rest must be Unknown, never OK).
const PROVEN_PERCENT_MIN: usize = 40;

fn report(name: &str, proven: usize, total: usize) {
    eprintln!("{name}: {proven} of {total} known-bad variants proven Illegal");
    assert!(total > 0, "{name}: no variants");
    assert!(
        proven * 100 >= total * PROVEN_PERCENT_MIN,
        "{name}: only {proven} of {total} known-bad variants proven Illegal"
    );
}

#[test]
fn a_corrupted_read_value_is_illegal() {
    for name in FILES_ALL {
        let (mut proven, mut total) = (0usize, 0usize);
        let h = load(name);
        let reads = reads_with_kv(&h);
        assert!(reads.len() > 20, "{name}: too few reads");
        for &(i, j) in reads.iter().step_by(reads.len() / 8) {
            let mut bad = h.clone();
            edit_kv(&mut bad, i, j, |kv| kv.value.push('x'));
            proven += usize::from(assert_illegal(
                &bad,
                &format!("{name}: value of line {}", h.ops[i].line),
            ));
            total += 1;
        }
        report(name, proven, total);
    }
}

#[test]
fn a_raised_read_version_is_illegal() {
    for name in FILES_ALL {
        let (mut proven, mut total) = (0usize, 0usize);
        let h = load(name);
        let reads = reads_with_kv(&h);
        for &(i, j) in reads.iter().step_by(reads.len() / 6) {
            let mut bad = h.clone();
            edit_kv(&mut bad, i, j, |kv| kv.version += 1);
            proven += usize::from(assert_illegal(
                &bad,
                &format!("{name}: version of line {}", h.ops[i].line),
            ));
            total += 1;
        }
        report(name, proven, total);
    }
}

#[test]
fn a_shifted_write_revision_is_illegal() {
    for name in FILES_ALL {
        let (mut proven, mut total) = (0usize, 0usize);
        let h = load(name);
        // Acknowledged puts whose value a read shows: moved to another revision, that
        // read points at a revision nothing could have written it in.
        let shown: Vec<(String, String, i64)> = reads_with_kv(&h)
            .into_iter()
            .map(|(i, j)| {
                let mut c = h.clone();
                let mut kv = KeyValue::default();
                edit_kv(&mut c, i, j, |x| kv = x.clone());
                (kv.key, kv.value, kv.mod_revision)
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
                proven += usize::from(assert_illegal(
                    &bad,
                    &format!("{name}: revision of line {} {delta:+}", o.line),
                ));
                total += 1;
            }
            tried += 1;
            if tried == 6 {
                break;
            }
        }
        assert_eq!(tried, 6, "{name}: too few acknowledged puts read back");
        report(name, proven, total);
    }
}

/// Whether `op` may delete `key`.
fn deletes(op: &Op, key: &str) -> bool {
    match op {
        Op::DeleteRange(d) => match d.range_end.as_deref() {
            None => d.key == key,
            Some("\0") => key >= d.key.as_str(),
            Some(end) => key >= d.key.as_str() && key < end,
        },
        Op::Txn(t) => t.success.iter().chain(&t.failure).any(|o| deletes(o, key)),
        _ => false,
    }
}

/// Whether some unknown-outcome request may delete `key`.
fn unknown_delete_of(h: &History, key: &str) -> bool {
    h.ops
        .iter()
        .any(|o| matches!(o.rec.outcome, Outcome::Unknown) && deletes(&o.rec.op, key))
}

#[test]
fn a_key_missing_from_the_final_read_is_illegal() {
    for name in FILES_ALL {
        let (mut proven, mut total) = (0usize, 0usize);
        let h = load(name);
        // The last op is a full read of every key after the faults healed.
        let last = h.ops.len() - 1;
        let Outcome::Ok(ok) = &h.ops[last].rec.outcome else {
            panic!("{name}: the final read is not acknowledged");
        };
        let OpResult::Range(r) = &ok.result else {
            panic!("{name}: the last op is not a range");
        };
        for (k, kv) in r.kvs.iter().enumerate() {
            // A key an unknown-outcome delete or a lease may remove after its last
            // write may be missing legitimately.
            if kv.lease != 0 || unknown_delete_of(&h, &kv.key) {
                continue;
            }
            let mut bad = h.clone();
            if let Outcome::Ok(ok) = &mut bad.ops[last].rec.outcome
                && let OpResult::Range(r) = &mut ok.result
            {
                r.kvs.remove(k);
                r.count -= 1;
            }
            proven += usize::from(assert_illegal(
                &bad,
                &format!("{name}: final read without its key {k}"),
            ));
            total += 1;
        }
        report(name, proven, total);
    }
}
