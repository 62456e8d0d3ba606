//! Shrinks an Illegal etcd history to a small sub-history that fails the same way: first
//! the records touching the keys of the violation, then delta debugging over the
//! operations. A candidate counts as failing "the same way" when it is Illegal with the
//! same property and the same message, checked with revision gaps allowed (the writes
//! cut away are treated as writes outside the sub-history). It never renumbers
//! revisions, and it is bounded by a number of checks, so it always ends.

use std::collections::BTreeSet;

use crate::etcd::{self, Options};
use crate::history::{Event, History, KeyValue, Op, OpResult, Outcome, WatchResponse};
use crate::verdict::{Verdict, Violation};

/// Checks spent on shrinking at most.
pub const SHRINK_CHECKS_MAX: usize = 400;
/// Operations re-checked in total while shrinking at most (bounds the time on large
/// histories: each check costs about its number of operations).
pub const SHRINK_WORK_OPS_MAX: usize = 3_000_000;

/// A shrunk failing sub-history.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The records kept (with their original line numbers).
    pub history: History,
    /// Whether it fails only when revision gaps are allowed (writes outside it); false
    /// means it fails under the normal check as well.
    pub needs_gaps: bool,
    /// Whether it was re-checked and fails the same way; false when nothing smaller
    /// than the whole history was found to (then `history` holds just the records the
    /// violation names).
    pub reproduces: bool,
}

/// Shrinks `h`, which violates `v`, to a small sub-history that still does.
pub fn shrink(h: &History, v: &Violation, opts: &Options) -> Shrunk {
    let checks = std::cell::Cell::new(0usize);
    let work = std::cell::Cell::new(0usize);
    let out_of_budget = || checks.get() >= SHRINK_CHECKS_MAX || work.get() >= SHRINK_WORK_OPS_MAX;
    let fails = |sub: &History, allow_gaps: bool| {
        checks.set(checks.get() + 1);
        work.set(work.get() + sub.ops.len());
        let o = Options {
            allow_gaps,
            ..*opts
        };
        matches!(etcd::check(sub, &o),
            Verdict::Illegal(x) if x.property == v.property && x.message == v.message)
    };
    let lines: BTreeSet<usize> = v.lines.iter().copied().collect();
    let keys = keys_of(h, &lines);
    let by_keys = restrict(h, |line, touched| {
        lines.contains(&line) || touched.iter().any(|k| keys.contains(k))
    });
    let (mut cur, needs_gaps) = if fails(&by_keys, true) {
        (by_keys, true)
    } else if fails(h, true) {
        (h.clone(), true)
    } else if fails(h, false) {
        (h.clone(), false)
    } else {
        return Shrunk {
            history: restrict(h, |line, _| lines.contains(&line)),
            needs_gaps: false,
            reproduces: false,
        };
    };
    // Watch streams go whole when the violation does not need them.
    if !cur.watches.is_empty() && !out_of_budget() {
        let mut cand = cur.clone();
        cand.watches.clear();
        if fails(&cand, needs_gaps) {
            cur = cand;
        }
    }
    // Delta debugging over the operations (watch streams stay whole).
    let mut n = 2usize;
    while cur.ops.len() >= 2 && !out_of_budget() {
        let len = cur.ops.len();
        let chunk = len.div_ceil(n);
        let mut reduced = false;
        for start in (0..len).step_by(chunk) {
            if out_of_budget() {
                break;
            }
            let mut cand = cur.clone();
            cand.ops.drain(start..(start + chunk).min(len));
            if fails(&cand, needs_gaps) {
                cur = cand;
                n = (n - 1).max(2);
                reduced = true;
                break;
            }
        }
        if !reduced {
            if n >= len {
                break;
            }
            n = (2 * n).min(len);
        }
    }
    Shrunk {
        history: cur,
        needs_gaps,
        reproduces: true,
    }
}

/// The sub-history of records for which `keep(line, keys touched)` holds. A watch
/// stream is kept whole when its create record or any response is kept.
fn restrict(h: &History, keep: impl Fn(usize, &[String]) -> bool) -> History {
    let mut out = History {
        meta: h.meta.clone(),
        ..History::default()
    };
    for o in &h.ops {
        let mut ks = Vec::new();
        op_keys(&o.rec.op, &mut ks);
        if let Outcome::Ok(ok) = &o.rec.outcome {
            result_keys(&ok.result, &mut ks);
        }
        if keep(o.line, &ks) {
            out.ops.push(o.clone());
        }
    }
    for w in &h.watches {
        let mut any = keep(w.line, &[]);
        for (line, r) in &w.responses {
            let mut ks = Vec::new();
            if let WatchResponse::Events(e) = r {
                e.events.iter().for_each(|e| event_keys(e, &mut ks));
            }
            any |= keep(*line, &ks);
        }
        if any {
            out.watches.push(w.clone());
        }
    }
    out
}

fn keys_of(h: &History, lines: &BTreeSet<usize>) -> BTreeSet<String> {
    let mut ks = Vec::new();
    for o in h.ops.iter().filter(|o| lines.contains(&o.line)) {
        op_keys(&o.rec.op, &mut ks);
        if let Outcome::Ok(ok) = &o.rec.outcome {
            result_keys(&ok.result, &mut ks);
        }
    }
    for w in &h.watches {
        for (line, r) in &w.responses {
            if let (true, WatchResponse::Events(e)) = (lines.contains(line), r) {
                e.events.iter().for_each(|e| event_keys(e, &mut ks));
            }
        }
    }
    ks.into_iter().collect()
}

fn op_keys(op: &Op, out: &mut Vec<String>) {
    match op {
        Op::Range(q) if q.range_end.is_none() => out.push(q.key.clone()),
        Op::Put(p) => out.push(p.key.clone()),
        Op::DeleteRange(d) if d.range_end.is_none() => out.push(d.key.clone()),
        Op::Txn(t) => {
            out.extend(t.compare.iter().map(|c| c.key.clone()));
            t.success
                .iter()
                .chain(&t.failure)
                .for_each(|o| op_keys(o, out));
        }
        _ => {}
    }
}

fn kv_keys<'a>(kvs: impl IntoIterator<Item = &'a KeyValue>, out: &mut Vec<String>) {
    out.extend(kvs.into_iter().map(|k| k.key.clone()));
}

fn result_keys(res: &OpResult, out: &mut Vec<String>) {
    match res {
        OpResult::Range(r) => kv_keys(&r.kvs, out),
        OpResult::Put(p) => kv_keys(&p.prev_kv, out),
        OpResult::DeleteRange(d) => kv_keys(&d.prev_kvs, out),
        OpResult::Txn(t) => t.responses.iter().for_each(|r| result_keys(r, out)),
        _ => {}
    }
}

fn event_keys(e: &Event, out: &mut Vec<String>) {
    out.push(e.kv.key.clone());
}
