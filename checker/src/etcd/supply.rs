//! How many unknown-outcome writes are still there to fill gaps: per key, the unused
//! writes that may put it or delete it, and in all. Gap revisions are produced only by
//! unknown-outcome writes (and, with leases, by expiries and revokes), each used once,
//! so when later reads demand more puts to a key than unused unknown-outcome puts to it
//! remain, or more gaps remain than unused writes, the current path is already lost.
//! With few spare writes (most timed-out writes did apply) this is what refuses a
//! wasteful choice at once. Counting only; the demands themselves come from `demand`.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::history::{History, Op};

use super::prep::Prep;
use super::store::in_range;

/// Unknown-outcome writes per key and when each may take effect.
#[derive(Debug, Clone, Default)]
pub struct Supply {
    /// Per key of [`Prep::seen_keys`] (in its order): the unknown-outcome ops that may
    /// put it.
    puts: Vec<Vec<usize>>,
    /// Likewise, the ops that may delete it.
    deletes: Vec<Vec<usize>>,
    /// Per op: the first revision it may produce (`i64::MAX`: not an unknown-outcome
    /// write).
    lowest: Vec<i64>,
    /// Per op: the last revision it may produce (see `lifetime`).
    highest: Vec<i64>,
    /// Per op: the keys it needs to exist before it can write (see `lifetime`).
    needs: Vec<Vec<String>>,
    /// Gaps may also be filled by lease expiries: no bound in all.
    leases: bool,
    /// Per key slot: some put names a lease for it, so it may also vanish by a lease's
    /// revoke or expiry: no bound from deletes.
    leased: Vec<bool>,
}

/// A bound that never binds.
const UNBOUNDED: i64 = i64::MAX;

/// Slots of the keys a delete of `key` (up to `range_end`, if any) may remove.
pub(crate) fn deleted_slots<'a>(
    slots: &'a BTreeMap<&str, usize>,
    key: &'a str,
    range_end: Option<&'a str>,
) -> Box<dyn Iterator<Item = usize> + 'a> {
    match range_end {
        None => Box::new(slots.get(key).copied().into_iter()),
        Some(end) => Box::new(
            slots
                .range::<str, _>((Bound::Included(key), Bound::Unbounded))
                .take_while(move |(k, _)| in_range(k, key, Some(end)))
                .map(|(_, &s)| s),
        ),
    }
}

/// Slots of the keys `op` may put and delete.
fn written(op: &Op, slots: &BTreeMap<&str, usize>, puts: &mut Vec<usize>, dels: &mut Vec<usize>) {
    match op {
        Op::Put(p) => puts.extend(slots.get(p.key.as_str())),
        Op::DeleteRange(d) => dels.extend(deleted_slots(slots, &d.key, d.range_end.as_deref())),
        Op::Txn(t) => t
            .success
            .iter()
            .chain(&t.failure)
            .for_each(|o| written(o, slots, puts, dels)),
        _ => {}
    }
}

impl Supply {
    /// Indexes the unknown-outcome writes of `p` (its keys, pins and time bounds must
    /// be built).
    pub fn build(h: &History, p: &Prep) -> Supply {
        let leases = h.ops.iter().any(|o| {
            matches!(
                o.rec.op,
                Op::LeaseGrant(_) | Op::LeaseRevoke(_) | Op::LeaseKeepAlive(_)
            )
        }) || h.ops.iter().any(|o| leased_put(&o.rec.op));
        let mut lowest = vec![UNBOUNDED; h.ops.len()];
        for &i in &p.unknown {
            lowest[i] = super::symmetry::lowest_rev(p, h.ops[i].rec.call);
        }
        let slots: BTreeMap<&str, usize> = p
            .seen_keys
            .keys()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let mut puts = vec![Vec::new(); p.seen_keys.len()];
        let mut deletes = vec![Vec::new(); p.seen_keys.len()];
        let mut leased = vec![false; p.seen_keys.len()];
        for o in &h.ops {
            leased_keys(&o.rec.op, &slots, &mut leased);
        }
        let mut needs = vec![Vec::new(); h.ops.len()];
        for &i in &p.unknown {
            let mut keys = super::lifetime::needed_keys(&h.ops[i].rec.op);
            keys.sort_unstable();
            keys.dedup();
            needs[i] = keys.into_iter().map(str::to_owned).collect();
            let mut put_slots = Vec::new();
            let mut delete_slots = Vec::new();
            written(&h.ops[i].rec.op, &slots, &mut put_slots, &mut delete_slots);
            put_slots.sort_unstable();
            put_slots.dedup();
            delete_slots.sort_unstable();
            delete_slots.dedup();
            put_slots.iter().for_each(|&s| puts[s].push(i));
            delete_slots.iter().for_each(|&s| deletes[s].push(i));
        }
        Supply {
            puts,
            deletes,
            lowest,
            highest: super::lifetime::highest(h, p),
            needs,
            leases,
            leased,
        }
    }

