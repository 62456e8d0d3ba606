//! Running a member: the node on a disk, the peer transport, and the listeners.
//!
//! [`start`] is the same for the real binary and the simulator: the caller passes the
//! disk (real files, or the simulator's disk) and the seed. Peer URLs serve the
//! `detcdpeerpb.Peer` service; client URLs serve etcd's gRPC services, and in real mode
//! also HTTP (`/health`, `/version`, `/metrics`, the JSON gateway) on the same port.
//! After starting, the member publishes its name and client URLs through Raft.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::mvcc::KvConfig;
use crate::pb::detcdpeerpb::{MemberAttributes, internal_request::Request};
use crate::storage::{Disk, WalOptions};

use super::config::{ClusterState, ServerConfig};
use super::error::ServerError;
use super::identity::Startup;
use super::membership::MemberRecord;
use super::node::{self, NodeConfig, NodeHandle};
use super::transport::Transport;

/// How often watchers that asked for progress notifications get one (etcd's default).
pub const WATCH_PROGRESS_INTERVAL_MS: u64 = 10 * 60 * 1000;
/// Pause between attempts to publish this member's attributes.
pub const PUBLISH_RETRY_MS: u64 = 500;

/// A running member. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    node: NodeHandle,
    shutdown: watch::Sender<bool>,
}

impl Server {
    /// The member's node, for tests and the simulator.
    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    /// Stops accepting connections (the raft loop stops when the last handle goes).
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// The node configuration for a server configuration and the way this start resolved
/// the member's identity (its IDs; when joining, the running cluster's members).
pub fn node_config(config: &ServerConfig, startup: Startup, seed: u64) -> NodeConfig {
    let election_ticks = u32::try_from(config.election_ticks).unwrap_or(u32::MAX);
    let initial_members = startup.joined_members.unwrap_or_else(|| {
        config
            .initial_cluster
            .iter()
            .map(|m| MemberRecord {
                id: m.id,
                name: m.name.clone(),
                peer_urls: m.peer_urls.clone(),
                client_urls: Vec::new(),
                is_learner: false,
            })
            .collect()
    });
    NodeConfig {
        member_id: startup.identity.member_id,
        cluster_id: startup.identity.cluster_id,
        name: config.name.clone(),
        client_urls: config.advertise_client_urls.clone(),
        initial_members,
        join_existing: config.initial_cluster_state == ClusterState::Existing,
        tick_ms: config.heartbeat_interval_ms,
        election_ticks,
        pre_vote: config.pre_vote,
        strict_reconfig_check: config.strict_reconfig_check,
        snapshot_count: config.snapshot_count,
        kv: KvConfig {
            txn_ops_max: config.max_txn_ops as usize,
            lease_ttl_s_min: lease_ttl_s_min(config.heartbeat_interval_ms, election_ticks),
        },
        request_bytes_max: config.max_request_bytes as usize,
        quota_backend_bytes: config.quota_backend_bytes,
        seed,
        wal: wal_options(config),
        watch_progress_interval_ms: WATCH_PROGRESS_INTERVAL_MS,
        #[cfg(madsim)]
        sim_bugs: config.sim_bugs,
        #[cfg(madsim)]
        sim_raft: config.sim_raft,
    }
}

/// The WAL options of a member (the defaults, but for the simulator's segment size).
fn wal_options(_config: &ServerConfig) -> WalOptions {
    #[allow(unused_mut)]
    let mut wal = WalOptions::default();
    #[cfg(madsim)]
    if _config.sim_wal_segment_bytes > 0 {
        wal.segment_bytes = _config.sim_wal_segment_bytes;
        wal.record_bytes_max = wal
            .record_bytes_max
            .min(u32::try_from(wal.segment_bytes / 2).unwrap_or(u32::MAX));
    }
    wal
}

/// etcd's minimum lease TTL: one and a half election timeouts, rounded up to seconds.
pub fn lease_ttl_s_min(tick_ms: u64, election_ticks: u32) -> i64 {
    let ms = tick_ms * u64::from(election_ticks) * 3 / 2;
    i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX)
}

