//! The client port's request dispatch and connection serving (real mode).
//!
//! A gRPC call (its path names a registered service) goes straight to that tonic
//! service, wrapped only by [`GrpcCall`] (metrics, `hasleader`); everything else (HTTP/1.1
//! or HTTP/2: `/health`, `/version`, `/metrics`, the JSON gateway) goes to the axum router
//! of [`crate::server::http`]. The hot unary KV calls skip tonic too: [`super::unary_kv`]
//! decodes, serves and encodes them whole. Serving gRPC through the axum router cost a route match,
//! two middleware layers, a boxed request body and a few boxed futures per call.
//!
//! Each accepted connection is served by hyper (HTTP/1.1 or cleartext HTTP/2, detected
//! from the first bytes) on its own task. It does not bind sockets, set socket options or
//! do TLS: [`serve_connections`] takes a bound listener.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Bytes;
use http::{Request, Response};
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;

use super::unary_kv;
use crate::server::grpc::kv::KvService;
use crate::server::http::grpc_call::{GrpcBody, GrpcCall, UnaryBody};
use crate::server::metrics::Metrics;
use crate::server::node::NodeHandle;

/// A boxed error, as hyper takes them.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Calls one tonic service (a fresh clone of it per call, as tonic's own router does).
type GrpcHandler = Box<
    dyn Fn(Request<Incoming>) -> BoxFuture<Response<tonic::body::Body>, Infallible> + Send + Sync,
>;

/// The gRPC services of the client port, by service name.
#[derive(Default)]
pub struct GrpcServices {
    by_name: BTreeMap<&'static str, GrpcHandler>,
    /// The KV service and the request message limit of the unary fast path, when on.
    unary_kv: Option<(KvService, usize)>,
}

impl GrpcServices {
    /// Serves the hot unary KV calls with `kv` on the fast path ([`unary_kv`]), their
    /// request messages bounded by `message_bytes_max` (as the tonic service's are).
    #[must_use]
    pub fn with_unary_kv(mut self, kv: KvService, message_bytes_max: usize) -> Self {
        self.unary_kv = Some((kv, message_bytes_max));
        self
    }

    /// Adds `service` under its gRPC name (a later one with the same name replaces it).
    #[must_use]
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<
                Request<Incoming>,
                Response = Response<tonic::body::Body>,
                Error = Infallible,
                Future = BoxFuture<Response<tonic::body::Body>, Infallible>,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
    {
        let handler: GrpcHandler = Box::new(move |request| service.clone().call(request));
        self.by_name.insert(S::NAME, handler);
        self
    }

    /// The handler of the service `path` (`/<service>/<method>`) names.
    fn route(&self, path: &str) -> Option<&GrpcHandler> {
        let service = path.strip_prefix('/')?.split_once('/')?.0;
        self.by_name.get(service)
    }
}

/// The client port's service: gRPC calls to their tonic service, the rest to `http`.
#[derive(Clone)]
pub struct ClientPort {
    inner: Arc<PortInner>,
}

struct PortInner {
    grpc: GrpcServices,
    http: Router,
    node: NodeHandle,
    metrics: Arc<Metrics>,
}

