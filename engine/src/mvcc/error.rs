//! Errors of the key space and the lease table, with the exact texts and gRPC status
//! codes etcd v3.4 answers with.
//!
//! Go clients match errors by their message, so every `Display` string here is etcd's
//! text byte for byte. The status code is a small enum of our own so this module does
//! not depend on tonic; the server maps [`GrpcCode`] to `tonic::Code` by number.

use thiserror::Error;

/// The gRPC status codes the key space and lease table answer with (numbers as in gRPC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum GrpcCode {
    /// `INVALID_ARGUMENT` (3): the request itself is malformed.
    InvalidArgument = 3,
    /// `NOT_FOUND` (5): the named lease does not exist.
    NotFound = 5,
    /// `FAILED_PRECONDITION` (9): the request conflicts with the current state.
    FailedPrecondition = 9,
    /// `OUT_OF_RANGE` (11): a revision or TTL outside what can be served.
    OutOfRange = 11,
    /// `UNAVAILABLE` (14): this member cannot serve the request now (not the leader).
    Unavailable = 14,
}

impl GrpcCode {
    /// The numeric gRPC status code.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Why a key-space or lease request was refused. `Display` is etcd's message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MvccError {
    /// A read or compaction asked for a revision that compaction already removed.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// A read or compaction asked for a revision after the current one.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// A put (or txn) named a lease that does not exist, or a lease call named one.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A grant named a lease id that is already in use.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A grant asked for a TTL above [`crate::lease::LEASE_TTL_S_MAX`].
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// `ignore_value`/`ignore_lease` on a key that does not exist, or an empty request op.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A request without a key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value` together with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A txn (or one of its nested txns) has more compares or ops than allowed.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// A txn writes one key twice (put/put or put inside a delete range).
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A leader-only lease call (keep-alive) reached a member that is not the primary
    /// lessor; the server forwards it to the leader or the client retries.
    #[error("etcdserver: not leader")]
    NotLeader,
}

impl MvccError {
    /// The gRPC status code etcd sends this error with.
    pub fn code(&self) -> GrpcCode {
        match self {
            MvccError::Compacted | MvccError::FutureRevision | MvccError::LeaseTtlTooLarge => {
                GrpcCode::OutOfRange
            }
            MvccError::LeaseNotFound => GrpcCode::NotFound,
            MvccError::LeaseExists => GrpcCode::FailedPrecondition,
            MvccError::KeyNotFound
            | MvccError::EmptyKey
            | MvccError::ValueProvided
            | MvccError::LeaseProvided
            | MvccError::TooManyOps
            | MvccError::DuplicateKey => GrpcCode::InvalidArgument,
            MvccError::NotLeader => GrpcCode::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_are_etcds() {
        let table = [
            (
                MvccError::Compacted,
                "etcdserver: mvcc: required revision has been compacted",
                11,
            ),
            (
                MvccError::FutureRevision,
                "etcdserver: mvcc: required revision is a future revision",
                11,
            ),
            (
                MvccError::LeaseNotFound,
                "etcdserver: requested lease not found",
                5,
            ),
            (
                MvccError::LeaseExists,
                "etcdserver: lease already exists",
                9,
            ),
            (
                MvccError::LeaseTtlTooLarge,
                "etcdserver: too large lease TTL",
                11,
            ),
            (MvccError::KeyNotFound, "etcdserver: key not found", 3),
            (MvccError::EmptyKey, "etcdserver: key is not provided", 3),
            (MvccError::ValueProvided, "etcdserver: value is provided", 3),
            (MvccError::LeaseProvided, "etcdserver: lease is provided", 3),
            (
                MvccError::TooManyOps,
                "etcdserver: too many operations in txn request",
                3,
            ),
            (
                MvccError::DuplicateKey,
                "etcdserver: duplicate key given in txn request",
                3,
            ),
            (MvccError::NotLeader, "etcdserver: not leader", 14),
        ];
        for (err, text, code) in table {
            assert_eq!(err.to_string(), text);
            assert_eq!(err.code().as_u8(), code, "{err:?}");
        }
    }
}
