//! The backend quota: writes that would grow the key space past
//! `quota_backend_bytes` raise the NOSPACE alarm and fail, and while that alarm is
//! raised every growing write fails, as etcd's quota layer does.
//!
//! The key space's size is the store's running estimate
//! ([`crate::mvcc::Store::size_bytes`]: held keys, values and per-change bookkeeping),
//! read in O(1) per request; like etcd it compares the size now plus the request's
//! cost, not counting writes admitted but not yet applied. It does not refuse deletes,
//! compactions or revokes, which is how a client frees space.

use crate::pb::detcdpeerpb::internal_request::Request as Write;
use crate::pb::etcdserverpb::{AlarmRequest, AlarmType, alarm_request::AlarmAction};
use crate::server::error::ServerError;
use crate::server::node::NodeHandle;

/// A member's quota guard (cheap to clone).
#[derive(Clone)]
pub struct Quota {
    node: NodeHandle,
}

impl Quota {
    /// The guard for `node`.
    pub fn new(node: NodeHandle) -> Self {
        Quota { node }
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

    /// Whether the key space's size plus `cost` fits in `quota`.
    fn admit_estimate(&self, cost: u64, quota: u64) -> bool {
        let bytes = self.node.with_kv(|kv| kv.store().size_bytes());
        bytes.saturating_add(cost) <= quota
    }
}
