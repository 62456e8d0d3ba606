//! End-to-end bench body: puts through a real detcd cluster of 1 or 3 members started
//! in this process (real tokio, loopback ports, data directories on a chosen disk).
//!
//! Each [`E2eCluster::put_batch`] sends `n` puts at once to the leader over one gRPC
//! connection and waits for every answer, so a batch of 1 times one durable write
//! (gRPC, Raft, WAL fdatasync, apply) and larger batches show group commit.
//! It does not measure followers, reads or failures; `detcd-bench` does that against
//! any endpoint.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use detcd_engine::pb::etcdserverpb::PutRequest;
use detcd_engine::pb::etcdserverpb::kv_client::KvClient;
use detcd_engine::server::config::{self, Command};
use detcd_engine::server::run::{self, Server};
use detcd_engine::storage::FsDisk;
use tonic::transport::Channel;

use crate::bodies::BodyError;
use crate::load;
use crate::ports::free_port;

/// Cluster sizes the end-to-end benches run.
pub const E2E_CLUSTER_SIZES: [usize; 2] = [1, 3];

/// Value size of the end-to-end puts, in bytes.
pub const E2E_VALUE_BYTES: usize = 256;

/// How long a started cluster may take to elect a leader.
pub const E2E_LEADER_TIMEOUT_MS: u64 = 20_000;

/// Keys the puts cycle through.
pub const E2E_KEY_SPACE: u64 = 10_000;

/// A running in-process cluster with a client connected to its leader.
pub struct E2eCluster {
    runtime: tokio::runtime::Runtime,
    servers: Vec<Server>,
    client: KvClient<Channel>,
    leader: String,
    value: Vec<u8>,
    next_key: u64,
}

fn member_args(
    name: &str,
    dir: &Path,
    client: u16,
    peer: u16,
    initial_cluster: &str,
) -> Vec<String> {
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    [
        "detcd",
        "--name",
        name,
        "--data-dir",
        &dir.display().to_string(),
        "--listen-client-urls",
        &client_url,
        "--advertise-client-urls",
        &client_url,
        "--listen-peer-urls",
        &peer_url,
        "--initial-advertise-peer-urls",
        &peer_url,
        "--initial-cluster",
        initial_cluster,
        "--initial-cluster-state",
        "new",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl E2eCluster {
    /// Starts `members` members with their data under `dir` (one subdirectory each) and
    /// connects to the leader once one is elected.
    pub fn start(dir: &Path, members: usize) -> Result<Self, BodyError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let mut ports = Vec::new();
        for _ in 0..members {
            ports.push((free_port()?, free_port()?));
        }
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut servers = Vec::new();
        let mut endpoints = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let data_dir = dir.join(format!("m{i}"));
            std::fs::create_dir_all(&data_dir)?;
            let args = member_args(
                &format!("m{i}"),
                &data_dir,
                *client,
                *peer,
                &initial_cluster,
            );
            let config = match config::parse(args, &BTreeMap::new()) {
                Ok(Command::Serve(config)) => *config,
                Ok(Command::Version) => return Err(BodyError::Check("parsed as --version".into())),
                Err(e) => return Err(BodyError::Check(format!("member config: {e}"))),
            };
            let disk = FsDisk::new(&data_dir)?;
            let server = runtime
                .block_on(run::start(&config, disk, 0x5eed + i as u64))
                .map_err(|e| BodyError::Check(format!("start member {i}: {e}")))?;
            servers.push(server);
            endpoints.push(format!("127.0.0.1:{client}"));
        }
        let (client, leader) = runtime.block_on(async {
            let started = Instant::now();
            loop {
                if let Ok(leader) = load::find_leader(&endpoints).await {
                    let channel = Channel::from_shared(format!("http://{leader}"))
                        .map_err(|e| BodyError::Check(e.to_string()))?
                        .connect()
                        .await
                        .map_err(|e| BodyError::Check(format!("connect {leader}: {e}")))?;
                    return Ok((KvClient::new(channel), leader));
                }
                if started.elapsed() > Duration::from_millis(E2E_LEADER_TIMEOUT_MS) {
                    return Err(BodyError::Check(format!(
                        "no leader among {endpoints:?} within {E2E_LEADER_TIMEOUT_MS} ms"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })?;
        Ok(E2eCluster {
            runtime,
            servers,
            client,
            leader,
            value: vec![b'v'; E2E_VALUE_BYTES],
            next_key: 0,
        })
    }

    /// The leader's client endpoint (`127.0.0.1:PORT`), for other clients; the
    /// cluster's own runtime keeps serving it.
    pub fn leader_endpoint(&self) -> &str {
        &self.leader
    }

    /// Sends `n` puts at once and waits for all of them. Returns the highest revision
    /// the answers carry; an error if any put failed.
    pub fn put_batch(&mut self, n: usize) -> Result<i64, BodyError> {
        let requests: Vec<PutRequest> = (0..n)
            .map(|_| {
                self.next_key = (self.next_key + 1) % E2E_KEY_SPACE;
                PutRequest {
                    key: format!("{:08}", self.next_key).into_bytes(),
                    value: self.value.clone(),
                    ..Default::default()
                }
            })
            .collect();
        let client = self.client.clone();
        self.runtime.block_on(async move {
            let calls = requests.into_iter().map(|req| {
                let mut kv = client.clone();
                tokio::spawn(async move { kv.put(req).await })
            });
            let mut revision = 0;
            for call in calls.collect::<Vec<_>>() {
                let response = call
                    .await
                    .map_err(|e| BodyError::Check(format!("put task: {e}")))?
                    .map_err(|e| BodyError::Check(format!("put: {e}")))?;
                revision = revision.max(response.into_inner().header.map_or(0, |h| h.revision));
            }
            Ok(revision)
        })
    }
}

impl Drop for E2eCluster {
    fn drop(&mut self) {
        for server in &self.servers {
            server.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_and_three_member_clusters_take_puts() {
        for members in E2E_CLUSTER_SIZES {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut c = E2eCluster::start(dir.path(), members).expect("cluster");
            let first = c.put_batch(1).expect("put");
            let second = c.put_batch(8).expect("puts");
            // Each put is one revision: eight more puts move the revision by eight.
            assert_eq!(second, first + 8, "{members} members");
        }
    }
}
