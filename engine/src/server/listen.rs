//! The client listener: etcd's gRPC services on one address.
//!
//! In real mode HTTP (`/health`, `/version`, `/metrics`, the JSON gateway) shares the
//! port, served with HTTP/1.1 and cleartext HTTP/2 on the same socket: gRPC calls go
//! straight to their tonic service, the rest to the HTTP router ([`client_port`]).
//! Under the simulator only gRPC runs (madsim-tonic carries gRPC alone).

#[cfg(not(madsim))]
pub mod client_port;
#[cfg(not(madsim))]
pub mod coalesce_io;
#[cfg(not(madsim))]
pub mod unary_kv;

use std::net::SocketAddr;

use tokio::sync::watch;

use crate::pb::etcdserverpb::cluster_server::ClusterServer;
use crate::pb::etcdserverpb::kv_server::KvServer;
use crate::pb::etcdserverpb::lease_server::LeaseServer;
use crate::pb::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::pb::etcdserverpb::watch_server::WatchServer;
use crate::pb::health::health_server::HealthServer;
use crate::pb::v3electionpb::election_server::ElectionServer;
use crate::pb::v3lockpb::lock_server::LockServer;

use super::config::ServerConfig;
use super::error::ServerError;
use super::grpc::cluster::ClusterService;
use super::grpc::election::ElectionService;
use super::grpc::health::HealthService;
use super::grpc::kv::KvService;
use super::grpc::lease::LeaseService;
use super::grpc::lock::LockService;
use super::grpc::maintenance::MaintenanceService;
use super::grpc::watch::WatchService;
use super::node::NodeHandle;

/// Slack over `--max-request-bytes` for the gRPC layer, so the server itself can answer
/// an oversize request with etcd's "request is too large" instead of a transport error.
pub const GRPC_OVERHEAD_BYTES: usize = 64 * 1024;

/// Adds the client-facing gRPC services of a member, each with its message size limit, to
/// `$start` ([`client_port::GrpcServices`] or the simulator's server builder: both have
/// `add_service`). The one list serves both listeners.
macro_rules! with_client_services {
    ($start:expr, $node:expr, $token:expr, $limit:expr) => {
        $start
            .add_service(
                KvServer::new(KvService::new($node.clone())).max_decoding_message_size($limit),
            )
            .add_service(
                WatchServer::new(WatchService::new($node.clone()))
                    .max_decoding_message_size($limit),
            )
            .add_service(
                LeaseServer::new(LeaseService::new($node.clone()))
                    .max_decoding_message_size($limit),
            )
            .add_service(
                ClusterServer::new(ClusterService::new($node.clone(), $token, unix_time_s))
                    .max_decoding_message_size($limit),
            )
            .add_service(
                MaintenanceServer::new(MaintenanceService::new($node.clone()))
                    .max_decoding_message_size($limit),
            )
            .add_service(
                LockServer::new(LockService::new($node.clone())).max_decoding_message_size($limit),
            )
            .add_service(
                ElectionServer::new(ElectionService::new($node.clone()))
                    .max_decoding_message_size($limit),
            )
            .add_service(HealthServer::new(HealthService::new($node.clone())))
    };
}

/// Seconds since the Unix epoch, for new member IDs (etcd mixes the time in).
#[cfg(not(madsim))]
fn unix_time_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A fixed time under the simulator, so member IDs are the same in every run.
#[cfg(madsim)]
fn unix_time_s() -> i64 {
    1_700_000_000
}

/// Serves clients on `addr` until `shutdown` turns true. Returns once the listener is
/// bound (real mode) or its task is started (simulator).
pub async fn serve_clients(
    addr: SocketAddr,
    node: NodeHandle,
    config: ServerConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let limit = config.max_request_bytes as usize + GRPC_OVERHEAD_BYTES;
    serve(addr, node, config.initial_cluster_token, limit, shutdown).await
}

#[cfg(not(madsim))]
async fn serve(
    addr: SocketAddr,
    node: NodeHandle,
    token: String,
    limit: usize,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let cluster = ClusterService::new(node.clone(), token.clone(), unix_time_s);
    let fast =
        client_port::GrpcServices::default().with_unary_kv(KvService::new(node.clone()), limit);
    let grpc = with_client_services!(fast, node, token, limit);
    let http = super::http::client_router(node.clone(), cluster);
    let port = client_port::ClientPort::new(grpc, http, node);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServerError::Internal(format!("cannot listen on {addr}: {e}")))?;
    // Without TCP_NODELAY a small response waits for the client's delayed ACK (~40 ms)
    // whenever the previous segment is still unacknowledged (Nagle).
    let listener = CoalescingListener(axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a client connection");
        }
    }));
    tokio::spawn(client_port::serve_connections(listener, port, shutdown));
    Ok(())
}

/// A listener whose connections coalesce their writes ([`coalesce_io`]).
#[cfg(not(madsim))]
struct CoalescingListener<L>(L);

#[cfg(not(madsim))]
impl<L: axum::serve::Listener> axum::serve::Listener for CoalescingListener<L> {
    type Io = coalesce_io::CoalescingIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.0.accept().await;
        (coalesce_io::CoalescingIo::new(io), addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

#[cfg(madsim)]
async fn serve(
    addr: SocketAddr,
    node: NodeHandle,
    token: String,
    limit: usize,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let router = with_client_services!(tonic::transport::Server::builder(), node, token, limit);
    tokio::spawn(async move {
        let result = router
            .serve_with_shutdown(addr, async move {
                let _ = shutdown.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(%addr, error = %e, "client listener failed");
        }
    });
    Ok(())
}
