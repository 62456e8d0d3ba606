//! Table-style tests of etcd's KV rules that the model test covers only statistically:
//! range_end conventions, limit/count/more, sort defaults, revision errors, put
//! options, delete counts.

#[path = "mvcc_support/requests.rs"]
mod support;

use support::*;

use detcd_engine::mvcc::{KvState, MvccError};
use detcd_engine::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use detcd_engine::pb::etcdserverpb::request_op::Request;
use detcd_engine::pb::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseTimeToLiveRequest, PutRequest,
    RangeRequest,
};
use detcd_engine::pb::mvccpb::event::EventType;

#[test]
fn empty_store_starts_at_revision_one() {
    let s = state();
    let r = s.range(&range("a", "")).unwrap();
    assert_eq!(r.header.unwrap().revision, 1);
    assert_eq!((r.count, r.kvs.len(), r.more), (0, 0, false));
    assert_eq!(s.hash_kv(0).unwrap().header.unwrap().revision, 1);
}

#[test]
fn range_end_conventions() {
    let mut s = state();
    for k in ["\0", "a", "b", "c"] {
        put(&mut s, k, "v");
    }
    let table: &[(&str, &str, &[&str])] = &[
        ("a", "", &["a"]),
        ("a", "\0", &["a", "b", "c"]),
        ("\0", "\0", &["\0", "a", "b", "c"]),
        ("a", "c", &["a", "b"]),
        ("c", "a", &[]),
        ("zz", "", &[]),
        ("b", "b\0", &["b"]),
    ];
    for (key, end, want) in table {
        assert_eq!(
            keys(&s, &range(key, end)),
            *want,
            "range [{key:?}, {end:?})"
        );
    }
}

