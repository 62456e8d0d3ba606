//! Forward checking for the replay: after a gap revision is filled, whether the writes
//! that later reads of each key demand still fit into the gap revisions left. A read
//! showing a key at version `v` of the incarnation created at `c` and last modified at
//! `m` needs exactly `v` puts in `[c, m]` and a delete between an older incarnation and
//! `c`; what acknowledged writes do not supply must come from gaps. A wrong choice for
//! a gap is thus refused at once instead of after many more revisions. These are
//! necessary conditions only: it does not choose writers (see `replay`).

use std::collections::{BTreeMap, HashMap};

use super::prep::{KeyHistory, KeyObs, KeyRead, Prep, count_in};

use super::store::Store;
use crate::history::History;
use crate::verdict::{Property, Verdict};

/// Writes later reads need that the gaps left cannot supply.
#[derive(Debug, Clone)]
pub struct Shortfall {
    /// Keys whose demands failed (None: it depends on every gap choice).
    pub keys: Option<Vec<String>>,
    /// Source lines of the reads that demand them.
    pub lines: Vec<usize>,
    /// What is missing.
    pub message: String,
}

/// A demand: `total` gap revisions in `(r, deadline]` must write `key`, `count` of them
/// beyond what its earlier deadlines need.
struct Demand<'a> {
    deadline: i64,
    total: i64,
    key: &'a str,
    slot: usize,
    line: usize,
    /// The key whose writers need this one (for a demand from `needed_first`).
    for_key: Option<&'a str>,
}

impl Demand<'_> {
    /// The keys the demand depends on.
    fn keys(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(self.key)
            .chain(self.for_key)
            .map(str::to_owned)
    }
}

fn deletable(p: &Prep, kh: &KeyHistory, lo: i64, hi: i64) -> bool {
    count_in(&kh.known_deletes, lo, hi) > 0 || count_in(&p.multi_deletes, lo, hi) > 0
}

/// Later reads of a key that show it changed (or absent) looked at per check
/// (necessary conditions either way; more reads see farther ahead but cost more).
pub const DEMAND_READS_MAX: usize = 8;
/// Later reads of a key scanned at most per check.
pub const DEMAND_SCAN_MAX: usize = 64;

/// Per key of [`Prep::seen_keys`] (in its order), the index of the first read with a
/// header above the revision last checked. The replay moves mostly forward, so
/// stepping from the last position beats a binary search over every key's reads.
#[derive(Debug, Clone, Default)]
pub struct Cursors(Vec<usize>);

impl Cursors {
    /// Cursors at the start of every key's reads.
    pub fn new(p: &Prep) -> Self {
        Cursors(vec![0; p.seen_keys.len()])
    }

    /// Index of `reads`' first read with a header above `r`, starting from slot `i`.
    fn first_after(&mut self, i: usize, reads: &[KeyRead], r: i64) -> usize {
        let Some(c) = self.0.get_mut(i) else {
            return reads.partition_point(|x| x.header <= r);
        };
        let mut at = (*c).min(reads.len());
        while at < reads.len() && reads[at].header <= r {
            at += 1;
        }
        while at > 0 && reads[at - 1].header > r {
            at -= 1;
        }
        *c = at;
        at
    }
}

