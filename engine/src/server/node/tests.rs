//! Nodes wired together in one process: elections, forwarding, linearizable reads,
//! leases, restarts from disk, and catching up through a snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use super::*;
use crate::pb::detcdpeerpb::internal_request::Request;
use crate::pb::etcdserverpb::{LeaseGrantRequest, PutRequest, RangeRequest};
use crate::storage::{MemDisk, Preallocation};

/// An in-process network: every node's handle by ID, and which links are cut.
#[derive(Default)]
struct Router {
    nodes: BTreeMap<u64, NodeHandle>,
    cut: BTreeSet<(u64, u64)>,
}

struct LocalNetwork {
    me: u64,
    router: Arc<Mutex<Router>>,
}

impl LocalNetwork {
    fn peer(&self, to: u64) -> Result<NodeHandle, ServerError> {
        let router = lock(&self.router);
        if router.cut.contains(&(self.me, to)) {
            return Err(ServerError::NoLeader);
        }
        router.nodes.get(&to).cloned().ok_or(ServerError::NoLeader)
    }
}

impl PeerNetwork for LocalNetwork {
    fn send(&self, messages: Vec<Message>) {
        let mut by_peer: BTreeMap<u64, Vec<Message>> = BTreeMap::new();
        for m in messages {
            by_peer.entry(m.to).or_default().push(m);
        }
        for (to, batch) in by_peer {
            if let Ok(node) = self.peer(to) {
                node.step(batch);
            }
        }
    }
    fn set_peers(&self, _peers: BTreeMap<u64, Vec<String>>) {}
    fn take_failures(&self) -> Vec<crate::server::transport::PeerFailure> {
        Vec::new()
    }
    fn propose(&self, to: u64, req: InternalRequest) -> BoxFuture<Result<(), ServerError>> {
        let peer = self.peer(to);
        Box::pin(async move { peer?.propose_local(req).await })
    }
    fn read_index(&self, to: u64) -> BoxFuture<Result<u64, ServerError>> {
        let peer = self.peer(to);
        Box::pin(async move { peer?.read_index_local().await })
    }
    fn lease_keep_alive(
        &self,
        to: u64,
        req: LeaseKeepAliveRequest,
    ) -> BoxFuture<Result<LeaseKeepAliveResponse, ServerError>> {
        let peer = self.peer(to);
        Box::pin(async move { peer?.lease_keep_alive_local(&req) })
    }
    fn lease_time_to_live(
        &self,
        to: u64,
        req: LeaseTimeToLiveRequest,
    ) -> BoxFuture<Result<LeaseTimeToLiveResponse, ServerError>> {
        let peer = self.peer(to);
        Box::pin(async move { peer?.lease_time_to_live_local(&req) })
    }
}

struct Cluster {
    router: Arc<Mutex<Router>>,
    disks: BTreeMap<u64, MemDisk>,
    members: Vec<MemberRecord>,
}

