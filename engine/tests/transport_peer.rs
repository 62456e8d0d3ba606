//! The peer transport on real tokio and loopback ports: ordered delivery between three
//! members, reconnection after a peer restarts, forwarding with errors carried back,
//! large snapshots, and bounded queues. (Under the simulator gRPC carries no bytes, so
//! encoding and size limits are only tested here.)

#![cfg(not(madsim))]

mod transport_util;

use std::collections::BTreeMap;
use std::time::Duration;

use detcd_engine::mvcc::MvccError;
use detcd_engine::pb::detcdpeerpb::peer_client::PeerClient;
use detcd_engine::pb::detcdpeerpb::{InternalRequest, RaftBatch};
use detcd_engine::pb::etcdserverpb::{LeaseKeepAliveRequest, LeaseTimeToLiveRequest};
use detcd_engine::raft::{Message, MessageKind, Snapshot};
use detcd_engine::server::error::ServerError;
use detcd_engine::server::transport::{
    PEER_QUEUE_MESSAGES_MAX, PeerFailure, Transport, TransportStats,
};
use transport_util::{
    PeerServerProcess, StubNode, WAIT_MS_MAX, append, dead_addr, receive_messages,
};

const CLUSTER_ID: u64 = 0xc1;

fn any_port() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

/// A free loopback port below Linux's ephemeral range (32768 and up by default), for a
/// server that restarts on the same port: while it is down the sender keeps dialing
/// it, and a dial to a free port inside the ephemeral range can take that very port as
/// its own source port (a TCP self-connect) and hold it, so the restart could not bind.
fn restartable_port() -> std::net::SocketAddr {
    const FIRST_PORT: u16 = 20_000;
    const PORTS: u16 = 12_000;
    let start = (std::process::id() % u32::from(PORTS)) as u16;
    (0..PORTS)
        .map(|i| FIRST_PORT + (start + i) % PORTS)
        .map(|port| std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .find(|addr| std::net::TcpListener::bind(addr).is_ok())
        .expect("a free port below the ephemeral range")
}

fn peers(entries: &[(u64, String)]) -> BTreeMap<u64, Vec<String>> {
    entries
        .iter()
        .map(|(id, url)| (*id, vec![url.clone()]))
        .collect()
}

/// Polls `take_failures` until `wanted` shows up.
async fn wait_for_failure(transport: &Transport, wanted: PeerFailure) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while tokio::time::Instant::now() < deadline {
        if transport.take_failures().contains(&wanted) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_exchange_messages_in_order() {
    let transports: Vec<Transport> = (1..=3).map(|id| Transport::new(id, CLUSTER_ID)).collect();
    let mut servers = Vec::new();
    let mut receivers = Vec::new();
    for transport in &transports {
        let (node, receiver) = StubNode::new();
        servers.push(PeerServerProcess::start(transport, node, any_port()));
        receivers.push(receiver);
    }
    let all = peers(&[
        (1, servers[0].url()),
        (2, servers[1].url()),
        (3, servers[2].url()),
    ]);
    for transport in &transports {
        transport.set_peers(all.clone());
    }
    let count = 2000u64;
    for index in 0..count {
        transports[0].send(vec![append(1, 2, index), append(1, 3, index)]);
        if index.is_multiple_of(100) {
            tokio::task::yield_now().await;
        }
    }
    transports[2].send(vec![append(3, 1, 7)]);
    for member in [2u64, 3] {
        let receiver = &mut receivers[member as usize - 1];
        let got = receive_messages(receiver, count as usize).await;
        assert_eq!(got.len(), count as usize, "member {member} got everything");
        for (expected, (from, message)) in got.iter().enumerate() {
            assert_eq!(*from, 1);
            assert_eq!(message.to, member);
            assert_eq!(message.index, expected as u64, "in order");
        }
    }
    let got = receive_messages(&mut receivers[0], 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0, got[0].1.index), (3, 7));
    assert_eq!(transports[0].stats(), TransportStats::default());
    assert!(transports[0].take_failures().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_reconnected() {
    let sender = Transport::new(1, CLUSTER_ID);
    let receiver_transport = Transport::new(2, CLUSTER_ID);
    let (node, mut received) = StubNode::new();
    let server = PeerServerProcess::start(&receiver_transport, node, restartable_port());
    let addr = server.addr;
    sender.set_peers(peers(&[(2, server.url())]));
    sender.send(vec![append(1, 2, 1)]);
    assert_eq!(receive_messages(&mut received, 1).await.len(), 1);

    server.kill();
    sender.send(vec![append(1, 2, 2)]);
    assert!(wait_for_failure(&sender, PeerFailure::Unreachable(2)).await);

    let (node, mut received) = StubNode::new();
    let _server = PeerServerProcess::start(&receiver_transport, node, addr);
    // Raft keeps sending; a later message gets through once the link is back.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    let mut arrived = None;
    let mut index = 100;
    while arrived.is_none() && tokio::time::Instant::now() < deadline {
        sender.send(vec![append(1, 2, index)]);
        index += 1;
        if let Ok(Some((_, messages))) =
            tokio::time::timeout(Duration::from_millis(50), received.recv()).await
        {
            arrived = messages.first().map(|m| m.index);
        }
    }
    assert!(arrived.is_some_and(|i| i >= 100), "got {arrived:?}");
}

/// Member 1 (the stranger) knows member 2; member 2's list names only itself, because
/// it is behind on membership changes.
struct Stranger {
    stranger: Transport,
    behind: Transport,
    behind_node: std::sync::Arc<StubNode>,
    /// What member 1's node receives.
    stranger_received: tokio::sync::mpsc::UnboundedReceiver<(u64, Vec<Message>)>,
    stranger_url: String,
    _servers: Vec<PeerServerProcess>,
}

/// Member 1 reaches member 2 once; member 2 counts the members in `removed` as removed.
async fn a_stranger_reaches_member_2(removed: &[u64]) -> Stranger {
    let stranger = Transport::new(1, CLUSTER_ID);
    let behind = Transport::new(2, CLUSTER_ID);
    let (stranger_node, stranger_received) = StubNode::new();
    let (behind_node, mut behind_received) = StubNode::new();
    behind_node.removed.lock().expect("lock").extend(removed);
    let stranger_server = PeerServerProcess::start(&stranger, stranger_node, any_port());
    let behind_server =
        PeerServerProcess::start(&behind, std::sync::Arc::clone(&behind_node), any_port());
    stranger.set_peers(peers(&[
        (1, stranger_server.url()),
        (2, behind_server.url()),
    ]));
    behind.set_peers(peers(&[(2, behind_server.url())]));
    stranger.send(vec![append(1, 2, 1)]);
    assert_eq!(receive_messages(&mut behind_received, 1).await.len(), 1);
    Stranger {
        stranger,
        behind,
        behind_node,
        stranger_received,
        stranger_url: stranger_server.url(),
        _servers: vec![stranger_server, behind_server],
    }
}

/// Member 1 keeps sending until member 2's link to it is `linked` (or the wait runs out).
async fn talk_until_linked(s: &Stranger, linked: bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    let mut index = 10;
    while s.behind.is_linked(1) != linked && tokio::time::Instant::now() < deadline {
        s.stranger.send(vec![append(1, 2, index)]);
        index += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.behind.is_linked(1) == linked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_behind_on_membership_answers_a_stranger_that_reached_it() {
    let mut s = a_stranger_reaches_member_2(&[]).await;
    assert!(s.behind.is_linked(1), "member 2 linked back to member 1");
    s.behind.send(vec![append(2, 1, 9)]);
    let got = receive_messages(&mut s.stranger_received, 1).await;
    assert_eq!(got.len(), 1, "the answer reached member 1");
    assert_eq!((got[0].0, got[0].1.index), (2, 9));
    assert_eq!(s.behind.stats().dropped_unknown_peer, 0);
    // A member list that still does not name member 1 keeps the link.
    s.behind.set_peers(BTreeMap::new());
    assert!(s.behind.is_linked(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_dropped_by_an_older_member_list_is_linked_back_when_it_talks_again() {
    let mut s = a_stranger_reaches_member_2(&[]).await;
    // Member 2 catches up: its list names member 1, an ordinary peer now.
    s.behind.set_peers(peers(&[(1, s.stranger_url.clone())]));
    assert!(s.behind.is_linked(1));
    // A snapshot brings a member list from before member 1 joined.
    s.behind.set_peers(BTreeMap::new());
    assert!(
        !s.behind.is_linked(1),
        "an ordinary peer the list drops is unlinked"
    );
    assert!(
        talk_until_linked(&s, true).await,
        "member 1 talking again is linked back"
    );
    s.behind.send(vec![append(2, 1, 99)]);
    let got = receive_messages(&mut s.stranger_received, 1).await;
    assert_eq!(got.len(), 1, "the answer reached member 1");
    assert_eq!(got[0].1.index, 99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_linked_back_is_unlinked_once_known_removed() {
    let s = a_stranger_reaches_member_2(&[]).await;
    assert!(s.behind.is_linked(1));
    // Member 2 learns that member 1 was removed; its list changes; member 1 talks again.
    s.behind_node.removed.lock().expect("lock").push(1);
    s.behind.set_peers(BTreeMap::new());
    assert!(
        talk_until_linked(&s, false).await,
        "a removed member is unlinked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_is_not_linked_back() {
    let s = a_stranger_reaches_member_2(&[1]).await;
    assert!(!s.behind.is_linked(1));
    s.behind.send(vec![append(2, 1, 9)]);
    assert_eq!(s.behind.stats().dropped_unknown_peer, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_requests_round_trip_with_errors() {
    let follower = Transport::new(1, CLUSTER_ID);
    let leader = Transport::new(2, CLUSTER_ID);
    let (node, _received) = StubNode::new();
    let server = PeerServerProcess::start(&leader, node.clone(), any_port());
    follower.set_peers(peers(&[
        (2, server.url()),
        (3, format!("http://{}", dead_addr())),
    ]));

    let request = |id| InternalRequest { id, request: None };
    assert_eq!(follower.propose(2, request(10)).await, Ok(()));
    assert_eq!(
        follower.propose(2, request(11)).await,
        Err(ServerError::NoSpace)
    );
    assert_eq!(*node.proposals.lock().expect("lock"), vec![10, 11]);
    assert_eq!(follower.read_index(2).await, Ok(42));

    let alive = follower
        .lease_keep_alive(2, LeaseKeepAliveRequest { id: 5 })
        .await
        .expect("keep-alive");
    assert_eq!((alive.id, alive.ttl), (5, 7));
    let unknown = follower
        .lease_keep_alive(2, LeaseKeepAliveRequest { id: 0 })
        .await;
    assert_eq!(unknown, Err(ServerError::Mvcc(MvccError::LeaseNotFound)));
    let ttl = follower
        .lease_time_to_live(2, LeaseTimeToLiveRequest { id: 5, keys: false })
        .await;
    assert_eq!(ttl, Err(ServerError::Timeout));

    // Not a peer: nobody to forward to. A dead peer: a read is "no leader", a
    // proposal's outcome is unknown.
    assert_eq!(follower.read_index(9).await, Err(ServerError::NoLeader));
    assert_eq!(follower.read_index(3).await, Err(ServerError::NoLeader));
    assert_eq!(
        follower.propose(3, request(12)).await,
        Err(ServerError::Timeout)
    );
}

/// Many forwarded requests in flight at once share one stream; each caller gets its
/// own request's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_forwarded_requests_each_get_their_own_answer() {
    let follower = Transport::new(1, CLUSTER_ID);
    let leader = Transport::new(2, CLUSTER_ID);
    let (node, _received) = StubNode::new();
    let server = PeerServerProcess::start(&leader, node.clone(), any_port());
    follower.set_peers(peers(&[(2, server.url())]));

    let calls = (100..164u64).map(|id| {
        let follower = follower.clone();
        async move {
            let request = InternalRequest { id, request: None };
            (id, follower.propose(2, request).await)
        }
    });
    let reads = (0..16).map(|_| follower.read_index(2));
    let (answers, indexes) = tokio::join!(
        futures_util::future::join_all(calls),
        futures_util::future::join_all(reads)
    );
    for (id, answer) in answers {
        // The stub accepts even ids and refuses odd ones.
        let expected = if id % 2 == 0 {
            Ok(())
        } else {
            Err(ServerError::NoSpace)
        };
        assert_eq!(answer, expected, "proposal {id}");
    }
    assert!(indexes.iter().all(|i| *i == Ok(42)), "{indexes:?}");
    let mut proposed = node.proposals.lock().expect("lock").clone();
    proposed.sort_unstable();
    assert_eq!(proposed, (100..164).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_snapshot_arrives_and_an_undeliverable_one_is_reported() {
    let sender = Transport::new(1, CLUSTER_ID);
    let receiver_transport = Transport::new(2, CLUSTER_ID);
    let (node, mut received) = StubNode::new();
    let server = PeerServerProcess::start(&receiver_transport, node, any_port());
    sender.set_peers(peers(&[
        (2, server.url()),
        (3, format!("http://{}", dead_addr())),
    ]));

    let snapshot_bytes = 24 * 1024 * 1024;
    let mut message = Message::new(MessageKind::Snapshot, 1, 2, 3);
    let mut snapshot = Snapshot::default();
    snapshot.meta.index = 99;
    snapshot.data = (0..snapshot_bytes).map(|i| (i % 251) as u8).collect();
    message.snapshot = Some(Box::new(snapshot.clone()));
    let mut lost = message.clone();
    lost.to = 3;
    sender.send(vec![message, lost]);

    let got = receive_messages(&mut received, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.snapshot.as_deref(), Some(&snapshot));
    assert!(wait_for_failure(&sender, PeerFailure::SnapshotFailed(3)).await);
    assert!(
        !sender
            .take_failures()
            .contains(&PeerFailure::SnapshotFailed(2))
    );
    // The node's view: only snapshot failures, each once.
    let mut again = Message::new(MessageKind::Snapshot, 1, 3, 3);
    again.snapshot = Some(Box::default());
    sender.send(vec![again]);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    let mut failed = Vec::new();
    while failed.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        failed = snapshot_failures(&sender);
    }
    assert_eq!(failed, vec![3]);
    assert!(snapshot_failures(&sender).is_empty());
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_blocking() {
    // Current-thread runtime: the link task cannot run while `send` loops, so exactly
    // the queue's capacity is kept.
    let sender = Transport::new(1, CLUSTER_ID);
    sender.set_peers(peers(&[(2, format!("http://{}", dead_addr()))]));
    let extra = 1000u64;
    let total = PEER_QUEUE_MESSAGES_MAX as u64 + extra;
    sender.send((0..total).map(|i| append(1, 2, i)).collect());
    sender.send(vec![append(1, 9, 0)]);
    let stats = sender.stats();
    assert_eq!(stats.dropped_queue_full, extra);
    assert_eq!(stats.dropped_unknown_peer, 1);
    // The peer is dead: the queued messages are dropped as unreachable, and reported.
    assert!(wait_for_failure(&sender, PeerFailure::Unreachable(2)).await);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while sender.stats().dropped_unreachable < PEER_QUEUE_MESSAGES_MAX as u64
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        sender.stats().dropped_unreachable,
        PEER_QUEUE_MESSAGES_MAX as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cluster_is_refused_and_bad_batches_are_dropped() {
    let receiver_transport = Transport::new(2, CLUSTER_ID);
    let (node, mut received) = StubNode::new();
    let server = PeerServerProcess::start(&receiver_transport, node, any_port());

    // A member of another cluster: its stream is refused, it sees the peer as down.
    let stranger = Transport::new(1, CLUSTER_ID + 1);
    stranger.set_peers(peers(&[(2, server.url())]));
    stranger.send(vec![append(1, 2, 1)]);
    assert!(wait_for_failure(&stranger, PeerFailure::Unreachable(2)).await);

    // Garbage bytes and a misaddressed message are dropped; the stream goes on.
    let mut client = PeerClient::connect(server.url()).await.expect("connect");
    let encode = |m: &Message| postcard::to_allocvec(m).expect("encode");
    let batch = |messages: Vec<Vec<u8>>, ack_requested| RaftBatch {
        cluster_id: CLUSTER_ID,
        from: 1,
        to: 2,
        messages,
        ack_requested,
        from_peer_urls: Vec::new(),
    };
    let batches = vec![
        batch(
            vec![encode(&append(1, 2, 5)), vec![0xff, 0xff, 0xff]],
            false,
        ),
        batch(
            vec![encode(&append(4, 2, 6)), encode(&append(1, 2, 7))],
            true,
        ),
    ];
    let mut acks = client
        .raft(futures_util::stream::iter(batches))
        .await
        .expect("stream accepted")
        .into_inner();
    // Only the batch that asked is answered, counting both.
    let ack = acks.message().await.expect("stream ok").expect("an ack");
    assert_eq!(ack.batches_received, 2);
    let got = receive_messages(&mut received, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.index, 7);
    assert_eq!(receiver_transport.stats().dropped_inbound_invalid, 3);
}

/// The snapshot failures among the transport's reported failures.
fn snapshot_failures(transport: &Transport) -> Vec<u64> {
    transport
        .take_failures()
        .into_iter()
        .filter_map(|f| match f {
            PeerFailure::SnapshotFailed(peer) => Some(peer),
            PeerFailure::Unreachable(_) => None,
        })
        .collect()
}
