//! Indexes built before the replay: which acknowledged operation produced which
//! revision, which operations only observe a revision, the unknown-outcome writes that
//! may fill gaps, facts about gap revisions seen by reads and watches, and real-time
//! bounds. Also the real-time order check of acknowledged operations, which needs no
//! replay. Nothing here executes the model.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::history::{EventKind, History, KeyValue, Op, OpResult, Outcome, WatchResponse};
use crate::verdict::{Property, Verdict};

use super::store::{claims_write, in_range, may_write};

/// What a gap revision is known to have done to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Put this value.
    Put(String),
    /// Put some value (seen by a keys-only read).
    PutSome,
    /// Deleted the key.
    Delete,
    /// Put some value that created the key (seen as a create revision).
    Create,
}

/// A fact about a gap revision, from a read or a watch.
#[derive(Debug, Clone)]
pub struct Fact {
    /// Key touched at the revision.
    pub key: String,
    /// What happened to it.
    pub change: Change,
    /// Source line that showed it.
    pub line: usize,
}

/// One operation or watch response that shows a revision existed by a time.
#[derive(Debug, Clone, Copy)]
struct Seen {
    ret: u64,
    rev: i64,
    line: usize,
}

/// Prepared indexes.
#[derive(Debug, Default)]
pub struct Prep {
    /// Highest revision any record shows.
    pub max_rev: i64,
    /// The acknowledged op that produced each revision.
    pub writer_at: Vec<Option<usize>>,
    /// Acknowledged ops that only observe each revision, in check order.
    pub obs_at: Vec<Vec<usize>>,
    /// Acknowledged lease revokes by header revision (they may or may not have written).
    pub revokes_at: Vec<Vec<usize>>,
    /// Unknown-outcome ops that may write, by call time.
    pub unknown: Vec<usize>,
    /// Facts about gap revisions.
    pub facts: BTreeMap<i64, Vec<Fact>>,
    /// `min_ret_from[r]`: earliest time by which revision r is known to exist.
    pub min_ret_from: Vec<u64>,
    /// Completed ops by return time, with the running maximum of their revisions.
    done: Vec<Seen>,
    done_max: Vec<Seen>,
    /// Lease ids whose grant had an unknown outcome (or any id, if 0 was asked).
    pub maybe_leases: Vec<i64>,
    /// Unknown-outcome ops by the (key, value) pairs they may put.
    pub unknown_by_put: BTreeMap<(String, String), Vec<usize>>,
    /// The gap revision an unknown-outcome op must fill, when a fact shows a value only
    /// it writes.
    pub pinned: Vec<Option<i64>>,
    /// Per key: what reads showed of it, to prune gap candidates.
    pub seen_keys: BTreeMap<String, KeyHistory>,
    /// `gaps_upto[r]`: revisions in `2..=r` that no acknowledged write produced.
    pub gaps_upto: Vec<i64>,
    /// Revisions of acknowledged writes that may delete several keys (range deletes,
    /// txns with a delete), sorted.
    pub multi_deletes: Vec<i64>,
    /// Keys one gap may change together (see `components`): demands of different
    /// components need different gaps.
    pub components: super::components::Components,
    /// Per lease id, the header revisions of its acknowledged revokes with their source
    /// lines, sorted: its keys are gone by then.
    pub revoked_by: BTreeMap<i64, Vec<(i64, usize)>>,
    /// `hist_from[r]`: the lowest revision read by a historical read (a range at a
    /// given revision) acknowledged at header revision `r` or later (`i64::MAX`: none).
    pub hist_from: Vec<i64>,
    /// Per op, its class of interchangeable unknown-outcome writes (see `symmetry`).
    pub class_of: Vec<Option<u32>>,
    /// Number of classes in `class_of` (ids are below it).
    pub class_count: usize,
    /// What the history shows of values (see `symmetry`).
    pub shown: super::symmetry::Shown,
    /// Unknown-outcome writes per key, to bound what gaps can still supply.
    pub supply: super::supply::Supply,
    /// Per key, the leases its puts name (to tell writes that can no longer write).
    pub put_leases: super::spent::PutLeases,
}

/// Keys a range read may be taken to show absent at most (a wider range only shows
/// the keys it returns; recording every absent key would slow every demand check).
pub const ABSENT_KEYS_PER_RANGE_MAX: usize = 64;