    /// The last revision op `i` may produce ([`i64::MAX`]: no bound known).
    pub fn highest(&self, i: usize) -> i64 {
        self.highest.get(i).copied().unwrap_or(UNBOUNDED)
    }

    /// Whether op `i`, unused, may still produce a gap revision in `(r, hi]`: some gap
    /// lies in that range between the first and the last revision it may produce.
    fn usable(&self, p: &Prep, used: &[bool], i: usize, r: i64, hi: i64) -> bool {
        let hi = hi.min(self.highest(i));
        let (lo, hi) = match p.pinned.get(i).copied().flatten() {
            Some(pin) => (pin.max(self.lowest[i]), pin.min(hi)),
            None => (self.lowest[i], hi),
        };
        !used.get(i).copied().unwrap_or(true) && p.gaps_in(r.max(lo - 1), hi) > 0
    }

    fn count(&self, p: &Prep, used: &[bool], ops: Option<&Vec<usize>>, r: i64, hi: i64) -> i64 {
        ops.map_or(0, |v| {
            v.iter()
                .filter(|&&i| self.usable(p, used, i, r, hi))
                .count() as i64
        })
    }

    /// Whether lease expiries may fill gaps (the history has leases).
    pub fn leases(&self) -> bool {
        self.leases
    }

    /// Unused unknown-outcome writes that may put the key in slot `slot` at a gap in
    /// `(r, hi]`.
    pub fn puts(&self, p: &Prep, used: &[bool], slot: usize, r: i64, hi: i64) -> i64 {
        self.count(p, used, self.puts.get(slot), r, hi)
    }

    /// A key that every unused unknown-outcome write that may put the key in slot
    /// `slot` at a gap in `(r, hi]` needs to exist before it writes (None: one needs
    /// none, they need no key in common, or there is no such write).
    pub fn common_needed_key(
        &self,
        p: &Prep,
        used: &[bool],
        slot: usize,
        r: i64,
        hi: i64,
    ) -> Option<&str> {
        let mut writers = self
            .puts
            .get(slot)?
            .iter()
            .filter(|&&i| self.usable(p, used, i, r, hi));
        let first = writers.next()?;
        let mut common: Vec<&str> = self.needs[*first].iter().map(String::as_str).collect();
        for &i in writers {
            common.retain(|k| self.needs[i].iter().any(|n| n == k));
            if common.is_empty() {
                return None;
            }
        }
        common.first().copied()
    }

    /// Unused writes that may delete the key in slot `slot` at a gap in `(r, hi]`
    /// ([`i64::MAX`] when a lease may delete it too).
    pub fn deletes(&self, p: &Prep, used: &[bool], slot: usize, r: i64, hi: i64) -> i64 {
        if self.leased.get(slot).copied().unwrap_or(true) {
            return UNBOUNDED;
        }
        self.count(p, used, self.deletes.get(slot), r, hi)
    }

    /// Unused unknown-outcome writes that may still fill a gap after `r`
    /// ([`i64::MAX`] when lease expiries may fill gaps too).
    pub fn total(&self, p: &Prep, used: &[bool], r: i64) -> i64 {
        if self.leases {
            return UNBOUNDED;
        }
        let all = p.unknown.iter();
        all.filter(|&&i| self.usable(p, used, i, r, p.max_rev))
            .count() as i64
    }
}

/// Marks the slots of keys `op` puts with a lease.
fn leased_keys(op: &Op, slots: &BTreeMap<&str, usize>, out: &mut [bool]) {
    match op {
        Op::Put(p) if p.lease != 0 => {
            if let Some(&s) = slots.get(p.key.as_str()) {
                out[s] = true;
            }
        }
        Op::Txn(t) => t
            .success
            .iter()
            .chain(&t.failure)
            .for_each(|o| leased_keys(o, slots, out)),
        _ => {}
    }
}

fn leased_put(op: &Op) -> bool {
    match op {
        Op::Put(p) => p.lease != 0,
        Op::Txn(t) => t.success.iter().chain(&t.failure).any(leased_put),
        _ => false,
    }
}
