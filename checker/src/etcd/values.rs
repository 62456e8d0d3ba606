//! Values read, checked against the writes that may have made them before any search:
//! a read showing a key modified at a revision an acknowledged write produced must show
//! that write's key and value, and a value shown at a revision no acknowledged write
//! produced needs an unknown-outcome write of that value that may have taken effect
//! there. Either failure holds whatever the unknown-outcome writes did, so it is
//! reported at once instead of after the search has tried every way to fill the gaps.
//! Txn writers and watch events are left to the replay.

use crate::history::{History, KeyValue, Op, OpResult, Outcome};
use crate::verdict::{Property, Verdict};

use super::prep::Prep;
use super::symmetry::lowest_rev;

/// One key-value a read showed, with whether its value is shown (not keys-only).
struct Shown<'a> {
    kv: &'a KeyValue,
    valued: bool,
}

fn shown<'a>(op: &'a Op, res: &'a OpResult, out: &mut Vec<Shown<'a>>) {
    match (op, res) {
        (Op::Range(q), OpResult::Range(r)) => out.extend(r.kvs.iter().map(|kv| Shown {
            kv,
            valued: !q.keys_only,
        })),
        (_, OpResult::Put(r)) => out.extend(r.prev_kv.iter().map(|kv| Shown { kv, valued: true })),
        (_, OpResult::DeleteRange(r)) => {
            out.extend(r.prev_kvs.iter().map(|kv| Shown { kv, valued: true }))
        }
        (Op::Txn(t), OpResult::Txn(r)) => {
            let branch = if r.succeeded { &t.success } else { &t.failure };
            for (o, res) in branch.iter().zip(&r.responses) {
                shown(o, res, out);
            }
        }
        _ => {}
    }
}

/// Checks every value acknowledged ops show against the writers of its mod revision.
/// With `allow_gaps` (sub-histories), revisions without a writer are not judged.
pub fn check(h: &History, p: &Prep, allow_gaps: bool) -> Result<(), Verdict> {
    let mut kvs = Vec::new();
    for o in &h.ops {
        let Outcome::Ok(ok) = &o.rec.outcome else {
            continue;
        };
        kvs.clear();
        shown(&o.rec.op, &ok.result, &mut kvs);
        for s in &kvs {
            let kv = s.kv;
            let m = kv.mod_revision;
            if m < 2 || m > p.max_rev {
                continue;
            }
            let at = || {
                format!(
                    "a read at revision {} shows {}={} modified at revision {m}",
                    ok.revision, kv.key, kv.value
                )
            };
            match p.writer_at[m as usize] {
                Some(w) => {
                    let wo = &h.ops[w];
                    let wrong = match &wo.rec.op {
                        Op::Put(q) => (q.key != kv.key || (s.valued && q.value != kv.value))
                            .then(|| format!("put {}={}", q.key, q.value)),
                        Op::DeleteRange(d) => Some(format!("delete {}", d.key)),
                        _ => None,
                    };
                    if let Some(what) = wrong {
                        return Err(Verdict::illegal(
                            Property::Result,
                            format!("{}, but the acknowledged write at {m} is {what}", at()),
                            vec![o.line, wo.line],
                        ));
                    }
                }
                None if allow_gaps || !s.valued => {}
                None => {
                    let writers = p
                        .unknown_by_put
                        .get(&(kv.key.clone(), kv.value.clone()))
                        .map_or(&[][..], Vec::as_slice);
                    let fits = writers
                        .iter()
                        .any(|&i| lowest_rev(p, h.ops[i].rec.call) <= m);
                    if !fits {
                        return Err(Verdict::illegal(
                            Property::UnexplainedRevision,
                            format!(
                                "{}, but no acknowledged write produced {m} and no \
                                 unknown-outcome write of that value can have (lost or \
                                 phantom write)",
                                at()
                            ),
                            vec![o.line],
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}
