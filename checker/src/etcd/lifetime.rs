//! The last revision an unknown-outcome txn can still write at. A txn that writes only
//! when its compares hold (its failure branch writes nothing) and that compares a key
//! in a way no absent key passes (a lock's `create > 0`, an election's `create == c`)
//! writes only while that key exists. When every put that may create the key names a
//! lease that an acknowledged revoke ends at revision `R`, the key is gone by `R`
//! (a revoked lease takes no puts and its revoke deletes its keys in a revision of its
//! own), so the txn can take no revision after `R - 1` (or `R`, if it writes the key
//! itself). Lock and election clients leave many such txns behind when they time out;
//! bounding them stops the supply of gap writes from counting a txn whose lock is long
//! gone. Bounds only; which gap a txn fills is searched in `replay`.

use std::collections::BTreeMap;

use crate::history::{History, Op, Outcome};

use super::prep::Prep;
use super::store::{holds_when_absent, in_range};

/// No bound.
pub const UNBOUNDED_REV: i64 = i64::MAX;

/// Every put some request may make (any outcome but a definite failure; a txn's puts in
/// either branch): its key and lease (0 for none).
pub(super) fn possible_puts(h: &History) -> Vec<(&str, i64)> {
    fn puts<'a>(op: &'a Op, out: &mut Vec<(&'a str, i64)>) {
        match op {
            Op::Put(q) => out.push((&q.key, q.lease)),
            Op::Txn(t) => t
                .success
                .iter()
                .chain(&t.failure)
                .for_each(|o| puts(o, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    for o in &h.ops {
        if !matches!(o.rec.outcome, Outcome::Fail(_)) {
            puts(&o.rec.op, &mut all);
        }
    }
    all
}

/// Per key, the latest first-revoke revision over the leases of every put that may
/// write it; a key some put writes without a lease, or with a lease no acknowledged
/// revoke ends, is absent (unbounded).
fn key_deadlines(h: &History, p: &Prep) -> BTreeMap<String, i64> {
    let all = possible_puts(h);
    // Per key: Some(latest end) while every put so far is bounded, None once one is not.
    let mut ends: BTreeMap<&str, Option<i64>> = BTreeMap::new();
    for (key, lease) in all {
        let end = (lease != 0)
            .then(|| {
                p.revoked_by
                    .get(&lease)
                    .and_then(|v| v.first())
                    .map(|x| x.0)
            })
            .flatten();
        let e = ends.entry(key).or_insert(end);
        *e = match (*e, end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    ends.into_iter()
        .filter_map(|(k, e)| e.map(|e| (k.to_owned(), e)))
        .collect()
}

/// Whether `op` may put or delete `key`.
fn writes_key(op: &Op, key: &str) -> bool {
    match op {
        Op::Put(q) => q.key == key,
        Op::DeleteRange(d) => in_range(key, &d.key, d.range_end.as_deref()),
        Op::Txn(t) => t
            .success
            .iter()
            .chain(&t.failure)
            .any(|o| writes_key(o, key)),
        _ => false,
    }
}

/// The keys an unknown-outcome txn needs to exist before it can write: it writes only
/// through its success branch (its failure branch writes nothing), and each of these
/// single-key compares fails on an absent key. Empty for every other op.
pub fn needed_keys(op: &Op) -> Vec<&str> {
    let Op::Txn(t) = op else {
        return Vec::new();
    };
    if t.failure.iter().any(super::store::may_write) {
        return Vec::new();
    }
    t.compare
        .iter()
        .filter(|c| c.range_end.is_none() && !holds_when_absent(c))
        .map(|c| c.key.as_str())
        .collect()
}

/// Per op, the last revision it can produce as an unknown-outcome write
/// ([`UNBOUNDED_REV`]: no bound known; only txns of `p.unknown` get one).
pub fn highest(h: &History, p: &Prep) -> Vec<i64> {
    let mut out = vec![UNBOUNDED_REV; h.ops.len()];
    let deadlines = key_deadlines(h, p);
    if deadlines.is_empty() {
        return out;
    }
    for &i in &p.unknown {
        let op = &h.ops[i].rec.op;
        for key in needed_keys(op) {
            let Some(&end) = deadlines.get(key) else {
                continue;
            };
            // At `end` the revoke deletes the key in its own revision, unless the txn
            // itself moved the key off the lease at `end`.
            let last = if writes_key(op, key) { end } else { end - 1 };
            out[i] = out[i].min(last);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn highest_of(text: &str) -> Vec<i64> {
        let h = History::parse(text).expect("parses");
        let p = Prep::build(&h, false).expect("prepares");
        highest(&h, &p)
    }

    const LOCK: &str = r#"
{"type":"op","client":1,"call":1,"ret":2,"op":{"lease_grant":{"id":7,"ttl":5}},"outcome":{"ok":{"revision":1,"result":{"lease_grant":{"id":7,"ttl":5}}}}}
{"type":"op","client":1,"call":3,"op":{"put":{"key":"lock/a","value":"","lease":7}},"outcome":"unknown"}
{"type":"op","client":2,"call":4,"op":{"txn":{"compare":[{"key":"lock/a","target":{"create":0},"result":"greater"}],"success":[{"put":{"key":"data","value":"x"}}],"failure":[]}},"outcome":"unknown"}
{"type":"op","client":3,"call":5,"ret":6,"op":{"put":{"key":"k","value":"1"}},"outcome":{"ok":{"revision":3,"result":{"put":{}}}}}
{"type":"op","client":3,"call":7,"ret":8,"op":{"lease_revoke":{"id":7}},"outcome":{"ok":{"revision":5,"result":{"lease_revoke":{}}}}}
"#;

    #[test]
    fn a_lock_txn_ends_before_its_lease_is_revoked() {
        assert_eq!(highest_of(LOCK)[2], 4, "the revoke at 5 deletes lock/a");
        assert_eq!(highest_of(LOCK)[1], UNBOUNDED_REV, "puts get no bound");
    }

    #[test]
    fn a_txn_writing_its_compared_key_may_take_the_revoke_revision() {
        let text = LOCK.replace(
            r#""success":[{"put":{"key":"data","value":"x"}}]"#,
            r#""success":[{"delete_range":{"key":"lock/"}}]"#,
        );
        assert_eq!(
            highest_of(&text)[2],
            4,
            "deleting the key lock/ leaves lock/a"
        );
        let text = LOCK.replace(
            r#""success":[{"put":{"key":"data","value":"x"}}]"#,
            r#""success":[{"delete_range":{"key":"lock/","range_end":"lock0"}}]"#,
        );
        assert_eq!(highest_of(&text)[2], 5);
    }

    #[test]
    fn no_bound_without_a_revoke_a_lease_or_with_a_writing_failure_branch() {
        let no_revoke: String = LOCK
            .lines()
            .filter(|l| !l.contains("revoke"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(highest_of(&no_revoke)[2], UNBOUNDED_REV);
        let unleased = format!(
            "{LOCK}{}\n",
            r#"{"type":"op","client":4,"call":9,"op":{"put":{"key":"lock/a","value":""}},"outcome":"unknown"}"#
        );
        assert_eq!(highest_of(&unleased)[2], UNBOUNDED_REV);
        let failing = LOCK.replace(
            r#""failure":[]"#,
            r#""failure":[{"put":{"key":"f","value":"y"}}]"#,
        );
        assert_eq!(highest_of(&failing)[2], UNBOUNDED_REV);
        let absent_ok = LOCK.replace(r#""result":"greater""#, r#""result":"equal""#);
        assert_eq!(
            highest_of(&absent_ok)[2],
            UNBOUNDED_REV,
            "create == 0 holds when absent"
        );
    }
}