/// Checks the demands of each key's next [`DEMAND_READS_MAX`] reads against the gaps
/// after revision `r` (the store is at `r`). On success, `urgent` holds, per key slot
/// that still needs writes from gaps, the earliest revision it needs one by (a hint for
/// the order in which the next gaps try their candidates).
pub fn check(
    p: &Prep,
    store: &Store,
    r: i64,
    used: &[bool],
    cursors: &mut Cursors,
    urgent: &mut Vec<(usize, i64)>,
) -> Result<(), Shortfall> {
    urgent.clear();
    let left = p.gaps_in(r, p.max_rev);
    if left > 0 {
        let supply = p.supply.total(p, used, r);
        if left > supply {
            return Err(Shortfall {
                keys: None,
                lines: Vec::new(),
                message: format!(
                    "{left} revision(s) after {r} have no acknowledged writer, but only \
                     {supply} unknown-outcome write(s) are left to produce them"
                ),
            });
        }
    }
    let mut demands: Vec<Demand> = Vec::new();
    let at_r = store.rev() == r;
    // Keys of leases an acknowledged revoke after `r` ends: each must be written (its
    // lease's revoke or expiry, a delete, or a put moving it off the lease) by then.
    let mut revoked: BTreeMap<&str, (i64, usize)> = BTreeMap::new();
    if at_r {
        for id in store.leases_with_keys() {
            let Some(revokes) = p.revoked_by.get(&id) else {
                continue;
            };
            let Some(&(h, line)) = revokes.get(revokes.partition_point(|x| x.0 <= r)) else {
                continue;
            };
            for k in store.lease(id).map(|l| l.keys.iter()).into_iter().flatten() {
                let e = revoked.entry(k.as_str()).or_insert((h, line));
                *e = (*e).min((h, line));
            }
        }
    }
    // Both maps are in key order: walk the store's keys alongside.
    let mut live = store.current().peekable();
    // Writes to the key needed by each deadline; the running maximum is emitted as
    // increments so that demands of different keys can be summed. Reused across keys.
    let mut mine: Vec<(i64, i64, usize)> = Vec::new();
    // Puts that the writers of keys other reads need must be preceded by.
    let mut enabling: Vec<Demand> = Vec::new();
    for (slot, (key, kh)) in p.seen_keys.iter().enumerate() {
        let first = cursors.first_after(slot, &kh.reads, r);
        let cur = if at_r {
            while live.next_if(|(k, _)| *k < key.as_str()).is_some() {}
            live.next_if(|(k, _)| *k == key.as_str())
                .and_then(|(_, kv)| kv)
        } else {
            store.get_at(key, r)
        };
        mine.clear();
        if let Some(&(h, line)) = revoked.get(key.as_str())
            && kh.known_puts_in(r, h) == 0
            && !deletable(p, kh, r, h)
        {
            // No acknowledged write changes it by then: a gap must.
            mine.push((h, 1, line));
        }
        let mut informative = 0;
        // The earliest revision by which a gap must put the key, and the read saying so.
        let mut first_put: Option<(i64, usize)> = None;
        // The reads in turn, each from the state the one before showed: gap writes
        // each change needs lie in revisions after the earlier read, so they add up.
        // The first read that shows a change starts it (with what it needs from `r`).
        let mut chain: Option<Chain> = None;
        for read in kh.reads[first..].iter().take(DEMAND_SCAN_MAX) {
            if informative >= DEMAND_READS_MAX {
                break;
            }
            if read.seen.is_none_or(|o| o.modified > r) {
                informative += 1;
            }
            let fail = |message: String| Shortfall {
                keys: Some(vec![key.clone()]),
                lines: vec![read.line],
                message,
            };
            // A leased key also vanishes only in a revision of its own (its lease's
            // revoke or expiry), which is a gap unless an acknowledged delete made it.
            let deletes_by = |hi: i64| match cur {
                Some(_) if !deletable(p, kh, r, hi) => 1,
                _ => 0,
            };
            // Unknown-outcome writes left to supply what the read needs.
            let short = |what: &str, need: i64, have: i64, by: i64| {
                fail(format!(
                    "a read at revision {} needs {need} more {what} of {key} by revision \
                     {by}, but only {have} unknown-outcome write(s) left may make them",
                    read.header
                ))
            };
            let Some(o) = read.seen else {
                let need = deletes_by(read.header);
                if need > 0 {
                    let have = p.supply.deletes(p, used, slot, r, read.header);
                    if need > have {
                        return Err(short("delete(s)", need, have, read.header));
                    }
                }
                mine.push((read.header, need, read.line));
                if let Some(total) = Chain::follow(&mut chain, p, kh, read, need) {
                    mine.push((read.header, total, read.line));
                }
                continue;
            };
            if o.modified <= r {
                let same = cur.is_some_and(|kv| {
                    kv.create_revision == o.create
                        && kv.mod_revision == o.modified
                        && kv.version == o.version
                });
                if !same {
                    return Err(fail(format!(
                        "a read at revision {} shows {key} unchanged since revision {} \
                         (version {}), but at revision {r} it is {}",
                        read.header,
                        o.modified,
                        o.version,
                        cur.map_or("absent".to_owned(), |kv| format!(
                            "at version {} modified at {}",
                            kv.version, kv.mod_revision
                        ))
                    )));
                }
                continue;
            }
            let (deletes, puts) = match cur {
                Some(kv) if kv.create_revision == o.create => (
                    0,
                    o.version - kv.version - kh.known_puts_in(r, o.modified) as i64,
                ),
                _ if o.create <= r => {
                    return Err(fail(format!(
                        "a read at revision {} shows {key} created at revision {}, but at \
                         revision {r} it is {}",
                        read.header,
                        o.create,
                        cur.map_or("absent".to_owned(), |kv| format!(
                            "created at {}",
                            kv.create_revision
                        ))
                    )));
                }
                _ => (
                    deletes_by(o.create - 1),
                    o.version - count_in(&kh.known_puts, o.create - 1, o.modified) as i64,
                ),
            };
            // The write at `m` itself is a put: unless acknowledged, a gap must make it.
            let put_at_m_known = kh.known_puts.binary_search(&o.modified).is_ok();
            if puts < 0 || (puts == 0 && !put_at_m_known) {
                return Err(fail(format!(
                    "a read at revision {} shows {key} at version {}, which does not fit the \
                     puts to it by revision {}",
                    read.header, o.version, o.modified
                )));
            }
            if puts > 0 {
                if first_put.is_none_or(|(d, _)| o.modified < d) {
                    first_put = Some((o.modified, read.line));
                }
                let have = p.supply.puts(p, used, slot, r, o.modified);
                if puts > have {
                    return Err(short("put(s)", puts, have, o.modified));
                }
            }
            if deletes > 0 {
                let have = p.supply.deletes(p, used, slot, r, o.create - 1);
                if deletes > have {
                    return Err(short("delete(s)", deletes, have, o.create - 1));
                }
            }
            mine.push((o.create - 1, deletes, read.line));
            mine.push((o.modified, deletes + puts, read.line));
            if let Some(total) = Chain::follow(&mut chain, p, kh, read, deletes + puts) {
                mine.push((o.modified, total, read.line));
            }
        }
        if let Some(need) = first_put
            && let Some(d) = needed_first(p, store, r, used, slot, key, need)?
        {
            urgent.push((d.slot, d.deadline));
            enabling.push(d);
        }
        mine.sort_unstable();
        if let Some(&(deadline, _, _)) = mine.iter().find(|m| m.1 > 0) {
            urgent.push((slot, deadline));
        }
        let mut max = 0;
        for &(deadline, count, line) in &mine {
            if count > max {
                demands.push(Demand {
                    deadline,
                    total: count,
                    key,
                    slot,
                    line,
                    for_key: None,
                });
                max = count;
            }
        }
    }
    demands.append(&mut enabling);
    for d in &demands {
        let room = p.gaps_in(r, d.deadline);
        if d.total > room {
            return Err(Shortfall {
                keys: Some(d.keys().collect()),
                lines: vec![d.line],
                message: format!(
                    "a read needs {} more write(s) to {} by revision {}, but only {room} \
                     revision(s) after {r} have no acknowledged writer",
                    d.total, d.key, d.deadline
                ),
            });
        }
    }
    if demands.len() > 1 {
        // One gap changes keys of one component only: by each deadline, the gaps must
        // cover, for every component, the most writes any of its keys needs by then.
        demands.sort_by_key(|d| d.deadline);
        let mut most: HashMap<usize, i64> = HashMap::new();
        let mut total = 0;
        for (i, d) in demands.iter().enumerate() {
            let comp = p.components.of.get(d.slot).copied().unwrap_or(d.slot);
            let m = most.entry(comp).or_insert(0);
            if d.total > *m {
                total += d.total - *m;
                *m = d.total;
            }
            let room = p.gaps_in(r, d.deadline);
            if total > room {
                let mut keys: Vec<String> = demands[..=i].iter().flat_map(|d| d.keys()).collect();
                keys.sort();
                keys.dedup();
                return Err(Shortfall {
                    message: format!(
                        "reads need {total} writes by revision {} (to {}, which no one write \
                         changes together), but only {room} revision(s) after {r} have no \
                         acknowledged writer",
                        d.deadline,
                        keys.join(", ")
                    ),
                    keys: Some(keys),
                    lines: vec![d.line],
                });
            }
        }
    }
    Ok(())
}

