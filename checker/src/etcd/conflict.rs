//! Key ranges and conflict sets for the replay's backjumping: which keys a failure
//! depends on and whether two ranges share a key. Pure helpers; the search itself is
//! in `replay`.

use crate::history::Op;

/// A key range `[key, end)` with etcd's conventions (None: the single key).
pub type KeyRange = (String, Option<String>);
/// Keys a failure depends on; None: unknown (anything may matter).
pub type Conflict = Option<Vec<KeyRange>>;

fn upper(key: &str, end: Option<&str>) -> Option<String> {
    match end {
        None => Some(format!("{key}\0")),
        Some("\0") => None,
        Some(e) => Some(e.to_owned()),
    }
}

/// Whether two key ranges share a key.
pub fn overlap(a: &KeyRange, b: &KeyRange) -> bool {
    let (ha, hb) = (upper(&a.0, a.1.as_deref()), upper(&b.0, b.1.as_deref()));
    hb.is_none_or(|h| a.0 < h) && ha.is_none_or(|h| b.0 < h)
}

pub fn merge(into: &mut Conflict, from: &Conflict) {
    match (into.as_mut(), from) {
        (Some(v), Some(f)) => v.extend(f.iter().cloned()),
        _ => *into = None,
    }
}

/// Key ranges a request reads or writes (compares included).
pub fn op_ranges(op: &Op, out: &mut Vec<KeyRange>) {
    match op {
        Op::Range(q) => out.push((q.key.clone(), q.range_end.clone())),
        Op::Put(p) => out.push((p.key.clone(), None)),
        Op::DeleteRange(d) => out.push((d.key.clone(), d.range_end.clone())),
        Op::Txn(t) => {
            out.extend(
                t.compare
                    .iter()
                    .map(|c| (c.key.clone(), c.range_end.clone())),
            );
            t.success
                .iter()
                .chain(&t.failure)
                .for_each(|o| op_ranges(o, out));
        }
        _ => {}
    }
}
