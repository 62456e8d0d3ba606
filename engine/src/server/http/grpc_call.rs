//! What the client port adds to every gRPC call: counting it in
//! `grpc_server_handled_total`, and honouring the `hasleader` metadata
//! ([`has_leader`](super::has_leader)).
//!
//! A call's outcome is its `grpc-status`: in the response headers when the call fails
//! before any message ("trailers-only"), otherwise in the trailers after the last
//! message. [`GrpcCall::respond`] reads the former at once; [`GrpcBody`] wraps the body to
//! read the latter (a body dropped before its trailers, the client gone, counts as
//! `Canceled`), and to end a `hasleader` call with etcd's no-leader trailers once the
//! member has lost its leader for good. It does not time calls or count messages, and
//! does not route: the client port does (`server::listen::client_port`).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::http::{HeaderMap, Response};
use http_body::Frame;
use tonic::Code;

use super::gateway::grpc_code_name;
use super::has_leader;
use crate::server::metrics::{GrpcHandled, Metrics};
use crate::server::node::NodeHandle;

/// The services of etcd's API (and gRPC health), so a call's labels borrow these names.
const KNOWN_SERVICES: &[&str] = &[
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Cluster",
    "etcdserverpb.Maintenance",
    "etcdserverpb.Auth",
    "v3lockpb.Lock",
    "v3electionpb.Election",
    "grpc.health.v1.Health",
];

/// The methods of those services (the KV ones first: they are the most frequent).
const KNOWN_METHODS: &[&str] = &[
    "Put",
    "Range",
    "Txn",
    "DeleteRange",
    "Compact",
    "Watch",
    "LeaseGrant",
    "LeaseRevoke",
    "LeaseKeepAlive",
    "LeaseTimeToLive",
    "LeaseLeases",
    "MemberAdd",
    "MemberRemove",
    "MemberUpdate",
    "MemberList",
    "MemberPromote",
    "Alarm",
    "Status",
    "Defragment",
    "Hash",
    "HashKV",
    "Snapshot",
    "MoveLeader",
    "Lock",
    "Unlock",
    "Campaign",
    "Proclaim",
    "Leader",
    "Observe",
    "Resign",
    "Check",
];

