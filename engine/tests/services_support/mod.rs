//! A single-member node started in process for the service tests: a memory disk, a
//! network with no peers, short ticks, and helpers to feed request streams.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use detcd_engine::mvcc::KvConfig;
use detcd_engine::pb::etcdserverpb::{PutRequest, RangeRequest};
use detcd_engine::server::grpc::ResponseStream;
use detcd_engine::server::membership::MemberRecord;
use detcd_engine::server::node::{NoPeers, NodeConfig, NodeHandle, start};
use detcd_engine::storage::{MemDisk, Preallocation, WalOptions};
use tokio::sync::mpsc;
use tonic::Status;
use tonic::codegen::tokio_stream::StreamExt;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

/// The member's ID.
pub const MEMBER_ID: u64 = 1;
/// How long a test waits for something that should happen promptly.
pub const WAIT_MS: u64 = 5_000;

/// The configuration of the test member; `quota_backend_bytes` 0 means the default.
pub fn config(quota_backend_bytes: u64) -> NodeConfig {
    let member = MemberRecord {
        id: MEMBER_ID,
        name: "n1".to_owned(),
        peer_urls: vec!["http://n1:2380".to_owned()],
        client_urls: vec!["http://n1:2379".to_owned()],
        is_learner: false,
    };
    NodeConfig {
        member_id: MEMBER_ID,
        cluster_id: 7,
        name: "n1".to_owned(),
        client_urls: member.client_urls.clone(),
        initial_members: vec![member],
        join_existing: false,
        tick_ms: 10,
        election_ticks: 10,
        pre_vote: true,
        strict_reconfig_check: true,
        snapshot_count: 10_000,
        kv: KvConfig {
            lease_ttl_s_min: 2,
            ..KvConfig::default()
        },
        request_bytes_max: 1_572_864,
        quota_backend_bytes: if quota_backend_bytes == 0 {
            2 << 30
        } else {
            quota_backend_bytes
        },
        seed: 42,
        wal: WalOptions {
            segment_bytes: 64 * 1024,
            record_bytes_max: 16 * 1024,
            preallocation: Preallocation::None,
        },
        watch_progress_interval_ms: 0,
        #[cfg(madsim)]
        sim_bugs: Default::default(),
        #[cfg(madsim)]
        sim_raft: Default::default(),
    }
}

/// Starts the member and waits until it leads.
pub async fn single_node_with(config: NodeConfig) -> NodeHandle {
    let node = start(config, MemDisk::new(), Arc::new(NoPeers))
        .await
        .expect("the node starts");
    tokio::time::timeout(
        Duration::from_millis(WAIT_MS),
        node.wait_status(|s| s.is_leader),
    )
    .await
    .expect("the member elects itself in time");
    node
}

/// Starts the member with default limits and waits until it leads.
pub async fn single_node() -> NodeHandle {
    single_node_with(config(0)).await
}

/// The test's end of a client request stream.
pub type ClientSender<T> = mpsc::Sender<Result<T, Status>>;

/// A request stream the test writes into, as a client would.
pub fn client_stream<T: Send + 'static>() -> (ClientSender<T>, ReceiverStream<Result<T, Status>>) {
    let (tx, rx) = mpsc::channel(16);
    (tx, ReceiverStream::new(rx))
}

/// The next response of a server stream, failing the test if none comes in time.
pub async fn next<T>(stream: &mut ResponseStream<T>) -> T {
    tokio::time::timeout(Duration::from_millis(WAIT_MS), stream.next())
        .await
        .expect("a response in time")
        .expect("the stream is open")
        .expect("a response, not an error")
}

/// A put request.
pub fn put(key: &str, value: &str, lease: i64) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        lease,
        ..PutRequest::default()
    }
}

/// The value of `key` in the member's applied state.
pub fn get(node: &NodeHandle, key: &str) -> Option<Vec<u8>> {
    node.with_kv(|kv| {
        kv.range(&RangeRequest {
            key: key.as_bytes().to_vec(),
            ..RangeRequest::default()
        })
        .expect("range")
        .kvs
        .first()
        .map(|kv| kv.value.clone())
    })
}
