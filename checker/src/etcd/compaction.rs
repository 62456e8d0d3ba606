//! Compaction checks. A compaction takes effect on each member when that member applies
//! it, so what a member serves is judged by what it had applied:
//! - a linearizable read of a revision compacted before the read was invoked must fail
//!   (the read waits for everything committed before it);
//! - a read, serializable or not, answered at a header revision above a compaction's own
//!   header revision comes from a member that had applied that compaction (every
//!   revision above it is written by an entry after the compaction's), so it must fail
//!   too; so must a watch created at such a revision deliver nothing below the
//!   compacted revision (it must be cancelled). A watch created on a member still behind
//!   a compaction that already returned elsewhere may replay what that member still
//!   holds, as etcd's followers do;
//! - a "compacted" error, or a watch cancelled for compaction, needs a compaction that
//!   could have caused it.
//!
//! It does not model what compaction frees.

use crate::history::{History, Op, Outcome, WatchResponse};
use crate::verdict::{Property, Verdict};

/// One compaction that may have happened.
#[derive(Debug, Clone, Copy)]
struct Compaction {
    rev: i64,
    call: u64,
    ret: Option<u64>,
    /// The header revision of its answer, if it was acknowledged.
    header: Option<i64>,
    line: usize,
}

/// Sorted compactions with a running maximum of their revision.
struct ByTime {
    times: Vec<u64>,
    best: Vec<Compaction>,
}

impl ByTime {
    fn new(mut cs: Vec<Compaction>, time: impl Fn(&Compaction) -> u64) -> Self {
        cs.sort_by_key(|c| (time(c), c.line));
        let times = cs.iter().map(&time).collect();
        let mut best: Vec<Compaction> = Vec::with_capacity(cs.len());
        for c in cs {
            let b = match best.last() {
                Some(b) if b.rev >= c.rev => *b,
                _ => c,
            };
            best.push(b);
        }
        ByTime { times, best }
    }

    /// The highest compaction whose time (or header revision) is strictly before `t`.
    fn max_before(&self, t: u64) -> Option<Compaction> {
        let k = self.times.partition_point(|&x| x < t);
        (k > 0).then(|| self.best[k - 1])
    }
}

/// Runs the compaction checks.
pub fn check(h: &History) -> Result<(), Verdict> {
    let mut all = Vec::new();
    for o in &h.ops {
        if let Op::Compact(c) = &o.rec.op {
            let header = match &o.rec.outcome {
                Outcome::Ok(ok) => {
                    if c.revision > ok.revision {
                        return Err(Verdict::illegal(
                            Property::Compaction,
                            format!(
                                "compaction to revision {} succeeded at revision {}: a future \
                                 revision",
                                c.revision, ok.revision
                            ),
                            vec![o.line],
                        ));
                    }
                    Some(ok.revision)
                }
                Outcome::Unknown => None,
                Outcome::Fail(_) => continue,
            };
            all.push(Compaction {
                rev: c.revision,
                call: o.rec.call,
                ret: o.rec.ret,
                header,
                line: o.line,
            });
        }
    }
    let acked: Vec<Compaction> = all.iter().filter(|c| c.header.is_some()).copied().collect();
    let done = ByTime::new(acked.clone(), |c| c.ret.unwrap_or(u64::MAX));
    // Header revisions are never negative in a parsed history; a negative one sorts first.
    let applied = ByTime::new(acked, |c| u64::try_from(c.header.unwrap_or(0)).unwrap_or(0));
    // The highest acknowledged compaction a member answering at header revision `at`
    // had applied.
    let applied_by = |at: i64| u64::try_from(at).ok().and_then(|at| applied.max_before(at));
    let started = ByTime::new(all, |c| c.call);
    for o in &h.ops {
        let Op::Range(q) = &o.rec.op else { continue };
        if q.revision <= 0 {
            continue;
        }
        match &o.rec.outcome {
            Outcome::Ok(ok) => {
                if !q.serializable
                    && let Some(c) = done.max_before(o.rec.call)
                    && c.rev > q.revision
                {
                    return Err(Verdict::illegal(
                        Property::Compaction,
                        format!(
                            "read of revision {} succeeded after a compaction to {} had returned",
                            q.revision, c.rev
                        ),
                        vec![c.line, o.line],
                    ));
                }
                if let Some(c) = applied_by(ok.revision)
                    && c.rev > q.revision
                {
                    return Err(Verdict::illegal(
                        Property::Compaction,
                        format!(
                            "read of revision {} succeeded at header revision {}, from a member \
                             that had applied the compaction to {}",
                            q.revision, ok.revision, c.rev
                        ),
                        vec![c.line, o.line],
                    ));
                }
            }
            Outcome::Fail(msg) if msg.contains("compacted") => {
                let ret = o.rec.ret.unwrap_or(u64::MAX);
                if started.max_before(ret).is_none_or(|c| c.rev <= q.revision) {
                    return Err(Verdict::illegal(
                        Property::Compaction,
                        format!(
                            "read of revision {} failed as compacted but no compaction above it \
                             had been requested",
                            q.revision
                        ),
                        vec![o.line],
                    ));
                }
            }
            _ => {}
        }
    }
    for w in &h.watches {
        let start = w.create.request.start_revision;
        for (line, r) in &w.responses {
            match r {
                WatchResponse::Cancel(c) if c.compact_revision > 0 => {
                    let ok_start = start > 0 && start < c.compact_revision;
                    let cause = started.max_before(c.time.saturating_add(1));
                    if !ok_start || cause.is_none_or(|x| x.rev < c.compact_revision) {
                        return Err(Verdict::illegal(
                            Property::WatchCompaction,
                            format!(
                                "watch from revision {start} cancelled as compacted at {} without \
                                 a compaction that covers its start",
                                c.compact_revision
                            ),
                            vec![w.line, *line],
                        ));
                    }
                }
                WatchResponse::Events(e) if start > 0 => {
                    if let Some(created) = w.create.created_revision
                        && let Some(c) = applied_by(created)
                        && c.rev > start
                        && e.events.iter().any(|ev| ev.kv.mod_revision < c.rev)
                    {
                        return Err(Verdict::illegal(
                            Property::WatchCompaction,
                            format!(
                                "watch from revision {start}, created at revision {created} on \
                                 a member that had applied the compaction to {}, delivered \
                                 events below it (it must be cancelled)",
                                c.rev
                            ),
                            vec![c.line, w.line, *line],
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}