/// `name` borrowed from `known` when it is there, else copied.
fn interned(name: &str, known: &[&'static str]) -> Cow<'static, str> {
    known
        .iter()
        .find(|k| **k == name)
        .map_or_else(|| Cow::Owned(name.to_owned()), |k| Cow::Borrowed(*k))
}

/// A call's labels other than the code.
#[derive(Debug)]
pub struct Call {
    service: Cow<'static, str>,
    method: Cow<'static, str>,
    kind: &'static str,
}

impl Call {
    /// `/etcdserverpb.KV/Range` → service `etcdserverpb.KV`, method `Range`.
    pub fn from_path(path: &str) -> Option<Call> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        if service.is_empty() || method.is_empty() || method.contains('/') {
            return None;
        }
        Some(Call {
            kind: call_kind(service, method),
            service: interned(service, KNOWN_SERVICES),
            method: interned(method, KNOWN_METHODS),
        })
    }

    fn record(self, metrics: &Metrics, code: Code) {
        metrics.grpc_handled(GrpcHandled {
            code: grpc_code_name(code),
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

/// One gRPC call on the client port, from its request headers to its response.
pub struct GrpcCall {
    call: Option<Call>,
    metrics: Arc<Metrics>,
    /// Completes when a `hasleader` call must end (the member lost its leader).
    lost: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl GrpcCall {
    /// Starts a call to `path` with request `headers`. `Err` is the response to send at
    /// once instead of calling the service (a `hasleader` call on a member with no
    /// leader).
    pub fn start(
        path: &str,
        headers: &HeaderMap,
        node: &NodeHandle,
        metrics: &Arc<Metrics>,
    ) -> Result<GrpcCall, Box<Response<GrpcBody>>> {
        let mut call = Self::start_unary(path, headers, node, metrics)?;
        if has_leader::wanted(headers) {
            call.lost = Some(Box::pin(has_leader::leader_lost(node.clone())));
        }
        Ok(call)
    }

    /// The service's response, counted (now if it is trailers-only, else when its
    /// trailers pass) and bounded by the leader's presence when the call asked for one.
    pub fn respond(mut self, response: Response<tonic::body::Body>) -> Response<GrpcBody> {
        let (parts, body) = response.into_parts();
        let mut pending = self.call.take().map(|c| (c, self.metrics));
        if let Some(code) = grpc_status(&parts.headers)
            && let Some((call, metrics)) = pending.take()
        {
            call.record(&metrics, code);
        }
        let body = GrpcBody {
            inner: Some(body),
            lost: self.lost,
            pending,
        };
        Response::from_parts(parts, body)
    }
}

/// The trailer carrying a call's status code.
const GRPC_STATUS: axum::http::HeaderName = axum::http::HeaderName::from_static("grpc-status");
/// The `grpc-status` of a call that succeeded.
const GRPC_STATUS_OK: axum::http::HeaderValue = axum::http::HeaderValue::from_static("0");

impl GrpcCall {
    /// Starts a unary call answered whole by the client port's fast path: like
    /// [`GrpcCall::start`], but without the leader watch, which only ever acts on a
    /// response body still open, and a unary response is complete once made.
    pub fn start_unary(
        path: &str,
        headers: &HeaderMap,
        node: &NodeHandle,
        metrics: &Arc<Metrics>,
    ) -> Result<GrpcCall, Box<Response<GrpcBody>>> {
        let call = GrpcCall {
            call: Call::from_path(path),
            metrics: Arc::clone(metrics),
            lost: None,
        };
        if has_leader::wanted(headers) && node.status().leader == 0 {
            let refusal = has_leader::no_leader_status().into_http();
            return Err(Box::new(call.respond(refusal)));
        }
        Ok(call)
    }

    /// A successful unary call's response: `message` (one framed gRPC message) in one
    /// DATA frame, then `grpc-status: 0` trailers, as tonic answers it.
    pub fn respond_unary(mut self, message: Bytes) -> Response<UnaryBody> {
        let mut response = Response::new(UnaryBody {
            message: Some(message),
            trailers_sent: false,
            pending: self.call.take().map(|c| (c, Arc::clone(&self.metrics))),
        });
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/grpc"),
        );
        response
    }
}

/// The body of a unary call answered by the fast path: one message, then OK trailers.
/// The call is counted when the trailers pass, or as `Canceled` when dropped first.
pub struct UnaryBody {
    message: Option<Bytes>,
    trailers_sent: bool,
    pending: Option<(Call, Arc<Metrics>)>,
}

impl http_body::Body for UnaryBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(message) = self.message.take() {
            return Poll::Ready(Some(Ok(Frame::data(message))));
        }
        if self.trailers_sent {
            return Poll::Ready(None);
        }
        self.trailers_sent = true;
        if let Some((call, metrics)) = self.pending.take() {
            call.record(&metrics, Code::Ok);
        }
        let mut trailers = HeaderMap::with_capacity(1);
        trailers.insert(GRPC_STATUS, GRPC_STATUS_OK);
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.trailers_sent
    }
}

impl Drop for UnaryBody {
    fn drop(&mut self) {
        if let Some((call, metrics)) = self.pending.take() {
            call.record(&metrics, Code::Cancelled);
        }
    }
}

/// A gRPC response body that records its call when the trailers pass (or when dropped
/// first), and ends with no-leader trailers when the leader is lost for good.
pub struct GrpcBody {
    /// The service's body; dropped when the leader is lost.
    inner: Option<tonic::body::Body>,
    lost: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    pending: Option<(Call, Arc<Metrics>)>,
}

impl GrpcBody {
    fn finish(&mut self, code: Code) {
        if let Some((call, metrics)) = self.pending.take() {
            call.record(&metrics, code);
        }
    }
}

impl http_body::Body for GrpcBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            match &frame {
                Some(Ok(f)) => {
                    if let Some(trailers) = f.trailers_ref() {
                        let code = grpc_status(trailers).unwrap_or(Code::Unknown);
                        self.finish(code);
                    }
                }
                Some(Err(_)) => self.finish(Code::Unknown),
                None => {
                    self.inner = None;
                    self.finish(Code::Unknown);
                }
            }
            return Poll::Ready(frame);
        }
        if let Some(lost) = self.lost.as_mut()
            && lost.as_mut().poll(cx).is_ready()
        {
            tracing::debug!("no leader: ending a call that requires one");
            self.inner = None;
            self.lost = None;
            self.finish(Code::Unavailable);
            return Poll::Ready(Some(Ok(Frame::trailers(has_leader::no_leader_trailers()))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match (&self.inner, &self.lost) {
            (Some(inner), None) => inner.size_hint(),
            _ => http_body::SizeHint::default(),
        }
    }
}

impl Drop for GrpcBody {
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
            (call.service.as_ref(), call.method.as_ref(), call.kind),
            ("etcdserverpb.KV", "Range", "unary")
        );
        assert!(matches!(call.service, Cow::Borrowed(_)));
        assert!(matches!(call.method, Cow::Borrowed(_)));
        let watch = Call::from_path("/etcdserverpb.Watch/Watch").expect("a gRPC path");
        assert_eq!(watch.kind, "bidi_stream");
        let odd = Call::from_path("/some.Service/Odd").expect("a gRPC path");
        assert_eq!(
            (odd.service.as_ref(), odd.method.as_ref()),
            ("some.Service", "Odd")
        );
        assert!(Call::from_path("/health").is_none());
        assert!(Call::from_path("/v3/kv/range").is_none());
    }

    fn response(headers: &[(&'static str, &'static str)]) -> Response<tonic::body::Body> {
        let mut r = Response::new(tonic::body::Body::empty());
        for (k, v) in headers {
            r.headers_mut()
                .insert(*k, axum::http::HeaderValue::from_static(v));
        }
        r
    }

    fn counted(metrics: &Metrics, code: &str, method: &str) -> Option<f64> {
        crate::server::metrics::sample(
            &metrics.render(),
            &format!(
                "grpc_server_handled_total{{grpc_code=\"{code}\",grpc_method=\"{method}\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}}"
            ),
        )
    }

    #[test]
    fn trailers_only_failures_count_at_once_and_dropped_bodies_as_canceled() {
        let metrics = Arc::new(Metrics::default());
        let call = |path: &str| GrpcCall {
            call: Call::from_path(path),
            metrics: Arc::clone(&metrics),
            lost: None,
        };
        let failed = call("/etcdserverpb.KV/Put").respond(response(&[("grpc-status", "14")]));
        assert_eq!(counted(&metrics, "Unavailable", "Put"), Some(1.0));
        drop(failed);
        assert_eq!(
            counted(&metrics, "Canceled", "Put"),
            None,
            "already counted"
        );
        let open = call("/etcdserverpb.KV/Range").respond(response(&[]));
        assert_eq!(counted(&metrics, "Canceled", "Range"), None);
        drop(open);
        assert_eq!(counted(&metrics, "Canceled", "Range"), Some(1.0));
    }
}
