//! The `etcdserverpb.Lease` service: Grant, Revoke, KeepAlive (a stream), TimeToLive,
//! Leases.
//!
//! Grants and revokes go through Raft; keep-alives and time-to-live questions go to the
//! leader, which alone tracks expiries. As in etcd, a keep-alive for a lease that does
//! not exist is answered with TTL 0 (the stream stays open), and a time-to-live question
//! about one with TTL -1. It does not expire leases (the node's leader does that).

use prost::Message as _;
use tonic::codegen::tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::mvcc::MvccError;
use crate::pb::detcdpeerpb::internal_request::Request as Write;
use crate::pb::etcdserverpb::lease_server::Lease;
use crate::pb::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::server::error::ServerError;
use crate::server::node::{Applied, NodeHandle};

use super::{
    Quota, ResponseStream, STREAM_BUFFER_RESPONSES_MAX, header_now, receiver_stream, unexpected,
};

/// The Lease service of one member.
#[derive(Clone)]
pub struct LeaseService {
    node: NodeHandle,
    quota: Quota,
}

impl LeaseService {
    /// The service for `node`.
    pub fn new(node: NodeHandle) -> Self {
        let quota = Quota::new(node.clone());
        LeaseService { node, quota }
    }

    /// The keep-alive loop over any stream of requests (the gRPC method passes the
    /// client's stream; tests pass their own). One response per request, in order.
    pub fn keep_alive_stream<S>(&self, mut requests: S) -> ResponseStream<LeaseKeepAliveResponse>
    where
        S: Stream<Item = Result<LeaseKeepAliveRequest, Status>> + Send + Unpin + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER_RESPONSES_MAX);
        let node = self.node.clone();
        tokio::spawn(async move {
            while let Some(item) = requests.next().await {
                let req = match item {
                    Ok(req) => req,
                    Err(e) => {
                        tracing::debug!(error = %e, "lease keep-alive stream ended");
                        return;
                    }
                };
                let id = req.id;
                // As etcd does, the header is taken before the renewal, so a client never
                // sees a renewal at a revision after the lease's revocation.
                let header = Some(header_now(&node));
                let answer = match node.lease_keep_alive(req).await {
                    Ok(response) => Ok(LeaseKeepAliveResponse { header, ..response }),
                    Err(ServerError::Mvcc(MvccError::LeaseNotFound)) => {
                        Ok(LeaseKeepAliveResponse { header, id, ttl: 0 })
                    }
                    Err(e) => Err(Status::from(e)),
                };
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        receiver_stream(rx)
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut req = request.into_inner();
        self.quota.admit(req.encoded_len()).await?;
        if req.id == 0 {
            req.id = self.node.next_lease_id();
        }
        match self.node.write(Write::LeaseGrant(req)).await? {
            Applied::LeaseGrant(mut response) => {
                response.header = Some(self.node.header(response.header.map_or(0, |h| h.revision)));
                Ok(Response::new(response))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let req = request.into_inner();
        match self.node.write(Write::LeaseRevoke(req)).await? {
            Applied::LeaseRevoke(mut response) => {
                response.header = Some(self.node.header(response.header.map_or(0, |h| h.revision)));
                Ok(Response::new(response))
            }
            other => Err(unexpected(&other)),
        }
    }

    type LeaseKeepAliveStream = ResponseStream<LeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        Ok(Response::new(self.keep_alive_stream(request.into_inner())))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        let id = req.id;
        match self.node.lease_time_to_live(req).await {
            Ok(response) => Ok(Response::new(response)),
            Err(ServerError::Mvcc(MvccError::LeaseNotFound)) => {
                let revision = self.node.with_kv(|kv| kv.store().current_revision());
                Ok(Response::new(LeaseTimeToLiveResponse {
                    header: Some(self.node.header(revision)),
                    id,
                    ttl: -1,
                    ..LeaseTimeToLiveResponse::default()
                }))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let mut response = self.node.with_kv(|kv| kv.lease_leases());
        response.header = Some(self.node.header(response.header.map_or(0, |h| h.revision)));
        Ok(Response::new(response))
    }
}
