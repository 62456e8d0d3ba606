//! Replays a history revision by revision on the [`Store`] model. Known writers produce
//! their revisions; every gap is filled by an unknown-outcome write (or a lease expiry)
//! chosen among candidates that fit real time and the facts later reads showed; each
//! acknowledged operation is checked against the state at its header revision. Choices
//! are undone and retried depth-first, bounded by a step budget so the verdict never
//! depends on the machine's speed. It does not check watches (see `watch`).

use std::collections::{BTreeMap, HashMap};

use crate::history::{EventKind, History, Op, OpResult, Outcome};
use crate::verdict::{Property, Verdict};

use super::Options;
use super::conflict::{Conflict, KeyRange, merge, op_ranges, overlap};
use super::prep::{Change, Prep};
use super::store::{ERR_LEASE_NOT_FOUND, Store};

/// Default step budget: model executions allowed during the search.
pub const STEP_BUDGET_DEFAULT: u64 = 5_000_000;

#[derive(Debug, Clone, Copy)]
enum Cand {
    Op(usize),
    Expire(i64),
    /// A write outside the history (only with `allow_gaps`).
    Outside,
}

#[derive(Debug)]
struct Frame {
    rev: i64,
    cands: Vec<Cand>,
    next: usize,
    mark: usize,
    used_len: usize,
    /// Keys the chosen candidate changed.
    touched: Vec<String>,
    /// The chosen candidate.
    chosen: Option<Cand>,
    /// Union of the keys of the failures that came back to this frame.
    conflict: Conflict,
    /// Hash of the state the frame started from (see [`Replay::memo_key`]); None
    /// when not computed.
    memo: Option<u64>,
}

/// A successful replay: the model after the last revision and each op's revision.
#[derive(Debug)]
pub struct Replayed {
    /// The model; its events give every revision's changes.
    pub store: Store,
    /// Revision each unknown-outcome op was resolved to (None: no effect seen).
    pub resolved: Vec<Option<i64>>,
}

struct Replay<'a> {
    h: &'a History,
    p: &'a Prep,
    store: Store,
    used: Vec<bool>,
    used_log: Vec<usize>,
    resolved: Vec<Option<i64>>,
    steps: u64,
    budget: u64,
    allow_gaps: bool,
    /// Keys the last failure depends on (None: unknown).
    fail_keys: Conflict,
    /// Skip frames that cannot matter to a failure (fast, but only a hint: an Illegal
    /// answer is confirmed without it).
    backjump: bool,
    /// Starting states of gap frames from which every continuation failed, with the
    /// failure met.
    failed: HashMap<(i64, u64), Verdict>,
    /// Whether any choice has been undone yet.
    backtracked: bool,
    /// Where each key's reads stood at the last demand check.
    cursors: super::demand::Cursors,
    /// Per key slot, the revision by which the last demand check found it needs a
    /// write from a gap (candidates writing such keys are tried first).
    urgent: Vec<(usize, i64)>,
    /// Remember the gap choices leading to the deepest failure (for reports).
    record: bool,
    /// The gap choices on the path to the deepest failure so far (when `record`).
    best_path: Vec<(i64, Cand)>,
    /// Replay only these gap choices and stop at the first failure, leaving the model
    /// where it failed (for reports).
    forced: Option<BTreeMap<i64, Cand>>,
    /// The op the last failure is about and the revision whose state it was checked
    /// against (None: a gap or a demand failed).
    fail_op: Option<(usize, i64)>,
    /// The revision at which a forced replay stopped.
    stop_rev: i64,
    /// In a forced replay: the model's result and the recorded one of the op that
    /// failed, when it failed by a result.
    fail_detail: Option<(String, String)>,
}

/// How far back historical reads may reach for a state to be remembered (hashing the
/// versions in that window costs time at every gap).
pub const MEMO_WINDOW_REVS_MAX: i64 = 2_000;

