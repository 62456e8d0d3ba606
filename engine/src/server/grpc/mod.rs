//! etcd's v3 gRPC services on top of a [`NodeHandle`](super::node::NodeHandle).
//!
//! Each service checks a request the way etcd's API layer does (sizes, empty keys, txn
//! limits), then either reads the applied state (after a read barrier unless the
//! request is serializable) or replicates a write and answers with its applied result.
//! Every response carries this member's header. Errors are etcd's texts and codes.
//!
//! The services do not listen on sockets (the server binary mounts them) and do not
//! implement authentication.

pub mod cluster;
pub mod election;
pub mod health;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
mod quota;
mod recipes;
pub mod watch;

use std::pin::Pin;

use tonic::codegen::tokio_stream::Stream;
use tonic::{Code, Status};

use super::error::ServerError;
use super::node::Applied;

pub use quota::Quota;

/// The response stream type of every server-streaming method here.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Responses a server stream may have queued before its producer waits for the client.
pub const STREAM_BUFFER_RESPONSES_MAX: usize = 64;

/// The gRPC status for a server error: etcd's code and message.
pub fn status(err: ServerError) -> Status {
    Status::new(Code::from(i32::from(err.code())), err.to_string())
}

impl From<ServerError> for Status {
    fn from(err: ServerError) -> Status {
        status(err)
    }
}

/// The error for an apply result of the wrong kind (a bug, never a client's fault).
pub(crate) fn unexpected(applied: &Applied) -> Status {
    Status::internal(format!("etcdserver: unexpected apply result {applied:?}"))
}

/// A stream over the receiving end of a channel (what streaming methods return).
pub(crate) fn receiver_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<Result<T, Status>>,
) -> ResponseStream<T> {
    Box::pin(tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(
        rx,
    ))
}

/// This member's header at its current applied revision.
pub(crate) fn header_now(
    node: &super::node::NodeHandle,
) -> crate::pb::etcdserverpb::ResponseHeader {
    let revision = node.with_kv(|kv| kv.store().current_revision());
    node.header(revision)
}