/// Turns a URL such as `http://127.0.0.1:2379` into a socket address (`localhost` is the
/// loopback address; other names are resolved in real mode only).
pub async fn listen_addr(url: &str) -> Result<SocketAddr, ServerError> {
    let bad = |why: &str| ServerError::InvalidArgument(format!("cannot listen on {url:?}: {why}"));
    let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let port = uri.port_u16().ok_or_else(|| bad("no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == "localhost" {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut found = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| bad(&e.to_string()))?;
    found
        .next()
        .ok_or_else(|| bad("the name resolves to no address"))
}

/// Starts a member on `disk`: recovers or bootstraps the node, serves peers and
/// clients, and publishes the member's attributes.
///
/// `seed` must differ between starts of one member: request and lease IDs are drawn
/// from it, and a restarted member that drew its previous life's IDs again could take
/// an old committed entry's result for a new request.
pub async fn start<D: Disk>(
    config: &ServerConfig,
    disk: D,
    seed: u64,
) -> Result<Server, ServerError> {
    let startup = super::identity::resolve(config, &disk).await?;
    let transport = Transport::new(startup.identity.member_id, startup.identity.cluster_id);
    let node_config = node_config(config, startup, seed);
    let node = node::start(node_config, disk, Arc::new(transport.clone())).await?;
    let (shutdown, shutdown_rx) = watch::channel(false);

    for url in &config.listen_peer_urls {
        let addr = listen_addr(url).await?;
        let service = transport.service(Arc::new(node.clone()));
        let mut stop = shutdown_rx.clone();
        // Bound here, so a port that is taken fails the start (as etcd does): bound in
        // the serving task, the failure was only logged and the member ran on, reachable
        // by clients but by no peer, without a leader for good.
        #[cfg(not(madsim))]
        let incoming = tonic::transport::server::TcpIncoming::bind(addr)
            .map_err(|e| ServerError::Internal(format!("cannot listen on {addr}: {e}")))?
            .with_nodelay(Some(true));
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let server = tonic::transport::Server::builder().add_service(service);
            #[cfg(not(madsim))]
            let result = server.serve_with_incoming_shutdown(incoming, stopped).await;
            #[cfg(madsim)]
            let result = server.serve_with_shutdown(addr, stopped).await;
            if let Err(e) = result {
                tracing::error!(%addr, error = %e, "peer listener failed");
            }
        });
    }
    for url in &config.listen_client_urls {
        let addr = listen_addr(url).await?;
        super::listen::serve_clients(addr, node.clone(), config.clone(), shutdown_rx.clone())
            .await?;
    }
    tokio::spawn(publish_attributes(
        node.clone(),
        config.name.clone(),
        config.advertise_client_urls.clone(),
    ));
    Ok(Server { node, shutdown })
}

/// Publishes this member's name and client URLs through Raft, retrying until it works.
async fn publish_attributes(node: NodeHandle, name: String, client_urls: Vec<String>) {
    let attrs = MemberAttributes {
        id: node.member_id(),
        name,
        client_urls,
    };
    loop {
        match node.write(Request::MemberAttributes(attrs.clone())).await {
            Ok(_) => return,
            Err(ServerError::Stopped) => return,
            // The write already waited for a leader: try again after a heartbeat, not
            // the full pause, or a leader elected just after that wait is left without
            // client URLs, and followers cannot forward membership calls to it.
            Err(ServerError::NoLeader) => {
                tracing::debug!("publishing member attributes; no leader yet, trying again");
                tokio::time::sleep(Duration::from_millis(node.config().tick_ms)).await;
            }
            Err(e) => {
                tracing::debug!(error = %e, "publishing member attributes; will retry");
                tokio::time::sleep(Duration::from_millis(PUBLISH_RETRY_MS)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_lease_ttl_is_one_and_a_half_election_timeouts() {
        assert_eq!(lease_ttl_s_min(100, 10), 2); // 1.5 s rounds up
        assert_eq!(lease_ttl_s_min(100, 20), 3);
        assert_eq!(lease_ttl_s_min(10, 10), 1);
    }

    #[tokio::test]
    async fn listen_addresses() {
        assert_eq!(
            listen_addr("http://localhost:2379").await,
            Ok(SocketAddr::from(([127, 0, 0, 1], 2379)))
        );
        assert_eq!(
            listen_addr("http://10.0.0.7:12380").await,
            Ok(SocketAddr::from(([10, 0, 0, 7], 12380)))
        );
        assert!(listen_addr("http://127.0.0.1").await.is_err());
    }
}
