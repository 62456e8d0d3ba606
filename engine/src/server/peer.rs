//! The seams between the node and the peer transport: the transport is the node's
//! [`PeerNetwork`], and the node is the transport's [`PeerHandler`].

use std::collections::BTreeMap;

use crate::pb::detcdpeerpb::{InternalRequest, MembersResponse};
use crate::pb::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::raft::Message;

use super::error::ServerError;
use super::membership::MemberRecord;
use super::node::{BoxFuture, NodeHandle, PeerNetwork};
use super::transport::{PeerFailure, PeerHandler, Transport};

impl PeerNetwork for Transport {
    fn send(&self, messages: Vec<Message>) {
        Transport::send(self, messages);
    }

    fn set_peers(&self, peers: BTreeMap<u64, Vec<String>>) {
        Transport::set_peers(self, peers);
    }

    fn take_failures(&self) -> Vec<PeerFailure> {
        Transport::take_failures(self)
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

impl PeerHandler for NodeHandle {
    fn step(&self, _from: u64, messages: Vec<Message>) {
        NodeHandle::step(self, messages);
    }

    fn is_removed(&self, member: u64) -> bool {
        NodeHandle::members(self).is_removed(member)
    }

    fn members(&self) -> MembersResponse {
        MembersResponse {
            cluster_id: self.cluster_id(),
            members: NodeHandle::members(self)
                .members()
                .map(MemberRecord::to_peer)
                .collect(),
        }
    }

    fn propose(&self, request: InternalRequest) -> BoxFuture<Result<(), ServerError>> {
        let node = self.clone();
        Box::pin(async move { node.propose_local(request).await })
    }

    fn read_index(&self) -> BoxFuture<Result<u64, ServerError>> {
        let node = self.clone();
        Box::pin(async move { node.read_index_local().await })
    }

    fn lease_keep_alive(
        &self,
        request: LeaseKeepAliveRequest,
    ) -> BoxFuture<Result<LeaseKeepAliveResponse, ServerError>> {
        let node = self.clone();
        Box::pin(async move { node.lease_keep_alive_local(&request) })
    }

    fn lease_time_to_live(
        &self,
        request: LeaseTimeToLiveRequest,
    ) -> BoxFuture<Result<LeaseTimeToLiveResponse, ServerError>> {
        let node = self.clone();
        Box::pin(async move { node.lease_time_to_live_local(&request) })
    }
}
