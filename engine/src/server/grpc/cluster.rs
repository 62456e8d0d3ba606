//! The `etcdserverpb.Cluster` service: MemberAdd, MemberRemove, MemberUpdate,
//! MemberList, MemberPromote.
//!
//! Membership changes are proposed by the leader only (the node refuses them
//! elsewhere), whereas etcd serves them on any member; so a follower forwards the
//! client's request to the leader's first client URL and relays the answer. A request
//! that was already forwarded once is not forwarded again (it fails with "not leader"),
//! which rules out forwarding loops while leadership moves. MemberList is linearizable
//! (a read barrier first), as etcd 3.4's is. New member IDs are derived from the peer
//! URLs, the cluster token and the time of the addition, exactly as etcd derives them;
//! the time comes from a function the server passes in so simulated runs stay
//! deterministic.

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::pb::detcdpeerpb::Member as PeerMember;
use crate::pb::detcdpeerpb::internal_request::Request as Write;
use crate::pb::etcdserverpb::cluster_client::ClusterClient;
use crate::pb::etcdserverpb::cluster_server::Cluster;
use crate::pb::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use crate::server::error::ServerError;
use crate::server::ids;
use crate::server::membership::MemberRecord;
use crate::server::node::NodeHandle;

use super::header_now;

/// The metadata key that marks a request a follower forwarded to the leader.
pub const FORWARDED_METADATA_KEY: &str = "detcd-forwarded";

/// etcd's answer to peer URLs that do not parse.
pub const BAD_MEMBER_URLS: &str = "etcdserver: given member URLs are invalid";

/// The Cluster service of one member.
#[derive(Clone)]
pub struct ClusterService {
    node: NodeHandle,
    token: String,
    now_unix_s: fn() -> i64,
}

impl ClusterService {
    /// The service for `node` in the cluster named by `token` (`initial_cluster_token`);
    /// `now_unix_s` tells the time of a member addition.
    pub fn new(node: NodeHandle, token: String, now_unix_s: fn() -> i64) -> Self {
        ClusterService {
            node,
            token,
            now_unix_s,
        }
    }

    fn members_api(&self) -> Vec<Member> {
        self.node.members().to_api()
    }

    /// The leader's first client URL. A member publishes its client URLs through Raft
    /// once it runs, so a follower may not know the leader's yet (a cluster just
    /// started, a leader just joined): it waits up to a request timeout, as for the
    /// request itself, before answering "no leader".
    async fn leader_client_url(&self) -> Result<String, ServerError> {
        let deadline = tokio::time::Instant::now() + self.node.config().request_timeout();
        loop {
            let leader = self.node.status().leader;
            let url = self
                .node
                .members()
                .get(leader)
                .and_then(|m| m.client_urls.first().cloned());
            match url {
                Some(url) => return Ok(url),
                None if tokio::time::Instant::now() >= deadline => {
                    return Err(ServerError::NoLeader);
                }
                None => tokio::time::sleep(Duration::from_millis(LEADER_URL_POLL_MS)).await,
            }
        }
    }

    /// A client of the leader's Cluster service, for forwarding.
    async fn leader_client(&self) -> Result<ClusterClient<Channel>, Status> {
        let url = self.leader_client_url().await?;
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| Status::internal(format!("etcdserver: leader URL {url}: {e}")))?;
        let channel = endpoint.connect().await.map_err(|e| {
            tracing::debug!(url = %url, error = %e, "cannot reach the leader to forward");
            Status::from(ServerError::NoLeader)
        })?;
        Ok(ClusterClient::new(channel))
    }
}

/// How often a follower looks again for the leader's client URL while forwarding.
const LEADER_URL_POLL_MS: u64 = 20;

/// Whether a refusal should be retried at the leader: this member is not it, and the
/// request did not come from another follower already.
fn should_forward<T>(result: &Result<T, ServerError>, forwarded: bool) -> bool {
    matches!(result, Err(ServerError::NotLeader)) && !forwarded
}

fn forwarded<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED_METADATA_KEY)
}

