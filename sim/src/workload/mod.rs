//! Workloads: clients on simulated hosts that send requests to the members and record
//! every operation (call time, return time, outcome) and every watch response in the
//! checker's history format. A workload never judges what it sees; the checker and the
//! world do.
//!
//! Profiles: [`kv`] (mixed puts/gets/deletes), [`cas`] (compare-and-set registers via
//! Txn), [`kube`] (optimistic updates, paginated lists, compaction), [`lease`] (grant,
//! attach, keep alive, expire, revoke), [`watch`] (config watchers) and [`lock`] (the
//! Lock and Election services, with the mutual-exclusion check in [`lock_check`]).

pub mod cas;
pub mod direct;
pub mod kube;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod lock_check;
pub mod watch;
pub mod wire;

use std::sync::{Arc, Mutex};

use detcd_checker::history::{OpRecord, Record};

use lock_check::Hold;

/// The shared, append-only list of recorded operations and watch records.
#[derive(Clone, Default)]
pub struct Recorder {
    ops: Arc<Mutex<Vec<OpRecord>>>,
    watch: Arc<Mutex<Vec<Record>>>,
    holds: Arc<Mutex<Vec<Hold>>>,
}

impl Recorder {
    /// An empty recorder with room for `ops` operations (a run's history is large:
    /// grown by doubling, it was copied and fresh memory was touched twice over).
    pub fn with_capacity(ops: usize) -> Self {
        Recorder {
            ops: Arc::new(Mutex::new(Vec::with_capacity(ops))),
            ..Recorder::default()
        }
    }

    /// Appends one operation.
    pub fn record(&self, op: OpRecord) {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    /// The operations so far, in recording order, taken out of the recorder (it is
    /// empty afterwards): a run's history is large and read once, at its end.
    pub fn take_ops(&self) -> Vec<OpRecord> {
        std::mem::take(&mut *self.ops.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The last operation recorded, if any.
    pub fn last_op(&self) -> Option<OpRecord> {
        self.ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .cloned()
    }

    /// Appends one watch record (creation, events, progress or cancel).
    pub fn record_watch(&self, record: Record) {
        self.watch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    /// The watch records so far, in the order received.
    pub fn watch_records(&self) -> Vec<Record> {
        self.watch.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Appends one lock or election hold (see [`lock_check`]).
    pub fn record_hold(&self, hold: Hold) {
        self.holds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hold);
    }

    /// The holds so far, in recording order.
    pub fn holds(&self) -> Vec<Hold> {
        self.holds.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
