//! Lock and Election wait on the node's watch hub, not on a timer: a waiting locker
//! or an observer holds one hub watcher while it waits and none after it is done or
//! gone, and a revoked lease (whose keys the revocation deletes) hands the lock over.

mod services_support;

use std::time::Duration;

use detcd_engine::pb::etcdserverpb::lease_server::Lease;
use detcd_engine::pb::etcdserverpb::{LeaseGrantRequest, LeaseRevokeRequest};
use detcd_engine::pb::v3electionpb::election_server::Election;
use detcd_engine::pb::v3electionpb::{CampaignRequest, LeaderRequest, ResignRequest};
use detcd_engine::pb::v3lockpb::LockRequest;
use detcd_engine::pb::v3lockpb::lock_server::Lock;
use detcd_engine::server::grpc::election::ElectionService;
use detcd_engine::server::grpc::lease::LeaseService;
use detcd_engine::server::grpc::lock::LockService;
use detcd_engine::server::node::NodeHandle;
use services_support::{WAIT_MS, next, single_node};
use tonic::Request;

async fn lease(node: &NodeHandle) -> i64 {
    LeaseService::new(node.clone())
        .lease_grant(Request::new(LeaseGrantRequest { ttl: 60, id: 0 }))
        .await
        .expect("grant")
        .into_inner()
        .id
}

fn watchers(node: &NodeHandle) -> usize {
    node.with_watch_hub(|_, hub| hub.watcher_count())
}

/// Waits until the hub holds `count` watchers.
async fn until_watchers(node: &NodeHandle, count: usize) {
    let waited = tokio::time::timeout(Duration::from_millis(WAIT_MS), async {
        while watchers(node) != count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{} watchers, not {count}", watchers(node));
}

fn lock_request(lease: i64) -> Request<LockRequest> {
    Request::new(LockRequest {
        name: b"m".to_vec(),
        lease,
    })
}

#[tokio::test]
async fn a_waiting_locker_watches_and_a_revoked_holder_hands_the_lock_over() {
    let node = single_node().await;
    let lock = LockService::new(node.clone());
    let (a, b, c) = (lease(&node).await, lease(&node).await, lease(&node).await);
    lock.lock(lock_request(a)).await.expect("first lock");
    assert_eq!(watchers(&node), 0, "the holder does not watch");

    let waiter = lock.clone();
    let second = tokio::spawn(async move { waiter.lock(lock_request(b)).await });
    until_watchers(&node, 1).await;

    // A third caller gives up while waiting: its watcher goes away with it.
    let quitter = lock.clone();
    let third = tokio::spawn(async move { quitter.lock(lock_request(c)).await });
    until_watchers(&node, 2).await;
    third.abort();
    until_watchers(&node, 1).await;

    // Revoking the holder's lease deletes its key; that event wakes the waiter.
    LeaseService::new(node.clone())
        .lease_revoke(Request::new(LeaseRevokeRequest { id: a }))
        .await
        .expect("revoke");
    let got = tokio::time::timeout(Duration::from_millis(WAIT_MS), second)
        .await
        .expect("the waiter gets the lock after the revocation")
        .expect("task")
        .expect("lock")
        .into_inner();
    assert_eq!(got.key, format!("m/{b:x}").into_bytes());
    until_watchers(&node, 0).await;
}

#[tokio::test]
async fn an_observer_follows_the_leader_through_one_watcher() {
    let node = single_node().await;
    let election = ElectionService::new(node.clone());
    let (a, b) = (lease(&node).await, lease(&node).await);
    let campaign = |lease: i64, value: &str| {
        let election = election.clone();
        let value = value.as_bytes().to_vec();
        async move {
            election
                .campaign(Request::new(CampaignRequest {
                    name: b"e".to_vec(),
                    lease,
                    value,
                }))
                .await
        }
    };
    let first = campaign(a, "one").await.expect("campaign").into_inner();
    let mut observed = election
        .observe(Request::new(LeaderRequest {
            name: b"e".to_vec(),
        }))
        .await
        .expect("observe")
        .into_inner();
    let seen = next(&mut observed).await;
    assert_eq!(seen.kv.expect("a leader").value, b"one");
    until_watchers(&node, 1).await;

    let second = tokio::spawn(campaign(b, "two"));
    until_watchers(&node, 2).await;
    election
        .resign(Request::new(ResignRequest {
            leader: first.leader,
        }))
        .await
        .expect("resign");
    let seen = next(&mut observed).await;
    assert_eq!(seen.kv.expect("a leader").value, b"two");
    second.await.expect("task").expect("elected");

    drop(observed);
    until_watchers(&node, 0).await;
}
