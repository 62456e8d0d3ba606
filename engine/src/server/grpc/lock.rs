//! The `v3lockpb.Lock` service: a distributed mutex on the key space, as etcd's server
//! builds it from its client-side mutex recipe.
//!
//! Lock puts `<name>/<lease hex>` with the caller's lease (if absent), then waits until
//! every key under `<name>/` created before it is gone; the holder is the key with the
//! lowest create revision. The answer is the key, which Unlock deletes. The lock lives
//! as long as the lease: it does not keep the lease alive.

use tonic::{Code, Request, Response, Status};

use crate::pb::v3lockpb::lock_server::Lock;
use crate::pb::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use crate::server::node::NodeHandle;

use super::recipes::{self, AbandonGuard};

/// etcd's answer when the caller's lease (and with it the lock key) went away while
/// waiting.
pub const SESSION_EXPIRED: &str = "session expired";

/// The Lock service of one member.
#[derive(Clone)]
pub struct LockService {
    node: NodeHandle,
}

impl LockService {
    /// The service for `node`.
    pub fn new(node: NodeHandle) -> Self {
        LockService { node }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let req = request.into_inner();
        let prefix = recipes::prefix_of(&req.name);
        let key = recipes::session_key(&req.name, req.lease);
        let (mine, created) = recipes::create_if_absent(&self.node, &key, b"", req.lease).await?;
        let guard = created.then(|| AbandonGuard::new(self.node.clone(), key.clone()));
        recipes::wait_deletes(&self.node, &prefix, mine.create_revision - 1).await?;
        if !recipes::still_held(&self.node, &key, mine.create_revision).await? {
            return Err(Status::new(Code::Unknown, SESSION_EXPIRED));
        }
        if let Some(g) = guard {
            g.keep();
        }
        let revision = self.node.with_kv(|kv| kv.store().current_revision());
        Ok(Response::new(LockResponse {
            header: Some(self.node.header(revision)),
            key,
        }))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let req = request.into_inner();
        let revision = recipes::delete(&self.node, &req.key).await?;
        Ok(Response::new(UnlockResponse {
            header: Some(self.node.header(revision)),
        }))
    }
}
