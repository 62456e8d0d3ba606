//! Workloads: clients on simulated hosts that send requests to the members and record
//! every operation (call time, return time, outcome) in the checker's history format.
//! A workload never judges what it sees; the checker and the world do.

pub mod kv;

use std::sync::{Arc, Mutex};

use detcd_checker::history::OpRecord;

/// The shared, append-only list of recorded operations.
#[derive(Clone, Default)]
pub struct Recorder {
    ops: Arc<Mutex<Vec<OpRecord>>>,
}

impl Recorder {
    /// Appends one operation.
    pub fn record(&self, op: OpRecord) {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    /// The operations so far, in recording order.
    pub fn ops(&self) -> Vec<OpRecord> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
