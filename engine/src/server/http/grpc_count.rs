//! Counts gRPC calls in `grpc_server_handled_total` by watching their HTTP responses.
//!
//! A gRPC call's outcome is its `grpc-status`: in the response headers when the call
//! fails before any message ("trailers-only"), otherwise in the trailers after the
//! last message. The middleware reads the former at once and wraps the body to read
//! the latter; a body dropped before its trailers (the client went away) counts as
//! `Canceled`. It does not time calls or count messages.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;
use tonic::Code;

use super::gateway::grpc_code_name;
use crate::server::metrics::{GrpcHandled, Metrics};

/// `router` with every call counted in `metrics`.
pub(super) fn counted(router: Router, metrics: Arc<Metrics>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(metrics, count))
}

async fn count(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let call = Call::from_path(request.uri().path());
    let response = next.run(request).await;
    let Some(call) = call else {
        return response;
    };
    if let Some(code) = grpc_status(response.headers()) {
        call.record(&metrics, code);
        return response;
    }
    response.map(|body| {
        Body::new(CountingBody {
            inner: body,
            pending: Some((call, metrics)),
        })
    })
}

/// A call's labels other than the code.
struct Call {
    service: String,
    method: String,
    kind: &'static str,
}

impl Call {
    /// `/etcdserverpb.KV/Range` → service `etcdserverpb.KV`, method `Range`.
    fn from_path(path: &str) -> Option<Call> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        if service.is_empty() || method.is_empty() || method.contains('/') {
            return None;
        }
        Some(Call {
            kind: call_kind(service, method),
            service: service.to_owned(),
            method: method.to_owned(),
        })
    }

    fn record(self, metrics: &Metrics, code: Code) {
        metrics.grpc_handled(GrpcHandled {
            code: grpc_code_name(code).to_owned(),
            method: self.method,
            service: self.service,
            kind: self.kind,
        });
    }
}

/// The streaming kind of an etcd RPC (the `grpc_type` label).
fn call_kind(service: &str, method: &str) -> &'static str {
    match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
        ("etcdserverpb.Maintenance", "Snapshot") | ("v3electionpb.Election", "Observe") => {
            "server_stream"
        }
        _ => "unary",
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    value.parse::<i32>().ok().map(Code::from)
}

/// A response body that records the call when its trailers pass (or when dropped first).
struct CountingBody {
    inner: Body,
    pending: Option<(Call, Arc<Metrics>)>,
}

impl CountingBody {
    fn finish(&mut self, code: Code) {
        if let Some((call, metrics)) = self.pending.take() {
            call.record(&metrics, code);
        }
    }
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_status(trailers).unwrap_or(Code::Unknown);
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(Code::Unknown),
            Poll::Ready(None) => self.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CountingBody {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        let call = Call::from_path("/etcdserverpb.KV/Range").expect("a gRPC path");
        assert_eq!(
            (call.service.as_str(), call.method.as_str(), call.kind),
            ("etcdserverpb.KV", "Range", "unary")
        );
        let watch = Call::from_path("/etcdserverpb.Watch/Watch").expect("a gRPC path");
        assert_eq!(watch.kind, "bidi_stream");
        assert!(Call::from_path("/health").is_none());
        assert!(Call::from_path("/v3/kv/range").is_none());
    }
}