fn config(id: u64, members: &[MemberRecord], snapshot_count: u64) -> NodeConfig {
    NodeConfig {
        member_id: id,
        cluster_id: 7,
        name: format!("n{id}"),
        client_urls: vec![format!("http://n{id}:2379")],
        initial_members: members.to_vec(),
        join_existing: false,
        tick_ms: 10,
        election_ticks: 10,
        pre_vote: true,
        strict_reconfig_check: true,
        snapshot_count,
        kv: KvConfig::default(),
        request_bytes_max: 1_572_864,
        quota_backend_bytes: 2 << 30,
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

impl Cluster {
    async fn start(n: u64, snapshot_count: u64) -> Cluster {
        let members: Vec<MemberRecord> = (1..=n)
            .map(|id| MemberRecord {
                id,
                name: format!("n{id}"),
                peer_urls: vec![format!("http://n{id}:2380")],
                ..MemberRecord::default()
            })
            .collect();
        let mut cluster = Cluster {
            router: Arc::default(),
            disks: BTreeMap::new(),
            members,
        };
        for id in 1..=n {
            cluster.disks.insert(id, MemDisk::new());
            cluster.boot(id, snapshot_count).await;
        }
        cluster
    }

    async fn boot(&mut self, id: u64, snapshot_count: u64) {
        let network = Arc::new(LocalNetwork {
            me: id,
            router: Arc::clone(&self.router),
        });
        let handle = start(
            config(id, &self.members, snapshot_count),
            self.disks[&id].clone(),
            network,
        )
        .await
        .expect("node starts");
        lock(&self.router).nodes.insert(id, handle);
    }

    fn node(&self, id: u64) -> NodeHandle {
        lock(&self.router).nodes[&id].clone()
    }

    /// Cuts (or restores) every link between `id` and the others, both ways.
    fn isolate(&self, id: u64, cut: bool) {
        let mut router = lock(&self.router);
        let others: Vec<u64> = router.nodes.keys().copied().filter(|&o| o != id).collect();
        for o in others {
            for link in [(id, o), (o, id)] {
                if cut {
                    router.cut.insert(link);
                } else {
                    router.cut.remove(&link);
                }
            }
        }
    }

    async fn leader(&self, among: &[u64]) -> u64 {
        for _ in 0..500 {
            for &id in among {
                let status = self.node(id).status();
                if status.is_leader {
                    return id;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no leader elected among {among:?}");
    }
}

fn put(key: &str, value: &str) -> Request {
    Request::Put(PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..PutRequest::default()
    })
}

fn get(node: &NodeHandle, key: &str) -> Option<Vec<u8>> {
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

#[tokio::test]
async fn a_single_node_writes_reads_and_recovers_from_its_disk() {
    let mut cluster = Cluster::start(1, 1000).await;
    let node = cluster.node(1);
    cluster.leader(&[1]).await;
    for i in 0..20 {
        let applied = node
            .write(put(&format!("k{i}"), &format!("v{i}")))
            .await
            .expect("write");
        let Applied::Put(response) = applied else {
            panic!("a put answers with a put response")
        };
        assert_eq!(response.header.map(|h| h.revision), Some(i + 2));
    }
    node.read_barrier().await.expect("linearizable read");
    assert_eq!(get(&node, "k7"), Some(b"v7".to_vec()));

    // Restart from the same disk after a process crash: nothing acknowledged is lost.
    cluster.disks[&1].crash();
    drop(node);
    lock(&cluster.router).nodes.clear();
    cluster.boot(1, 1000).await;
    let node = cluster.node(1);
    cluster.leader(&[1]).await;
    node.read_barrier().await.expect("read after restart");
    assert_eq!(get(&node, "k19"), Some(b"v19".to_vec()));
    assert_eq!(node.with_kv(|kv| kv.store().current_revision()), 21);
}

#[tokio::test]
async fn three_nodes_forward_writes_and_serve_linearizable_reads_anywhere() {
    let cluster = Cluster::start(3, 1000).await;
    let leader = cluster.leader(&[1, 2, 3]).await;
    let follower = [1, 2, 3]
        .into_iter()
        .find(|&id| id != leader)
        .expect("a follower");
    let other = [1, 2, 3]
        .into_iter()
        .find(|&id| id != leader && id != follower)
        .expect("another");

    cluster
        .node(follower)
        .write(put("x", "1"))
        .await
        .expect("forwarded write");
    let reader = cluster.node(other);
    reader
        .read_barrier()
        .await
        .expect("read barrier on a follower");
    assert_eq!(
        get(&reader, "x"),
        Some(b"1".to_vec()),
        "a linearizable read sees the write"
    );
}

#[tokio::test]
async fn a_new_leader_takes_over_when_the_old_one_is_cut_off() {
    let cluster = Cluster::start(3, 1000).await;
    let old = cluster.leader(&[1, 2, 3]).await;
    cluster
        .node(old)
        .write(put("before", "1"))
        .await
        .expect("write");
    cluster.isolate(old, true);
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != old).collect();
    let new = cluster.leader(&rest).await;
    assert_ne!(new, old);
    cluster
        .node(rest[0])
        .write(put("after", "2"))
        .await
        .expect("write under the new leader");
    cluster.isolate(old, false);
    let former = cluster.node(old);
    for _ in 0..300 {
        if former.status().leader == new {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    former.read_barrier().await.expect("the old leader rejoins");
    assert_eq!(get(&former, "after"), Some(b"2".to_vec()));
    assert_eq!(get(&former, "before"), Some(b"1".to_vec()));
}

#[tokio::test]
async fn an_expired_lease_deletes_its_keys_through_raft() {
    let cluster = Cluster::start(3, 1000).await;
    let leader = cluster.leader(&[1, 2, 3]).await;
    let node = cluster.node(leader);
    let id = node.next_lease_id();
    node.write(Request::LeaseGrant(LeaseGrantRequest { ttl: 1, id }))
        .await
        .expect("grant");
    node.write(Request::Put(PutRequest {
        key: b"leased".to_vec(),
        value: b"v".to_vec(),
        lease: id,
        ..PutRequest::default()
    }))
    .await
    .expect("put with lease");
    node.lease_keep_alive(LeaseKeepAliveRequest { id })
        .await
        .expect("keep-alive");
    let follower = cluster.node(
        [1, 2, 3]
            .into_iter()
            .find(|&x| x != leader)
            .expect("follower"),
    );
    assert_eq!(
        get(&node, "leased"),
        Some(b"v".to_vec()),
        "the key exists before expiry"
    );
    for _ in 0..400 {
        if get(&follower, "leased").is_none() && get(&node, "leased").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the lease did not expire within 4 s");
}

#[tokio::test]
async fn a_lagging_follower_catches_up_through_a_snapshot() {
    let cluster = Cluster::start(3, 10).await;
    let leader = cluster.leader(&[1, 2, 3]).await;
    let lagging = [1, 2, 3]
        .into_iter()
        .find(|&id| id != leader)
        .expect("follower");
    cluster.isolate(lagging, true);
    let writer = cluster.node(leader);
    for i in 0..60 {
        writer
            .write(put(&format!("s{i}"), "v"))
            .await
            .expect("write while one is away");
    }
    cluster.isolate(lagging, false);
    let node = cluster.node(lagging);
    let target = writer.status().commit;
    for _ in 0..500 {
        if node.status().applied >= target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(node.status().applied >= target, "caught up");
    let hash = |n: &NodeHandle| n.with_kv(|kv| kv.hash_kv(0).expect("hash").hash);
    assert_eq!(hash(&node), hash(&writer), "same key space");
    assert_eq!(get(&node, "s59"), Some(b"v".to_vec()));
}

#[tokio::test]
async fn snapshots_taken_while_writes_go_on_survive_crashes_and_power_loss() {
    // Values of a few KiB fill the 64 KiB WAL segments, so marked snapshots release
    // segments and a restart depends on the snapshot files.
    let big_value = |i: usize| format!("v{i}-{}", "x".repeat(3000));
    // Crash or lose power after each batch of writes: some fall while a snapshot is
    // being written, some after it was marked. Nothing acknowledged may be lost.
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7);
    let mut cluster = Cluster::start(1, 5).await;
    let mut written = 0;
    for round in 0..6 {
        let node = cluster.node(1);
        cluster.leader(&[1]).await;
        for _ in 0..(7 + round) {
            node.write(put(&format!("c{written}"), &big_value(written)))
                .await
                .expect("write");
            written += 1;
        }
        if round % 2 == 0 {
            cluster.disks[&1].crash();
        } else {
            cluster.disks[&1].power_loss(&mut rng);
        }
        drop(node);
        lock(&cluster.router).nodes.clear();
        cluster.boot(1, 5).await;
        let node = cluster.node(1);
        cluster.leader(&[1]).await;
        node.read_barrier().await.expect("read after restart");
        for i in 0..written {
            assert_eq!(
                get(&node, &format!("c{i}")),
                Some(big_value(i).into_bytes()),
                "round {round}: key c{i} lost"
            );
        }
    }
    let snapshots = cluster.disks[&1]
        .files()
        .into_keys()
        .filter(|p| p.starts_with("snap/") && p.ends_with(".snap"))
        .count();
    assert!(snapshots > 0, "the test took no snapshot");
}

/// The snapshot's key-space bytes written as bytes encode exactly as the sequence of
/// `u8` they were before, so snapshots written by either version load in the other.
#[test]
fn state_snapshot_bytes_encode_as_the_default_sequence_did() {
    #[derive(Serialize)]
    struct AsSequence<'a> {
        kv: &'a Vec<u8>,
        members: &'a Membership,
    }
    for len in [0usize, 1, 127, 128, 300, 70_000] {
        let kv: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let state = StateSnapshot {
            kv: kv.clone(),
            members: Membership::default(),
        };
        let new = postcard::to_allocvec(&state).expect("encode");
        let old = postcard::to_allocvec(&AsSequence {
            kv: &kv,
            members: &state.members,
        })
        .expect("encode");
        assert_eq!(new, old, "{len} bytes");
        let back: StateSnapshot = postcard::from_bytes(&new).expect("decode");
        assert_eq!(back.kv, kv);
    }
}

#[tokio::test]
async fn member_changes_that_would_lose_quorum_are_refused() {
    let cluster = Cluster::start(3, 1000).await;
    let leader = cluster.leader(&[1, 2, 3]).await;
    let node = cluster.node(leader);
    node.write(put("x", "1")).await.expect("write");
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
    let (down, up) = (followers[0], followers[1]);
    cluster.isolate(down, true);
    // Past an election timeout (100 ms here) the leader no longer counts `down` as live.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        node.member_remove(up).await,
        Err(ServerError::NotEnoughStartedMembers),
        "removing a live member would leave {{leader, {down}}} with {down} down"
    );
    let added = MemberRecord {
        id: 9,
        name: "n9".to_owned(),
        peer_urls: vec!["http://n9:2380".to_owned()],
        ..MemberRecord::default()
    };
    assert_eq!(
        node.member_add(added.clone()).await,
        Err(ServerError::NotEnoughStartedMembers),
        "four voters need three live ones"
    );
    let learner = MemberRecord {
        is_learner: true,
        ..added
    };
    assert!(
        node.member_add(learner).await.is_ok(),
        "learners are not checked"
    );
    node.member_remove(9).await.expect("the learner goes again");
    let members = node
        .member_remove(down)
        .await
        .expect("the down member goes");
    assert_eq!(members.len(), 2);
    node.write(put("y", "2"))
        .await
        .expect("the two left commit");
}
