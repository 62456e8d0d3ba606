//! Table-style tests of etcd's rules that the model test covers only statistically:
//! range_end conventions, sort defaults, error texts, txn rules, lease revoke and
//! expiry, snapshots and HashKV.

use detcd_engine::mvcc::{KvConfig, KvState, MvccError, SnapshotError};
use detcd_engine::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use detcd_engine::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use detcd_engine::pb::etcdserverpb::request_op::Request;
use detcd_engine::pb::etcdserverpb::response_op::Response;
use detcd_engine::pb::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, TxnResponse,
};
use detcd_engine::pb::mvccpb::event::EventType;
use proptest::prelude::*;

const TXN_OPS_MAX: usize = 4;

fn state() -> KvState {
    KvState::new(KvConfig {
        txn_ops_max: TXN_OPS_MAX,
        lease_ttl_s_min: 2,
    })
}

fn put_req(key: &str, value: &str, lease: i64) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        lease,
        ..Default::default()
    }
}

fn put(s: &mut KvState, key: &str, value: &str) -> i64 {
    let w = s.put(&put_req(key, value, 0)).expect("put");
    w.response.header.expect("header").revision
}

fn range(key: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

fn keys(s: &KvState, req: &RangeRequest) -> Vec<String> {
    s.range(req)
        .expect("range")
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn op(request: Request) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

fn op_put(key: &str, value: &str) -> RequestOp {
    op(Request::RequestPut(put_req(key, value, 0)))
}

fn op_del(key: &str, end: &str) -> RequestOp {
    op(Request::RequestDeleteRange(DeleteRangeRequest {
        key: key.into(),
        range_end: end.into(),
        prev_kv: false,
    }))
}

fn op_txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
    op(Request::RequestTxn(TxnRequest {
        compare,
        success,
        failure,
    }))
}

fn txn(success: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        success,
        ..Default::default()
    }
}

fn cmp(key: &str, result: CompareResult, target: CompareTarget, union: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.into(),
        range_end: vec![],
        target_union: Some(union),
    }
}

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

fn txn_ok(s: &mut KvState, t: &TxnRequest) -> TxnResponse {
    s.txn(t).expect("txn").response
}

#[test]
fn txn_writes_share_one_revision_and_see_each_other() {
    let mut s = state();
    let t = txn(vec![
        op_put("a", "1"),
        op_put("b", "2"),
        op(Request::RequestRange(range("a", "\0"))),
    ]);
    let w = s.txn(&t).unwrap();
    assert_eq!(w.response.header.unwrap().revision, 2);
    assert_eq!(w.events.len(), 2);
    let Some(Response::ResponseRange(r)) = &w.response.responses[2].response else {
        panic!("range response expected");
    };
    assert_eq!(r.kvs.len(), 2, "the range sees the txn's own puts");
    assert_eq!(r.header.unwrap().revision, 2);
    assert!(r.kvs.iter().all(|kv| kv.mod_revision == 2));
    // A read-only txn does not move the revision.
    let read = txn_ok(
        &mut s,
        &txn(vec![op(Request::RequestRange(range("a", "")))]),
    );
    assert_eq!(read.header.unwrap().revision, 2);
    // A write txn that changes nothing does not either.
    let noop = txn_ok(&mut s, &txn(vec![op_del("zz", "")]));
    assert_eq!(noop.header.unwrap().revision, 2);
    assert_eq!(s.store().current_revision(), 2);
}