/// One read of a key: its create/mod revision and version, at a header revision.
#[derive(Debug, Clone, Copy)]
pub struct KeyObs {
    /// create_revision seen.
    pub create: i64,
    /// mod_revision seen.
    pub modified: i64,
    /// version seen.
    pub version: i64,
}

/// What reads showed of one key.
#[derive(Debug, Clone, Default)]
pub struct KeyHistory {
    /// Observations sorted by mod revision.
    pub obs: Vec<KeyObs>,
    /// Disjoint, sorted revision intervals `(lo, hi]` in which the key was not written
    /// (a read at `hi` showed it last modified at `lo`).
    pub quiet: Vec<(i64, i64)>,
    /// Revisions of acknowledged puts to the key, sorted.
    pub known_puts: Vec<i64>,
    /// Revisions of acknowledged single-key deletes of the key, sorted.
    pub known_deletes: Vec<i64>,
    /// Linearizable reads of the key, sorted by header revision.
    pub reads: Vec<KeyRead>,
}

/// One linearizable read of a key.
#[derive(Debug, Clone, Copy)]
pub struct KeyRead {
    /// Header revision of the read.
    pub header: i64,
    /// What it showed (None: absent).
    pub seen: Option<KeyObs>,
    /// Source line.
    pub line: usize,
}

impl KeyHistory {
    /// Whether a write to the key at `r` contradicts a read.
    pub fn quiet_at(&self, r: i64) -> bool {
        let i = self.quiet.partition_point(|q| q.1 < r);
        self.quiet.get(i).is_some_and(|q| q.0 < r && r <= q.1)
    }

    /// The first observation modified at or after `r`.
    pub fn next_obs(&self, r: i64) -> Option<&KeyObs> {
        let i = self.obs.partition_point(|o| o.modified < r);
        self.obs.get(i)
    }

    /// Acknowledged puts to the key in `(lo, hi]`.
    pub fn known_puts_in(&self, lo: i64, hi: i64) -> usize {
        count_in(&self.known_puts, lo, hi)
    }

    /// The first read of the key with a header revision above `r`.
    pub fn next_read(&self, r: i64) -> Option<&KeyRead> {
        let i = self.reads.partition_point(|x| x.header <= r);
        self.reads.get(i)
    }
}

/// Entries of the sorted `v` in `(lo, hi]`.
pub fn count_in(v: &[i64], lo: i64, hi: i64) -> usize {
    let a = v.partition_point(|&x| x <= lo);
    let b = v.partition_point(|&x| x <= hi);
    b.saturating_sub(a)
}

fn puts_of<'a>(op: &'a Op, out: &mut Vec<(&'a str, &'a str)>) {
    match op {
        Op::Put(p) => out.push((&p.key, &p.value)),
        Op::Txn(t) => t
            .success
            .iter()
            .chain(&t.failure)
            .for_each(|o| puts_of(o, out)),
        _ => {}
    }
}

fn rank(op: &Op) -> u8 {
    match op {
        Op::LeaseGrant(_) => 1,
        Op::LeaseRevoke(_) => 2,
        _ => 0,
    }
}

