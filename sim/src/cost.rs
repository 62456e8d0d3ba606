//! What a simulated run cost in work, not time: heap allocations, madsim tasks
//! spawned, simulated network messages, members' tracing spans and events. These
//! are counts, so unlike wall or CPU time they do not move with the machine's load,
//! and per client op they show where a run's time goes (`detcd-sim bench`).
//!
//! The allocation count needs [`CountingAlloc`] installed as the binary's global
//! allocator; without it the count stays 0. It counts on the simulation's own thread
//! only (a thread-local counter, no atomics), which is where every member, client
//! and the simulator itself run. Nothing here changes what a run does.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

use serde::{Deserialize, Serialize};

/// The Raft message kinds, in the order [`RunCost::raft_messages`] counts them.
#[cfg(madsim)]
pub use detcd_engine::server::transport::sim_counts::RAFT_MESSAGE_KINDS;

/// Work counts of one run (0 where not measured).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCost {
    /// Heap allocations (including reallocations) on the simulation thread.
    #[serde(default)]
    pub allocs: u64,
    /// madsim tasks spawned during the simulation (counted by their tracing spans).
    #[serde(default)]
    pub tasks: u64,
    /// Messages the simulated network delivered (client and peer links, connects).
    #[serde(default)]
    pub net_msgs: u64,
    /// Tracing spans created while the members' log layer listened.
    #[serde(default)]
    pub spans: u64,
    /// Tracing events the members' log layer saw (kept or not).
    #[serde(default)]
    pub events: u64,
    /// Raft messages the members' transports were handed, by kind (in the order of
    /// `RAFT_MESSAGE_KINDS`, simulator builds only).
    #[serde(default)]
    pub raft_messages: [u64; 10],
    /// Raft batches (one simulated message each) the members' links sent.
    #[serde(default)]
    pub raft_batches: u64,
    /// Of the Append messages, those without entries (a commit index only, or a probe).
    #[serde(default)]
    pub empty_appends: u64,
}

impl RunCost {
    /// Each count divided by `ops` (per client op), as floats in field order.
    pub fn per_op(&self, ops: u64) -> [f64; 5] {
        let d = ops.max(1) as f64;
        [
            self.allocs as f64 / d,
            self.tasks as f64 / d,
            self.net_msgs as f64 / d,
            self.spans as f64 / d,
            self.events as f64 / d,
        ]
    }
}

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

/// Allocations counted on this thread so far (by [`CountingAlloc`]).
pub fn thread_allocs() -> u64 {
    ALLOCS.try_with(Cell::get).unwrap_or(0)
}

/// A global allocator that counts allocations per thread and hands the work to `A`.
pub struct CountingAlloc<A>(pub A);

fn count() {
    // `try_with`: no count while the thread-local is being torn down.
    let _ = ALLOCS.try_with(|c| c.set(c.get().wrapping_add(1)));
}

// SAFETY: every method forwards to `A` unchanged; the counter does not allocate.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAlloc<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is forwarded as is.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is forwarded as is.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is forwarded as is.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is forwarded as is.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_op_divides_and_never_by_zero() {
        let c = RunCost {
            allocs: 100,
            tasks: 10,
            net_msgs: 20,
            spans: 30,
            events: 40,
            ..RunCost::default()
        };
        assert_eq!(c.per_op(10), [10.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(c.per_op(0), [100.0, 10.0, 20.0, 30.0, 40.0]);
    }

    #[test]
    fn counting_alloc_counts_and_forwards() {
        let a = CountingAlloc(std::alloc::System);
        let before = thread_allocs();
        let layout = Layout::from_size_align(64, 8).expect("valid layout");
        // SAFETY: a non-zero layout, freed with the same layout.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            p.write(7);
            let p = a.realloc(p, layout, 128);
            assert_eq!(p.read(), 7);
            a.dealloc(p, Layout::from_size_align(128, 8).expect("valid layout"));
        }
        assert_eq!(thread_allocs() - before, 2);
    }
}
