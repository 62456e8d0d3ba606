//! The peer transport inside the simulator: messages arrive in order between two
//! simulated nodes, a killed receiver is reported unreachable within the ack
//! watchdog's bound (the simulator has no HTTP/2 keep-alive), and the link comes back
//! after the receiver restarts.
//! Run with `RUSTFLAGS="--cfg madsim" cargo test -p detcd-engine --test transport_sim`.

#![cfg(madsim)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd_engine::pb::detcdpeerpb::InternalRequest;
use detcd_engine::pb::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use detcd_engine::raft::{Message, MessageKind};
use detcd_engine::server::error::ServerError;
use detcd_engine::server::transport::{
    BoxFuture, PeerFailure, PeerHandler, RAFT_ACK_INTERVAL_MS, RAFT_ACK_TIMEOUT_MS, Transport,
};

const CLUSTER_ID: u64 = 7;
const RECEIVER_ADDR: &str = "10.0.0.2:2380";

/// Records the indexes of stepped messages; refuses forwarded work.
struct Recorder {
    indexes: Arc<Mutex<Vec<u64>>>,
}

impl PeerHandler for Recorder {
    fn step(&self, _from: u64, messages: Vec<Message>) {
        let mut indexes = self.indexes.lock().expect("lock");
        indexes.extend(messages.iter().map(|m| m.index));
    }
    fn propose(&self, _request: InternalRequest) -> BoxFuture<'static, Result<(), ServerError>> {
        Box::pin(async { Err(ServerError::NotLeader) })
    }
    fn read_index(&self) -> BoxFuture<'static, Result<u64, ServerError>> {
        Box::pin(async { Ok(3) })
    }
    fn lease_keep_alive(
        &self,
        _request: LeaseKeepAliveRequest,
    ) -> BoxFuture<'static, Result<LeaseKeepAliveResponse, ServerError>> {
        Box::pin(async { Err(ServerError::NotLeader) })
    }
    fn lease_time_to_live(
        &self,
        _request: LeaseTimeToLiveRequest,
    ) -> BoxFuture<'static, Result<LeaseTimeToLiveResponse, ServerError>> {
        Box::pin(async { Err(ServerError::NotLeader) })
    }
    fn is_removed(&self, _member: u64) -> bool {
        false
    }

    fn members(&self) -> detcd_engine::pb::detcdpeerpb::MembersResponse {
        detcd_engine::pb::detcdpeerpb::MembersResponse::default()
    }
}

fn append(index: u64) -> Message {
    let mut message = Message::new(MessageKind::Append, 1, 2, 1);
    message.index = index;
    message
}

/// Polls (`POLL_MS` apart) for the killed peer to be reported unreachable.
const UNREACHABLE_WITHIN_POLLS: u32 = 100;
/// Time between polls for the failure report.
const POLL_MS: u64 = 100;

#[madsim::test]
async fn messages_flow_and_the_link_survives_a_restart() {
    let handle = madsim::runtime::Handle::current();
    let indexes = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&indexes);
    let receiver = handle
        .create_node()
        .name("receiver")
        .ip("10.0.0.2".parse().expect("ip"))
        .init(move || {
            let indexes = Arc::clone(&recorded);
            async move {
                let transport = Transport::new(2, CLUSTER_ID);
                let service = transport.service(Arc::new(Recorder { indexes }));
                let addr: SocketAddr = RECEIVER_ADDR.parse().expect("addr");
                let _ = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve(addr)
                    .await;
            }
        })
        .build();
    let sender = handle
        .create_node()
        .name("sender")
        .ip("10.0.0.1".parse().expect("ip"))
        .build();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let transport = sender
        .spawn(async move {
            let transport = Transport::new(1, CLUSTER_ID);
            let peers = BTreeMap::from([(2, vec![format!("http://{RECEIVER_ADDR}")])]);
            transport.set_peers(peers);
            transport.send((0..100).map(append).collect());
            assert_eq!(transport.read_index(2).await, Ok(3));
            assert_eq!(
                transport.propose(2, InternalRequest::default()).await,
                Err(ServerError::NotLeader)
            );
            transport
        })
        .await
        .expect("sender task");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(*indexes.lock().expect("lock"), (0..100).collect::<Vec<_>>());

    handle.kill(receiver.id());
    let sending = transport.clone();
    sender
        .spawn(async move { sending.send(vec![append(100)]) })
        .await
        .expect("send");
    // The dead peer is reported once the link notices (a connection error, or the
    // stream's ack watchdog), within the watchdog's bound.
    let killed_at = tokio::time::Instant::now();
    let mut failures = Vec::new();
    for _ in 0..UNREACHABLE_WITHIN_POLLS {
        failures.extend(transport.take_failures());
        if failures.contains(&PeerFailure::Unreachable(2)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    assert!(
        failures.contains(&PeerFailure::Unreachable(2)),
        "{failures:?}"
    );
    let noticed_ms = killed_at.elapsed().as_millis();
    let bound_ms = u128::from(RAFT_ACK_INTERVAL_MS + RAFT_ACK_TIMEOUT_MS + POLL_MS);
    assert!(noticed_ms <= bound_ms, "noticed after {noticed_ms} ms");

    handle.restart(receiver.id());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sending = transport.clone();
    let indexes_seen = Arc::clone(&indexes);
    sender
        .spawn(async move {
            for index in 200..260 {
                sending.send(vec![append(index)]);
                tokio::time::sleep(Duration::from_millis(100)).await;
                if indexes_seen.lock().expect("lock").iter().any(|i| *i >= 200) {
                    return;
                }
            }
        })
        .await
        .expect("resend");
    let seen = indexes.lock().expect("lock").clone();
    assert!(
        seen.iter().any(|i| *i >= 200),
        "nothing arrived after the restart: {seen:?}"
    );
}
