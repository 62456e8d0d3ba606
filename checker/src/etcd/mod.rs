//! The etcd KV checker: revision-based linearizability of KV operations with leases and
//! compaction, plus watch checks. Every acknowledged write carries its revision, so the
//! history is replayed in revision order and each operation checked at its revision;
//! only the unknown-outcome writes that fill revision gaps are searched. It does not
//! handle histories without revisions (see the WGL search for those).

pub mod compaction;
pub mod components;
pub mod conflict;
pub mod demand;
pub mod lifetime;
pub mod prep;
pub mod replay;
pub mod spent;
pub mod store;
pub mod supply;
pub mod symmetry;
pub mod timeline;
pub mod values;
pub mod watch;

pub use replay::STEP_BUDGET_DEFAULT;

use crate::history::History;
use crate::verdict::Verdict;

/// How to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Model executions allowed while searching unknown outcomes; past it: Unknown.
    pub step_budget: u64,
    /// Treat revisions no write explains as writes outside the history (used when
    /// shrinking, where most writes have been cut away).
    pub allow_gaps: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            step_budget: STEP_BUDGET_DEFAULT,
            allow_gaps: false,
        }
    }
}

/// Checks an etcd history.
pub fn check(h: &History, opts: &Options) -> Verdict {
    match check_inner(h, opts) {
        Ok(()) => Verdict::Ok,
        Err(v) => v,
    }
}

fn check_inner(h: &History, opts: &Options) -> Result<(), Verdict> {
    let p = prep::Prep::build(h, opts.allow_gaps)?;
    tracing::debug!(max_rev = p.max_rev, unknown = p.unknown.len(), "prepared");
    p.check_real_time(h, &[])?;
    compaction::check(h)?;
    // Uses acknowledged records only, so it holds for sub-histories too.
    demand::check_static(h, &p)?;
    values::check(h, &p, opts.allow_gaps)?;
    let rp = replay::replay(h, &p, opts)?;
    p.check_real_time(h, &rp.resolved)?;
    watch::check(h, &rp.store)
}