impl ClientPort {
    /// The port serving `grpc` and `http` for `node`.
    pub fn new(grpc: GrpcServices, http: Router, node: NodeHandle) -> Self {
        let metrics = node.metrics();
        ClientPort {
            inner: Arc::new(PortInner {
                grpc,
                http,
                node,
                metrics,
            }),
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for ClientPort {
    type Response = Response<ClientBody>;
    type Error = Infallible;
    type Future = ClientFuture;

    fn call(&self, request: Request<Incoming>) -> ClientFuture {
        let inner = &self.inner;
        if let Some((kv, limit)) = &inner.grpc.unary_kv
            && let Some(method) = unary_kv::fast_method(request.uri().path(), request.headers())
        {
            return self.unary(kv.clone(), *limit, method, request);
        }
        let handler = inner.grpc.route(request.uri().path());
        if handler.is_none() && !is_grpc(&request) {
            let mut http = inner.http.clone();
            // The router is always ready (axum's `Router::poll_ready` returns at once).
            let routed =
                tower_service::Service::call(&mut http, request.map(axum::body::Body::new));
            return ClientFuture::Http(Box::pin(async move {
                let response = routed.await;
                Ok(response.map_or_else(|e| match e {}, |r| r.map(ClientBody::Http)))
            }));
        }
        let call = match GrpcCall::start(
            request.uri().path(),
            request.headers(),
            &inner.node,
            &inner.metrics,
        ) {
            Ok(call) => call,
            Err(refusal) => return ClientFuture::Ready(Some((*refusal).map(ClientBody::Grpc))),
        };
        match handler {
            Some(handler) => ClientFuture::Grpc {
                inner: handler(request),
                call: Some(call),
            },
            None => {
                let status = tonic::Status::unimplemented("unknown service");
                let response = call.respond(status.into_http());
                ClientFuture::Ready(Some(response.map(ClientBody::Grpc)))
            }
        }
    }
}

impl ClientPort {
    /// A unary KV call on the fast path: counted and `hasleader`-checked like any gRPC
    /// call, then served whole by [`unary_kv::serve`].
    fn unary(
        &self,
        kv: KvService,
        limit: usize,
        method: unary_kv::KvMethod,
        request: Request<Incoming>,
    ) -> ClientFuture {
        let inner = &self.inner;
        let call = match GrpcCall::start_unary(
            request.uri().path(),
            request.headers(),
            &inner.node,
            &inner.metrics,
        ) {
            Ok(call) => call,
            Err(refusal) => return ClientFuture::Ready(Some((*refusal).map(ClientBody::Grpc))),
        };
        ClientFuture::Http(Box::pin(async move {
            let response = match unary_kv::serve(&kv, method, request, limit).await {
                Ok(message) => call.respond_unary(message).map(ClientBody::Unary),
                Err(status) => call.respond(status.into_http()).map(ClientBody::Grpc),
            };
            Ok(response)
        }))
    }
}

/// Whether `request` is a gRPC call (by its content type).
fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The future of one request on the client port.
pub enum ClientFuture {
    /// A gRPC call in its service.
    Grpc {
        /// The service's future.
        inner: BoxFuture<Response<tonic::body::Body>, Infallible>,
        /// The call's bookkeeping, taken when the response comes.
        call: Option<GrpcCall>,
    },
    /// A response known at once.
    Ready(Option<Response<ClientBody>>),
    /// An HTTP request in the axum router, or a unary KV call on the fast path.
    Http(BoxFuture<Response<ClientBody>, Infallible>),
}

impl Future for ClientFuture {
    type Output = Result<Response<ClientBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            ClientFuture::Grpc { inner, call } => {
                let response = match inner.as_mut().poll(cx) {
                    Poll::Ready(Ok(response)) => response,
                    Poll::Ready(Err(never)) => match never {},
                    Poll::Pending => return Poll::Pending,
                };
                let response = match call.take() {
                    Some(call) => call.respond(response).map(ClientBody::Grpc),
                    // Polled again after completion: answer with an empty response
                    // rather than panic.
                    None => response.map(|_| ClientBody::Empty),
                };
                Poll::Ready(Ok(response))
            }
            ClientFuture::Ready(response) => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| Response::new(ClientBody::Empty)))),
            ClientFuture::Http(inner) => inner.as_mut().poll(cx),
        }
    }
}

/// A response body on the client port.
pub enum ClientBody {
    /// A gRPC call's.
    Grpc(GrpcBody),
    /// A unary KV call's from the fast path.
    Unary(UnaryBody),
    /// The axum router's.
    Http(axum::body::Body),
    /// No bytes.
    Empty,
}

impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::Grpc(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ClientBody::Unary(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            ClientBody::Http(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ClientBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Grpc(body) => body.is_end_stream(),
            ClientBody::Unary(body) => body.is_end_stream(),
            ClientBody::Http(body) => body.is_end_stream(),
            ClientBody::Empty => true,
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            ClientBody::Grpc(body) => body.size_hint(),
            ClientBody::Unary(body) => body.size_hint(),
            ClientBody::Http(body) => body.size_hint(),
            ClientBody::Empty => http_body::SizeHint::with_exact(0),
        }
    }
}

/// The hyper settings of a client connection. HTTP/2 responses carry no `date` header:
/// gRPC clients do not read it (etcd's server does not send one), and formatting and
/// HPACK-encoding it was per-call work; HTTP/1.1 responses keep it.
fn connection_builder() -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http2().auto_date_header(false);
    builder
}

/// Accepts connections from `listener` and serves `port` on each (HTTP/1.1 or cleartext
/// HTTP/2), until `shutdown` turns true; then stops accepting, asks every connection to
/// finish gracefully, and returns once they all have.
pub async fn serve_connections<L>(
    mut listener: L,
    port: ClientPort,
    mut shutdown: watch::Receiver<bool>,
) where
    L: axum::serve::Listener,
    L::Io: Unpin,
{
    // Connections hold a receiver each; once all are gone, every connection is done.
    let (stop_tx, stop_rx) = watch::channel(false);
    // A dropped sender means nobody will ask for a shutdown: serve on.
    let stopped = async move {
        if shutdown.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let mut stopped = std::pin::pin!(stopped);
    loop {
        let (io, _addr) = tokio::select! {
            biased;
            () = &mut stopped => break,
            accepted = listener.accept() => accepted,
        };
        let port = port.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let builder = connection_builder();
            let connection = builder.serve_connection(TokioIo::new(io), port);
            let mut connection = std::pin::pin!(connection);
            let mut stopping = false;
            loop {
                tokio::select! {
                    biased;
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::trace!(error = %e, "client connection ended");
                        }
                        break;
                    }
                    _ = stop.wait_for(|s| *s), if !stopping => {
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    stop_tx.closed().await;
}
