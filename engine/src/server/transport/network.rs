//! The transport as the node's [`PeerNetwork`]: the same calls, with forwarding futures
//! boxed and only snapshot failures handed over (the node reports those to Raft).
//!
//! Not here: anything the inherent [`Transport`] methods do not already do.

use std::collections::BTreeMap;

use super::{PeerFailure, Transport, lock};
use crate::pb::detcdpeerpb::InternalRequest;
use crate::pb::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::raft::Message;
use crate::server::error::ServerError;
use crate::server::node::{BoxFuture, PeerNetwork};

impl Transport {
    /// Snapshot failures since the last call (unreachable reports stay for
    /// [`Transport::take_failures`]).
    pub fn take_snapshot_failures(&self) -> Vec<u64> {
        let mut failures = lock(&self.inner.shared.failures);
        let snapshot: Vec<u64> = failures
            .iter()
            .filter_map(|f| match f {
                PeerFailure::SnapshotFailed(peer) => Some(*peer),
                PeerFailure::Unreachable(_) => None,
            })
            .collect();
        failures.retain(|f| matches!(f, PeerFailure::Unreachable(_)));
        snapshot
    }
}

impl PeerNetwork for Transport {
    fn send(&self, messages: Vec<Message>) {
        Transport::send(self, messages);
    }

    fn set_peers(&self, peers: BTreeMap<u64, Vec<String>>) {
        Transport::set_peers(self, peers);
    }

    fn take_snapshot_failures(&self) -> Vec<u64> {
        Transport::take_snapshot_failures(self)
    }

    fn propose(&self, to: u64, req: InternalRequest) -> BoxFuture<Result<(), ServerError>> {
        let transport = self.clone();
        Box::pin(async move { transport.propose(to, req).await })
    }

    fn read_index(&self, to: u64) -> BoxFuture<Result<u64, ServerError>> {
        let transport = self.clone();
        Box::pin(async move { transport.read_index(to).await })
    }

    fn lease_keep_alive(
        &self,
        to: u64,
        req: LeaseKeepAliveRequest,
    ) -> BoxFuture<Result<LeaseKeepAliveResponse, ServerError>> {
        let transport = self.clone();
        Box::pin(async move { transport.lease_keep_alive(to, req).await })
    }

    fn lease_time_to_live(
        &self,
        to: u64,
        req: LeaseTimeToLiveRequest,
    ) -> BoxFuture<Result<LeaseTimeToLiveResponse, ServerError>> {
        let transport = self.clone();
        Box::pin(async move { transport.lease_time_to_live(to, req).await })
    }
}
