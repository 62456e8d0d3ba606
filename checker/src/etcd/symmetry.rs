//! Interchangeable unknown-outcome writes. Two unknown-outcome writes are interchangeable
//! when they make the same change to the model except for a value nothing in the
//! history ever shows or compares, and fit exactly the same gap revisions by real time:
//! swapping them in any explanation of the history gives another explanation. The
//! replay then tries one write per class at each gap (the first unused one in a fixed
//! order), which removes the factorial blow-up of many timed-out writes to few keys.
//! It does not search anything itself (see `replay`), and it leaves txns, lease
//! revokes and writes whose value is shown somewhere in classes of their own.

use std::collections::BTreeMap;

use crate::history::{CompareTarget, History, KeyValue, Op, OpResult, Outcome, WatchResponse};

use super::prep::Prep;
use super::store::in_range;

/// What makes two unknown-outcome writes the same change: the request with the put's
/// value left out, and the lowest gap revision real time lets it fill.
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
}

impl Shown {
    fn kv(&mut self, kv: &KeyValue) {
        if let Some(seen) = self
            .values
            .get_mut(&kv.key)
            .and_then(|vs| vs.get_mut(&kv.value))
        {
            *seen = true;
        }
    }

    fn result(&mut self, res: &OpResult) {
        match res {
            OpResult::Range(r) => r.kvs.iter().for_each(|kv| self.kv(kv)),
            OpResult::Put(p) => p.prev_kv.iter().for_each(|kv| self.kv(kv)),
            OpResult::DeleteRange(d) => d.prev_kvs.iter().for_each(|kv| self.kv(kv)),
            OpResult::Txn(t) => t.responses.iter().for_each(|r| self.result(r)),
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
                s.result(&ok.result);
            }
        }
        for w in &h.watches {
            for (_, r) in &w.responses {
                if let WatchResponse::Events(e) = r {
                    for ev in &e.events {
                        s.kv(&ev.kv);
                        ev.prev_kv.iter().for_each(|kv| s.kv(kv));
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
/// is not interchangeable with any other). Ops of one class are the same change.
pub fn classes(h: &History, p: &Prep, shown: &Shown) -> Vec<Option<u32>> {
    let mut ids: BTreeMap<(Shape, i64), u32> = BTreeMap::new();
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
        let key = (shape, lowest_rev(p, h.ops[i].rec.call));
        let next = ids.len() as u32;
        out[i] = Some(*ids.entry(key).or_insert(next));
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
}
