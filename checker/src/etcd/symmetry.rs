//! Interchangeable unknown-outcome writes. Two unknown-outcome writes are interchangeable
//! from a gap revision `r` on when they make the same change to the model except for a
//! value nothing in the history ever shows or compares, and both may fill `r` by real
//! time: real time only sets the lowest revision a write may fill, so both may then
//! fill any gap from `r` on, and swapping them in any explanation of the rest of the
//! history gives another explanation. Every candidate of a gap may fill it, so the
//! replay tries one write per class at each gap (the first unused one in a fixed
//! order), which removes the factorial blow-up of many timed-out writes to few keys,
//! and it remembers the writes used before a gap by their classes (how many of each),
//! not by which ones. It does not search anything itself (see `replay`), and it leaves
//! txns, lease revokes and writes whose value is shown somewhere in classes of their
//! own.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{CompareTarget, History, KeyValue, Op, OpResult, Outcome, WatchResponse};

use super::prep::Prep;
use super::store::{Visible, in_range};

/// What makes two unknown-outcome writes the same change: the request with the put's
/// value left out.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    /// A put of an unseen value: key and lease.
    Put(String, i64),
    /// A delete: key and range end.
    Delete(String, Option<String>),
}

/// Which values of unknown-outcome puts a history shows (results, watch events,
/// previous key-values), and the key ranges whose values some compare looks at.
#[derive(Debug, Clone, Default)]
pub struct Shown {
    /// Per key, the values unknown-outcome puts write, and whether any record shows
    /// the pair (other values are taken as shown).
    values: BTreeMap<String, BTreeMap<String, bool>>,
    compared: Vec<(String, Option<String>)>,
    /// Some record shows a mod revision without the value (a keys-only read) or
    /// compares one: then who wrote a key last may be seen without its value.
    mods_seen: bool,
    /// Keys some record shows present (a read, a previous key-value, a watch event).
    keys_shown: BTreeSet<String>,
    /// Key ranges some compare looks at beyond existence (a value, or a version,
    /// create or mod revision other than 0).
    looked_at: Vec<(String, Option<String>)>,
}

impl Shown {
    fn kv(&mut self, kv: &KeyValue, writer_at: &[Option<usize>]) {
        if !self.keys_shown.contains(&kv.key) {
            self.keys_shown.insert(kv.key.clone());
        }
        // Only a key-value modified at a gap revision can be an unknown-outcome put's.
        let acknowledged = usize::try_from(kv.mod_revision)
            .ok()
            .and_then(|m| writer_at.get(m))
            .is_some_and(Option::is_some);
        if acknowledged {
            return;
        }
        if let Some(seen) = self
            .values
            .get_mut(&kv.key)
            .and_then(|vs| vs.get_mut(&kv.value))
        {
            *seen = true;
        }
    }

    fn result(&mut self, res: &OpResult, w: &[Option<usize>]) {
        match res {
            OpResult::Range(r) => r.kvs.iter().for_each(|kv| self.kv(kv, w)),
            OpResult::Put(p) => p.prev_kv.iter().for_each(|kv| self.kv(kv, w)),
            OpResult::DeleteRange(d) => d.prev_kvs.iter().for_each(|kv| self.kv(kv, w)),
            OpResult::Txn(t) => t.responses.iter().for_each(|r| self.result(r, w)),
            _ => {}
        }
    }

    fn compares(&mut self, op: &Op) {
        if let Op::Range(q) = op {
            self.mods_seen |= q.keys_only;
        }
        if let Op::Txn(t) = op {
            for c in &t.compare {
                self.mods_seen |= matches!(c.target, CompareTarget::Mod(_));
                if matches!(c.target, CompareTarget::Value(_)) {
                    self.compared.push((c.key.clone(), c.range_end.clone()));
                }
                // Against 0, any revision or version of a live key compares alike.
                let existence = match c.target {
                    CompareTarget::Version(n)
                    | CompareTarget::Create(n)
                    | CompareTarget::Mod(n) => n == 0,
                    CompareTarget::Lease(_) => true,
                    CompareTarget::Value(_) => false,
                };
                if !existence {
                    self.looked_at.push((c.key.clone(), c.range_end.clone()));
                }
            }
            t.success
                .iter()
                .chain(&t.failure)
                .for_each(|o| self.compares(o));
        }
    }

