//! Generic linearizability search (Wing-Gong-Lowe) for histories without revisions.
//!
//! A history is a set of [`Operation`]s, each with a call time and, when its outcome is
//! known, a return time and output. [`check`] decides whether some total order of the
//! operations respects real time (an operation that returned before another was called
//! comes first) and is a legal sequential execution of a [`Model`].
//!
//! The search is Wing and Gong's backtracking over a list of call/return events with
//! Lowe's memoization: a configuration (which operations are linearized, model state)
//! that was already explored is never explored again. Operations whose outcome is
//! unknown (a client timed out) never return: they may take effect at any point after
//! their call, or not at all, and accept any output. They are tried only after every
//! operation with a known outcome at the same point, and only when they change the
//! state, so a handful of timeouts does not multiply the search.
//!
//! Every model step counts against a step budget and the memo has a size cap; hitting
//! either gives [`Outcome::Unknown`], so verdicts are deterministic and memory stays
//! bounded. This module does not know about keys, revisions, watches or leases: the
//! revision-based etcd checker lives elsewhere, and [`check_partitioned`] only splits a
//! history by the key a [`Partition`] model names.

mod memo;
mod search;

pub use search::{Limits, MEMO_BYTES_MAX_DEFAULT, MEMO_ENTRIES_MAX_DEFAULT, Report, check_with};

use std::collections::BTreeMap;

/// A sequential specification: the state machine a history is checked against.
pub trait Model {
    /// The model's state; hashed and compared to memoize the search.
    type State: Clone + Eq + std::hash::Hash + std::fmt::Debug;
    /// What a client asked for.
    type Input: std::fmt::Debug;
    /// What the client was told.
    type Output: std::fmt::Debug;
    /// The state before any operation.
    fn init(&self) -> Self::State;
    /// The state after applying `input` that returned `output` (None = output unknown,
    /// any output is acceptable), or None if that is impossible in `state`.
    ///
    /// With `output` None the step should succeed whenever the operation could have
    /// taken effect at all; the search treats operations of unknown outcome as optional.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;

    /// Optional pruning hint: tokens through which the effect of `input` could be seen
    /// (for a register, a hash of key and written value). None (the default): unknown,
    /// so an operation of unknown outcome is always kept in the search.
    ///
    /// An operation of unknown outcome whose every effect token is observed by no
    /// operation (see [`Model::observed`]) is dropped before the search: it may not have
    /// happened, and nothing can tell.
    fn effects(&self, _input: &Self::Input) -> Option<Vec<u64>> {
        None
    }

    /// Optional pruning hint: tokens an operation with this input and output (None:
    /// unknown) observes. Must include every token whose effect could change whether
    /// the operation steps, and must return None if the operation could observe any
    /// effect at all (the default). Hash collisions only weaken the pruning.
    fn observed(&self, _input: &Self::Input, _output: Option<&Self::Output>) -> Option<Vec<u64>> {
        None
    }

    /// Optional symmetry hint: whether two operations with these inputs have the same
    /// effect in every state (for instance, equal inputs). The search then tries only
    /// the earliest-called pending one of a group of interchangeable unknown-outcome
    /// operations. Default: false (no grouping).
    fn interchangeable(&self, _a: &Self::Input, _b: &Self::Input) -> bool {
        false
    }
}

/// Per-key partitioning for models where it is sound: operations on different keys
/// never constrain each other, so each key's sub-history can be checked alone.
pub trait Partition: Model {
    /// The key `input` touches.
    fn key(&self, input: &Self::Input) -> Vec<u8>;
}

/// One client operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// The client (process) that issued it.
    pub client: u64,
    /// When it was called (any monotonic unit; only the order matters).
    pub call: u64,
    /// When it returned; None: no return seen (returns at +infinity).
    ///
    /// An operation with neither a return nor an output has an unknown outcome: it may
    /// or may not have happened. One with either happened and must be linearized.
    pub ret: Option<u64>,
    /// What was asked.
    pub input: I,
    /// What was answered; None: unknown (any output is acceptable).
    pub output: Option<O>,
    /// Source line in the input file, for reports.
    pub line: Option<usize>,
}

