//! The backtracking search itself.
//!
//! Known-outcome operations become a call event and a return event in one time-ordered,
//! doubly linked list. At each configuration the candidates are the calls that come
//! before the first return still in the list (an operation whose return comes first
//! must be placed before anything called after it). Placing an operation unlinks its
//! two events; backtracking links them back in reverse order. Unknown-outcome
//! operations are not in the list: they are candidates whenever they were called before
//! that first return, are tried after the known ones, and only when they change the
//! state. The search succeeds once every known operation is placed (unknown ones that
//! were not placed take effect after everything, or never).
//!
//! This file does not decide verdict wording for users beyond the [`Outcome`] values.

use std::collections::BTreeSet;

use super::memo::{Insert, KnownSet, Memo};
use super::{Model, Operation, Outcome, Progress};

/// Default cap on remembered configurations.
pub const MEMO_ENTRIES_MAX_DEFAULT: usize = 4_000_000;

/// Default cap on the memo's estimated size in bytes (the states' own heap memory is
/// not counted).
pub const MEMO_BYTES_MAX_DEFAULT: usize = 1 << 30;

/// Bounds on one search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Model steps (attempted state transitions) allowed before giving up.
    pub step_budget: u64,
    /// Configurations the memo may hold before giving up.
    pub memo_entries_max: usize,
    /// Estimated memo bytes allowed before giving up.
    pub memo_bytes_max: usize,
}

impl Limits {
    /// `step_budget` with the default memo caps.
    pub fn with_step_budget(step_budget: u64) -> Self {
        Limits {
            step_budget,
            memo_entries_max: MEMO_ENTRIES_MAX_DEFAULT,
            memo_bytes_max: MEMO_BYTES_MAX_DEFAULT,
        }
    }
}

/// The result of [`check_with`]: the verdict plus what the search spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The verdict.
    pub outcome: Outcome,
    /// Model steps taken.
    pub steps: u64,
    /// Configurations remembered at the end.
    pub memo_entries: usize,
    /// For an Unknown outcome: the longest linearized sequence the search reached
    /// before it gave up (None when it never placed anything).
    pub progress: Option<Progress>,
}

/// Groups of interchangeable unknown-outcome operations are formed by comparing each
/// with at most this many group representatives (bounds the setup cost).
const GROUP_REPRESENTATIVES_MAX: usize = 1024;

/// Sentinel list positions: the head and the tail of the event list.
const NIL: u32 = u32::MAX;

/// One call or return event of a known-outcome operation.
struct Event {
    /// Number of the operation among known ones (call order).
    known: u32,
    is_call: bool,
    time: u64,
}

/// Which operation a stack frame placed.
#[derive(Clone, Copy)]
enum Placed {
    Known(u32),
    Unknown(u32),
}

struct Frame<S> {
    placed: Placed,
    state_before: S,
    /// Time of the first return event at the configuration where `placed` was chosen.
    first_return_time: u64,
}

/// Where the scan of the current configuration's candidates stands.
enum Cursor {
    /// Scanning the event list; the value is the next event position to look at.
    Known(u32),
    /// Trying unknown operations numbered above `after` called by `first_return_time`.
    Unknown {
        after: Option<u32>,
        first_return_time: u64,
    },
}

/// The doubly linked event list (dancing links: removed nodes keep their pointers).
struct EventList {
    next: Vec<u32>,
    prev: Vec<u32>,
    head: u32,
}

impl EventList {
    fn new(len: usize) -> Self {
        let n = len as u32;
        let next = (0..n)
            .map(|i| if i + 1 < n { i + 1 } else { NIL })
            .collect();
        let prev = (0..n).map(|i| if i == 0 { NIL } else { i - 1 }).collect();
        EventList {
            next,
            prev,
            head: if n == 0 { NIL } else { 0 },
        }
    }

    fn unlink(&mut self, e: u32) {
        let (p, n) = (self.prev[e as usize], self.next[e as usize]);
        if p == NIL {
            self.head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n != NIL {
            self.prev[n as usize] = p;
        }
    }

    fn relink(&mut self, e: u32) {
        let (p, n) = (self.prev[e as usize], self.next[e as usize]);
        if p == NIL {
            self.head = e;
        } else {
            self.next[p as usize] = e;
        }
        if n != NIL {
            self.prev[n as usize] = e;
        }
    }
}

/// Checks `ops` against `model` within `limits`, and says what the search spent.
pub fn check_with<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    limits: &Limits,
) -> Report {
    let mut search = match Search::new(model, ops, limits) {
        Ok(s) => s,
        Err(reason) => {
            return Report {
                outcome: Outcome::Unknown { reason },
                steps: 0,
                memo_entries: 0,
                progress: None,
            };
        }
    };
    let outcome = search.run();
    let progress = match outcome {
        Outcome::Unknown { .. } => search.progress(),
        _ => None,
    };
    Report {
        outcome,
        steps: search.steps,
        memo_entries: search.memo.len(),
        progress,
    }
}

