//! Lock and Election services on a live single member: mutual exclusion between two
//! callers, and campaign / proclaim / observe / resign handing leadership over.

mod services_support;

use std::time::Duration;

use detcd_engine::pb::etcdserverpb::LeaseGrantRequest;
use detcd_engine::pb::etcdserverpb::lease_server::Lease;
use detcd_engine::pb::v3electionpb::election_server::Election;
use detcd_engine::pb::v3electionpb::{
    CampaignRequest, LeaderRequest, ProclaimRequest, ResignRequest,
};
use detcd_engine::pb::v3lockpb::lock_server::Lock;
use detcd_engine::pb::v3lockpb::{LockRequest, UnlockRequest};
use detcd_engine::server::grpc::election::{ElectionService, NOT_LEADER};
use detcd_engine::server::grpc::lease::LeaseService;
use detcd_engine::server::grpc::lock::LockService;
use detcd_engine::server::node::NodeHandle;
use services_support::{WAIT_MS, next, single_node};
use tonic::Request;

/// How long a caller that must wait is watched not to get through.
const BLOCKED_MS: u64 = 300;

async fn lease(node: &NodeHandle) -> i64 {
    LeaseService::new(node.clone())
        .lease_grant(Request::new(LeaseGrantRequest { ttl: 60, id: 0 }))
        .await
        .expect("grant")
        .into_inner()
        .id
}

#[tokio::test]
async fn a_second_locker_waits_until_the_first_unlocks() {
    let node = single_node().await;
    let lock = LockService::new(node.clone());
    let (a, b) = (lease(&node).await, lease(&node).await);
    let first = lock
        .lock(Request::new(LockRequest {
            name: b"m".to_vec(),
            lease: a,
        }))
        .await
        .expect("lock")
        .into_inner();
    assert_eq!(first.key, format!("m/{a:x}").into_bytes());

    let second_lock = lock.clone();
    let mut second = tokio::spawn(async move {
        second_lock
            .lock(Request::new(LockRequest {
                name: b"m".to_vec(),
                lease: b,
            }))
            .await
    });
    let early = tokio::time::timeout(Duration::from_millis(BLOCKED_MS), &mut second).await;
    assert!(
        early.is_err(),
        "the second locker got the lock while the first held it"
    );

    lock.unlock(Request::new(UnlockRequest { key: first.key }))
        .await
        .expect("unlock");
    let got = tokio::time::timeout(Duration::from_millis(WAIT_MS), second)
        .await
        .expect("the second locker gets the lock after the unlock")
        .expect("task")
        .expect("lock")
        .into_inner();
    assert_eq!(got.key, format!("m/{b:x}").into_bytes());
}

#[tokio::test]
async fn campaign_proclaim_observe_and_resign_hand_leadership_over() {
    let node = single_node().await;
    let election = ElectionService::new(node.clone());
    let (a, b) = (lease(&node).await, lease(&node).await);
    let campaign = |lease: i64, value: &str| CampaignRequest {
        name: b"e".to_vec(),
        lease,
        value: value.as_bytes().to_vec(),
    };
    let leader_a = election
        .campaign(Request::new(campaign(a, "alice")))
        .await
        .expect("campaign")
        .into_inner()
        .leader
        .expect("leader key");
    let mut observe = election
        .observe(Request::new(LeaderRequest {
            name: b"e".to_vec(),
        }))
        .await
        .expect("observe")
        .into_inner();
    let seen = next(&mut observe).await.kv.expect("kv");
    assert_eq!(seen.value, b"alice".to_vec());

    let contender = election.clone();
    let mut bob =
        tokio::spawn(async move { contender.campaign(Request::new(campaign(b, "bob"))).await });
    let early = tokio::time::timeout(Duration::from_millis(BLOCKED_MS), &mut bob).await;
    assert!(early.is_err(), "bob was elected while alice leads");

    election
        .proclaim(Request::new(ProclaimRequest {
            leader: Some(leader_a.clone()),
            value: b"alice-2".to_vec(),
        }))
        .await
        .expect("proclaim");
    assert_eq!(
        next(&mut observe).await.kv.expect("kv").value,
        b"alice-2".to_vec()
    );
    let current = election
        .leader(Request::new(LeaderRequest {
            name: b"e".to_vec(),
        }))
        .await
        .expect("leader")
        .into_inner()
        .kv
        .expect("kv");
    assert_eq!(current.value, b"alice-2".to_vec());

    election
        .resign(Request::new(ResignRequest {
            leader: Some(leader_a.clone()),
        }))
        .await
        .expect("resign");
    let leader_b = tokio::time::timeout(Duration::from_millis(WAIT_MS), bob)
        .await
        .expect("bob is elected after alice resigns")
        .expect("task")
        .expect("campaign")
        .into_inner()
        .leader
        .expect("leader key");
    assert_eq!(leader_b.key, format!("e/{b:x}").into_bytes());
    assert_eq!(
        next(&mut observe).await.kv.expect("kv").value,
        b"bob".to_vec()
    );

    let stale = election
        .proclaim(Request::new(ProclaimRequest {
            leader: Some(leader_a),
            value: b"late".to_vec(),
        }))
        .await
        .expect_err("a resigned leader cannot proclaim");
    assert_eq!(stale.message(), NOT_LEADER);
}

#[tokio::test]
async fn a_locker_that_gives_up_waiting_leaves_no_key_behind() {
    let node = single_node().await;
    let lock = LockService::new(node.clone());
    let (a, b) = (lease(&node).await, lease(&node).await);
    lock.lock(Request::new(LockRequest {
        name: b"m".to_vec(),
        lease: a,
    }))
    .await
    .expect("lock");
    let waiting = lock.lock(Request::new(LockRequest {
        name: b"m".to_vec(),
        lease: b,
    }));
    let gave_up = tokio::time::timeout(Duration::from_millis(BLOCKED_MS), waiting).await;
    assert!(gave_up.is_err(), "the lock was taken twice");
    let waiter_key = format!("m/{b:x}");
    for _ in 0..100 {
        if services_support::get(&node, &waiter_key).is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the abandoned waiter's key stayed");
}