    /// Collects what `h` shows of the values its unknown-outcome puts (indexed in `p`)
    /// write.
    pub fn collect(h: &History, p: &Prep) -> Shown {
        let mut s = Shown::default();
        for (k, v) in p.unknown_by_put.keys() {
            s.values
                .entry(k.clone())
                .or_default()
                .insert(v.clone(), false);
        }
        for o in &h.ops {
            s.compares(&o.rec.op);
            if let Outcome::Ok(ok) = &o.rec.outcome {
                s.result(&ok.result, &p.writer_at);
            }
        }
        for w in &h.watches {
            for (_, r) in &w.responses {
                if let WatchResponse::Events(e) = r {
                    for ev in &e.events {
                        s.kv(&ev.kv, &p.writer_at);
                        ev.prev_kv.iter().for_each(|kv| s.kv(kv, &p.writer_at));
                    }
                }
            }
        }
        s
    }

    /// Whether the value `v` a put writes to `key` can never matter.
    pub fn unseen(&self, key: &str, v: &str) -> bool {
        self.values.get(key).and_then(|vs| vs.get(v)) == Some(&false)
            && !self
                .compared
                .iter()
                .any(|(k, e)| in_range(key, k, e.as_deref()))
    }
}

/// The lowest revision an op invoked at `call` may produce: revisions already shown
/// when it was invoked are out of reach (the same rule the replay's candidates use).
pub fn lowest_rev(p: &Prep, call: u64) -> i64 {
    let by_deadline = p.min_ret_from.partition_point(|&t| t <= call) as i64;
    let by_seen = p.max_rev_before(call).map_or(i64::MIN, |(m, _)| m + 1);
    by_deadline.max(by_seen)
}

/// For every op, its class of interchangeable unknown-outcome writes (None: an op that
/// is not interchangeable with any other). Ops of one class are the same change; two of
/// them are interchangeable from the first gap both may fill by real time on (see
/// [`lowest_rev`]).
pub fn classes(h: &History, p: &Prep, shown: &Shown) -> Vec<Option<u32>> {
    let mut ids: BTreeMap<Shape, u32> = BTreeMap::new();
    let mut out = vec![None; h.ops.len()];
    for &i in &p.unknown {
        if p.pinned.get(i).copied().flatten().is_some() {
            continue;
        }
        let shape = match &h.ops[i].rec.op {
            Op::Put(q) if shown.unseen(&q.key, &q.value) => Shape::Put(q.key.clone(), q.lease),
            Op::DeleteRange(d) => Shape::Delete(d.key.clone(), d.range_end.clone()),
            _ => continue,
        };
        let next = ids.len() as u32;
        out[i] = Some(*ids.entry(shape).or_insert(next));
    }
    out
}

impl Shown {
    /// Whether a key-value can be remembered without its value and mod revision: its
    /// value is never shown nor compared, and no record shows mod revisions alone. No
    /// later read can then tell it from another such write of the key with the same
    /// create revision, version and lease (a read showing it would show its value).
    pub fn hidden(&self, kv: &KeyValue) -> bool {
        !self.mods_seen && self.unseen(&kv.key, &kv.value)
    }

