//! The Lease service on a live single member: grant (chosen IDs, minimum TTL),
//! keep-alive streams (TTL 0 for an unknown lease), time-to-live with keys, revoke
//! deleting the lease's keys, and expiry.

mod services_support;

use std::time::Duration;

use detcd_engine::pb::etcdserverpb::kv_server::Kv;
use detcd_engine::pb::etcdserverpb::lease_server::Lease;
use detcd_engine::pb::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
};
use detcd_engine::server::grpc::kv::KvService;
use detcd_engine::server::grpc::lease::LeaseService;
use services_support::{client_stream, get, next, put, single_node};
use tonic::Request;

async fn grant(lease: &LeaseService, id: i64, ttl: i64) -> (i64, i64) {
    let r = lease
        .lease_grant(Request::new(LeaseGrantRequest { ttl, id }))
        .await
        .expect("grant")
        .into_inner();
    (r.id, r.ttl)
}

#[tokio::test]
async fn grants_pick_ids_and_raise_short_ttls_to_the_minimum() {
    let node = single_node().await;
    let lease = LeaseService::new(node);
    let (picked, ttl) = grant(&lease, 0, 30).await;
    assert_ne!(picked, 0);
    assert_eq!(ttl, 30);
    let (chosen, short) = grant(&lease, 77, 1).await;
    assert_eq!(chosen, 77);
    assert_eq!(short, 2, "the member's minimum TTL is 2 s");
    let again = lease
        .lease_grant(Request::new(LeaseGrantRequest { ttl: 5, id: 77 }))
        .await
        .expect_err("an ID in use is refused");
    assert_eq!(again.message(), "etcdserver: lease already exists");
    let leases = lease
        .lease_leases(Request::new(LeaseLeasesRequest {}))
        .await
        .expect("leases")
        .into_inner();
    let mut ids: Vec<i64> = leases.leases.iter().map(|l| l.id).collect();
    ids.sort_unstable();
    let mut want = vec![picked, 77];
    want.sort_unstable();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn keep_alive_answers_each_request_in_order_with_ttl_zero_for_unknown_leases() {
    let node = single_node().await;
    let lease = LeaseService::new(node);
    let (id, _) = grant(&lease, 0, 20).await;
    let (tx, requests) = client_stream();
    let mut responses = lease.keep_alive_stream(requests);
    for asked in [id, 12345, id] {
        tx.send(Ok(LeaseKeepAliveRequest { id: asked }))
            .await
            .expect("send");
    }
    let answers: Vec<(i64, i64)> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let r = next(&mut responses).await;
            v.push((r.id, r.ttl));
        }
        v
    };
    assert_eq!(answers, vec![(id, 20), (12345, 0), (id, 20)]);
}

#[tokio::test]
async fn time_to_live_lists_keys_and_revoke_deletes_them() {
    let node = single_node().await;
    let lease = LeaseService::new(node.clone());
    let kv = KvService::new(node.clone());
    let (id, _) = grant(&lease, 0, 60).await;
    kv.put(Request::new(put("held", "v", id)))
        .await
        .expect("put");
    kv.put(Request::new(put("free", "v", 0)))
        .await
        .expect("put");
    let ttl = lease
        .lease_time_to_live(Request::new(LeaseTimeToLiveRequest { id, keys: true }))
        .await
        .expect("ttl")
        .into_inner();
    assert_eq!(ttl.granted_ttl, 60);
    assert!(ttl.ttl > 0 && ttl.ttl <= 60, "remaining {}", ttl.ttl);
    assert_eq!(ttl.keys, vec![b"held".to_vec()]);

    lease
        .lease_revoke(Request::new(LeaseRevokeRequest { id }))
        .await
        .expect("revoke");
    assert_eq!(get(&node, "held"), None);
    assert_eq!(get(&node, "free"), Some(b"v".to_vec()));
    let gone = lease
        .lease_time_to_live(Request::new(LeaseTimeToLiveRequest { id, keys: false }))
        .await
        .expect("ttl of a revoked lease")
        .into_inner();
    assert_eq!(gone.ttl, -1);
    let twice = lease
        .lease_revoke(Request::new(LeaseRevokeRequest { id }))
        .await
        .expect_err("revoking twice fails");
    assert_eq!(twice.message(), "etcdserver: requested lease not found");
}

#[tokio::test]
async fn an_expired_lease_takes_its_keys_with_it() {
    let node = single_node().await;
    let lease = LeaseService::new(node.clone());
    let kv = KvService::new(node.clone());
    let (id, ttl) = grant(&lease, 0, 2).await;
    assert_eq!(ttl, 2);
    kv.put(Request::new(put("short", "v", id)))
        .await
        .expect("put");
    for _ in 0..80 {
        if get(&node, "short").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the key outlived its 2 s lease by 2 s");
}