/// A key's reads followed one after another, and the gap writes they need in all.
/// Within one incarnation this is what each read needs from the revision checked (its
/// version counts every put since); across a delete it is more, as the writes before
/// the delete add up with those after.
struct Chain {
    /// What the last read showed.
    seen: Option<KeyObs>,
    /// The last read's header revision.
    header: i64,
    /// Gap writes to the key needed by the last read, beyond what it needs by itself
    /// from the revision checked.
    extra: i64,
    /// What the last read needs by itself from the revision checked.
    alone: i64,
}

impl Chain {
    /// Moves on to `read`, which needs `alone` gap writes by itself from the revision
    /// checked. Returns the gap writes it needs after every earlier read in the chain
    /// when that is more. A change of incarnation (or to or from absent) needs what
    /// its version counts and a delete between, beyond the acknowledged writes in
    /// between, after the last read's header; within an incarnation the reads count
    /// alike (no write lies between a read's mod revision and its header).
    fn follow(
        chain: &mut Option<Chain>,
        p: &Prep,
        kh: &KeyHistory,
        read: &KeyRead,
        alone: i64,
    ) -> Option<i64> {
        let Some(c) = chain.as_mut() else {
            // The first read that shows a change starts the chain.
            *chain = Some(Chain {
                seen: read.seen,
                header: read.header,
                extra: 0,
                alone,
            });
            return None;
        };
        let (from, lo) = (c.seen, c.header);
        let before = c.extra + c.alone;
        c.seen = read.seen;
        c.header = read.header;
        c.alone = alone;
        let need = match (from, read.seen) {
            (Some(a), Some(b)) if a.create == b.create => None,
            (_, Some(b)) if b.modified <= lo => None,
            (from, Some(b)) => {
                let delete = from.is_some() && !deletable(p, kh, lo, b.create - 1);
                let puts = b.version - count_in(&kh.known_puts, b.create - 1, b.modified) as i64;
                Some(i64::from(delete) + puts.max(0))
            }
            (Some(_), None) => Some(i64::from(!deletable(p, kh, lo, read.header))),
            (None, None) => None,
        };
        // What an earlier read needed is needed by every later one too.
        c.extra = match need {
            Some(need) => before + need - alone,
            None => c.extra.max(before - alone),
        }
        .max(0);
        (c.extra > 0).then_some(alone + c.extra)
    }
}