#[test]
fn txn_compares() {
    let mut s = state();
    put(&mut s, "a", "1"); // rev 2
    put(&mut s, "b", "2"); // rev 3
    let check = |s: &mut KvState, c: Compare| {
        txn_ok(
            s,
            &TxnRequest {
                compare: vec![c],
                ..Default::default()
            },
        )
        .succeeded
    };
    use CompareResult::*;
    use CompareTarget as T;
    assert!(check(
        &mut s,
        cmp("a", Equal, T::Value, TargetUnion::Value("1".into()))
    ));
    assert!(check(
        &mut s,
        cmp("a", Greater, T::Value, TargetUnion::Value("0".into()))
    ));
    assert!(check(
        &mut s,
        cmp("a", Equal, T::Version, TargetUnion::Version(1))
    ));
    assert!(check(
        &mut s,
        cmp("a", Equal, T::Create, TargetUnion::CreateRevision(2))
    ));
    assert!(check(
        &mut s,
        cmp("b", Greater, T::Mod, TargetUnion::ModRevision(2))
    ));
    assert!(check(
        &mut s,
        cmp("a", Equal, T::Lease, TargetUnion::Lease(0))
    ));
    assert!(check(
        &mut s,
        cmp("a", NotEqual, T::Version, TargetUnion::Version(5))
    ));
    assert!(!check(
        &mut s,
        cmp("a", Less, T::Version, TargetUnion::Version(1))
    ));
    // A missing key: value compares fail, others compare against zero.
    assert!(!check(
        &mut s,
        cmp("x", Equal, T::Value, TargetUnion::Value(vec![]))
    ));
    assert!(!check(
        &mut s,
        cmp("x", NotEqual, T::Value, TargetUnion::Value("q".into()))
    ));
    assert!(check(
        &mut s,
        cmp("x", Equal, T::Version, TargetUnion::Version(0))
    ));
    assert!(check(
        &mut s,
        cmp("x", Equal, T::Create, TargetUnion::CreateRevision(0))
    ));
    // A compare over a range holds only if it holds for every key.
    let mut over = cmp("a", Greater, T::Mod, TargetUnion::ModRevision(1));
    over.range_end = "\0".into();
    assert!(check(&mut s, over.clone()));
    over.target_union = Some(TargetUnion::ModRevision(2));
    assert!(!check(&mut s, over));
    assert_eq!(s.store().current_revision(), 3);
}

#[test]
fn nested_compares_see_the_state_before_the_txn() {
    let mut s = state();
    let absent = cmp(
        "a",
        CompareResult::Equal,
        CompareTarget::Version,
        TargetUnion::Version(0),
    );
    let t = txn(vec![
        op_put("a", "1"),
        op_txn(
            vec![absent],
            vec![op_put("b", "yes")],
            vec![op_put("c", "no")],
        ),
    ]);
    let r = txn_ok(&mut s, &t);
    let Some(Response::ResponseTxn(nested)) = &r.responses[1].response else {
        panic!("nested txn response expected");
    };
    assert!(nested.succeeded);
    assert!(s.store().get(b"b").is_some());
    assert!(s.store().get(b"c").is_none());
}

#[test]
fn duplicate_key_rule() {
    let table: Vec<(&str, TxnRequest, bool)> = vec![
        (
            "put twice",
            txn(vec![op_put("a", "1"), op_put("a", "2")]),
            true,
        ),
        (
            "put inside a delete",
            txn(vec![op_del("a", "c"), op_put("b", "1")]),
            true,
        ),
        (
            "put after delete-to-end",
            txn(vec![op_del("a", "\0"), op_put("b", "1")]),
            true,
        ),
        (
            "put beside a delete",
            txn(vec![op_del("a", "b"), op_put("b", "1")]),
            false,
        ),
        (
            "overlapping deletes",
            txn(vec![op_del("a", "c"), op_del("b", "d")]),
            false,
        ),
        (
            "then and else of one nested txn",
            txn(vec![op_txn(
                vec![],
                vec![op_put("a", "1")],
                vec![op_put("a", "2")],
            )]),
            false,
        ),
        (
            "nested put and outer put",
            txn(vec![
                op_put("a", "1"),
                op_txn(vec![], vec![op_put("a", "2")], vec![]),
            ]),
            true,
        ),
        (
            "nested delete and outer put",
            txn(vec![
                op_put("a", "1"),
                op_txn(vec![], vec![op_del("a", "")], vec![]),
            ]),
            true,
        ),
        (
            "earlier nested delete, later nested put",
            txn(vec![
                op_txn(vec![], vec![op_del("a", "")], vec![]),
                op_txn(vec![], vec![op_put("a", "1")], vec![]),
            ]),
            true,
        ),
        (
            "earlier nested put, later nested delete (etcd accepts it)",
            txn(vec![
                op_txn(vec![], vec![op_put("a", "1")], vec![]),
                op_txn(vec![], vec![op_del("a", "")], vec![]),
            ]),
            false,
        ),
    ];
    for (name, t, dup) in table {
        let mut s = state();
        let got = s.txn(&t).map(|_| ());
        if dup {
            let err = got.expect_err(name);
            assert_eq!(
                err.to_string(),
                "etcdserver: duplicate key given in txn request"
            );
            assert_eq!(err.code().as_u8(), 3);
        } else {
            assert!(got.is_ok(), "{name}: {got:?}");
        }
    }
}