    /// How much of a live key-value later records can see. A key no record ever shows
    /// present and no compare looks at beyond its existence is seen only by existing
    /// (ranges count it, absent reads and `create > 0` compares tell it from an absent
    /// key) and by its lease (whose revoke or expiry deletes it): two states that differ
    /// only in its value, version or revisions (the order in which unobservable writes
    /// made it) have the same futures. Otherwise see [`Shown::hidden`].
    pub fn visible(&self, kv: &KeyValue) -> Visible {
        if !self.keys_shown.contains(&kv.key)
            && !self
                .looked_at
                .iter()
                .any(|(k, e)| in_range(&kv.key, k, e.as_deref()))
        {
            Visible::Lease
        } else if self.hidden(kv) {
            Visible::Revisions
        } else {
            Visible::All
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HISTORY: &str = r#"
{"type":"op","client":1,"call":1,"ret":2,"op":{"put":{"key":"a","value":"1"}},"outcome":{"ok":{"revision":2,"result":{"put":{}}}}}
{"type":"op","client":2,"call":3,"op":{"put":{"key":"b","value":"u1"}},"outcome":"unknown"}
{"type":"op","client":3,"call":4,"op":{"put":{"key":"b","value":"u2"}},"outcome":"unknown"}
{"type":"op","client":4,"call":5,"op":{"put":{"key":"b","value":"u3"}},"outcome":"unknown"}
{"type":"op","client":5,"call":6,"op":{"delete_range":{"key":"b"}},"outcome":"unknown"}
{"type":"op","client":1,"call":7,"ret":8,"op":{"range":{"key":"b"}},"outcome":{"ok":{"revision":3,"result":{"range":{"kvs":[{"key":"b","value":"u3","create_revision":3,"mod_revision":3,"version":1}],"count":1}}}}}
{"type":"op","client":6,"call":9,"op":{"put":{"key":"b","value":"u4"}},"outcome":"unknown"}
"#;

    fn prep(text: &str) -> (History, Prep) {
        let h = History::parse(text).expect("parses");
        let p = Prep::build(&h, false).expect("prepares");
        (h, p)
    }

    #[test]
    fn same_change_is_one_class() {
        let (h, p) = prep(HISTORY);
        let c = &p.class_of;
        // Op indexes follow the lines above.
        assert!(c[1].is_some());
        assert_eq!(
            c[1], c[2],
            "two puts of unseen values to b, invoked together"
        );
        assert_eq!(c[3], None, "u3 is read back: it names its revision");
        assert!(c[4].is_some() && c[4] != c[1], "a delete is another change");
        assert_eq!(
            c[6], c[1],
            "u4 came after revision 3 was seen, but from 4 on it is the same change"
        );
        let lowest = |i: usize| lowest_rev(&p, h.ops[i].rec.call);
        assert!(lowest(6) > lowest(1), "u4 cannot fill revision 3");
        assert_eq!(c[0], None, "acknowledged writes have no class");
    }

    #[test]
    fn hidden_values_are_those_of_unknown_puts_nothing_shows() {
        let (_, p) = prep(HISTORY);
        let kv = |k: &str, v: &str| KeyValue {
            key: k.to_owned(),
            value: v.to_owned(),
            ..KeyValue::default()
        };
        assert!(p.shown.hidden(&kv("b", "u1")));
        assert!(!p.shown.hidden(&kv("b", "u3")));
        assert!(!p.shown.hidden(&kv("a", "1")));
        // A keys-only read shows mod revisions without values: nothing is hidden.
        let keys_only = r#"
{"type":"op","client":7,"call":10,"ret":11,"op":{"range":{"key":"a","keys_only":true}},"outcome":{"ok":{"revision":3,"result":{"range":{"kvs":[{"key":"a","value":"","create_revision":2,"mod_revision":2,"version":1}],"count":1}}}}}
"#;
        let (_, p) = prep(&format!("{HISTORY}{keys_only}"));
        assert!(!p.shown.hidden(&kv("b", "u1")));
    }

    #[test]
    fn a_compared_value_is_never_anonymous() {
        let txn = r#"
{"type":"op","client":7,"call":10,"ret":11,"op":{"txn":{"compare":[{"key":"b","target":{"value":"zz"},"result":"less"}],"success":[],"failure":[]}},"outcome":{"ok":{"revision":3,"result":{"txn":{"succeeded":true,"responses":[]}}}}}
"#;
        let (_, p) = prep(&format!("{HISTORY}{txn}"));
        assert_eq!(p.class_of[1], None);
        assert_eq!(p.class_of[2], None);
        assert!(p.class_of[4].is_some(), "deletes carry no value");
    }

    #[test]
    fn a_key_no_record_shows_is_seen_only_by_existing() {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.to_owned(),
            value: v.to_owned(),
            ..KeyValue::default()
        };
        // b is read back (u3), a is put by an acknowledged write only and never read,
        // c is never put.
        let (_, p) = prep(HISTORY);
        assert_eq!(p.shown.visible(&kv("a", "1")), Visible::Lease);
        assert_eq!(p.shown.visible(&kv("c", "x")), Visible::Lease);
        assert_eq!(p.shown.visible(&kv("b", "u1")), Visible::Revisions);
        assert_eq!(p.shown.visible(&kv("b", "u3")), Visible::All);
        // A compare on existence alone leaves a unseen; one on its version does not.
        let exists = r#"
{"type":"op","client":7,"call":10,"op":{"txn":{"compare":[{"key":"a","target":{"create":0},"result":"greater"}],"success":[{"put":{"key":"d","value":"1"}}],"failure":[]}},"outcome":"unknown"}
"#;
        let (_, p) = prep(&format!("{HISTORY}{exists}"));
        assert_eq!(p.shown.visible(&kv("a", "1")), Visible::Lease);
        let version = exists.replace(r#"{"create":0}"#, r#"{"version":2}"#);
        let (_, p) = prep(&format!("{HISTORY}{version}"));
        assert_eq!(p.shown.visible(&kv("a", "1")), Visible::All);
        // A range read showing a makes it visible.
        let read = r#"
{"type":"op","client":7,"call":10,"ret":11,"op":{"range":{"key":"a","range_end":"b"}},"outcome":{"ok":{"revision":3,"result":{"range":{"kvs":[{"key":"a","value":"1","create_revision":2,"mod_revision":2,"version":1}],"count":1}}}}}
"#;
        let (_, p) = prep(&format!("{HISTORY}{read}"));
        assert_eq!(p.shown.visible(&kv("a", "1")), Visible::All);
    }
}
