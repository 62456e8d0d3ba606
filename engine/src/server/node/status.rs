//! The node's status as the raft loop publishes it and handles wait on it.
//!
//! Deliberately not `tokio::sync::watch`: its waiters park on one of several queues
//! chosen by tokio's thread-local random generator, which is seeded from a process-wide
//! counter, so the order in which waiters wake differs between two runs of one seed in
//! the same process and the simulator stops replaying exactly. A `Notify` wakes its
//! waiters in the order they registered.

use std::sync::Mutex;

use tokio::sync::Notify;

use super::{NodeStatus, lock};

/// The latest status and a way to wait for a change.
#[derive(Default)]
pub(crate) struct StatusCell {
    value: Mutex<NodeStatus>,
    changed: Notify,
}

impl StatusCell {
    /// The latest status.
    pub(crate) fn get(&self) -> NodeStatus {
        *lock(&self.value)
    }

    /// Publishes a status, waking every waiter if it differs.
    pub(crate) fn set(&self, status: NodeStatus) {
        let changed = {
            let mut value = lock(&self.value);
            let changed = *value != status;
            *value = status;
            changed
        };
        if changed {
            self.changed.notify_waiters();
        }
    }

    /// Changes the status with `f` and publishes it.
    pub(crate) fn update(&self, f: impl FnOnce(&mut NodeStatus)) {
        let mut status = self.get();
        f(&mut status);
        self.set(status);
    }

    /// Waits until `pred` holds and returns the status that satisfied it.
    pub(crate) async fn wait_for(&self, pred: impl Fn(&NodeStatus) -> bool) -> NodeStatus {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Register before looking, so a change between the look and the wait wakes us.
            notified.as_mut().enable();
            let status = self.get();
            if pred(&status) {
                return status;
            }
            notified.await;
        }
    }
}