fn mark_forwarded<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(FORWARDED_METADATA_KEY, MetadataValue::from_static("1"));
    request
}

/// Peer URLs must be absolute http(s) or unix URLs with a host, as etcd parses them.
fn urls_valid(urls: &[String]) -> bool {
    !urls.is_empty()
        && urls.iter().all(|u| {
            ["http://", "https://", "unix://", "unixs://"]
                .iter()
                .any(|scheme| u.strip_prefix(scheme).is_some_and(|rest| !rest.is_empty()))
        })
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let was_forwarded = forwarded(&request);
        let req = request.into_inner();
        if !urls_valid(&req.peer_ur_ls) {
            return Err(Status::invalid_argument(BAD_MEMBER_URLS));
        }
        let id = ids::member_id(&req.peer_ur_ls, &self.token, Some((self.now_unix_s)()));
        let record = MemberRecord {
            id,
            name: String::new(),
            peer_urls: req.peer_ur_ls.clone(),
            client_urls: Vec::new(),
            is_learner: req.is_learner,
        };
        let result = self.node.member_add(record.clone()).await;
        if should_forward(&result, was_forwarded) {
            return self
                .leader_client()
                .await?
                .member_add(mark_forwarded(req))
                .await;
        }
        let members = result?;
        Ok(Response::new(MemberAddResponse {
            header: Some(header_now(&self.node)),
            member: Some(record.to_api()),
            members: members.iter().map(MemberRecord::to_api).collect(),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let was_forwarded = forwarded(&request);
        let req = request.into_inner();
        let result = self.node.member_remove(req.id).await;
        if should_forward(&result, was_forwarded) {
            return self
                .leader_client()
                .await?
                .member_remove(mark_forwarded(req))
                .await;
        }
        let members = result?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(header_now(&self.node)),
            members: members.iter().map(MemberRecord::to_api).collect(),
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let req = request.into_inner();
        if !urls_valid(&req.peer_ur_ls) {
            return Err(Status::invalid_argument(BAD_MEMBER_URLS));
        }
        let members = self.node.members();
        let Some(current) = members.get(req.id) else {
            return Err(ServerError::MemberNotFound.into());
        };
        let taken_by_other = members
            .members()
            .filter(|m| m.id != req.id)
            .any(|m| m.peer_urls.iter().any(|u| req.peer_ur_ls.contains(u)));
        if taken_by_other {
            return Err(ServerError::PeerUrlExists.into());
        }
        let update = PeerMember {
            id: req.id,
            name: current.name.clone(),
            peer_urls: req.peer_ur_ls,
            client_urls: current.client_urls.clone(),
            is_learner: current.is_learner,
        };
        self.node.write(Write::MemberUpdate(update)).await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(header_now(&self.node)),
            members: self.members_api(),
        }))
    }

    async fn member_list(
        &self,
        _request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        self.node.read_barrier().await?;
        Ok(Response::new(MemberListResponse {
            header: Some(header_now(&self.node)),
            members: self.members_api(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let was_forwarded = forwarded(&request);
        let req = request.into_inner();
        let result = self.node.member_promote(req.id).await;
        if should_forward(&result, was_forwarded) {
            return self
                .leader_client()
                .await?
                .member_promote(mark_forwarded(req))
                .await;
        }
        let members = result?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(header_now(&self.node)),
            members: members.iter().map(MemberRecord::to_api).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_need_a_scheme_and_a_host() {
        let ok = vec!["http://10.0.0.1:2380".to_owned()];
        assert!(urls_valid(&ok));
        assert!(!urls_valid(&["10.0.0.1:2380".to_owned()]));
        assert!(!urls_valid(&["http://".to_owned()]));
        assert!(!urls_valid(&[]));
    }

    #[test]
    fn only_a_first_not_leader_refusal_is_forwarded() {
        let refused: Result<(), ServerError> = Err(ServerError::NotLeader);
        assert!(should_forward(&refused, false));
        assert!(!should_forward(&refused, true));
        assert!(!should_forward(&Ok::<(), ServerError>(()), false));
    }
}
