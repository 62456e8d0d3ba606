//! Which keys one gap revision may change together. A gap is produced by one
//! unknown-outcome write or by one lease revoke or expiry, so it changes only keys that
//! write names (a put's key, a delete's range, a txn's branches) or that were ever
//! attached to that lease. Keys are joined into components when some gap filler may
//! change several of them; gaps that change keys of different components are then
//! different gaps, so the writes later reads demand of different components add up.
//! Grouping only; the demands themselves are in `demand`.

use std::collections::BTreeMap;

use crate::history::{History, Op};

use super::prep::Prep;
use super::supply::deleted_slots;

/// Per key of [`Prep::seen_keys`] (in its order), the component it belongs to; ids
/// are below the number of keys.
#[derive(Debug, Clone, Default)]
pub struct Components {
    /// Component id per key slot.
    pub of: Vec<usize>,
    /// Per op, the slots of the keys it may change when it is an unknown-outcome write
    /// (empty otherwise), sorted.
    pub op_slots: Vec<Vec<usize>>,
    /// Slot of each key of [`Prep::seen_keys`].
    pub slot: BTreeMap<String, usize>,
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

fn join(parent: &mut [usize], slots: &[usize]) {
    if let Some((&first, rest)) = slots.split_first() {
        let a = find(parent, first);
        for &s in rest {
            let b = find(parent, s);
            parent[b] = a;
        }
    }
}

/// Slots of the keys `op` may change, and `(lease, slot)` for each put naming a lease.
fn written(
    op: &Op,
    slots: &BTreeMap<&str, usize>,
    out: &mut Vec<usize>,
    leased: &mut Vec<(i64, usize)>,
) {
    match op {
        Op::Put(p) => {
            if let Some(&s) = slots.get(p.key.as_str()) {
                out.push(s);
                if p.lease != 0 {
                    leased.push((p.lease, s));
                }
            }
        }
        Op::DeleteRange(d) => out.extend(deleted_slots(slots, &d.key, d.range_end.as_deref())),
        Op::Txn(t) => t
            .success
            .iter()
            .chain(&t.failure)
            .for_each(|o| written(o, slots, out, leased)),
        _ => {}
    }
}

impl Components {
    /// Groups the keys of `p` (its keys and unknown-outcome writes must be indexed).
    pub fn build(h: &History, p: &Prep) -> Components {
        let slots: BTreeMap<&str, usize> = p
            .seen_keys
            .keys()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let mut parent: Vec<usize> = (0..slots.len()).collect();
        let mut unknown = vec![false; h.ops.len()];
        p.unknown.iter().for_each(|&i| unknown[i] = true);
        let mut leased = Vec::new();
        let mut op_slots = vec![Vec::new(); h.ops.len()];
        for ((o, &gap_filler), keys) in h.ops.iter().zip(&unknown).zip(&mut op_slots) {
            // Every put naming a lease, whatever its outcome, may tie its key to it.
            written(&o.rec.op, &slots, keys, &mut leased);
            if gap_filler {
                keys.sort_unstable();
                keys.dedup();
                join(&mut parent, keys);
            } else {
                keys.clear();
            }
        }
        // A lease's revoke or expiry deletes every key attached to it in one revision.
        leased.sort_unstable();
        for group in leased.chunk_by(|a, b| a.0 == b.0) {
            let s: Vec<usize> = group.iter().map(|&(_, s)| s).collect();
            join(&mut parent, &s);
        }
        let of = (0..parent.len()).map(|x| find(&mut parent, x)).collect();
        let slot = slots.into_iter().map(|(k, s)| (k.to_owned(), s)).collect();
        Components { of, op_slots, slot }
    }
}
