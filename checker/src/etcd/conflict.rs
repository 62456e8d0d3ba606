//! Key ranges and conflict sets for the replay's backjumping: which keys a failure
//! depends on and whether two ranges share a key. Pure helpers; the search itself is
//! in `replay`.

use crate::history::Op;

/// A key range `[key, end)` with etcd's conventions (None: the single key).
pub type KeyRange = (String, Option<String>);
/// Keys a failure depends on; None: unknown (anything may matter).
pub type Conflict = Option<Vec<KeyRange>>;

/// Whether `x` lies below the exclusive upper end of the range `[key, end)`. A single
/// key's end is `key` followed by a zero byte, and `x < key + "\0"` exactly when
/// `x <= key` in byte order, so no string is built.
fn below_end(x: &str, key: &str, end: Option<&str>) -> bool {
    match end {
        None => x <= key,
        Some("\0") => true,
        Some(e) => x < e,
    }
}

/// Whether two key ranges share a key.
pub fn overlap(a: &KeyRange, b: &KeyRange) -> bool {
    below_end(&a.0, &b.0, b.1.as_deref()) && below_end(&b.0, &a.0, a.1.as_deref())
}

/// Adds `from`'s keys to `into` (None on either side: unknown).
pub fn merge(into: &mut Conflict, from: &Conflict) {
    match (into.as_mut(), from) {
        (Some(v), Some(f)) => {
            v.extend(f.iter().cloned());
            dedup(v);
        }
        _ => *into = None,
    }
}

/// Drops repeated ranges: a conflict is a set, and merging along a long backtrack
/// otherwise grows it with copies that every overlap test then scans.
pub fn dedup(v: &mut Vec<KeyRange>) {
    v.sort_unstable();
    v.dedup();
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition: the upper ends spelled out as strings.
    fn overlap_by_definition(a: &KeyRange, b: &KeyRange) -> bool {
        let upper = |k: &str, e: Option<&str>| match e {
            None => Some(format!("{k}\0")),
            Some("\0") => None,
            Some(e) => Some(e.to_owned()),
        };
        let (ha, hb) = (upper(&a.0, a.1.as_deref()), upper(&b.0, b.1.as_deref()));
        hb.is_none_or(|h| a.0 < h) && ha.is_none_or(|h| b.0 < h)
    }

    fn range() -> impl Strategy<Value = KeyRange> {
        // Short keys over a tiny alphabet with the zero byte, so prefixes and the
        // open end "\0" come up often.
        let key = "[ab\u{0}]{0,3}";
        (key, prop::option::of(key)).prop_map(|(k, e)| (k, e))
    }

    proptest! {
        #[test]
        fn overlap_matches_its_definition(a in range(), b in range()) {
            prop_assert_eq!(overlap(&a, &b), overlap_by_definition(&a, &b));
            prop_assert_eq!(overlap(&a, &b), overlap(&b, &a));
        }
    }

    #[test]
    fn single_keys_and_ranges() {
        let k = |s: &str| (s.to_owned(), None);
        let r = |s: &str, e: &str| (s.to_owned(), Some(e.to_owned()));
        assert!(overlap(&k("a"), &k("a")));
        assert!(!overlap(&k("a"), &k("a\0")));
        assert!(overlap(&r("a", "b"), &k("a\0")));
        assert!(!overlap(&r("a", "b"), &k("b")));
        assert!(overlap(&r("b", "\0"), &k("zz")));
        assert!(!overlap(&r("b", "\0"), &k("a")));
    }
}