#[test]
fn put_then_delete_in_one_txn_gives_two_events() {
    let mut s = state();
    put(&mut s, "a", "0");
    let w = s
        .txn(&txn(vec![
            op_txn(vec![], vec![op_put("a", "1")], vec![]),
            op_txn(vec![], vec![op_del("a", "")], vec![]),
        ]))
        .unwrap();
    let kinds: Vec<i32> = w.events.iter().map(|e| e.r#type).collect();
    assert_eq!(kinds, [EventType::Put as i32, EventType::Delete as i32]);
    // Both events' prev_kv is the value before the txn, as a watcher reading at the
    // previous revision sees it; replay gives the same.
    assert!(
        w.events
            .iter()
            .all(|e| e.prev_kv.as_ref().unwrap().value == b"0")
    );
    assert_eq!(s.events(b"a", b"", 3, 3).unwrap(), w.events);
    assert!(s.store().get(b"a").is_none());
}

#[test]
fn txn_request_checks() {
    let mut s = state();
    let many = |n| txn((0..n).map(|i| op_put(&format!("k{i}"), "v")).collect());
    assert!(s.txn(&many(TXN_OPS_MAX)).is_ok());
    let err = s.txn(&many(TXN_OPS_MAX + 1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "etcdserver: too many operations in txn request"
    );
    // A nested txn may use only what its parent leaves: 4 - 2 = 2 ops.
    let nested = |n: usize| {
        txn(vec![
            op_put("x", "1"),
            op_txn(
                vec![],
                (0..n).map(|i| op_put(&format!("n{i}"), "v")).collect(),
                vec![],
            ),
        ])
    };
    assert!(s.txn(&nested(2)).is_ok());
    assert_eq!(s.txn(&nested(3)).unwrap_err(), MvccError::TooManyOps);
    let too_many_compares = TxnRequest {
        compare: (0..5)
            .map(|_| {
                cmp(
                    "a",
                    CompareResult::Equal,
                    CompareTarget::Version,
                    TargetUnion::Version(0),
                )
            })
            .collect(),
        ..Default::default()
    };
    assert_eq!(
        s.txn(&too_many_compares).unwrap_err(),
        MvccError::TooManyOps
    );
    let empty_compare_key = TxnRequest {
        compare: vec![cmp(
            "",
            CompareResult::Equal,
            CompareTarget::Version,
            TargetUnion::Version(0),
        )],
        ..Default::default()
    };
    assert_eq!(s.txn(&empty_compare_key).unwrap_err(), MvccError::EmptyKey);
    let empty_op = txn(vec![RequestOp { request: None }]);
    assert_eq!(
        s.txn(&empty_op).unwrap_err().to_string(),
        "etcdserver: key not found"
    );
}

#[test]
fn a_failing_txn_applies_nothing() {
    let mut s = state();
    put(&mut s, "a", "1");
    let before = s.snapshot();
    let missing_lease = txn(vec![
        op_put("b", "1"),
        op(Request::RequestPut(put_req("c", "1", 9))),
    ]);
    assert_eq!(s.txn(&missing_lease).unwrap_err(), MvccError::LeaseNotFound);
    let future_read = txn(vec![
        op_put("b", "1"),
        op(Request::RequestRange(RangeRequest {
            revision: 3,
            ..range("a", "")
        })),
    ]);
    assert_eq!(s.txn(&future_read).unwrap_err(), MvccError::FutureRevision);
    let ignore_missing = txn(vec![op(Request::RequestPut(PutRequest {
        key: "zz".into(),
        ignore_value: true,
        ..Default::default()
    }))]);
    assert_eq!(s.txn(&ignore_missing).unwrap_err(), MvccError::KeyNotFound);
    assert_eq!(s.snapshot(), before);
}

#[test]
fn lease_revoke_deletes_keys_in_one_revision() {
    let mut s = state();
    let grant = s
        .lease_grant(&LeaseGrantRequest { ttl: 1, id: 7 }, 0)
        .unwrap();
    assert_eq!((grant.id, grant.ttl), (7, 2), "raised to the minimum TTL");
    let err = s
        .lease_grant(&LeaseGrantRequest { ttl: 10, id: 7 }, 0)
        .unwrap_err();
    assert_eq!(err.to_string(), "etcdserver: lease already exists");
    assert_eq!(err.code().as_u8(), 9);
    for k in ["c", "a", "b"] {
        s.put(&put_req(k, "v", 7)).unwrap();
    }
    put(&mut s, "b", "unleased"); // detached again
    let before = s.store().current_revision();
    let w = s.lease_revoke(&LeaseRevokeRequest { id: 7 }).unwrap();
    assert_eq!(w.response.header.unwrap().revision, before + 1);
    let deleted: Vec<&[u8]> = w
        .events
        .iter()
        .map(|e| e.kv.as_ref().unwrap().key.as_slice())
        .collect();
    assert_eq!(deleted, [b"a", b"c"]);
    assert!(
        w.events
            .iter()
            .all(|e| e.kv.as_ref().unwrap().mod_revision == before + 1)
    );
    assert_eq!(keys(&s, &range("\0", "\0")), ["b"]);
    assert_eq!(
        s.lease_revoke(&LeaseRevokeRequest { id: 7 }).unwrap_err(),
        MvccError::LeaseNotFound
    );
    // Revoking a lease without keys does not move the revision.
    s.lease_grant(&LeaseGrantRequest { ttl: 10, id: 8 }, 0)
        .unwrap();
    let w = s.lease_revoke(&LeaseRevokeRequest { id: 8 }).unwrap();
    assert!(w.events.is_empty());
    assert_eq!(w.response.header.unwrap().revision, before + 1);
}

#[test]
fn lease_expiry_with_a_passed_in_clock() {
    let mut s = state();
    s.promote(1_000, 0);
    s.lease_grant(&LeaseGrantRequest { ttl: 10, id: 1 }, 1_000)
        .unwrap();
    s.lease_grant(&LeaseGrantRequest { ttl: 20, id: 2 }, 1_000)
        .unwrap();
    s.put(&put_req("k", "v", 1)).unwrap();
    assert!(s.expired_leases(10_999, 10).is_empty());
    assert_eq!(s.expired_leases(11_000, 10), [1]);
    let ttl = s
        .lease_time_to_live(&LeaseTimeToLiveRequest { id: 2, keys: false }, 11_000)
        .unwrap();
    assert_eq!((ttl.ttl, ttl.granted_ttl), (10, 20));
    // Nothing is deleted until the revoke is applied.
    assert!(s.store().get(b"k").is_some());
    s.lease_revoke(&LeaseRevokeRequest { id: 1 }).unwrap();
    assert!(s.store().get(b"k").is_none());
    // A restored member renews on promotion: nothing expires from old time.
    let mut restored = KvState::restore(&s.snapshot(), s.config()).unwrap();
    assert!(restored.expired_leases(u64::MAX, 10).is_empty());
    restored.promote(500_000, 1_000);
    assert!(restored.expired_leases(520_999, 10).is_empty());
    assert_eq!(restored.expired_leases(521_000, 10), [2]);
}

fn sample_state() -> KvState {
    let mut s = state();
    s.lease_grant(&LeaseGrantRequest { ttl: 30, id: 3 }, 0)
        .unwrap();
    put(&mut s, "a", "1");
    s.put(&put_req("b", "2", 3)).unwrap();
    put(&mut s, "a", "3");
    s.delete_range(&DeleteRangeRequest {
        key: "a".into(),
        ..Default::default()
    })
    .unwrap();
    s.compact(&CompactionRequest {
        revision: 3,
        physical: false,
    })
    .unwrap();
    put(&mut s, "c", "4");
    s.set_applied_index(42);
    s
}

#[test]
fn snapshot_round_trip() {
    let s = sample_state();
    let r = KvState::restore(&s.snapshot(), s.config()).unwrap();
    assert_eq!(r, s);
    assert_eq!(r.applied_index(), 42);
    assert_eq!(r.hash_kv(0), s.hash_kv(0));
    for rev in 0..=s.store().current_revision() + 1 {
        let req = RangeRequest {
            revision: rev,
            ..range("\0", "\0")
        };
        assert_eq!(r.range(&req), s.range(&req), "at {rev}");
    }
    assert_eq!(
        r.events(b"\0", b"\0", 3, 100),
        s.events(b"\0", b"\0", 3, 100)
    );
    let keys_of = |st: &KvState| {
        st.lease_time_to_live(&LeaseTimeToLiveRequest { id: 3, keys: true }, 0)
            .unwrap()
            .keys
    };
    assert_eq!(keys_of(&r), vec![b"b".to_vec()]);
}

#[test]
fn corrupt_snapshots_are_errors() {
    let bytes = sample_state().snapshot();
    let config = state().config();
    assert!(matches!(
        KvState::restore(&bytes[..5], config),
        Err(SnapshotError::TooShort { .. })
    ));
    let mut bad_magic = bytes.clone();
    bad_magic[0] ^= 0xff;
    assert_eq!(
        KvState::restore(&bad_magic, config).unwrap_err(),
        SnapshotError::BadMagic
    );
    let mut future = bytes.clone();
    future[5] = 99;
    assert!(matches!(
        KvState::restore(&future, config),
        Err(SnapshotError::UnsupportedVersion(_))
    ));
    for cut in 0..bytes.len() {
        assert!(
            KvState::restore(&bytes[..cut], config).is_err(),
            "cut at {cut}"
        );
    }
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut flipped = bytes.clone();
            flipped[i] ^= bit;
            assert!(KvState::restore(&flipped, config).is_err(), "flip at {i}");
        }
    }
}

#[test]
fn hash_kv_agrees_on_equal_histories_only() {
    let a = sample_state();
    let b = sample_state();
    assert_eq!(a.hash_kv(0).unwrap().hash, b.hash_kv(0).unwrap().hash);
    let mut c = sample_state();
    put(&mut c, "c", "5");
    assert_ne!(a.hash_kv(0).unwrap().hash, c.hash_kv(0).unwrap().hash);
    // The hash at an older revision ignores later changes.
    assert_eq!(
        a.hash_kv(a.store().current_revision()).unwrap().hash,
        c.hash_kv(a.store().current_revision()).unwrap().hash
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary bytes, or a snapshot with arbitrary bytes spliced in, never panic.
    #[test]
    fn restore_never_panics(junk in prop::collection::vec(any::<u8>(), 0..64), at in any::<prop::sample::Index>()) {
        let config = state().config();
        let _ = KvState::restore(&junk, config);
        let mut bytes = sample_state().snapshot();
        let i = at.index(bytes.len());
        bytes.splice(i..i, junk.iter().copied());
        prop_assert!(junk.is_empty() || KvState::restore(&bytes, config).is_err());
    }
}
