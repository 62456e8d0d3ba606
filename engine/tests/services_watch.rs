//! The Watch service on a live single member: created/events/cancel, a watch from a
//! compacted revision, an empty range, and closing the hub stream when the client goes.

mod services_support;

use std::time::Duration;

use detcd_engine::pb::etcdserverpb::kv_server::Kv;
use detcd_engine::pb::etcdserverpb::watch_request::RequestUnion;
use detcd_engine::pb::etcdserverpb::{
    CompactionRequest, WatchCancelRequest, WatchCreateRequest, WatchRequest,
};
use detcd_engine::pb::mvccpb::event::EventType;
use detcd_engine::server::grpc::kv::KvService;
use detcd_engine::server::grpc::watch::{EMPTY_WATCHER_RANGE, WatchService};
use services_support::{MEMBER_ID, client_stream, next, put, single_node};
use tonic::Request;

fn create(
    key: &[u8],
    range_end: &[u8],
    start_revision: i64,
) -> Result<WatchRequest, tonic::Status> {
    Ok(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            start_revision,
            ..WatchCreateRequest::default()
        })),
    })
}

#[tokio::test]
async fn a_watcher_sees_created_then_each_event_in_order_then_canceled() {
    let node = single_node().await;
    let kv = KvService::new(node.clone());
    let watch = WatchService::new(node.clone());
    let (tx, requests) = client_stream();
    let mut responses = watch.watch_stream(requests);

    tx.send(create(b"a/", b"a0", 0)).await.expect("send");
    let created = next(&mut responses).await;
    assert!(created.created && !created.canceled);
    let header = created.header.expect("header");
    assert_eq!(header.member_id, MEMBER_ID);
    assert!(header.raft_term > 0, "the header carries the term");

    for (key, value) in [("a/1", "x"), ("b/1", "not watched"), ("a/2", "y")] {
        kv.put(Request::new(put(key, value, 0))).await.expect("put");
    }
    kv.delete_range(Request::new(
        detcd_engine::pb::etcdserverpb::DeleteRangeRequest {
            key: b"a/1".to_vec(),
            ..Default::default()
        },
    ))
    .await
    .expect("delete");

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let r = next(&mut responses).await;
        assert_eq!(r.watch_id, created.watch_id);
        for e in r.events {
            let kv = e.kv.expect("kv");
            seen.push((
                e.r#type,
                String::from_utf8(kv.key).expect("utf8"),
                kv.mod_revision,
            ));
        }
    }
    let put_type = EventType::Put as i32;
    let delete_type = EventType::Delete as i32;
    assert_eq!(seen[0].0, put_type);
    assert_eq!(seen[0].1, "a/1");
    assert_eq!(seen[1].1, "a/2");
    assert_eq!((seen[2].0, seen[2].1.as_str()), (delete_type, "a/1"));
    assert!(
        seen.windows(2).all(|w| w[0].2 < w[1].2),
        "revisions ascend: {seen:?}"
    );

    tx.send(Ok(WatchRequest {
        request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest {
            watch_id: created.watch_id,
        })),
    }))
    .await
    .expect("send");
    let canceled = next(&mut responses).await;
    assert!(canceled.canceled);
    assert_eq!(canceled.watch_id, created.watch_id);
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_is_canceled_with_the_compact_revision() {
    let node = single_node().await;
    let kv = KvService::new(node.clone());
    for i in 0..4 {
        kv.put(Request::new(put("k", &i.to_string(), 0)))
            .await
            .expect("put");
    }
    kv.compact(Request::new(CompactionRequest {
        revision: 4,
        physical: false,
    }))
    .await
    .expect("compact");
    let watch = WatchService::new(node.clone());
    let (tx, requests) = client_stream();
    let mut responses = watch.watch_stream(requests);
    tx.send(create(b"k", b"", 2)).await.expect("send");
    let mut canceled = None;
    for _ in 0..3 {
        let r = next(&mut responses).await;
        if r.canceled {
            canceled = Some(r);
            break;
        }
    }
    let canceled = canceled.expect("the watch is canceled");
    assert_eq!(canceled.compact_revision, 4);
}

#[tokio::test]
async fn a_range_end_below_the_key_is_refused_as_an_empty_range() {
    let node = single_node().await;
    let watch = WatchService::new(node);
    let (tx, requests) = client_stream();
    let mut responses = watch.watch_stream(requests);
    tx.send(create(b"b", b"a", 0)).await.expect("send");
    let refused = next(&mut responses).await;
    assert!(refused.created && refused.canceled);
    assert_eq!(refused.watch_id, -1);
    assert_eq!(refused.cancel_reason, EMPTY_WATCHER_RANGE);
    // "\0" means every key from the key on: accepted.
    tx.send(create(b"b", b"\0", 0)).await.expect("send");
    let accepted = next(&mut responses).await;
    assert!(accepted.created && !accepted.canceled);
}

#[tokio::test]
async fn the_hub_forgets_a_stream_whose_client_went_away() {
    let node = single_node().await;
    let watch = WatchService::new(node.clone());
    let (tx, requests) = client_stream();
    let mut responses = watch.watch_stream(requests);
    tx.send(create(b"k", b"", 0)).await.expect("send");
    let _ = next(&mut responses).await;
    assert_eq!(node.with_watch_hub(|_, hub| hub.watcher_count()), 1);
    drop(responses);
    drop(tx);
    for _ in 0..200 {
        if node.with_watch_hub(|_, hub| hub.watcher_count()) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the watcher outlived its client");
}