/// When a gap must put the key in `slot` by `deadline` and every unknown-outcome write
/// left that may do so is a txn that needs one same key to exist first (a lock holder's
/// write needs its lock key), and that key is absent at `r` with no acknowledged put
/// to it before `deadline`: a gap must put that key by `deadline - 1`. Returns that
/// demand, or the shortfall when no unknown-outcome write left can put it.
fn needed_first<'a>(
    p: &'a Prep,
    store: &Store,
    r: i64,
    used: &[bool],
    slot: usize,
    of: &'a str,
    (deadline, line): (i64, usize),
) -> Result<Option<Demand<'a>>, Shortfall> {
    let Some(key) = p.supply.common_needed_key(p, used, slot, r, deadline) else {
        return Ok(None);
    };
    let (Some((key, &k_slot)), Some(kh)) =
        (p.components.slot.get_key_value(key), p.seen_keys.get(key))
    else {
        return Ok(None);
    };
    let by = deadline - 1;
    if store.get_at(key, r).is_some() || kh.known_puts_in(r, by) > 0 {
        return Ok(None);
    }
    if p.supply.puts(p, used, k_slot, r, by) == 0 {
        return Err(Shortfall {
            keys: Some(vec![key.clone(), of.to_owned()]),
            lines: vec![line],
            message: format!(
                "a read needs a write by revision {deadline} that only txns needing {key} \
                 to exist can make, but no unknown-outcome write left may put {key} by \
                 revision {by}"
            ),
        });
    }
    Ok(Some(Demand {
        deadline: by,
        total: 1,
        key,
        slot: k_slot,
        line,
        for_key: Some(of),
    }))
}

