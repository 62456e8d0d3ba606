//! The `v3electionpb.Election` service: leader election on the key space, as etcd's
//! server builds it from its client-side election recipe.
//!
//! A candidate puts `<name>/<lease hex>` holding its value with its lease (if absent;
//! a candidate already present with another value proclaims it), then waits until every
//! key under `<name>/` created before it is gone: the leader is the key with the lowest
//! create revision. Proclaim and Resign act only while the given leader key still has
//! its create revision. Observe streams the leader's key whenever it changes, reading
//! it again on each watch event under the election's prefix. It does not keep leases
//! alive.

use tonic::{Code, Request, Response, Status};

use crate::pb::etcdserverpb::request_op::Request as Op;
use crate::pb::etcdserverpb::{DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};
use crate::pb::v3electionpb::election_server::Election;
use crate::pb::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use crate::server::node::NodeHandle;

use super::recipes::{self, AbandonGuard, HubWatch};
use super::{ResponseStream, STREAM_BUFFER_RESPONSES_MAX, receiver_stream};

/// etcd's answer to Proclaim by a candidate that no longer leads.
pub const NOT_LEADER: &str = "election: not leader";
/// etcd's answer to Leader when nobody leads.
pub const NO_LEADER: &str = "election: no leader";
/// etcd's answer to Proclaim or Resign without a leader key.
pub const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";
/// etcd's answer when the candidate's lease went away while campaigning.
pub const SESSION_EXPIRED: &str = "session expired";

/// The Election service of one member.
#[derive(Clone)]
pub struct ElectionService {
    node: NodeHandle,
}

impl ElectionService {
    /// The service for `node`.
    pub fn new(node: NodeHandle) -> Self {
        ElectionService { node }
    }

    fn header_now(&self) -> Option<crate::pb::etcdserverpb::ResponseHeader> {
        let revision = self.node.with_kv(|kv| kv.store().current_revision());
        Some(self.node.header(revision))
    }

    /// Puts `value` on the leader key if it still has its create revision; whether it did.
    async fn proclaim_value(&self, leader: &LeaderKey, value: &[u8]) -> Result<bool, Status> {
        let put = RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: leader.key.clone(),
                value: value.to_vec(),
                lease: leader.lease,
                ..PutRequest::default()
            })),
        };
        let response = recipes::txn(
            &self.node,
            TxnRequest {
                compare: vec![recipes::created_at(&leader.key, leader.rev)],
                success: vec![put],
                failure: Vec::new(),
            },
        )
        .await?;
        Ok(response.succeeded)
    }
}

fn missing_leader() -> Status {
    Status::new(Code::Unknown, MISSING_LEADER_KEY)
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let req = request.into_inner();
        let prefix = recipes::prefix_of(&req.name);
        let key = recipes::session_key(&req.name, req.lease);
        let (mine, created) =
            recipes::create_if_absent(&self.node, &key, &req.value, req.lease).await?;
        let guard = created.then(|| AbandonGuard::new(self.node.clone(), key.clone()));
        let leader = LeaderKey {
            name: req.name.clone(),
            key: key.clone(),
            rev: mine.create_revision,
            lease: req.lease,
        };
        if !created && mine.value != req.value && !self.proclaim_value(&leader, &req.value).await? {
            return Err(Status::new(Code::Unknown, SESSION_EXPIRED));
        }
        recipes::wait_deletes(&self.node, &prefix, mine.create_revision - 1).await?;
        if !recipes::still_held(&self.node, &key, mine.create_revision).await? {
            return Err(Status::new(Code::Unknown, SESSION_EXPIRED));
        }
        if let Some(g) = guard {
            g.keep();
        }
        Ok(Response::new(CampaignResponse {
            header: self.header_now(),
            leader: Some(leader),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let req = request.into_inner();
        let leader = req.leader.ok_or_else(missing_leader)?;
        if !self.proclaim_value(&leader, &req.value).await? {
            return Err(Status::new(Code::Unknown, NOT_LEADER));
        }
        Ok(Response::new(ProclaimResponse {
            header: self.header_now(),
        }))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let req = request.into_inner();
        let prefix = recipes::prefix_of(&req.name);
        let kv = recipes::by_create(&self.node, &prefix, true, 0)
            .await?
            .0
            .ok_or_else(|| Status::new(Code::Unknown, NO_LEADER))?;
        Ok(Response::new(LeaderResponse {
            header: self.header_now(),
            kv: Some(kv),
        }))
    }

    type ObserveStream = ResponseStream<LeaderResponse>;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let prefix = recipes::prefix_of(&request.into_inner().name);
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER_RESPONSES_MAX);
        let node = self.node.clone();
        tokio::spawn(async move {
            let mut last: Option<(Vec<u8>, i64)> = None;
            // Opened after the first read, from the revision after it; every change
            // under the prefix may change the leader, so each one means "read again".
            let mut changes: Option<HubWatch> = None;
            loop {
                let (leader, revision) = match recipes::by_create(&node, &prefix, true, 0).await {
                    Ok(found) => found,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if let Some(kv) = leader {
                    let seen = Some((kv.key.clone(), kv.mod_revision));
                    if seen != last {
                        last = seen;
                        let response = LeaderResponse {
                            header: Some(node.header(kv.mod_revision)),
                            kv: Some(kv),
                        };
                        if tx.send(Ok(response)).await.is_err() {
                            return;
                        }
                    }
                }
                let watch = changes.get_or_insert_with(|| {
                    HubWatch::open(&node, &prefix, &recipes::prefix_end(&prefix), revision + 1)
                });
                tokio::select! {
                    biased;
                    _ = tx.closed() => return,
                    events = watch.next_events() => {
                        if events.is_empty() {
                            // Canceled by the hub: watch again after the next read.
                            changes = None;
                        }
                    }
                }
            }
        });
        Ok(Response::new(receiver_stream(rx)))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let leader = request.into_inner().leader.ok_or_else(missing_leader)?;
        let delete = RequestOp {
            request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                key: leader.key.clone(),
                ..DeleteRangeRequest::default()
            })),
        };
        let response = recipes::txn(
            &self.node,
            TxnRequest {
                compare: vec![recipes::created_at(&leader.key, leader.rev)],
                success: vec![delete],
                failure: Vec::new(),
            },
        )
        .await?;
        Ok(Response::new(ResignResponse {
            header: Some(self.node.header(response.header.map_or(0, |h| h.revision))),
        }))
    }
}