/// Every token some operation observes; None if some operation may observe anything.
fn observed_tokens<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
) -> Option<BTreeSet<u64>> {
    let mut tokens = BTreeSet::new();
    for op in ops {
        tokens.extend(model.observed(&op.input, op.output.as_ref())?);
    }
    Some(tokens)
}

/// Groups interchangeable unknown operations: each operation's group, and each group's
/// members in call order with none placed.
fn group_unknown<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    unknown_ops: &[(usize, u64)],
) -> (Vec<u32>, Vec<(Vec<u32>, u32)>) {
    let mut group_of = Vec::with_capacity(unknown_ops.len());
    let mut groups: Vec<(Vec<u32>, u32)> = Vec::new();
    for (u, &(i, _)) in unknown_ops.iter().enumerate() {
        let input = &ops[i].input;
        let found = groups
            .iter()
            .take(GROUP_REPRESENTATIVES_MAX)
            .position(|(members, _)| {
                let rep = unknown_ops[members[0] as usize].0;
                model.interchangeable(&ops[rep].input, input)
            });
        let g = match found {
            Some(g) => g,
            None => {
                groups.push((Vec::new(), 0));
                groups.len() - 1
            }
        };
        groups[g].0.push(u as u32);
        group_of.push(g as u32);
    }
    (group_of, groups)
}

