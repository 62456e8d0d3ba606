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
//! This is a layer on the gRPC router (real mode only); it does not look inside
//! messages and does not apply to the JSON gateway, whose requests carry no metadata.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;

use crate::server::error::ServerError;
use crate::server::node::NodeHandle;

/// The metadata key (an HTTP/2 header) and the value that asks for a leader.
pub const HAS_LEADER_KEY: &str = "hasleader";
/// The value of [`HAS_LEADER_KEY`] that asks for a leader.
pub const HAS_LEADER_VALUE: &str = "true";
/// Election timeouts without a leader after which a started call is ended (etcd checks
/// once per election timeout and cancels after three misses).
pub const NO_LEADER_ELECTIONS_MAX: u64 = 3;

/// Middleware: refuses or ends `hasleader` calls while the member has no leader.
pub async fn require_leader(
    State(node): State<NodeHandle>,
    request: Request,
    next: Next,
) -> Response {
    let wanted = request.headers().get(HAS_LEADER_KEY).is_some_and(|v| {
        v.as_bytes()
            .eq_ignore_ascii_case(HAS_LEADER_VALUE.as_bytes())
    });
    if !wanted {
        return next.run(request).await;
    }
    if node.status().leader == 0 {
        return no_leader_status().into_http::<Body>();
    }
    let config = node.config();
    let grace_ms = config
        .tick_ms
        .saturating_mul(u64::from(config.election_ticks))
        .saturating_mul(NO_LEADER_ELECTIONS_MAX);
    let response = next.run(request).await;
    let (parts, body) = response.into_parts();
    let bounded = LeaderBound {
        inner: Some(body),
        lost: Box::pin(leader_gone(node, Duration::from_millis(grace_ms))),
    };
    Response::from_parts(parts, Body::new(bounded))
}

fn no_leader_status() -> tonic::Status {
    ServerError::NoLeader.into()
}

/// Returns once the member has had no leader for `grace` without a break.
async fn leader_gone(node: NodeHandle, grace: Duration) {
    loop {
        node.wait_status(|s| s.leader == 0).await;
        let back = tokio::time::timeout(grace, node.wait_status(|s| s.leader != 0)).await;
        if back.is_err() {
            return;
        }
    }
}

/// A response body that ends with no-leader trailers when `lost` completes first.
struct LeaderBound {
    /// The service's body; dropped when the leader is lost.
    inner: Option<Body>,
    lost: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl http_body::Body for LeaderBound {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            if frame.is_none() {
                self.inner = None;
            }
            return Poll::Ready(frame);
        }
        if self.lost.as_mut().poll(cx).is_ready() {
            tracing::debug!("no leader: ending a call that requires one");
            self.inner = None;
            return Poll::Ready(Some(Ok(Frame::trailers(no_leader_trailers()))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }
}

/// gRPC trailers carrying etcd's no-leader status.
fn no_leader_trailers() -> HeaderMap {
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
}