#[test]
fn limit_count_more_and_sort() {
    let mut s = state();
    put(&mut s, "a", "3"); // rev 2
    put(&mut s, "b", "1"); // rev 3
    put(&mut s, "c", "2"); // rev 4
    put(&mut s, "a", "3"); // rev 5: a is now the latest modified
    let base = range("a", "\0");
    let limited = RangeRequest {
        limit: 2,
        ..base.clone()
    };
    let r = s.range(&limited).unwrap();
    assert_eq!((r.count, r.more, r.kvs.len()), (3, true, 2));
    let sorted = |order: SortOrder, target: SortTarget, limit: i64| RangeRequest {
        sort_order: order as i32,
        sort_target: target as i32,
        limit,
        ..base.clone()
    };
    // Sorting happens before the limit.
    assert_eq!(
        keys(&s, &sorted(SortOrder::Descend, SortTarget::Value, 2)),
        ["a", "c"]
    );
    assert_eq!(
        keys(&s, &sorted(SortOrder::Descend, SortTarget::Key, 0)),
        ["c", "b", "a"]
    );
    // A non-key target with no order means ascending.
    assert_eq!(
        keys(&s, &sorted(SortOrder::None, SortTarget::Mod, 0)),
        ["b", "c", "a"]
    );
    assert_eq!(
        keys(&s, &sorted(SortOrder::Ascend, SortTarget::Version, 0)),
        ["b", "c", "a"]
    );
    assert_eq!(
        keys(&s, &sorted(SortOrder::Descend, SortTarget::Create, 0)),
        ["c", "b", "a"]
    );
    let count_only = s
        .range(&RangeRequest {
            count_only: true,
            ..limited.clone()
        })
        .unwrap();
    assert_eq!(
        (count_only.count, count_only.kvs.len(), count_only.more),
        (3, 0, false)
    );
    let keys_only = s
        .range(&RangeRequest {
            keys_only: true,
            ..base.clone()
        })
        .unwrap();
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty()));
    // Filters prune but do not change count.
    let filtered = s
        .range(&RangeRequest {
            min_mod_revision: 4,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(filtered.count, 3);
    assert_eq!(filtered.kvs.len(), 2);
    let filtered = s
        .range(&RangeRequest {
            max_create_revision: 2,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(filtered.kvs.len(), 1);
    assert_eq!(filtered.kvs[0].version, 2);
}

#[test]
fn revisions_errors_and_compaction() {
    let mut s = state();
    put(&mut s, "a", "1");
    put(&mut s, "a", "2");
    put(&mut s, "a", "3"); // current 4
    let at = |rev: i64| RangeRequest {
        revision: rev,
        ..range("a", "")
    };
    let err = s.range(&at(5)).unwrap_err();
    assert_eq!(err, MvccError::FutureRevision);
    assert_eq!(
        err.to_string(),
        "etcdserver: mvcc: required revision is a future revision"
    );
    let compact = |rev| CompactionRequest {
        revision: rev,
        physical: false,
    };
    assert_eq!(
        s.compact(&compact(5)).unwrap_err(),
        MvccError::FutureRevision
    );
    assert_eq!(s.compact(&compact(3)).unwrap().header.unwrap().revision, 4);
    assert_eq!(s.compact(&compact(3)).unwrap_err(), MvccError::Compacted);
    assert_eq!(s.compact(&compact(2)).unwrap_err(), MvccError::Compacted);
    let err = s.range(&at(2)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(err.code().as_u8(), 11);
    assert_eq!(s.range(&at(3)).unwrap().kvs[0].value, b"2");
    assert_eq!(s.range(&at(0)).unwrap().kvs[0].value, b"3");
    assert_eq!(s.hash_kv(3).unwrap_err(), MvccError::Compacted);
    assert_eq!(s.hash_kv(4).unwrap().compact_revision, 3);
    assert_eq!(s.events(b"a", b"", 2, 10), Err(MvccError::Compacted));
    assert_eq!(s.events(b"a", b"", 3, 10).unwrap().len(), 2);
    // A negative revision means "current" in a Range, but inside a txn etcd checks it
    // against the compact revision.
    assert_eq!(s.range(&at(-1)).unwrap().kvs[0].value, b"3");
    let in_txn = txn(vec![op(Request::RequestRange(at(-1)))]);
    assert_eq!(s.txn(&in_txn).unwrap_err(), MvccError::Compacted);
    // Compacting at the current revision is allowed.
    assert!(s.compact(&compact(4)).is_ok());
}

#[test]
fn put_options() {
    let mut s = state();
    let ignore_value = |lease| PutRequest {
        key: "k".into(),
        ignore_value: true,
        lease,
        ..Default::default()
    };
    assert_eq!(s.put(&ignore_value(0)).unwrap_err(), MvccError::KeyNotFound);
    let err = s
        .put(&PutRequest {
            value: "v".into(),
            ..ignore_value(0)
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "etcdserver: value is provided");
    let err = s
        .put(&PutRequest {
            key: "k".into(),
            ignore_lease: true,
            lease: 5,
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "etcdserver: lease is provided");
    let err = s.put(&put_req("k", "v", 5)).unwrap_err();
    assert_eq!(err.to_string(), "etcdserver: requested lease not found");
    assert_eq!(err.code().as_u8(), 5);
    assert_eq!(
        s.put(&put_req("", "v", 0)).unwrap_err(),
        MvccError::EmptyKey
    );
    assert_eq!(
        s.store().current_revision(),
        1,
        "failed puts change nothing"
    );

    s.lease_grant(&LeaseGrantRequest { ttl: 10, id: 5 }, 0)
        .unwrap();
    s.lease_grant(&LeaseGrantRequest { ttl: 10, id: 6 }, 0)
        .unwrap();
    put(&mut s, "k", "v1");
    // ignore_value keeps the value, takes the lease.
    let w = s
        .put(&PutRequest {
            prev_kv: true,
            ..ignore_value(5)
        })
        .unwrap();
    assert_eq!(w.response.prev_kv.unwrap().value, b"v1");
    let kv = s.store().get(b"k").unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.lease, kv.version),
        (&b"v1"[..], 5, 2)
    );
    // ignore_lease keeps the lease, takes the value.
    s.put(&PutRequest {
        key: "k".into(),
        value: "v2".into(),
        ignore_lease: true,
        ..Default::default()
    })
    .unwrap();
    let kv = s.store().get(b"k").unwrap();
    assert_eq!((kv.value.as_slice(), kv.lease), (&b"v2"[..], 5));
    // Re-attaching to another lease detaches from the old one.
    s.put(&put_req("k", "v3", 6)).unwrap();
    let keys_of = |s: &KvState, id| {
        s.lease_time_to_live(&LeaseTimeToLiveRequest { id, keys: true }, 0)
            .unwrap()
            .keys
    };
    assert!(keys_of(&s, 5).is_empty());
    assert_eq!(keys_of(&s, 6), vec![b"k".to_vec()]);
    // A plain put drops the lease.
    put(&mut s, "k", "v4");
    assert!(keys_of(&s, 6).is_empty());
}

#[test]
fn delete_range_counts_and_revisions() {
    let mut s = state();
    put(&mut s, "a", "1");
    put(&mut s, "b", "2");
    let none = s
        .delete_range(&DeleteRangeRequest {
            key: "x".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(none.response.deleted, 0);
    assert_eq!(none.response.header.unwrap().revision, 3);
    assert!(none.events.is_empty());
    assert_eq!(
        s.store().current_revision(),
        3,
        "deleting nothing keeps the revision"
    );
    let w = s
        .delete_range(&DeleteRangeRequest {
            key: "a".into(),
            range_end: "\0".into(),
            prev_kv: true,
        })
        .unwrap();
    assert_eq!(w.response.deleted, 2);
    assert_eq!(w.response.prev_kvs.len(), 2);
    assert_eq!(w.response.header.unwrap().revision, 4);
    assert_eq!(w.events.len(), 2);
    assert!(
        w.events
            .iter()
            .all(|e| e.r#type == EventType::Delete as i32)
    );
    assert_eq!(w.events[1].prev_kv.as_ref().unwrap().value, b"2");
}
