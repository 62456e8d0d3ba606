//! The client listener: etcd's gRPC services on one address.
//!
//! In real mode, HTTP (`/health`, `/version`, `/metrics`, the JSON gateway) shares the
//! port once the HTTP module provides its router; under the simulator only gRPC runs
//! (madsim-tonic carries gRPC alone).

use std::net::SocketAddr;

use tokio::sync::watch;

use crate::pb::etcdserverpb::kv_server::KvServer;

use super::config::ServerConfig;
use super::error::ServerError;
use super::grpc::kv::KvService;
use super::node::NodeHandle;

/// Serves clients on `addr` until `shutdown` turns true. Returns once the listener task
/// is started.
pub async fn serve_clients(
    addr: SocketAddr,
    node: NodeHandle,
    config: ServerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let request_bytes_max = config.max_request_bytes as usize + GRPC_OVERHEAD_BYTES;
    let kv =
        KvServer::new(KvService::new(node.clone())).max_decoding_message_size(request_bytes_max);
    let router = tonic::transport::Server::builder().add_service(kv);
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

/// Slack over `--max-request-bytes` for the gRPC layer, so the server itself can answer
/// an oversize request with etcd's "request is too large" instead of a transport error.
pub const GRPC_OVERHEAD_BYTES: usize = 64 * 1024;
