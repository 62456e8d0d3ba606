//! The backend quota: writes that would grow the key space past
//! `quota_backend_bytes` raise the NOSPACE alarm and fail, and while that alarm is
//! raised every growing write fails, as etcd's quota layer does.
//!
//! The key space's size is estimated by its snapshot encoding, recomputed only after
//! [`QUOTA_RECHECK_REVISIONS`] new revisions (between checks the estimate grows by each
//! admitted request's size). It does not refuse deletes, compactions or revokes, which
//! is how a client frees space.

use std::sync::{Arc, Mutex};

use crate::pb::detcdpeerpb::internal_request::Request as Write;
use crate::pb::etcdserverpb::{AlarmRequest, AlarmType, alarm_request::AlarmAction};
use crate::server::error::ServerError;
use crate::server::node::{NodeHandle, lock};

/// Revisions between two full size estimates.
pub const QUOTA_RECHECK_REVISIONS: i64 = 1024;

#[derive(Debug, Default)]
struct Estimate {
    /// The revision the last full estimate was made at (0: never).
    revision: i64,
    /// Estimated key-space bytes.
    bytes: u64,
}

/// A member's quota guard (cheap to clone; clones share the estimate).
#[derive(Clone)]
pub struct Quota {
    node: NodeHandle,
    estimate: Arc<Mutex<Estimate>>,
}

impl Quota {
    /// The guard for `node`.
    pub fn new(node: NodeHandle) -> Self {
        Quota {
            node,
            estimate: Arc::default(),
        }
    }

    /// Admits a write of `cost_bytes`, or raises NOSPACE and refuses it.
    pub async fn admit(&self, cost_bytes: usize) -> Result<(), ServerError> {
        let nospace = AlarmType::Nospace as i32;
        if self.node.alarms().iter().any(|a| a.alarm == nospace) {
            return Err(ServerError::NoSpace);
        }
        let cost = u64::try_from(cost_bytes).unwrap_or(u64::MAX);
        let quota = self.node.config().quota_backend_bytes;
        if quota == 0 || self.admit_estimate(cost, quota) {
            return Ok(());
        }
        tracing::warn!(
            quota_bytes = quota,
            "backend quota exceeded; raising NOSPACE"
        );
        let raise = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: self.node.member_id(),
            alarm: nospace,
        };
        self.node.write(Write::Alarm(raise)).await?;
        Err(ServerError::NoSpace)
    }

    /// Whether the estimated size plus `cost` fits in `quota`; if so the cost is added
    /// to the estimate.
    fn admit_estimate(&self, cost: u64, quota: u64) -> bool {
        let current = self.node.with_kv(|kv| kv.store().current_revision());
        let mut estimate = lock(&self.estimate);
        if estimate.revision == 0 || current - estimate.revision >= QUOTA_RECHECK_REVISIONS {
            let bytes = self.node.with_kv(|kv| kv.snapshot().len());
            estimate.bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
            estimate.revision = current;
        }
        let after = estimate.bytes.saturating_add(cost);
        if after > quota {
            return false;
        }
        estimate.bytes = after;
        true
    }
}