/// The verdict of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The history is linearizable.
    Ok,
    /// The history is not linearizable.
    Illegal {
        /// Indices (into the checked slice) of the longest linearized sequence the
        /// search found, in linearization order.
        longest_prefix: Vec<usize>,
        /// Indices of operations that could not be placed after that sequence: first the
        /// operation whose return blocked the search, then the other candidates tried.
        failing: Vec<usize>,
    },
    /// The search gave up (step budget or memo cap) or the input was unusable.
    Unknown {
        /// Why no verdict was reached.
        reason: String,
    },
}

impl Outcome {
    /// A short name for the verdict: "OK", "Illegal" or "Unknown".
    pub fn verdict(&self) -> &'static str {
        match self {
            Outcome::Ok => "OK",
            Outcome::Illegal { .. } => "Illegal",
            Outcome::Unknown { .. } => "Unknown",
        }
    }
}

/// How far a search that gave up got.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    /// Indices (into the checked slice) of the longest linearized sequence found, in
    /// linearization order.
    pub longest_prefix: Vec<usize>,
    /// Indices of operations that could not be placed after it (may be empty).
    pub failing: Vec<usize>,
}

/// Checks `ops` against `model`, spending at most `step_budget` model steps.
///
/// Uses the default memo cap ([`MEMO_ENTRIES_MAX_DEFAULT`]).
pub fn check<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    step_budget: u64,
) -> Outcome {
    check_with(model, ops, &Limits::with_step_budget(step_budget)).outcome
}

/// Checks each key's sub-history on its own (sound only for per-key models).
///
/// Keys are checked in byte order and share one step budget; the first Illegal key
/// decides the verdict, with indices mapped back into `ops`. If no key is Illegal but
/// some key's search gave up, the verdict is Unknown.
pub fn check_partitioned<M: Partition>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    step_budget: u64,
) -> Outcome
where
    M::Input: Clone,
    M::Output: Clone,
{
    check_partitioned_progress(model, ops, step_budget).0
}

/// [`check_partitioned`], and for an Unknown verdict how far the search of the key
/// that gave up got (indices into `ops`).
pub fn check_partitioned_progress<M: Partition>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    step_budget: u64,
) -> (Outcome, Option<Progress>)
where
    M::Input: Clone,
    M::Output: Clone,
{
    let mut by_key: BTreeMap<Vec<u8>, Vec<usize>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        by_key.entry(model.key(&op.input)).or_default().push(i);
    }
    let mut steps_left = step_budget;
    let mut unknown: Option<(String, Option<Progress>)> = None;
    for (key, indices) in &by_key {
        let sub: Vec<_> = indices.iter().map(|&i| ops[i].clone()).collect();
        let report = check_with(model, &sub, &Limits::with_step_budget(steps_left));
        steps_left = steps_left.saturating_sub(report.steps);
        match report.outcome {
            Outcome::Ok => {}
            Outcome::Illegal {
                longest_prefix,
                failing,
            } => {
                let outcome = Outcome::Illegal {
                    longest_prefix: longest_prefix.iter().map(|&i| indices[i]).collect(),
                    failing: failing.iter().map(|&i| indices[i]).collect(),
                };
                return (outcome, None);
            }
            Outcome::Unknown { reason } => {
                if unknown.is_none() {
                    let progress = report.progress.map(|p| Progress {
                        longest_prefix: p.longest_prefix.iter().map(|&i| indices[i]).collect(),
                        failing: p.failing.iter().map(|&i| indices[i]).collect(),
                    });
                    let reason = format!("key {}: {reason}", String::from_utf8_lossy(key));
                    unknown = Some((reason, progress));
                }
            }
        }
    }
    match unknown {
        Some((reason, progress)) => (Outcome::Unknown { reason }, progress),
        None => (Outcome::Ok, None),
    }
}

#[cfg(test)]
mod tests;