impl Prep {
    /// Builds the indexes, or an Illegal verdict for duplicate or impossible revisions.
    pub fn build(h: &History, allow_gaps: bool) -> Result<Prep, Verdict> {
        let mut p = Prep::default();
        let mut writes_possible: i64 = 0;
        let mut max_line = (0i64, 0usize);
        let bump = |rev: i64, line: usize, max: &mut (i64, usize)| {
            if rev > max.0 {
                *max = (rev, line);
            }
        };
        for o in &h.ops {
            if may_write(&o.rec.op) && !matches!(o.rec.outcome, Outcome::Fail(_)) {
                writes_possible += 1;
            }
            if let Op::LeaseGrant(_) = o.rec.op {
                writes_possible += 1; // its expiry may delete keys in a revision
            }
            if let Outcome::Ok(ok) = &o.rec.outcome {
                bump(ok.revision, o.line, &mut max_line);
            }
        }
        for w in &h.watches {
            for (line, r) in &w.responses {
                match r {
                    WatchResponse::Events(e) => {
                        bump(e.revision, *line, &mut max_line);
                        for ev in &e.events {
                            bump(ev.kv.mod_revision, *line, &mut max_line);
                        }
                    }
                    WatchResponse::Progress(pr) => bump(pr.revision, *line, &mut max_line),
                    WatchResponse::Cancel(_) => {}
                }
            }
        }
        p.max_rev = max_line.0.max(1);
        if !allow_gaps && p.max_rev > 1 + writes_possible {
            return Err(Verdict::illegal(
                Property::UnexplainedRevision,
                format!(
                    "revision {} is shown but at most {} writes could have happened",
                    p.max_rev, writes_possible
                ),
                vec![max_line.1],
            ));
        }
        let len = p.max_rev as usize + 2;
        p.writer_at = vec![None; len];
        p.obs_at = vec![Vec::new(); len];
        p.revokes_at = vec![Vec::new(); len];
        for (i, o) in h.ops.iter().enumerate() {
            match &o.rec.outcome {
                Outcome::Ok(ok) => {
                    let r = ok.revision.max(0) as usize;
                    if matches!(o.rec.op, Op::LeaseRevoke(_)) {
                        p.revokes_at[r].push(i);
                        p.obs_at[r].push(i);
                    } else if claims_write(&ok.result) {
                        if r <= 1 || r as i64 > p.max_rev {
                            return Err(Verdict::illegal(
                                Property::UnexplainedRevision,
                                format!("a write claims revision {r}, which holds no writes"),
                                vec![o.line],
                            ));
                        }
                        if let Some(j) = p.writer_at[r] {
                            return Err(Verdict::illegal(
                                Property::DuplicateRevision,
                                format!("two acknowledged writes claim revision {r}"),
                                vec![h.ops[j].line, o.line],
                            ));
                        }
                        p.writer_at[r] = Some(i);
                    } else {
                        p.obs_at[r].push(i);
                    }
                }
                Outcome::Unknown => {
                    if may_write(&o.rec.op) {
                        p.unknown.push(i);
                    }
                    if let Op::LeaseGrant(g) = &o.rec.op {
                        p.maybe_leases.push(g.id);
                    }
                }
                Outcome::Fail(_) => {}
            }
        }
        for obs in &mut p.obs_at {
            obs.sort_by_key(|&i| rank(&h.ops[i].rec.op));
        }
        p.unknown.sort_by_key(|&i| (h.ops[i].rec.call, i));
        p.collect_facts(h);
        p.pin(h);
        p.collect_key_history(h);
        p.collect_times(h);
        p.collect_gaps(h);
        p.collect_hist_from(h);
        p.shown = super::symmetry::Shown::collect(h, &p);
        p.class_of = super::symmetry::classes(h, &p, &p.shown);
        p.class_count = p
            .class_of
            .iter()
            .flatten()
            .map(|&k| k as usize + 1)
            .max()
            .unwrap_or(0);
        p.supply = super::supply::Supply::build(h, &p);
        p.components = super::components::Components::build(h, &p);
        p.put_leases = super::spent::PutLeases::build(h);
        Ok(p)
    }

    fn fact(&mut self, kv: &KeyValue, change: Change, line: usize) {
        let c = kv.create_revision;
        if c != kv.mod_revision
            && c > 1
            && c <= self.max_rev
            && self.writer_at[c as usize].is_none()
        {
            self.facts.entry(c).or_default().push(Fact {
                key: kv.key.clone(),
                change: Change::Create,
                line,
            });
        }
        let r = kv.mod_revision;
        if r > 1 && r <= self.max_rev && self.writer_at[r as usize].is_none() {
            self.facts.entry(r).or_default().push(Fact {
                key: kv.key.clone(),
                change,
                line,
            });
        }
    }

    fn collect_gaps(&mut self, h: &History) {
        let mut n = 0;
        self.gaps_upto = (0..self.writer_at.len())
            .map(|r| {
                if r >= 2 && r as i64 <= self.max_rev && self.writer_at[r].is_none() {
                    n += 1;
                }
                n
            })
            .collect();
        fn multi_delete(op: &Op) -> bool {
            match op {
                Op::DeleteRange(d) => d.range_end.is_some(),
                Op::Txn(t) => t
                    .success
                    .iter()
                    .chain(&t.failure)
                    .any(|o| matches!(o, Op::DeleteRange(_) | Op::Txn(_))),
                _ => false,
            }
        }
        self.multi_deletes = self
            .writer_at
            .iter()
            .enumerate()
            .filter_map(|(r, w)| {
                w.filter(|&i| multi_delete(&h.ops[i].rec.op))
                    .map(|_| r as i64)
            })
            .collect();
        for o in &h.ops {
            if let (Op::LeaseRevoke(l), Outcome::Ok(ok)) = (&o.rec.op, &o.rec.outcome) {
                self.revoked_by
                    .entry(l.id)
                    .or_default()
                    .push((ok.revision, o.line));
            }
        }
        self.revoked_by.values_mut().for_each(|v| v.sort_unstable());
    }

