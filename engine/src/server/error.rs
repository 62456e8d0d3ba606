//! Errors the server answers clients with: etcd's exact message texts and gRPC codes.
//!
//! Go clients (etcdctl, clientv3) recognise errors by their message text, so every
//! `Display` string here is etcd's byte for byte, and [`ServerError::code`] gives the
//! gRPC status code etcd uses. Key-space and lease errors come from
//! [`MvccError`](crate::mvcc::MvccError), which already carries etcd's texts.

use crate::mvcc::{GrpcCode, MvccError};

/// A gRPC status code by number (so this module needs no tonic types).
pub type StatusCode = u8;

/// Why the server refused or failed a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    /// A key-space or lease error.
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    /// No leader is known, or the leader cannot be reached.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The leader changed while the request was in flight; its outcome is unknown.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// The request did not complete in time; its outcome is unknown.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// The server is shutting down.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// The request exceeds `--max-request-bytes`.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// The backend is over its quota (the NOSPACE alarm is raised).
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// A member change names a member that does not exist.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// A member change names a member id in use.
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    /// A member add names peer URLs already in use.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// A member promote names a member that is not a learner.
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    /// A member promote names a learner that is not caught up.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// A member change would lose quorum, or another change is still pending.
    #[error("etcdserver: unhealthy cluster")]
    UnhealthyCluster,
    /// A member change would leave fewer members the leader hears from than the quorum
    /// of the membership after it (`--strict-reconfig-check`).
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// Leadership transfer named a member that is not a voter.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// This member is not the leader and the request must be served by it.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// The request is malformed in a way etcd reports with this text.
    #[error("{0}")]
    InvalidArgument(String),
    /// A failure of this member (disk, corrupt state); the text says what.
    #[error("etcdserver: {0}")]
    Internal(String),
}

impl ServerError {
    /// The gRPC status code etcd answers this error with.
    pub fn code(&self) -> StatusCode {
        const INVALID_ARGUMENT: u8 = 3;
        const NOT_FOUND: u8 = 5;
        const FAILED_PRECONDITION: u8 = 9;
        const RESOURCE_EXHAUSTED: u8 = 8;
        const INTERNAL: u8 = 13;
        const UNAVAILABLE: u8 = 14;
        match self {
            ServerError::Mvcc(e) => match e.code() {
                GrpcCode::InvalidArgument => INVALID_ARGUMENT,
                GrpcCode::NotFound => NOT_FOUND,
                GrpcCode::FailedPrecondition => FAILED_PRECONDITION,
                GrpcCode::OutOfRange => GrpcCode::OutOfRange.as_u8(),
                GrpcCode::Unavailable => UNAVAILABLE,
            },
            ServerError::NoLeader
            | ServerError::LeaderChanged
            | ServerError::Timeout
            | ServerError::Stopped
            | ServerError::NotLeader
            | ServerError::UnhealthyCluster => UNAVAILABLE,
            ServerError::RequestTooLarge | ServerError::InvalidArgument(_) => INVALID_ARGUMENT,
            ServerError::NoSpace => RESOURCE_EXHAUSTED,
            ServerError::MemberNotFound => NOT_FOUND,
            ServerError::MemberExists
            | ServerError::PeerUrlExists
            | ServerError::MemberNotLearner
            | ServerError::LearnerNotReady
            | ServerError::NotEnoughStartedMembers
            | ServerError::BadLeaderTransferee => FAILED_PRECONDITION,
            ServerError::Internal(_) => INTERNAL,
        }
    }

    /// Whether the request may or may not have taken effect (a client must not assume
    /// either): a timeout or a leader change after it was proposed.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ServerError::Timeout | ServerError::LeaderChanged | ServerError::Stopped
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_are_etcds() {
        assert_eq!(ServerError::NoLeader.to_string(), "etcdserver: no leader");
        assert_eq!(ServerError::NoLeader.code(), 14);
        assert_eq!(
            ServerError::RequestTooLarge.to_string(),
            "etcdserver: request is too large"
        );
        assert_eq!(ServerError::RequestTooLarge.code(), 3);
        assert_eq!(
            ServerError::Timeout.to_string(),
            "etcdserver: request timed out"
        );
        assert_eq!(ServerError::Timeout.code(), 14);
        let compacted = ServerError::from(MvccError::Compacted);
        assert_eq!(
            compacted.to_string(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        assert_eq!(compacted.code(), 11);
        assert_eq!(ServerError::from(MvccError::LeaseNotFound).code(), 5);
        assert_eq!(ServerError::NoSpace.code(), 8);
    }
}
