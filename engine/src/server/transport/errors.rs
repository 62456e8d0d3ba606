//! How errors cross the peer link: the leader's [`ServerError`] travels as its message
//! text (in a response's `error` field, or as a gRPC status marked as the handler's),
//! and the follower turns the text back into the same variant. Failures of the link
//! itself become NoLeader or Timeout.
//!
//! Not here: choosing which errors a request can have (the node does).

use crate::mvcc::MvccError;
use crate::server::error::ServerError;

/// Metadata key marking a status as the handler's error rather than the transport's.
pub(crate) const HANDLER_ERROR_METADATA_KEY: &str = "detcd-peer-error";

/// Every [`ServerError`] without a payload, to recognise its text.
const TEXT_ONLY_ERRORS: &[ServerError] = &[
    ServerError::NoLeader,
    ServerError::LeaderChanged,
    ServerError::Timeout,
    ServerError::Stopped,
    ServerError::RequestTooLarge,
    ServerError::NoSpace,
    ServerError::MemberNotFound,
    ServerError::MemberExists,
    ServerError::PeerUrlExists,
    ServerError::MemberNotLearner,
    ServerError::LearnerNotReady,
    ServerError::UnhealthyCluster,
    ServerError::NotEnoughStartedMembers,
    ServerError::BadLeaderTransferee,
    ServerError::NotLeader,
];

/// Every [`MvccError`], to recognise its text. `MvccError::NotLeader` shares its text
/// with [`ServerError::NotLeader`], which is found first.
const MVCC_ERRORS: &[MvccError] = &[
    MvccError::Compacted,
    MvccError::FutureRevision,
    MvccError::LeaseNotFound,
    MvccError::LeaseExists,
    MvccError::LeaseTtlTooLarge,
    MvccError::KeyNotFound,
    MvccError::EmptyKey,
    MvccError::ValueProvided,
    MvccError::LeaseProvided,
    MvccError::TooManyOps,
    MvccError::DuplicateKey,
];

/// Prefix of [`ServerError::Internal`]'s text.
const INTERNAL_PREFIX: &str = "etcdserver: ";

/// The [`ServerError`] whose text is `message`. A text no known variant has becomes
/// [`ServerError::Internal`] if it starts with `etcdserver: `, else
/// [`ServerError::InvalidArgument`]; either way the text is kept byte for byte.
pub fn server_error_from_message(message: &str) -> ServerError {
    if let Some(known) = TEXT_ONLY_ERRORS.iter().find(|e| e.to_string() == message) {
        return known.clone();
    }
    if let Some(mvcc) = MVCC_ERRORS.iter().find(|e| e.to_string() == message) {
        return ServerError::Mvcc(mvcc.clone());
    }
    match message.strip_prefix(INTERNAL_PREFIX) {
        Some(rest) => ServerError::Internal(rest.to_string()),
        None => ServerError::InvalidArgument(message.to_string()),
    }
}

/// `Ok(())` for an empty error field, else the error it names.
pub(crate) fn result_from_text(error: &str) -> Result<(), ServerError> {
    if error.is_empty() {
        Ok(())
    } else {
        Err(server_error_from_message(error))
    }
}

/// The gRPC status the service answers a handler's error with: etcd's code and text,
/// marked so the follower knows it is the leader's answer.
pub(crate) fn status_from_server_error(error: &ServerError) -> tonic::Status {
    let mut status = tonic::Status::new(
        tonic::Code::from_i32(i32::from(error.code())),
        error.to_string(),
    );
    status.metadata_mut().insert(
        HANDLER_ERROR_METADATA_KEY,
        tonic::metadata::MetadataValue::from(1u32),
    );
    status
}

/// Whether a forwarded request that failed in transit may have taken effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It may have (a proposal): a transport failure is a timeout.
    MaybeApplied,
    /// It is safe to treat as not done (reads, keep-alives): a failure is NoLeader.
    NotApplied,
}

/// Why a forwarded call failed.
#[derive(Debug)]
pub(crate) enum ForwardError {
    /// The call ended with a status (the handler's error, or the transport's).
    Status(tonic::Status),
    /// No answer within the forwarding deadline.
    Deadline,
}

impl ForwardError {
    /// The error to give the follower's client.
    pub(crate) fn into_server_error(self, outcome: Outcome) -> ServerError {
        match self {
            ForwardError::Deadline => ServerError::Timeout,
            ForwardError::Status(status) => {
                if status.metadata().get(HANDLER_ERROR_METADATA_KEY).is_some() {
                    return server_error_from_message(status.message());
                }
                tracing::debug!(%status, "forwarded request failed in transit");
                match (outcome, status.code()) {
                    (_, tonic::Code::DeadlineExceeded | tonic::Code::Cancelled) => {
                        ServerError::Timeout
                    }
                    (Outcome::MaybeApplied, _) => ServerError::Timeout,
                    (Outcome::NotApplied, _) => ServerError::NoLeader,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_text_maps_back_to_its_variant() {
        for error in TEXT_ONLY_ERRORS {
            assert_eq!(&server_error_from_message(&error.to_string()), error);
        }
        for mvcc in MVCC_ERRORS {
            let error = ServerError::Mvcc(mvcc.clone());
            assert_eq!(server_error_from_message(&error.to_string()), error);
        }
    }

    #[test]
    fn unknown_texts_keep_their_bytes() {
        let internal = server_error_from_message("etcdserver: disk on fire");
        assert_eq!(internal, ServerError::Internal("disk on fire".into()));
        assert_eq!(internal.to_string(), "etcdserver: disk on fire");
        let other = server_error_from_message("something else");
        assert_eq!(other.to_string(), "something else");
        assert_eq!(other.code(), 3);
    }

    #[test]
    fn handler_status_round_trips_and_transport_failures_map_by_outcome() {
        let status = status_from_server_error(&ServerError::Mvcc(MvccError::LeaseNotFound));
        assert_eq!(status.code(), tonic::Code::NotFound);
        let back = ForwardError::Status(status).into_server_error(Outcome::NotApplied);
        assert_eq!(back, ServerError::Mvcc(MvccError::LeaseNotFound));

        let unavailable = || ForwardError::Status(tonic::Status::unavailable("connection refused"));
        assert_eq!(
            unavailable().into_server_error(Outcome::NotApplied),
            ServerError::NoLeader
        );
        assert_eq!(
            unavailable().into_server_error(Outcome::MaybeApplied),
            ServerError::Timeout
        );
        assert_eq!(
            ForwardError::Deadline.into_server_error(Outcome::NotApplied),
            ServerError::Timeout
        );
    }
}
