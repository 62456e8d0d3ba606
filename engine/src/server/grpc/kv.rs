//! The `etcdserverpb.KV` service: Range, Put, DeleteRange, Txn, Compact.
//!
//! The four hot methods are inherent `serve_*` methods that take and return plain
//! messages, so the client port's unary fast path (real mode) runs the same code as the
//! tonic service; this module does no decoding or encoding of its own.

use prost::Message as _;
use tonic::{Request, Response, Status};

use crate::mvcc::{is_read_only, validate_delete, validate_put, validate_range, validate_txn};
use crate::pb::detcdpeerpb::internal_request::Request as Write;
use crate::pb::etcdserverpb::kv_server::Kv;
use crate::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::server::error::ServerError;
use crate::server::node::{Applied, NodeHandle};

use super::{Quota, unexpected};

/// The KV service of one member.
#[derive(Clone)]
pub struct KvService {
    node: NodeHandle,
    quota: Quota,
}

impl KvService {
    /// The service for `node`.
    pub fn new(node: NodeHandle) -> Self {
        let quota = Quota::new(node.clone());
        KvService { node, quota }
    }

    fn check_size(&self, bytes: usize) -> Result<(), ServerError> {
        if bytes > self.node.config().request_bytes_max {
            return Err(ServerError::RequestTooLarge);
        }
        Ok(())
    }

    fn header(&self, header: Option<ResponseHeader>) -> Option<ResponseHeader> {
        Some(self.node.header(header.map_or(0, |h| h.revision)))
    }
}

impl KvService {
    /// Serves a Range: etcd's checks, a read barrier unless serializable, the read.
    /// Both the tonic service and the client port's unary fast path call this.
    pub async fn serve_range(&self, req: RangeRequest) -> Result<RangeResponse, Status> {
        validate_range(&req).map_err(ServerError::from)?;
        if !req.serializable {
            self.node.read_barrier().await?;
        }
        let mut response = self
            .node
            .with_kv(|kv| kv.range(&req))
            .map_err(ServerError::from)?;
        response.header = self.header(response.header);
        Ok(response)
    }

    /// Serves a Put: size, validity and quota checks, then the replicated write,
    /// answered with its applied result.
    pub async fn serve_put(&self, req: PutRequest) -> Result<PutResponse, Status> {
        let bytes = req.encoded_len();
        self.check_size(bytes)?;
        validate_put(&req).map_err(ServerError::from)?;
        self.quota.admit(bytes).await?;
        match self.node.write(Write::Put(req)).await? {
            Applied::Put(mut response) => {
                response.header = self.header(response.header);
                Ok(response)
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Serves a DeleteRange: size and validity checks, then the replicated write.
    pub async fn serve_delete_range(
        &self,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, Status> {
        self.check_size(req.encoded_len())?;
        validate_delete(&req).map_err(ServerError::from)?;
        match self.node.write(Write::DeleteRange(req)).await? {
            Applied::DeleteRange(mut response) => {
                response.header = self.header(response.header);
                Ok(response)
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Serves a Txn: a read-only one reads the applied state (after a read barrier
    /// unless all its ranges are serializable), any other is a replicated write.
    pub async fn serve_txn(&self, req: TxnRequest) -> Result<TxnResponse, Status> {
        let bytes = req.encoded_len();
        self.check_size(bytes)?;
        validate_txn(&req, self.node.config().kv.txn_ops_max).map_err(ServerError::from)?;
        if is_read_only(&req) {
            let serializable = all_ranges_serializable(&req);
            if !serializable {
                self.node.read_barrier().await?;
            }
            let mut response = self.node.read_only_txn(&req)?;
            response.header = self.header(response.header);
            return Ok(response);
        }
        self.quota.admit(bytes).await?;
        match self.node.write(Write::Txn(req)).await? {
            Applied::Txn(mut response) => {
                response.header = self.header(response.header);
                Ok(response)
            }
            other => Err(unexpected(&other)),
        }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        self.serve_range(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.serve_put(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        self.serve_delete_range(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        self.serve_txn(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let req = request.into_inner();
        match self.node.write(Write::Compaction(req)).await? {
            Applied::Compaction(mut response) => {
                response.header = self.header(response.header);
                Ok(Response::new(response))
            }
            other => Err(unexpected(&other)),
        }
    }
}

/// etcd serves a read-only txn without a read barrier only when all its ranges are
/// serializable.
fn all_ranges_serializable(req: &TxnRequest) -> bool {
    use crate::pb::etcdserverpb::request_op::Request as Op;
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| match &op.request {
            Some(Op::RequestRange(r)) => r.serializable,
            Some(Op::RequestTxn(t)) => all_ranges_serializable(t),
            _ => false,
        })
}
