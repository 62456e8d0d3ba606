//! Cluster, Maintenance and Health services on a live single member: member list and a
//! learner added and removed, status, hashes, the snapshot stream, alarms and the
//! backend quota.

mod services_support;

use detcd_engine::mvcc::{KvConfig, KvState};
use detcd_engine::pb::etcdserverpb::alarm_request::AlarmAction;
use detcd_engine::pb::etcdserverpb::cluster_server::Cluster;
use detcd_engine::pb::etcdserverpb::kv_server::Kv;
use detcd_engine::pb::etcdserverpb::maintenance_server::Maintenance;
use detcd_engine::pb::etcdserverpb::{
    AlarmRequest, AlarmType, DeleteRangeRequest, HashKvRequest, HashRequest, MemberAddRequest,
    MemberListRequest, MemberRemoveRequest, SnapshotRequest, StatusRequest,
};
use detcd_engine::pb::health::HealthCheckRequest;
use detcd_engine::pb::health::health_check_response::ServingStatus;
use detcd_engine::pb::health::health_server::Health;
use detcd_engine::server::grpc::ResponseStream;
use detcd_engine::server::grpc::cluster::ClusterService;
use detcd_engine::server::grpc::health::HealthService;
use detcd_engine::server::grpc::kv::KvService;
use detcd_engine::server::grpc::maintenance::{MaintenanceService, SERVER_VERSION};
use detcd_engine::server::ids;
use services_support::{MEMBER_ID, config, next, put, single_node, single_node_with};
use tonic::Request;

const ADDED_AT_UNIX_S: i64 = 1_700_000_000;

fn fixed_time() -> i64 {
    ADDED_AT_UNIX_S
}

#[tokio::test]
async fn member_list_shows_the_member_and_a_learner_comes_and_goes() {
    let node = single_node().await;
    let cluster = ClusterService::new(node, "tok".to_owned(), fixed_time);
    let list = cluster
        .member_list(Request::new(MemberListRequest {}))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.members.len(), 1);
    assert_eq!(list.members[0].id, MEMBER_ID);
    assert_eq!(
        list.members[0].client_ur_ls,
        vec!["http://n1:2379".to_owned()]
    );

    let urls = vec!["http://n2:2380".to_owned()];
    let added = cluster
        .member_add(Request::new(MemberAddRequest {
            peer_ur_ls: urls.clone(),
            is_learner: true,
        }))
        .await
        .expect("add a learner")
        .into_inner();
    let member = added.member.expect("the new member");
    assert_eq!(
        member.id,
        ids::member_id(&urls, "tok", Some(ADDED_AT_UNIX_S))
    );
    assert!(member.is_learner);
    assert_eq!(added.members.len(), 2);

    let bad = cluster
        .member_add(Request::new(MemberAddRequest {
            peer_ur_ls: vec!["n3:2380".to_owned()],
            is_learner: true,
        }))
        .await
        .expect_err("a URL without a scheme is refused");
    assert_eq!(bad.message(), "etcdserver: given member URLs are invalid");

    let removed = cluster
        .member_remove(Request::new(MemberRemoveRequest { id: member.id }))
        .await
        .expect("remove")
        .into_inner();
    assert_eq!(removed.members.len(), 1);
    let missing = cluster
        .member_remove(Request::new(MemberRemoveRequest { id: member.id }))
        .await
        .expect_err("removing twice fails");
    assert_eq!(missing.message(), "etcdserver: member not found");
    // Adding the same URLs at the same time gives the removed ID again: refused, as
    // etcd refuses removed IDs (the member would replay its own removal and stop).
    let again = cluster
        .member_add(Request::new(MemberAddRequest {
            peer_ur_ls: urls,
            is_learner: true,
        }))
        .await
        .expect_err("a removed ID may not rejoin");
    assert_eq!(again.message(), "etcdserver: member not found");
}