/// A well-mixed hash of an op index (for the used-set hash).
fn mix(i: usize) -> u64 {
    let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

enum Stop {
    Illegal(Verdict),
    Budget,
}

/// Runs the replay: first with conflict-directed backjumping, which finds violations
/// fast; an Illegal answer from it is then confirmed by plain chronological
/// backtracking (which is exhaustive), so a verdict never rests on the heuristic.
pub fn replay(h: &History, p: &Prep, opts: &Options) -> Result<Replayed, Verdict> {
    match replay_with(h, p, opts, true) {
        Err(Verdict::Illegal(v)) => match replay_with(h, p, opts, false) {
            Err(Verdict::Unknown { reason }) => Err(Verdict::Unknown {
                reason: format!(
                    "{reason}; a likely violation was found but not confirmed: {}: {}",
                    v.property, v.message
                ),
            }),
            other => other,
        },
        other => other,
    }
}

fn replay_with(h: &History, p: &Prep, opts: &Options, backjump: bool) -> Result<Replayed, Verdict> {
    let mut rp = Replay::new(h, p, opts, backjump);
    match rp.run(&mut Vec::new()) {
        Ok(()) => Ok(Replayed {
            store: rp.store,
            resolved: rp.resolved,
        }),
        Err(Stop::Illegal(v)) => Err(v),
        Err(Stop::Budget) => Err(Verdict::Unknown {
            reason: format!(
                "step budget of {} exhausted while resolving unknown-outcome writes",
                opts.step_budget
            ),
        }),
    }
}

/// How far a replay for a report got: the model up to the point of failure.
#[derive(Debug)]
pub struct Partial {
    /// The model where the replay ended (after the last revision, or where it failed).
    pub store: Store,
    /// Revision each unknown-outcome op was placed at on the path shown.
    pub resolved: Vec<Option<i64>>,
    /// None: every revision replayed. Some: where and why the path shown fails.
    pub stopped: Option<Stopped>,
}

/// Where a replay for a report stopped.
#[derive(Debug, Clone)]
pub struct Stopped {
    /// The revision being replayed when it failed.
    pub rev: i64,
    /// The failing op (index into the history's ops) and the revision whose state it
    /// was checked against; None when a gap could not be filled or later reads demand
    /// more writes than the gaps left allow.
    pub op: Option<(usize, i64)>,
    /// The failure.
    pub verdict: Verdict,
    /// For an op whose result was wrong: what the model gives at the revision it was
    /// checked against, and what the history records (both as JSON).
    pub expected_observed: Option<(String, String)>,
}

/// Replays `h` for a report. When no full replay exists (or the budget runs out), the
/// search's deepest failure is replayed again along the same choices and left at the
/// point of failure, so every op before it has a model state; with the budget gone
/// before any failure, the path being searched is shown instead. With `confirm`, a
/// failure of the backjumping pass is searched again chronologically, as [`replay`]
/// does (use it when the history checked OK, so the full replay is found); without,
/// the backjumping pass's deepest failure is shown (cheap for an Illegal history).
pub fn replay_for_report(h: &History, p: &Prep, opts: &Options, confirm: bool) -> Partial {
    let full = |rp: Replay| Partial {
        store: rp.store,
        resolved: rp.resolved,
        stopped: None,
    };
    // The same two passes as [`replay`]: backjumping, then chronological backtracking
    // to confirm a failure.
    let mut first = Replay::new(h, p, opts, true);
    first.record = true;
    let mut frames = Vec::new();
    let path = match first.run(&mut frames) {
        Ok(()) => return full(first),
        Err(Stop::Budget) if first.best_path.is_empty() => path_of(&frames),
        Err(Stop::Budget) => first.best_path,
        Err(Stop::Illegal(_)) if !confirm => first.best_path,
        Err(Stop::Illegal(_)) => {
            let mut second = Replay::new(h, p, opts, false);
            second.record = true;
            match second.run(&mut Vec::new()) {
                Ok(()) => return full(second),
                Err(Stop::Illegal(_)) => second.best_path,
                Err(Stop::Budget) => first.best_path,
            }
        }
    };
    // Each gap has at most one choice and the first failure ends it: linear.
    let unbounded = Options {
        step_budget: u64::MAX,
        ..*opts
    };
    let mut fr = Replay::new(h, p, &unbounded, false);
    fr.forced = Some(path.into_iter().collect());
    let stopped = match fr.run(&mut Vec::new()) {
        Ok(()) => None,
        Err(Stop::Illegal(v)) => Some(Stopped {
            rev: fr.stop_rev,
            op: fr.fail_op,
            verdict: v,
            expected_observed: fr.fail_detail.take().filter(|_| fr.fail_op.is_some()),
        }),
        Err(Stop::Budget) => None,
    };
    Partial {
        store: fr.store,
        resolved: fr.resolved,
        stopped,
    }
}

fn path_of(frames: &[Frame]) -> Vec<(i64, Cand)> {
    frames
        .iter()
        .filter_map(|f| f.chosen.map(|c| (f.rev, c)))
        .collect()
}

impl<'a> Replay<'a> {
    fn new(h: &'a History, p: &'a Prep, opts: &Options, backjump: bool) -> Self {
        let mut store = Store::new();
        store.maybe_leases = p.maybe_leases.iter().copied().collect();
        Replay {
            h,
            p,
            store,
            used: vec![false; h.ops.len()],
            used_log: Vec::new(),
            resolved: vec![None; h.ops.len()],
            steps: 0,
            budget: opts.step_budget,
            allow_gaps: opts.allow_gaps,
            fail_keys: None,
            backjump,
            failed: HashMap::new(),
            backtracked: false,
            cursors: super::demand::Cursors::new(p),
            urgent: Vec::new(),
            record: false,
            best_path: Vec::new(),
            forced: None,
            fail_op: None,
            stop_rev: 0,
            fail_detail: None,
        }
    }

    fn step(&mut self) -> Result<(), Stop> {
        self.steps += 1;
        if self.steps > self.budget {
            Err(Stop::Budget)
        } else {
            Ok(())
        }
    }

    /// Runs the search; `frames` holds the gap choices of the current path (left as
    /// they are when the budget runs out).
    fn run(&mut self, frames: &mut Vec<Frame>) -> Result<(), Stop> {
        for r in 0..=1usize.min(self.p.max_rev as usize) {
            if let Err(v) = self.observe(r as i64)? {
                self.stop_rev = r as i64;
                return Err(Stop::Illegal(v));
            }
        }
        let mut best: Option<(i64, Verdict)> = None;
        let mut r: i64 = 2;
        let mut produced = false;
        loop {
            let mut res = Ok(());
            if !produced {
                if r > self.p.max_rev {
                    return Ok(());
                }
                res = match self.p.writer_at[r as usize] {
                    Some(w) => self.apply_known(w, r)?,
                    None => {
                        let memo = self.memo_key(r);
                        if let Some(v) = memo.and_then(|m| self.failed.get(&(r, m))) {
                            // This state was reached before and nothing worked from it.
                            self.fail_keys = None;
                            self.fail_op = None;
                            Err(v.clone())
                        } else {
                            let cands = self.candidates(r);
                            frames.push(Frame {
                                rev: r,
                                cands,
                                next: 0,
                                mark: self.store.mark(),
                                used_len: self.used_log.len(),
                                touched: Vec::new(),
                                chosen: None,
                                conflict: Some(Vec::new()),
                                memo,
                            });
                            let last = frames.len() - 1;
                            if self.fill(&mut frames[last])? {
                                Ok(())
                            } else {
                                frames.pop();
                                self.fail_keys = Some(self.gap_keys(r));
                                self.fail_op = None;
                                let v = self.unexplained(r);
                                if let Some(m) = memo {
                                    self.failed.insert((r, m), v.clone());
                                }
                                Err(v)
                            }
                        }
                    }
                };
            }
            if res.is_ok() {
                res = self.observe(r)?;
            }
            if res.is_ok() && !self.allow_gaps && frames.last().is_some_and(|f| f.rev == r) {
                self.step()?;
                if let Err(s) = super::demand::check(
                    self.p,
                    &self.store,
                    r,
                    &self.used,
                    &mut self.cursors,
                    &mut self.urgent,
                ) {
                    self.fail_keys = s.keys.map(|ks| ks.into_iter().map(|k| (k, None)).collect());
                    self.fail_op = None;
                    res = Err(Verdict::illegal(Property::Result, s.message, s.lines));
                }
            }
            match res {
                Ok(()) => {
                    r += 1;
                    produced = false;
                }
                Err(v) => {
                    tracing::trace!(
                        rev = r,
                        frames = frames.len(),
                        steps = self.steps,
                        "backtrack"
                    );
                    if self.forced.is_some() {
                        // Leave the model where the path shown fails.
                        self.stop_rev = r;
                        return Err(Stop::Illegal(v));
                    }
                    self.backtracked = true;
                    if best.as_ref().is_none_or(|(br, _)| r > *br) {
                        best = Some((r, v));
                        if self.record {
                            self.best_path = path_of(frames);
                        }
                    }
                    // Conflict-directed backjumping: only frames whose choice could
                    // change the keys the failure depends on are retried.
                    let mut conflict = self.fail_keys.take();
                    if !self.backjump {
                        conflict = None;
                    }
                    loop {
                        let Some(f) = frames.last_mut() else {
                            let v = best.map(|b| b.1).unwrap_or(Verdict::Ok);
                            return Err(Stop::Illegal(v));
                        };
                        let (mark, used_len) = (f.mark, f.used_len);
                        self.store.rollback(mark);
                        self.unwind(used_len);
                        let last = frames.len() - 1;
                        if self.relevant(&frames[last], &mut conflict) {
                            merge(&mut frames[last].conflict, &conflict);
                            if self.fill(&mut frames[last])? {
                                r = frames[last].rev;
                                produced = true;
                                break;
                            }
                            // Every way to fill this frame failed: the earlier frames
                            // that matter are those touching what its candidates
                            // depended on.
                            conflict = frames[last].conflict.take();
                            let why = if self.backjump {
                                self.exhausted_keys(&frames[last])
                            } else {
                                None
                            };
                            merge(&mut conflict, &why);
                        }
                        if let (Some(f), Some((_, v))) = (frames.pop(), best.as_ref())
                            && let Some(m) = f.memo
                        {
                            self.failed.insert((f.rev, m), v.clone());
                        }
                    }
                }
            }
        }
    }

    /// Whether frame `f` could matter to a failure on `conflict`; widens `conflict` by
    /// the keys its txn candidates compare (their effect depends on those).
    fn relevant(&self, f: &Frame, conflict: &mut Conflict) -> bool {
        let Some(keys) = conflict.as_mut() else {
            return true;
        };
        let hits = |ranges: &[KeyRange], keys: &[KeyRange]| {
            ranges.iter().any(|a| keys.iter().any(|b| overlap(a, b)))
        };
        let touched: Vec<KeyRange> = f.touched.iter().map(|k| (k.clone(), None)).collect();
        let mut relevant = hits(&touched, keys);
        let mut extra = Vec::new();
        // The store is at the frame's parent state here, so a lease's keys are those
        // its revoke or expiry would delete at this frame.
        let lease_hits = |id: i64, keys: &[KeyRange]| {
            self.store.lease(id).is_some_and(|l| {
                l.keys
                    .iter()
                    .any(|k| keys.iter().any(|b| overlap(&(k.clone(), None), b)))
            })
        };
        // Every candidate counts, tried or not: a frame is a culprit when any of its
        // choices could change the keys, and if its untried ones cannot help, its own
        // conflict (why the tried ones failed) is carried further back.
        for c in f.chosen.iter().chain(&f.cands) {
            let i = match c {
                Cand::Op(i) => *i,
                Cand::Expire(id) => {
                    relevant |= lease_hits(*id, keys);
                    continue;
                }
                Cand::Outside => continue,
            };
            let op = &self.h.ops[i].rec.op;
            if let Op::LeaseRevoke(l) = op {
                relevant |= lease_hits(l.id, keys);
                continue;
            }
            let mut ranges = Vec::new();
            op_ranges(op, &mut ranges);
            // A put whose key reads show untouched at this revision cannot go here.
            let placeable = ranges.iter().any(|(k, end)| {
                end.is_some() || self.p.seen_keys.get(k).is_none_or(|kh| !kh.quiet_at(f.rev))
            });
            if placeable && hits(&ranges, keys) {
                relevant = true;
                extra.extend(ranges);
            }
        }
        if !extra.is_empty() {
            keys.extend(extra);
            super::conflict::dedup(keys);
        }
        relevant
    }

    /// Identifies the state before gap `r` is filled: the store as far as later reads
    /// can see it, and the unknown-outcome ops already used.
    /// None before the first backtrack (nothing has failed yet, so there is nothing to
    /// look up) and when historical reads reach back more than [`MEMO_WINDOW_REVS_MAX`].
    fn memo_key(&self, r: i64) -> Option<u64> {
        let from = self.p.hist_from[r as usize].min(r);
        let state = || {
            if from == r {
                self.store.current_hash(|kv| self.p.shown.visible(kv))
            } else {
                self.store.state_hash(from)
            }
        };
        (self.backtracked && r - from <= MEMO_WINDOW_REVS_MAX)
            .then(|| state() ^ self.used_signature(r).rotate_left(17))
    }

    /// What the ops used so far leave to the gaps from `r` on: the used ops that could
    /// still produce a revision at `r` or later, each interchangeable op by its class
    /// (a multiset: any unused one of a class is as good as another from `r` on, as
    /// every op of a class placed before `r` could also be placed at any revision of
    /// the class's range from `r` on). Ops whose last possible revision lies before `r`
    /// can never be placed again, used or not, and so can ops the state leaves no way
    /// to write (`spent`): both are left out.
    fn used_signature(&self, r: i64) -> u64 {
        let n = self.h.ops.len();
        self.used_log
            .iter()
            .filter(|&&i| self.last_rev(i) >= r && !self.spent(i))
            .map(|&i| match self.p.class_of.get(i).copied().flatten() {
                Some(k) => mix(n + k as usize),
                None => mix(i),
            })
            .fold(0u64, u64::wrapping_add)
    }

    /// Whether op `i` can produce no revision from the current state on (see `spent`).
    fn spent(&self, i: usize) -> bool {
        super::spent::spent(&self.h.ops[i].rec.op, &self.store, &self.p.put_leases)
    }

    /// The last revision op `i` may fill: an acknowledged revoke only its header
    /// revision, an unknown-outcome write as far as its lifetime and pin allow.
    fn last_rev(&self, i: usize) -> i64 {
        if let Outcome::Ok(ok) = &self.h.ops[i].rec.outcome {
            return ok.revision;
        }
        let hi = self.p.supply.highest(i);
        self.p.pinned[i].map_or(hi, |pin| pin.min(hi))
    }

    fn unwind(&mut self, len: usize) {
        while self.used_log.len() > len {
            if let Some(i) = self.used_log.pop() {
                self.used[i] = false;
                self.resolved[i] = None;
            }
        }
    }

    fn use_op(&mut self, i: usize, r: i64) {
        self.used[i] = true;
        self.resolved[i] = Some(r);
        self.used_log.push(i);
    }

    fn unexplained(&self, r: i64) -> Verdict {
        let mut lines: Vec<usize> = self
            .p
            .facts
            .get(&r)
            .map(|f| f.iter().map(|f| f.line).collect())
            .unwrap_or_default();
        let shown: Vec<String> = self
            .p
            .facts
            .get(&r)
            .map(|f| {
                f.iter()
                    .map(|f| match &f.change {
                        Change::Put(v) => format!("put {}={}", f.key, v),
                        Change::PutSome => format!("put {}", f.key),
                        Change::Delete => format!("delete {}", f.key),
                        Change::Create => format!("create {}", f.key),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(&i) = self.p.revokes_at[r as usize].first() {
            // A revoke returned at `r` and nothing else can have made it: the lease's keys
            // were to vanish at `r`, but something shows they did not.
            lines.push(self.h.ops[i].line);
            let writers_of_keys = self.p.revokes_at[r as usize]
                .iter()
                .filter_map(|&j| match &self.h.ops[j].rec.op {
                    Op::LeaseRevoke(l) => Some(l.id.to_string()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Verdict::illegal(
                Property::Lease,
                format!(
                    "lease {writers_of_keys} revoked at revision {r}, but its keys cannot have \
                     vanished in that revision (reads still show them, or it had none and no \
                     other write produced {r})"
                ),
                lines,
            );
        }
        let (prev, next) = (r - 1, r + 1);
        for rr in [prev, next] {
            if let Some(Some(w)) = self.p.writer_at.get(rr.max(0) as usize) {
                lines.push(self.h.ops[*w].line);
            }
        }
        Verdict::illegal(
            Property::UnexplainedRevision,
            format!(
                "no acknowledged write produced revision {r} and no unknown-outcome write or lease \
                 expiry can have (lost or phantom write); records show at {r}: [{}]",
                shown.join(", ")
            ),
            lines,
        )
    }

    /// Candidates for gap revision `r`, in the order they are tried.
    /// The unknown-outcome ops that put a value shown at gap `r` (values are usually
    /// unique, so this names the writer); None when no value is shown there.
    fn named(&self, r: i64) -> Option<&[usize]> {
        self.p.facts.get(&r).and_then(|fs| {
            fs.iter().find_map(|f| match &f.change {
                Change::Put(v) => Some(
                    self.p
                        .unknown_by_put
                        .get(&(f.key.clone(), v.clone()))
                        .map_or(&[][..], Vec::as_slice),
                ),
                _ => None,
            })
        })
    }

    fn candidates(&self, r: i64) -> Vec<Cand> {
        if let Some(forced) = &self.forced {
            return forced.get(&r).copied().into_iter().collect();
        }
        let deadline = self.p.min_ret_from[r as usize];
        let fits = |i: usize| {
            let call = self.h.ops[i].rec.call;
            !self.used[i]
                && call < deadline
                && r <= self.p.supply.highest(i)
                && self.p.max_rev_before(call).is_none_or(|(m, _)| m < r)
        };
        let mut c: Vec<Cand> = Vec::new();
        if let Some(named) = self.named(r) {
            c.extend(named.iter().copied().filter(|&i| fits(i)).map(Cand::Op));
        } else {
            c.extend(
                self.p.revokes_at[r as usize]
                    .iter()
                    .filter(|&&i| !self.used[i])
                    .map(|&i| Cand::Op(i)),
            );
            // Latest call first: an op usually takes effect soon after it is invoked,
            // and ops invoked long ago and still unplaced most likely never took effect.
            let end = self
                .p
                .unknown
                .partition_point(|&i| self.h.ops[i].rec.call < deadline);
            for &i in self.p.unknown[..end].iter().rev() {
                if fits(i) && self.p.pinned[i].is_none_or(|p| p == r) && !self.spent(i) {
                    c.push(Cand::Op(i));
                }
            }
            c.extend(self.store.leases_with_keys().into_iter().map(Cand::Expire));
            self.urgent_first(&mut c, r);
        }
        // Interchangeable writes: only the first unused one of each class is tried.
        let mut seen = vec![false; self.p.class_count];
        c.retain(|cand| match cand {
            Cand::Op(i) => match self.p.class_of.get(*i).copied().flatten() {
                Some(k) => !std::mem::replace(&mut seen[k as usize], true),
                None => true,
            },
            _ => true,
        });
        if self.allow_gaps {
            c.push(Cand::Outside);
        }
        c
    }

    /// With leases, orders candidates (stably) by the earliest revision by which a key
    /// they may change needs a write, as the last demand check found: lock and lease
    /// clients leave many writes that could go anywhere, and those later reads need go
    /// first. Only the order of the search changes, never what it covers.
    fn urgent_first(&self, c: &mut [Cand], r: i64) {
        // Without leases the latest-call-first order does better on timeout-heavy
        // histories (many writes to few keys), where most writes could go anywhere.
        if self.urgent.is_empty() || !self.p.supply.leases() {
            return;
        }
        let by_slot: HashMap<usize, i64> = self.urgent.iter().copied().collect();
        let comps = &self.p.components;
        let of_keys = |keys: &std::collections::BTreeSet<String>| {
            keys.iter()
                .filter_map(|k| comps.slot.get(k).and_then(|s| by_slot.get(s)))
                .min()
                .copied()
        };
        let of_op = |i: usize| {
            comps.op_slots[i]
                .iter()
                .filter_map(|s| by_slot.get(s))
                .min()
                .copied()
        };
        // A needed txn may depend on keys its compares look at: writes to those keys
        // are needed as early (a lock's key before the txn that holds the lock).
        let mut enabling: BTreeMap<&str, i64> = BTreeMap::new();
        for cand in c.iter() {
            if let Cand::Op(i) = cand
                && let Op::Txn(t) = &self.h.ops[*i].rec.op
                && let Some(d) = of_op(*i)
            {
                for cmp in t.compare.iter().filter(|cmp| cmp.range_end.is_none()) {
                    let e = enabling.entry(cmp.key.as_str()).or_insert(d);
                    *e = (*e).min(d);
                }
            }
        }
        // Deleting such a key before the txn ran would disable it: those go after it.
        let disables = |keys: &mut dyn Iterator<Item = &str>| {
            keys.filter_map(|k| enabling.get(k)).max().map(|d| d + 1)
        };
        let due = |cand: &Cand| {
            let (d, after) = match cand {
                Cand::Op(i) => match &self.h.ops[*i].rec.op {
                    Op::LeaseRevoke(l) => match self.store.lease(l.id) {
                        Some(l) => (
                            of_keys(&l.keys),
                            disables(&mut l.keys.iter().map(String::as_str)),
                        ),
                        None => (None, None),
                    },
                    Op::Put(q) => (
                        of_op(*i).or_else(|| enabling.get(q.key.as_str()).copied()),
                        None,
                    ),
                    Op::DeleteRange(q) if q.range_end.is_none() => {
                        (of_op(*i), disables(&mut std::iter::once(q.key.as_str())))
                    }
                    _ => (of_op(*i), None),
                },
                Cand::Expire(id) => match self.store.lease(*id) {
                    Some(l) => (
                        of_keys(&l.keys),
                        disables(&mut l.keys.iter().map(String::as_str)),
                    ),
                    None => (None, None),
                },
                Cand::Outside => (None, None),
            };
            let d = d.filter(|&d| d >= r).unwrap_or(i64::MAX);
            after.map_or(d, |a| d.max(a))
        };
        c.sort_by_cached_key(due);
    }

    /// Tries the frame's remaining candidates; true when one produced the revision.
    fn fill(&mut self, f: &mut Frame) -> Result<bool, Stop> {
        while f.next < f.cands.len() {
            let cand = f.cands[f.next];
            f.next += 1;
            self.step()?;
            let mark = self.store.mark();
            let ok = match cand {
                Cand::Op(i) => match &self.h.ops[i].rec.op {
                    Op::LeaseRevoke(l) => {
                        self.store.lease(l.id).is_some_and(|l| l.alive)
                            && self.store.revoke(l.id) > 0
                    }
                    op => self.store.exec(op).is_ok(),
                },
                Cand::Expire(id) => self.store.revoke(id) > 0,
                Cand::Outside => {
                    self.store.skip_revision();
                    f.chosen = Some(cand);
                    f.touched = Vec::new();
                    return Ok(true);
                }
            };
            if ok && self.store.rev() == f.rev && self.facts_hold(f.rev) && self.reads_allow(f.rev)
            {
                if let Cand::Op(i) = cand {
                    self.use_op(i, f.rev);
                }
                f.chosen = Some(cand);
                f.touched = self
                    .store
                    .events(f.rev)
                    .iter()
                    .map(|e| e.kv.key.clone())
                    .collect();
                return Ok(true);
            }
            self.store.rollback(mark);
        }
        Ok(false)
    }

    /// Whether the changes just made at gap revision `r` agree with what later reads show
    /// of the keys touched: no write inside a quiet interval, no more puts than the
    /// version seen allows, no delete inside one incarnation of a key.
    fn reads_allow(&self, r: i64) -> bool {
        self.store.events(r).iter().all(|e| {
            let Some(kh) = self.p.seen_keys.get(&e.kv.key) else {
                return true;
            };
            if kh.quiet_at(r) {
                return false;
            }
            let Some(next) = kh.next_obs(r) else {
                return true;
            };
            match e.kind {
                EventKind::Put => {
                    next.create != e.kv.create_revision
                        || e.kv.version + kh.known_puts_in(r, next.modified) as i64 <= next.version
                }
                EventKind::Delete => next.create > r,
            }
        })
    }

    fn facts_hold(&self, r: i64) -> bool {
        let Some(facts) = self.p.facts.get(&r) else {
            return true;
        };
        let events = self.store.events(r);
        facts.iter().all(|f| {
            events.iter().any(|e| {
                e.kv.key == f.key
                    && match &f.change {
                        Change::Put(v) => e.kind == EventKind::Put && &e.kv.value == v,
                        Change::PutSome => e.kind == EventKind::Put,
                        Change::Delete => e.kind == EventKind::Delete,
                        Change::Create => e.kind == EventKind::Put && e.kv.version == 1,
                    }
            })
        })
    }

    fn apply_known(&mut self, w: usize, r: i64) -> Result<Result<(), Verdict>, Stop> {
        self.step()?;
        let o = &self.h.ops[w];
        let Outcome::Ok(ok) = &o.rec.outcome else {
            return Ok(Ok(()));
        };
        let got = self.store.exec(&o.rec.op);
        // Kept for the report of a forced replay, which stops at its first failure.
        let shown = self.forced.is_some().then(|| got.clone());
        let res = match got {
            Err(e) => {
                let prop = if e == ERR_LEASE_NOT_FOUND {
                    Property::Lease
                } else {
                    Property::Result
                };
                Err(Verdict::illegal(
                    prop,
                    format!("acknowledged write at revision {r} must have failed: {e}"),
                    vec![o.line],
                ))
            }
            Ok(res) if self.store.rev() != r => Err(Verdict::illegal(
                Property::Result,
                format!(
                    "acknowledged write claims revision {r} but changes nothing in the state \
                     at revision {}; model result {}",
                    r - 1,
                    json(&res)
                ),
                vec![o.line],
            )),
            Ok(res) if res != ok.result => Err(self.mismatch(w, r - 1, &res, &ok.result)),
            Ok(_) => Ok(()),
        };
        if res.is_err() {
            self.fail_keys = Some(self.ranges_of(w));
            self.fail_op = Some((w, r - 1));
            self.fail_detail = shown.map(|g| (model_text(&g), json(&ok.result)));
        }
        Ok(res)
    }

    /// What the failure of every candidate of frame `f` depends on (the store is at the
    /// frame's parent state): the keys of every write that fits its revision by time,
    /// used or not, and of the leases its expiry candidates would end. A leased put among
    /// them depends on lease state, which keys do not capture: None.
    fn exhausted_keys(&self, f: &Frame) -> Conflict {
        let deadline = self.p.min_ret_from[f.rev as usize];
        let leased = |op: &Op| {
            fn walk(op: &Op) -> bool {
                match op {
                    Op::Put(p) => p.lease != 0,
                    Op::Txn(t) => t.success.iter().chain(&t.failure).any(walk),
                    _ => false,
                }
            }
            walk(op)
        };
        for &i in &self.p.unknown {
            if self.h.ops[i].rec.call >= deadline {
                break;
            }
            if leased(&self.h.ops[i].rec.op) {
                return None;
            }
        }
        let mut v = self.gap_keys(f.rev);
        for c in &f.cands {
            match c {
                Cand::Op(i) => op_ranges(&self.h.ops[*i].rec.op, &mut v),
                Cand::Expire(id) => {
                    if let Some(l) = self.store.lease(*id) {
                        v.extend(l.keys.iter().map(|k| (k.clone(), None)));
                    }
                }
                Cand::Outside => {}
            }
        }
        Some(v)
    }

    /// Keys that matter when no candidate can fill gap `r`: those of every write that
    /// could fit it by time (a frame that used one may have to give it back), of the
    /// facts shown at `r`, and of leases revoked at `r`.
    fn gap_keys(&self, r: i64) -> Vec<KeyRange> {
        let deadline = self.p.min_ret_from[r as usize];
        let mut v = Vec::new();
        if let Some(named) = self.named(r) {
            // Only the ops that put the value shown can fill `r`.
            for &i in named {
                op_ranges(&self.h.ops[i].rec.op, &mut v);
            }
        } else {
            for &i in &self.p.unknown {
                if self.h.ops[i].rec.call >= deadline {
                    break;
                }
                op_ranges(&self.h.ops[i].rec.op, &mut v);
            }
        }
        if let Some(fs) = self.p.facts.get(&r) {
            v.extend(fs.iter().map(|f| (f.key.clone(), None)));
        }
        for &i in &self.p.revokes_at[r as usize] {
            if let Op::LeaseRevoke(l) = &self.h.ops[i].rec.op
                && let Some(lease) = self.store.lease(l.id)
            {
                v.extend(lease.keys.iter().map(|k| (k.clone(), None)));
            }
        }
        v
    }

    fn ranges_of(&self, i: usize) -> Vec<KeyRange> {
        let mut v = Vec::new();
        op_ranges(&self.h.ops[i].rec.op, &mut v);
        v
    }

    fn mismatch(&self, i: usize, at: i64, want: &OpResult, got: &OpResult) -> Verdict {
        let o = &self.h.ops[i];
        let mut lines = vec![o.line];
        // The writers of the revisions the two results mention belong to the story.
        let mut revs = Vec::new();
        revs_in(want, &mut revs);
        revs_in(got, &mut revs);
        for r in revs {
            if let Some(Some(w)) = self.p.writer_at.get(r.clamp(0, self.p.max_rev) as usize) {
                lines.push(self.h.ops[*w].line);
            }
        }
        let prop = if self.lease_related(got) {
            Property::Lease
        } else {
            Property::Result
        };
        Verdict::illegal(
            prop,
            format!(
                "result differs from the state at revision {at}: expected {} but got {}",
                json(want),
                json(got)
            ),
            lines,
        )
    }

    /// Whether a wrong result shows a key attached to a lease the model has revoked.
    fn lease_related(&self, res: &OpResult) -> bool {
        match res {
            OpResult::Range(r) => r
                .kvs
                .iter()
                .any(|kv| kv.lease != 0 && self.store.lease(kv.lease).is_some_and(|l| !l.alive)),
            OpResult::Txn(t) => t.responses.iter().any(|r| self.lease_related(r)),
            _ => false,
        }
    }

    /// Checks every op that observes revision `r` (the store is at `r`).
    fn observe(&mut self, r: i64) -> Result<Result<(), Verdict>, Stop> {
        let Some(obs) = self.p.obs_at.get(r.max(0) as usize) else {
            return Ok(Ok(()));
        };
        for &i in obs {
            self.step()?;
            // Kept only when this op fails (set again by every other failure).
            self.fail_op = Some((i, r));
            let o = &self.h.ops[i];
            let Outcome::Ok(ok) = &o.rec.outcome else {
                continue;
            };
            let lease_err =
                |msg: String| Ok(Err(Verdict::illegal(Property::Lease, msg, vec![o.line])));
            match (&o.rec.op, &ok.result) {
                (Op::Range(_) | Op::DeleteRange(_) | Op::Txn(_), _) => {
                    let mark = self.store.mark();
                    let got = self.store.exec(&o.rec.op);
                    let wrote = self.store.rev() != r;
                    self.store.rollback(mark);
                    if got.as_ref().map_or(true, |res| wrote || res != &ok.result) {
                        self.fail_keys = Some(self.ranges_of(i));
                        if self.forced.is_some() {
                            self.fail_detail = Some((model_text(&got), json(&ok.result)));
                        }
                    }
                    match got {
                        Err(e) => {
                            return Ok(Err(Verdict::illegal(
                                Property::Result,
                                format!("acknowledged at revision {r} but must have failed: {e}"),
                                vec![o.line],
                            )));
                        }
                        Ok(res) if wrote || res != ok.result => {
                            return Ok(Err(self.mismatch(i, r, &res, &ok.result)));
                        }
                        Ok(_) => {}
                    }
                }
                (Op::LeaseGrant(_), OpResult::LeaseGrant(g)) if !self.store.grant(g.id) => {
                    return lease_err(format!("lease {} granted twice", g.id));
                }
                (Op::LeaseRevoke(l), _) => {
                    if self.used[i] {
                        continue;
                    }
                    let keys: Vec<String> = self
                        .store
                        .lease(l.id)
                        .map(|x| x.keys.iter().cloned().collect())
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        self.fail_keys = Some(keys.iter().map(|k| (k.clone(), None)).collect());
                        return lease_err(format!(
                            "lease {} revoked at revision {r} but its keys {keys:?} did not \
                             vanish in a revision of their own",
                            l.id
                        ));
                    }
                    self.store.revoke(l.id);
                }
                (Op::LeaseKeepAlive(l), OpResult::LeaseKeepAlive(k))
                    if k.ttl > 0 && self.store.lease(l.id).is_some_and(|x| !x.alive) =>
                {
                    return lease_err(format!(
                        "keep-alive of lease {} succeeded after it was revoked",
                        l.id
                    ));
                }
                (Op::LeaseTimeToLive(l), OpResult::LeaseTimeToLive(t)) => {
                    if let Some(lease) = self.store.lease(l.id) {
                        if t.ttl > 0 && !lease.alive {
                            return lease_err(format!("lease {} alive after its revoke", l.id));
                        }
                        let mut keys = t.keys.clone();
                        keys.sort();
                        let want: Vec<String> = lease.keys.iter().cloned().collect();
                        if l.keys && t.ttl > 0 && keys != want {
                            return lease_err(format!(
                                "lease {} keys at revision {r}: expected {want:?} but got {keys:?}",
                                l.id
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(Ok(()))
    }
}

fn revs_in(res: &OpResult, out: &mut Vec<i64>) {
    match res {
        OpResult::Range(r) => out.extend(r.kvs.iter().map(|k| k.mod_revision)),
        OpResult::Put(p) => out.extend(p.prev_kv.iter().map(|k| k.mod_revision)),
        OpResult::DeleteRange(d) => out.extend(d.prev_kvs.iter().map(|k| k.mod_revision)),
        OpResult::Txn(t) => t.responses.iter().for_each(|r| revs_in(r, out)),
        _ => {}
    }
}

/// The model's answer to an op as text: its result as JSON, or its error.
fn model_text(got: &Result<OpResult, String>) -> String {
    match got {
        Ok(res) => json(res),
        Err(e) => format!("error: {e}"),
    }
}

/// Compact JSON of a result for messages.
pub fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
