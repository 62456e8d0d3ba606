//! The `hasleader` gRPC metadata etcd's clients send (`hasleader: true`) when they
//! require a member with a leader.
//!
//! Such a call on a member that knows no leader is refused at once with etcd's
//! `etcdserver: no leader` (code Unavailable). Once started, a call (in practice a
//! watch or keep-alive stream) is ended with the same error when the member has had no
//! leader for [`NO_LEADER_ELECTIONS_MAX`] election timeouts in a row, as etcd's leader
//! monitor cancels such streams; the service's own stream is dropped then, which ends
//! its task. Calls without the metadata are untouched.
//!
//! This module holds the rule's pieces; the client port applies them to each gRPC call
//! ([`super::grpc_call`], real mode only). It does not look inside messages and does not
//! apply to the JSON gateway, whose requests carry no metadata.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};

use crate::server::error::ServerError;
use crate::server::node::NodeHandle;

/// The metadata key (an HTTP/2 header) and the value that asks for a leader.
pub const HAS_LEADER_KEY: &str = "hasleader";
/// The value of [`HAS_LEADER_KEY`] that asks for a leader.
pub const HAS_LEADER_VALUE: &str = "true";
/// Election timeouts without a leader after which a started call is ended (etcd checks
/// once per election timeout and cancels after three misses).
pub const NO_LEADER_ELECTIONS_MAX: u64 = 3;

/// Whether a call with these request headers requires a leader.
pub fn wanted(headers: &HeaderMap) -> bool {
    headers.get(HAS_LEADER_KEY).is_some_and(|v| {
        v.as_bytes()
            .eq_ignore_ascii_case(HAS_LEADER_VALUE.as_bytes())
    })
}

/// etcd's no-leader status.
pub fn no_leader_status() -> tonic::Status {
    ServerError::NoLeader.into()
}

/// Returns once `node` has had no leader for [`NO_LEADER_ELECTIONS_MAX`] election
/// timeouts without a break.
pub async fn leader_lost(node: NodeHandle) {
    let config = node.config();
    let grace_ms = config
        .tick_ms
        .saturating_mul(u64::from(config.election_ticks))
        .saturating_mul(NO_LEADER_ELECTIONS_MAX);
    let grace = Duration::from_millis(grace_ms);
    loop {
        node.wait_status(|s| s.leader == 0).await;
        let back = tokio::time::timeout(grace, node.wait_status(|s| s.leader != 0)).await;
        if back.is_err() {
            return;
        }
    }
}

/// gRPC trailers carrying etcd's no-leader status.
pub fn no_leader_trailers() -> HeaderMap {
    let status = no_leader_status();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(i32::from(status.code())));
    if let Ok(message) = HeaderValue::from_str(status.message()) {
        trailers.insert("grpc-message", message);
    }
    trailers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_carry_unavailable_and_etcds_text() {
        let trailers = no_leader_trailers();
        assert_eq!(trailers["grpc-status"], "14");
        assert_eq!(trailers["grpc-message"], "etcdserver: no leader");
    }

    #[test]
    fn only_a_true_hasleader_asks_for_a_leader() {
        let mut headers = HeaderMap::new();
        assert!(!wanted(&headers));
        headers.insert(HAS_LEADER_KEY, HeaderValue::from_static("TRUE"));
        assert!(wanted(&headers));
        headers.insert(HAS_LEADER_KEY, HeaderValue::from_static("false"));
        assert!(!wanted(&headers));
    }
}