#[tokio::test]
async fn status_hashes_and_health_describe_the_member() {
    let node = single_node().await;
    let kv = KvService::new(node.clone());
    let maintenance = MaintenanceService::new(node.clone());
    let hash_before = maintenance
        .hash(Request::new(HashRequest {}))
        .await
        .expect("hash")
        .into_inner()
        .hash;
    kv.put(Request::new(put("k", "v", 0))).await.expect("put");
    let status = maintenance
        .status(Request::new(StatusRequest {}))
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.version, SERVER_VERSION);
    assert_eq!(status.leader, MEMBER_ID);
    assert!(status.raft_term > 0);
    assert!(status.raft_applied_index > 0 && status.raft_index >= status.raft_applied_index);
    assert!(status.db_size > 0);
    assert!(status.errors.is_empty(), "{:?}", status.errors);
    assert!(!status.is_learner);

    let hash_after = maintenance
        .hash(Request::new(HashRequest {}))
        .await
        .expect("hash")
        .into_inner()
        .hash;
    assert_ne!(hash_before, hash_after, "a put changes the hash");
    let hash_kv = maintenance
        .hash_kv(Request::new(HashKvRequest { revision: 0 }))
        .await
        .expect("hash kv")
        .into_inner();
    assert_eq!(hash_kv.hash, hash_after);

    let health = HealthService::new(node);
    let answer = health
        .check(Request::new(HealthCheckRequest::default()))
        .await
        .expect("check")
        .into_inner();
    assert_eq!(answer.status, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn the_snapshot_stream_restores_to_the_same_key_space() {
    let node = single_node().await;
    let kv = KvService::new(node.clone());
    for i in 0..50 {
        let value = "v".repeat(2000 + i);
        kv.put(Request::new(put(&format!("k{i}"), &value, 0)))
            .await
            .expect("put");
    }
    let maintenance = MaintenanceService::new(node.clone());
    let mut stream: ResponseStream<_> = maintenance
        .snapshot(Request::new(SnapshotRequest {}))
        .await
        .expect("snapshot")
        .into_inner();
    let mut bytes = Vec::new();
    let mut chunks = 0;
    loop {
        let chunk = next(&mut stream).await;
        bytes.extend_from_slice(&chunk.blob);
        chunks += 1;
        if chunk.remaining_bytes == 0 {
            break;
        }
    }
    assert!(chunks > 1, "100 KB arrive in several chunks");
    assert_eq!(
        (bytes.len() - 32) % 512,
        0,
        "etcdctl wants whole 512-byte blocks before the SHA-256"
    );
    let payload =
        detcd_engine::server::grpc::maintenance::snapshot_payload(&bytes).expect("checksum");
    let restored = KvState::restore(payload, KvConfig::default()).expect("restores");
    let mut damaged = bytes.clone();
    damaged[20] ^= 1;
    assert!(detcd_engine::server::grpc::maintenance::snapshot_payload(&damaged).is_err());
    let want = node.with_kv(|kv| kv.hash_kv(0).expect("hash")).hash;
    assert_eq!(restored.hash_kv(0).expect("hash").hash, want);
}

#[tokio::test]
async fn a_full_backend_raises_nospace_until_disarmed() {
    let node = single_node_with(config(16 * 1024)).await;
    let kv = KvService::new(node.clone());
    let maintenance = MaintenanceService::new(node.clone());
    let mut refused = None;
    for i in 0..40 {
        match kv
            .put(Request::new(put(&format!("k{i}"), &"x".repeat(1024), 0)))
            .await
        {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("40 KB do not fit in a 16 KB quota");
    assert_eq!(
        refused.message(),
        "etcdserver: mvcc: database space exceeded"
    );
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    let alarms = maintenance
        .alarm(Request::new(AlarmRequest {
            action: AlarmAction::Get as i32,
            member_id: 0,
            alarm: AlarmType::None as i32,
        }))
        .await
        .expect("alarm get")
        .into_inner()
        .alarms;
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0].alarm, AlarmType::Nospace as i32);
    let status = maintenance
        .status(Request::new(StatusRequest {}))
        .await
        .expect("status")
        .into_inner();
    assert!(
        status.errors.iter().any(|e| e.contains("alarm:NOSPACE")),
        "{:?}",
        status.errors
    );

    // Even a tiny put is refused while the alarm is raised; deletes free space.
    assert!(kv.put(Request::new(put("t", "", 0))).await.is_err());
    kv.delete_range(Request::new(DeleteRangeRequest {
        key: b"k".to_vec(),
        range_end: b"l".to_vec(),
        ..DeleteRangeRequest::default()
    }))
    .await
    .expect("deletes are allowed");
    let disarmed = maintenance
        .alarm(Request::new(AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id: MEMBER_ID,
            alarm: AlarmType::Nospace as i32,
        }))
        .await
        .expect("disarm")
        .into_inner();
    assert_eq!(disarmed.alarms.len(), 1);
    assert!(node.alarms().is_empty());
}
