//! etcd's v3 gRPC services on top of a [`NodeHandle`](super::node::NodeHandle).
//!
//! Each service checks a request the way etcd's API layer does (sizes, empty keys, txn
//! limits), then either reads the applied state (after a read barrier unless the
//! request is serializable) or replicates a write and answers with its applied result.
//! Every response carries this member's header. Errors are etcd's texts and codes.

pub mod kv;

use tonic::{Code, Status};

use super::error::ServerError;

/// The gRPC status for a server error: etcd's code and message.
pub fn status(err: ServerError) -> Status {
    Status::new(Code::from(i32::from(err.code())), err.to_string())
}

impl From<ServerError> for Status {
    fn from(err: ServerError) -> Status {
        status(err)
    }
}
