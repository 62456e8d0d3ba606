//! Table-style tests of etcd's Txn rules: one revision per txn, ops seeing earlier
//! writes, compares, nested txns, the duplicate-key rule, op limits, atomicity.

#[path = "mvcc_support/requests.rs"]
mod support;

use support::*;

use detcd_engine::mvcc::{KvState, MvccError};
use detcd_engine::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use detcd_engine::pb::etcdserverpb::request_op::Request;
use detcd_engine::pb::etcdserverpb::response_op::Response;
use detcd_engine::pb::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RequestOp, TxnRequest, TxnResponse,
};
use detcd_engine::pb::mvccpb::event::EventType;

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
    // Missing key and missing lease: a txn reports the key, a plain put the lease.
    let both_missing = PutRequest {
        key: "zz".into(),
        ignore_value: true,
        lease: 9,
        ..Default::default()
    };
    let in_txn = txn(vec![op(Request::RequestPut(both_missing.clone()))]);
    assert_eq!(s.txn(&in_txn).unwrap_err(), MvccError::KeyNotFound);
    assert_eq!(s.put(&both_missing).unwrap_err(), MvccError::LeaseNotFound);
    assert_eq!(s.snapshot(), before);
}

/// Writes made without their events (no watcher) leave the same state and answers as
/// with them, and the history still yields the events a later watcher reads.
#[test]
fn writes_without_events_change_nothing_but_the_events() {
    use detcd_engine::pb::etcdserverpb::DeleteRangeRequest;
    let mut with = state();
    let mut without = state();
    let mut p = put_req("a", "1", 0);
    p.prev_kv = true;
    let mut p2 = put_req("a", "2", 0);
    p2.prev_kv = true;
    let mut ignore = put_req("a", "", 0);
    ignore.ignore_value = true;
    ignore.prev_kv = true;
    for req in [p, p2, put_req("b", "3", 0), ignore] {
        let a = with.put(&req).expect("put");
        let b = without.put_with_events(&req, false).expect("put");
        assert_eq!(a.response, b.response);
        assert_eq!(a.events.len(), 1);
        assert!(b.events.is_empty());
        let rev = a.response.header.expect("header").revision;
        assert_eq!(without.events(&req.key, b"", rev, rev).unwrap(), a.events);
    }
    let t = txn(vec![op_put("c", "4"), op_del("b", "")]);
    let a = with.txn(&t).expect("txn");
    let b = without.txn_with_events(&t, false).expect("txn");
    assert_eq!(a.response, b.response);
    assert_eq!(a.events.len(), 2);
    assert!(b.events.is_empty());
    let d = DeleteRangeRequest {
        key: b"a".to_vec(),
        prev_kv: true,
        ..DeleteRangeRequest::default()
    };
    let a = with.delete_range(&d).expect("delete");
    let b = without.delete_range_with_events(&d, false).expect("delete");
    assert_eq!(a.response, b.response);
    assert_eq!(a.events.len(), 1);
    assert!(b.events.is_empty());
    assert_eq!(with, without);
}