    fn collect_hist_from(&mut self, h: &History) {
        fn lowest(op: &Op) -> i64 {
            match op {
                Op::Range(q) if q.revision > 0 => q.revision,
                Op::Txn(t) => t
                    .success
                    .iter()
                    .chain(&t.failure)
                    .map(lowest)
                    .min()
                    .unwrap_or(i64::MAX),
                _ => i64::MAX,
            }
        }
        let len = self.max_rev as usize + 2;
        self.hist_from = vec![i64::MAX; len];
        for o in &h.ops {
            if let Outcome::Ok(ok) = &o.rec.outcome {
                let r = ok.revision.clamp(0, self.max_rev) as usize;
                self.hist_from[r] = self.hist_from[r].min(lowest(&o.rec.op));
            }
        }
        for r in (0..len - 1).rev() {
            self.hist_from[r] = self.hist_from[r].min(self.hist_from[r + 1]);
        }
    }

    /// Gap revisions in `(lo, hi]`.
    pub fn gaps_in(&self, lo: i64, hi: i64) -> i64 {
        let at = |r: i64| {
            self.gaps_upto
                .get(r.clamp(0, self.max_rev) as usize)
                .copied()
                .unwrap_or(0)
        };
        if hi <= lo { 0 } else { at(hi) - at(lo) }
    }