struct Search<'a, M: Model> {
    model: &'a M,
    ops: &'a [Operation<M::Input, M::Output>],
    limits: Limits,
    /// Original index of each known operation, in call order.
    known_ops: Vec<usize>,
    /// Event positions (call, return) of each known operation.
    known_events: Vec<(u32, u32)>,
    events: Vec<Event>,
    list: EventList,
    /// Original index and call time of each unknown operation, in call order.
    unknown_ops: Vec<(usize, u64)>,
    /// Unknown operations not placed yet.
    unknown_pending: BTreeSet<u32>,
    /// Group of each unknown operation (interchangeable operations share one).
    unknown_group: Vec<u32>,
    /// Members of each group in call order, and how many of them are placed (always the
    /// first ones: only the earliest pending member of a group is ever tried).
    groups: Vec<(Vec<u32>, u32)>,
    /// Groups with at least one placed member, ascending.
    placed_groups: Vec<u32>,
    placed: KnownSet,
    memo: Memo<M::State>,
    stack: Vec<Frame<M::State>>,
    steps: u64,
    /// Deepest dead end seen: (placed operations in order, operations that failed there).
    deepest: Option<(Vec<usize>, Vec<usize>)>,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(
        model: &'a M,
        ops: &'a [Operation<M::Input, M::Output>],
        limits: &Limits,
    ) -> Result<Self, String> {
        if ops.len() >= (NIL / 2) as usize {
            return Err(format!("history too large: {} operations", ops.len()));
        }
        let mut order: Vec<usize> = (0..ops.len()).collect();
        order.sort_by_key(|&i| (ops[i].call, i));
        let observed = observed_tokens(model, ops);
        let mut known_ops = Vec::new();
        let mut unknown_ops = Vec::new();
        for &i in &order {
            let op = &ops[i];
            // An operation that returned, or whose output is known, happened: it must be
            // placed (before its return, if any). Only one with neither is optional.
            match (op.ret, &op.output) {
                (Some(ret), _) if ret < op.call => {
                    let line = op.line.map(|l| format!(" (line {l})")).unwrap_or_default();
                    return Err(format!(
                        "operation {i}{line} returns at {ret} before its call at {}",
                        op.call
                    ));
                }
                (Some(_), _) | (None, Some(_)) => known_ops.push(i),
                (None, None) => {
                    let seen = |effects: Vec<u64>| match &observed {
                        None => true,
                        Some(tokens) => effects.iter().any(|t| tokens.contains(t)),
                    };
                    // Nothing can observe it: it may as well not have happened.
                    if model.effects(&op.input).is_none_or(seen) {
                        unknown_ops.push((i, op.call));
                    }
                }
            }
        }
        let mut events: Vec<Event> = Vec::with_capacity(known_ops.len() * 2);
        for (k, &i) in known_ops.iter().enumerate() {
            let op = &ops[i];
            let k = k as u32;
            events.push(Event {
                known: k,
                is_call: true,
                time: op.call,
            });
            events.push(Event {
                known: k,
                is_call: false,
                time: op.ret.unwrap_or(u64::MAX),
            });
        }
        // Calls before returns at equal times: such operations count as concurrent.
        events.sort_by_key(|e| (e.time, !e.is_call, e.known));
        let mut known_events = vec![(0u32, 0u32); known_ops.len()];
        for (pos, e) in events.iter().enumerate() {
            let slot = &mut known_events[e.known as usize];
            if e.is_call {
                slot.0 = pos as u32;
            } else {
                slot.1 = pos as u32;
            }
        }
        let (unknown_group, groups) = group_unknown(model, ops, &unknown_ops);
        Ok(Search {
            unknown_group,
            groups,
            model,
            ops,
            limits: *limits,
            list: EventList::new(events.len()),
            placed: KnownSet::new(known_ops.len()),
            known_events,
            events,
            unknown_pending: (0..unknown_ops.len() as u32).collect(),
            unknown_ops,
            known_ops,
            placed_groups: Vec::new(),
            memo: Memo::new(limits.memo_entries_max, limits.memo_bytes_max),
            stack: Vec::new(),
            steps: 0,
            deepest: None,
        })
    }

    fn run(&mut self) -> Outcome {
        let mut state = self.model.init();
        let mut cursor = Cursor::Known(self.list.head);
        loop {
            if self.placed.count() as usize == self.known_ops.len() {
                return Outcome::Ok;
            }
            match cursor {
                Cursor::Known(e) => {
                    let Some(event) = self.events.get(e as usize) else {
                        cursor = Cursor::Unknown {
                            after: None,
                            first_return_time: u64::MAX,
                        };
                        continue;
                    };
                    if !event.is_call {
                        cursor = Cursor::Unknown {
                            after: None,
                            first_return_time: event.time,
                        };
                        continue;
                    }
                    let k = event.known;
                    let first_return_time = self.first_return_time();
                    match self.try_place(&state, Placed::Known(k), first_return_time) {
                        Err(outcome) => return outcome,
                        Ok(Some(next)) => {
                            state = next;
                            cursor = Cursor::Known(self.list.head);
                        }
                        Ok(None) => cursor = Cursor::Known(self.list.next[e as usize]),
                    }
                }
                Cursor::Unknown {
                    after,
                    first_return_time,
                } => {
                    let start = after.map_or(0, |a| a + 1);
                    let candidate = self
                        .unknown_pending
                        .range(start..)
                        .copied()
                        .take_while(|&u| self.unknown_ops[u as usize].1 <= first_return_time)
                        .find(|&u| self.is_group_head(u));
                    if let Some(u) = candidate {
                        match self.try_place(&state, Placed::Unknown(u), first_return_time) {
                            Err(outcome) => return outcome,
                            Ok(Some(next)) => {
                                state = next;
                                cursor = Cursor::Known(self.list.head);
                            }
                            Ok(None) => {
                                cursor = Cursor::Unknown {
                                    after: Some(u),
                                    first_return_time,
                                }
                            }
                        }
                        continue;
                    }
                    self.note_dead_end();
                    let Some(frame) = self.stack.pop() else {
                        let (longest_prefix, failing) = self.deepest.take().unwrap_or_default();
                        return Outcome::Illegal {
                            longest_prefix,
                            failing,
                        };
                    };
                    state = frame.state_before;
                    cursor = match frame.placed {
                        Placed::Known(k) => {
                            let (call, ret) = self.known_events[k as usize];
                            self.list.relink(ret);
                            self.list.relink(call);
                            self.placed.remove(k);
                            Cursor::Known(self.list.next[call as usize])
                        }
                        Placed::Unknown(u) => {
                            self.unplace_unknown(u);
                            Cursor::Unknown {
                                after: Some(u),
                                first_return_time: frame.first_return_time,
                            }
                        }
                    };
                }
            }
        }
    }

    /// Whether `u` is the earliest pending member of its group.
    fn is_group_head(&self, u: u32) -> bool {
        let (members, placed) = &self.groups[self.unknown_group[u as usize] as usize];
        members.get(*placed as usize) == Some(&u)
    }

    /// Undoes the placement of unknown operation `u`.
    fn unplace_unknown(&mut self, u: u32) {
        self.unknown_pending.insert(u);
        let g = self.unknown_group[u as usize];
        let placed = &mut self.groups[g as usize].1;
        *placed = placed.saturating_sub(1);
        if *placed == 0
            && let Ok(i) = self.placed_groups.binary_search(&g)
        {
            self.placed_groups.remove(i);
        }
    }

    /// Places unknown operation `u` (the earliest pending member of its group).
    fn place_unknown(&mut self, u: u32) {
        self.unknown_pending.remove(&u);
        let g = self.unknown_group[u as usize];
        let placed = &mut self.groups[g as usize].1;
        *placed += 1;
        if *placed == 1 {
            let at = self.placed_groups.partition_point(|&x| x < g);
            self.placed_groups.insert(at, g);
        }
    }

    /// The placed unknown operations as (group, count) pairs, flattened, by group.
    fn placed_group_counts(&self) -> Vec<u32> {
        self.placed_groups
            .iter()
            .flat_map(|&g| [g, self.groups[g as usize].1])
            .collect()
    }

    /// Time of the first return event still in the list (there is one while some known
    /// operation is unplaced, because each call precedes its own return).
    fn first_return_time(&self) -> u64 {
        let mut e = self.list.head;
        while e != NIL {
            let event = &self.events[e as usize];
            if !event.is_call {
                return event.time;
            }
            e = self.list.next[e as usize];
        }
        u64::MAX
    }

    /// Tries to place `what` in `state`. Ok(Some(new state)) if it was placed (and the
    /// configuration is new), Ok(None) if not, Err(verdict) if a limit was hit.
    fn try_place(
        &mut self,
        state: &M::State,
        what: Placed,
        first_return_time: u64,
    ) -> Result<Option<M::State>, Outcome> {
        if self.steps >= self.limits.step_budget {
            return Err(Outcome::Unknown {
                reason: format!(
                    "step budget of {} exhausted with {} of {} operations of known outcome \
                     placed",
                    self.limits.step_budget,
                    self.placed.count(),
                    self.known_ops.len()
                ),
            });
        }
        self.steps += 1;
        let index = match what {
            Placed::Known(k) => self.known_ops[k as usize],
            Placed::Unknown(u) => self.unknown_ops[u as usize].0,
        };
        let op = &self.ops[index];
        let Some(next) = self.model.step(state, &op.input, op.output.as_ref()) else {
            return Ok(None);
        };
        match what {
            Placed::Known(k) => self.placed.insert(k),
            Placed::Unknown(u) => {
                // Placing an unknown operation that changes nothing never helps.
                if next == *state {
                    return Ok(None);
                }
                self.place_unknown(u);
            }
        }
        let counts = self.placed_group_counts();
        match self.memo.insert(&self.placed, counts, next.clone()) {
            Insert::New => {
                if let Placed::Known(k) = what {
                    let (call, ret) = self.known_events[k as usize];
                    self.list.unlink(call);
                    self.list.unlink(ret);
                }
                self.stack.push(Frame {
                    placed: what,
                    state_before: state.clone(),
                    first_return_time,
                });
                Ok(Some(next))
            }
            verdict => {
                match what {
                    Placed::Known(k) => self.placed.remove(k),
                    Placed::Unknown(u) => {
                        self.unplace_unknown(u);
                    }
                }
                if verdict == Insert::Full {
                    return Err(Outcome::Unknown {
                        reason: format!(
                            "memo cap reached ({} configurations, about {} MiB; caps {} and \
                             {} MiB)",
                            self.memo.len(),
                            self.memo.bytes() >> 20,
                            self.limits.memo_entries_max,
                            self.limits.memo_bytes_max >> 20
                        ),
                    });
                }
                Ok(None)
            }
        }
    }

    /// The longer of the deepest dead end and the sequence placed now (the search gave
    /// up there), with the operations that could not be placed after it (none known for
    /// the sequence placed now).
    fn progress(&mut self) -> Option<Progress> {
        let now = self.stack.len();
        let (longest_prefix, failing) = match self.deepest.take() {
            Some((prefix, failing)) if prefix.len() >= now => (prefix, failing),
            _ => (self.placed_order(), Vec::new()),
        };
        (!longest_prefix.is_empty()).then_some(Progress {
            longest_prefix,
            failing,
        })
    }

    /// The operations placed now, in order.
    fn placed_order(&self) -> Vec<usize> {
        self.stack
            .iter()
            .map(|f| match f.placed {
                Placed::Known(k) => self.known_ops[k as usize],
                Placed::Unknown(u) => self.unknown_ops[u as usize].0,
            })
            .collect()
    }

    /// Records the current configuration if it is the deepest dead end so far.
    fn note_dead_end(&mut self) {
        let depth = self.stack.len();
        if self
            .deepest
            .as_ref()
            .is_some_and(|(prefix, _)| prefix.len() >= depth)
        {
            return;
        }
        let prefix = self.placed_order();
        // The blocking operation (first return) first, then the other known candidates.
        let mut failing = Vec::new();
        let mut blocker = None;
        let mut e = self.list.head;
        while e != NIL {
            let event = &self.events[e as usize];
            let index = self.known_ops[event.known as usize];
            if event.is_call {
                failing.push(index);
            } else {
                blocker = Some(index);
                break;
            }
            e = self.list.next[e as usize];
        }
        if let Some(b) = blocker {
            failing.retain(|&i| i != b);
            failing.insert(0, b);
        }
        self.deepest = Some((prefix, failing));
    }
}
