//! A lean gRPC connection for the request/response workloads: one HTTP/2 connection
//! driven by hyper directly, usable as the transport of tonic's generated clients.
//!
//! tonic's `Channel` hands every request to a buffer task that owns the connection, one
//! extra task hop and queue per request; the load generator shares the CPU with the
//! server under test, so that cost counts against every server measured. Here a client
//! task sends straight into hyper's shared HTTP/2 handle. It speaks the same plain gRPC
//! (tonic's codec and headers), so any etcd-compatible endpoint serves it unchanged.
//! Its socket coalesces writes like the server's (requests sent in one scheduler round
//! share a write). It
//! does not reconnect, balance or time out requests: a failed connection fails its
//! requests, and callers bound each call themselves.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use detcd_engine::server::listen::coalesce_io::CoalescingIo;
use http::uri::{Authority, Scheme, Uri};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::body::Body;

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum H2ConnError {
    /// The endpoint is not `host:port` or `http://host:port`.
    #[error("bad endpoint {0}")]
    Endpoint(String),
    /// TCP connect failed.
    #[error("tcp connect: {0}")]
    Tcp(#[from] std::io::Error),
    /// The HTTP/2 handshake failed.
    #[error("http/2 handshake: {0}")]
    Handshake(#[from] hyper::Error),
}

/// One HTTP/2 connection to a gRPC endpoint; clones share it.
#[derive(Clone)]
pub struct H2Conn {
    send: SendRequest<Body>,
    authority: Authority,
}

impl H2Conn {
    /// Connects to `endpoint` (`host:port` or `http://host:port`) with TCP_NODELAY and
    /// spawns the task that drives the connection.
    pub async fn connect(endpoint: &str) -> Result<H2Conn, H2ConnError> {
        let host_port = endpoint.strip_prefix("http://").unwrap_or(endpoint);
        let authority: Authority = host_port
            .parse()
            .map_err(|_| H2ConnError::Endpoint(endpoint.to_string()))?;
        let tcp = tokio::net::TcpStream::connect(host_port).await?;
        tcp.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(CoalescingIo::new(tcp)))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "http/2 connection ended");
            }
        });
        Ok(H2Conn { send, authority })
    }
}

impl tower_service::Service<http::Request<Body>> for H2Conn {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // tonic's clients send the path only; HTTP/2 needs the scheme and authority.
        let mut parts = request.uri().clone().into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
        Box::pin(self.send.send_request(request))
    }
}