    fn collect_key_history(&mut self, h: &History) {
        /// Where reads of one acknowledged op see the store: `at` is the revision whose
        /// state they show (None: after a write of the same txn, which they may see).
        struct Reads<'a> {
            at: Option<i64>,
            line: usize,
            /// Keys some request may put: a range read that does not show one shows
            /// it absent.
            put_keys: &'a BTreeSet<String>,
        }
        fn walk(
            op: &Op,
            res: &OpResult,
            header: i64,
            writer: bool,
            rd: &mut Reads,
            out: &mut BTreeMap<String, KeyHistory>,
        ) {
            let line = rd.line;
            match (op, res) {
                (Op::Range(q), OpResult::Range(r)) if q.revision == 0 => {
                    if let Some(at) = rd.at
                        && !q.count_only
                        && r.count == r.kvs.len() as i64
                    {
                        let absent = |k: &String| !r.kvs.iter().any(|kv| kv.key == *k);
                        let keys: Vec<&String> = match q.range_end.as_deref() {
                            None => vec![&q.key],
                            Some(end) => rd
                                .put_keys
                                .range::<str, _>((
                                    Bound::Included(q.key.as_str()),
                                    Bound::Unbounded,
                                ))
                                .take_while(|k| in_range(k, &q.key, Some(end)))
                                .take(ABSENT_KEYS_PER_RANGE_MAX + 1)
                                .collect(),
                        };
                        if keys.len() <= ABSENT_KEYS_PER_RANGE_MAX {
                            for k in keys.into_iter().filter(|k| absent(k)) {
                                out.entry(k.clone()).or_default().reads.push(KeyRead {
                                    header: at,
                                    seen: None,
                                    line,
                                });
                            }
                        }
                    }
                    for kv in &r.kvs {
                        let e = out.entry(kv.key.clone()).or_default();
                        let seen = KeyObs {
                            create: kv.create_revision,
                            modified: kv.mod_revision,
                            version: kv.version,
                        };
                        e.obs.push(seen);
                        // After a write of its own txn a read may show that write.
                        if let Some(at) = rd.at {
                            e.reads.push(KeyRead {
                                header: at,
                                seen: Some(seen),
                                line,
                            });
                            e.quiet.push((kv.mod_revision, at));
                        }
                    }
                }
                (Op::Put(p), _) if writer => {
                    rd.at = None;
                    out.entry(p.key.clone())
                        .or_default()
                        .known_puts
                        .push(header);
                }
                (Op::DeleteRange(d), OpResult::DeleteRange(r)) if writer => {
                    rd.at = None;
                    if d.range_end.is_none() && r.deleted > 0 {
                        out.entry(d.key.clone())
                            .or_default()
                            .known_deletes
                            .push(header);
                    }
                }
                (Op::Txn(t), OpResult::Txn(r)) => {
                    let branch = if r.succeeded { &t.success } else { &t.failure };
                    for (o, res) in branch.iter().zip(&r.responses) {
                        walk(o, res, header, writer, rd, out);
                    }
                }
                _ => {
                    if writer {
                        rd.at = None;
                    }
                }
            }
        }
        let mut put_keys = BTreeSet::new();
        for o in &h.ops {
            let mut puts = Vec::new();
            puts_of(&o.rec.op, &mut puts);
            put_keys.extend(puts.into_iter().map(|(k, _)| k.to_owned()));
        }
        let mut out: BTreeMap<String, KeyHistory> = BTreeMap::new();
        for o in &h.ops {
            if let Outcome::Ok(ok) = &o.rec.outcome {
                if let Op::Range(q) = &o.rec.op
                    && q.serializable
                {
                    continue;
                }
                let writer = claims_write(&ok.result);
                // A writing txn's reads before its first write see the revision before
                // its own.
                let mut rd = Reads {
                    at: Some(if writer { ok.revision - 1 } else { ok.revision }),
                    line: o.line,
                    put_keys: &put_keys,
                };
                walk(
                    &o.rec.op,
                    &ok.result,
                    ok.revision,
                    writer,
                    &mut rd,
                    &mut out,
                );
                // A write's previous key-value is the key at the revision before it.
                let prev = match (&o.rec.op, &ok.result) {
                    (Op::Put(p), OpResult::Put(r)) if writer && p.prev_kv => {
                        Some((p.key.clone(), r.prev_kv.as_ref()))
                    }
                    (Op::DeleteRange(d), OpResult::DeleteRange(r))
                        if writer && d.prev_kv && d.range_end.is_none() =>
                    {
                        Some((d.key.clone(), r.prev_kvs.first()))
                    }
                    _ => None,
                };
                if let Some((key, kv)) = prev
                    && kv.is_none_or(|kv| kv.key == key)
                {
                    out.entry(key).or_default().reads.push(KeyRead {
                        header: ok.revision - 1,
                        seen: kv.map(|kv| KeyObs {
                            create: kv.create_revision,
                            modified: kv.mod_revision,
                            version: kv.version,
                        }),
                        line: o.line,
                    });
                }
            }
        }
        for kh in out.values_mut() {
            kh.obs.sort_by_key(|o| (o.modified, o.version));
            kh.known_puts.sort_unstable();
            kh.known_deletes.sort_unstable();
            kh.reads.sort_by_key(|x| (x.header, x.line));
            kh.quiet.sort_unstable();
            let mut merged: Vec<(i64, i64)> = Vec::with_capacity(kh.quiet.len());
            for &(lo, hi) in &kh.quiet {
                match merged.last_mut() {
                    Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
                    _ => merged.push((lo, hi)),
                }
            }
            kh.quiet = merged;
        }
        self.seen_keys = out;
    }

    fn pin(&mut self, h: &History) {
        for &i in &self.unknown {
            let mut puts = Vec::new();
            puts_of(&h.ops[i].rec.op, &mut puts);
            for (k, v) in puts {
                self.unknown_by_put
                    .entry((k.to_owned(), v.to_owned()))
                    .or_default()
                    .push(i);
            }
        }
        self.pinned = vec![None; h.ops.len()];
        for (r, facts) in &self.facts {
            for f in facts {
                if let Change::Put(v) = &f.change
                    && let Some([only]) = self
                        .unknown_by_put
                        .get(&(f.key.clone(), v.clone()))
                        .map(Vec::as_slice)
                {
                    self.pinned[*only] = Some(*r);
                }
            }
        }
    }

    fn result_facts(&mut self, op: &Op, res: &OpResult, line: usize) {
        match (op, res) {
            (Op::Range(q), OpResult::Range(r)) => {
                for kv in &r.kvs {
                    let c = if q.keys_only {
                        Change::PutSome
                    } else {
                        Change::Put(kv.value.clone())
                    };
                    self.fact(kv, c, line);
                }
            }
            (_, OpResult::Put(r)) => {
                if let Some(kv) = &r.prev_kv {
                    self.fact(kv, Change::Put(kv.value.clone()), line);
                }
            }
            (_, OpResult::DeleteRange(r)) => {
                for kv in &r.prev_kvs {
                    self.fact(kv, Change::Put(kv.value.clone()), line);
                }
            }
            (Op::Txn(t), OpResult::Txn(r)) => {
                let branch = if r.succeeded { &t.success } else { &t.failure };
                for (o, res) in branch.iter().zip(&r.responses) {
                    self.result_facts(o, res, line);
                }
            }
            _ => {}
        }
    }

    fn collect_facts(&mut self, h: &History) {
        for o in &h.ops {
            if let Outcome::Ok(ok) = &o.rec.outcome {
                self.result_facts(&o.rec.op, &ok.result, o.line);
            }
        }
        for w in &h.watches {
            for (line, r) in &w.responses {
                if let WatchResponse::Events(e) = r {
                    for ev in &e.events {
                        let v = match ev.kind {
                            EventKind::Put => Change::Put(ev.kv.value.clone()),
                            EventKind::Delete => Change::Delete,
                        };
                        self.fact(&ev.kv, v, *line);
                        if let Some(prev) = &ev.prev_kv {
                            self.fact(prev, Change::Put(prev.value.clone()), *line);
                        }
                    }
                }
            }
        }
    }

    fn collect_times(&mut self, h: &History) {
        let mut seen = Vec::new();
        for o in &h.ops {
            if let (Outcome::Ok(ok), Some(ret)) = (&o.rec.outcome, o.rec.ret) {
                seen.push(Seen {
                    ret,
                    rev: ok.revision,
                    line: o.line,
                });
            }
        }
        for w in &h.watches {
            for (line, r) in &w.responses {
                let (time, rev) = match r {
                    WatchResponse::Events(e) => (e.time, e.revision),
                    WatchResponse::Progress(pr) => (pr.time, pr.revision),
                    WatchResponse::Cancel(_) => continue,
                };
                seen.push(Seen {
                    ret: time,
                    rev,
                    line: *line,
                });
            }
        }
        let len = self.max_rev as usize + 2;
        self.min_ret_from = vec![u64::MAX; len];
        for s in &seen {
            let r = s.rev.clamp(0, self.max_rev) as usize;
            self.min_ret_from[r] = self.min_ret_from[r].min(s.ret);
        }
        for r in (0..len - 1).rev() {
            self.min_ret_from[r] = self.min_ret_from[r].min(self.min_ret_from[r + 1]);
        }
        seen.sort_by_key(|s| (s.ret, s.line));
        let mut best = Seen {
            ret: 0,
            rev: i64::MIN,
            line: 0,
        };
        self.done_max = seen
            .iter()
            .map(|s| {
                if s.rev > best.rev {
                    best = *s;
                }
                best
            })
            .collect();
        self.done = seen;
    }

    /// The highest revision among ops and watch responses that returned strictly before
    /// `time`, with the line that showed it.
    pub fn max_rev_before(&self, time: u64) -> Option<(i64, usize)> {
        let k = self.done.partition_point(|s| s.ret < time);
        (k > 0).then(|| (self.done_max[k - 1].rev, self.done_max[k - 1].line))
    }

    /// Checks real-time order for every acknowledged op (and for unknown-outcome writes
    /// given their resolved revisions in `resolved`).
    pub fn check_real_time(&self, h: &History, resolved: &[Option<i64>]) -> Result<(), Verdict> {
        for (i, o) in h.ops.iter().enumerate() {
            let (rev, writer) = match &o.rec.outcome {
                Outcome::Ok(ok) => {
                    if !header_is_linearizable(&o.rec.op) {
                        continue;
                    }
                    (ok.revision, claims_write(&ok.result))
                }
                _ => match resolved.get(i).copied().flatten() {
                    Some(r) => (r, true),
                    None => continue,
                },
            };
            let Some((m, line)) = self.max_rev_before(o.rec.call) else {
                continue;
            };
            if rev < m || (writer && rev == m) {
                let what = if writer { "write" } else { "read" };
                return Err(Verdict::illegal(
                    Property::RealTime,
                    format!(
                        "{what} at revision {rev} was invoked after an operation at revision {m} \
                         had returned (stale {what})"
                    ),
                    vec![line, o.line],
                ));
            }
        }
        Ok(())
    }
}

/// Whether an acknowledged `op`'s header revision is a point in the linearized history.
/// Serializable reads, lease keep-alives and lease time-to-live queries are answered
/// from the serving member's own applied state, so their header may trail writes that
/// already returned elsewhere (as in etcd). Their revisions still bound what later
/// operations may see: a member only applies what is committed.
fn header_is_linearizable(op: &Op) -> bool {
    match op {
        Op::Range(q) => !q.serializable,
        Op::LeaseKeepAlive(_) | Op::LeaseTimeToLive(_) => false,
        _ => true,
    }
}