/// Checks what reads show against acknowledged writes alone, before any search: a key
/// read at version `v` of the incarnation created at `c` and modified last at `m` had
/// exactly `v` puts and no delete in `[c, m]`, and no write in `(m, header]`. An
/// acknowledged put or delete of the key that breaks this is a violation whatever the
/// unknown-outcome writes did (typically a lost write).
pub fn check_static(h: &History, p: &Prep) -> Result<(), Verdict> {
    let line_at = |r: i64| {
        p.writer_at
            .get(r.clamp(0, p.max_rev) as usize)
            .copied()
            .flatten()
            .map(|i| h.ops[i].line)
    };
    for (key, kh) in &p.seen_keys {
        for read in &kh.reads {
            let Some(o) = read.seen else {
                continue;
            };
            let puts = count_in(&kh.known_puts, o.create - 1, o.modified) as i64;
            if puts > o.version {
                let mut lines = vec![read.line];
                let a = kh.known_puts.partition_point(|&x| x < o.create);
                let b = kh.known_puts.partition_point(|&x| x <= o.modified);
                lines.extend(kh.known_puts[a..b].iter().filter_map(|&r| line_at(r)));
                return Err(Verdict::illegal(
                    Property::Result,
                    format!(
                        "a read at revision {} shows {key} at version {} (created at {}, \
                         modified at {}), but {puts} acknowledged puts to it lie in that \
                         range (a lost write)",
                        read.header, o.version, o.create, o.modified
                    ),
                    lines,
                ));
            }
            let late = |v: &[i64]| {
                let i = v.partition_point(|&x| x <= o.modified);
                v.get(i).copied().filter(|&x| x <= read.header)
            };
            let dead = |v: &[i64]| {
                let i = v.partition_point(|&x| x < o.create);
                v.get(i).copied().filter(|&x| x <= o.modified)
            };
            if let Some(w) = late(&kh.known_puts)
                .or_else(|| late(&kh.known_deletes))
                .or_else(|| dead(&kh.known_deletes))
            {
                let mut lines = vec![read.line];
                lines.extend(line_at(w));
                return Err(Verdict::illegal(
                    Property::Result,
                    format!(
                        "a read at revision {} shows {key} created at {} and last modified at \
                         {}, but an acknowledged write changed it at revision {w} (a lost \
                         write)",
                        read.header, o.create, o.modified
                    ),
                    lines,
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `data` is read at version 1 written at revision 4; only the txn (op 2) may write
    /// it, and only while `lock/a` exists, which only the unknown put (op 1) creates;
    /// `k` is read as written at revision 3.
    const LOCK: &str = r#"
{"type":"op","client":1,"call":1,"ret":2,"op":{"lease_grant":{"id":7,"ttl":5}},"outcome":{"ok":{"revision":1,"result":{"lease_grant":{"id":7,"ttl":5}}}}}
{"type":"op","client":1,"call":3,"op":{"put":{"key":"lock/a","value":"","lease":7}},"outcome":"unknown"}
{"type":"op","client":2,"call":4,"op":{"txn":{"compare":[{"key":"lock/a","target":{"create":0},"result":"greater"}],"success":[{"put":{"key":"data","value":"x"}}],"failure":[]}},"outcome":"unknown"}
{"type":"op","client":3,"call":5,"op":{"put":{"key":"k","value":"u"}},"outcome":"unknown"}
{"type":"op","client":4,"call":6,"op":{"delete_range":{"key":"lock/a"}},"outcome":"unknown"}
{"type":"op","client":5,"call":10,"ret":11,"op":{"range":{"key":"data"}},"outcome":{"ok":{"revision":5,"result":{"range":{"kvs":[{"key":"data","value":"x","create_revision":4,"mod_revision":4,"version":1}],"count":1}}}}}
{"type":"op","client":5,"call":12,"ret":13,"op":{"range":{"key":"lock/","range_end":"lock0"}},"outcome":{"ok":{"revision":5,"result":{"range":{"kvs":[],"count":0}}}}}
{"type":"op","client":5,"call":14,"ret":15,"op":{"range":{"key":"k"}},"outcome":{"ok":{"revision":5,"result":{"range":{"kvs":[{"key":"k","value":"u","create_revision":3,"mod_revision":3,"version":1}],"count":1}}}}}
"#;

    fn run(used_ops: &[usize], at: i64) -> (Result<(), Shortfall>, Vec<(usize, i64)>, Prep) {
        let h = History::parse(LOCK).expect("parses");
        let p = Prep::build(&h, false).expect("prepares");
        let mut store = Store::new();
        for _ in 1..at {
            store.skip_revision();
        }
        let mut used = vec![false; h.ops.len()];
        used_ops.iter().for_each(|&i| used[i] = true);
        let mut urgent = Vec::new();
        let res = check(&p, &store, at, &used, &mut Cursors::new(&p), &mut urgent);
        (res, urgent, p)
    }

    #[test]
    fn a_lock_holder_write_needs_its_lock_key_first() {
        let (res, urgent, p) = run(&[], 1);
        assert!(res.is_ok(), "{res:?}");
        let lock = p.components.slot["lock/a"];
        assert!(
            urgent.contains(&(lock, 3)),
            "lock/a needed by 3: {urgent:?}"
        );
    }

    #[test]
    fn the_lock_key_and_another_key_need_a_gap_each() {
        // After revision 2 only gap 3 is left for both k and lock/a (needed by 3, as
        // the holder writes data by 4).
        let (res, _, _) = run(&[], 2);
        let err = res.expect_err("two writes in one gap");
        assert!(
            err.message.contains("reads need 2 writes by revision 3"),
            "{}",
            err.message
        );
        let keys = err.keys.expect("keys named");
        assert!(keys.contains(&"lock/a".to_owned()) && keys.contains(&"data".to_owned()));
    }

    #[test]
    fn the_lock_key_too_late_is_a_shortfall() {
        let (res, _, _) = run(&[], 3);
        let err = res.expect_err("lock/a cannot come before data's write at 4");
        assert!(
            err.message.contains("only txns needing lock/a"),
            "{}",
            err.message
        );
    }

    #[test]
    fn the_lock_key_put_used_up_is_a_shortfall() {
        let (res, _, _) = run(&[1], 1);
        let err = res.expect_err("nothing can put lock/a any more");
        assert!(
            err.message.contains("only txns needing lock/a"),
            "{}",
            err.message
        );
    }

    /// `k` is put at 2, read at version 3 at revision 4 and absent at 6; revisions 5
    /// and 6 are acknowledged writes of other keys, so only gaps 3 and 4 are left.
    const CHAIN: &str = r#"
{"type":"op","client":1,"call":1,"ret":2,"op":{"put":{"key":"k","value":"1"}},"outcome":{"ok":{"revision":2,"result":{"put":{}}}}}
{"type":"op","client":2,"call":3,"op":{"put":{"key":"k","value":"u1"}},"outcome":"unknown"}
{"type":"op","client":3,"call":3,"op":{"put":{"key":"k","value":"u2"}},"outcome":"unknown"}
{"type":"op","client":4,"call":3,"op":{"delete_range":{"key":"k"}},"outcome":"unknown"}
{"type":"op","client":1,"call":10,"ret":11,"op":{"range":{"key":"k"}},"outcome":{"ok":{"revision":4,"result":{"range":{"kvs":[{"key":"k","value":"u2","create_revision":2,"mod_revision":4,"version":3}],"count":1}}}}}
{"type":"op","client":1,"call":12,"ret":13,"op":{"put":{"key":"a","value":"1"}},"outcome":{"ok":{"revision":5,"result":{"put":{}}}}}
{"type":"op","client":1,"call":14,"ret":15,"op":{"put":{"key":"b","value":"1"}},"outcome":{"ok":{"revision":6,"result":{"put":{}}}}}
{"type":"op","client":1,"call":16,"ret":17,"op":{"range":{"key":"k"}},"outcome":{"ok":{"revision":6,"result":{"range":{"kvs":[],"count":0}}}}}
"#;

    #[test]
    fn the_writes_successive_reads_need_add_up() {
        let h = History::parse(CHAIN).expect("parses");
        let p = Prep::build(&h, false).expect("prepares");
        let mut store = Store::new();
        assert!(store.exec(&h.ops[0].rec.op).is_ok());
        let used = vec![false; h.ops.len()];
        let mut urgent = Vec::new();
        // Each read alone needs two writes (two puts by 4; one delete by 6), which gaps
        // 3 and 4 could make; both need the puts and then the delete.
        let err = check(&p, &store, 2, &used, &mut Cursors::new(&p), &mut urgent)
            .expect_err("three writes in two gaps");
        assert!(
            err.message
                .contains("needs 3 more write(s) to k by revision 6"),
            "{}",
            err.message
        );
        assert_eq!(err.keys, Some(vec!["k".to_owned()]));
        // Without the absent read, the two puts fit.
        let text: String = CHAIN
            .lines()
            .filter(|l| !l.contains(r#""kvs":[]"#))
            .collect::<Vec<_>>()
            .join("\n");
        let h = History::parse(&text).expect("parses");
        let p = Prep::build(&h, false).expect("prepares");
        let res = check(&p, &store, 2, &used, &mut Cursors::new(&p), &mut urgent);
        assert!(res.is_ok(), "{res:?}");
    }
}
