//! Generators of random request sequences for the model test: a small key alphabet
//! (so requests collide), all Range options, nested txns, and lease operations.

use detcd_engine::pb::etcdserverpb::compare::TargetUnion;
use detcd_engine::pb::etcdserverpb::request_op::Request;
use detcd_engine::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use proptest::prelude::*;

/// One step of a random sequence.
#[derive(Debug, Clone)]
pub enum Op {
    Range(RangeRequest),
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(i64),
    HashKv(i64),
    Grant(i64, i64),
    Revoke(i64),
    Snapshot,
}

const KEYS: &[&[u8]] = &[b"\0", b"a", b"ab", b"b", b"c"];

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        30 => prop::sample::select(KEYS).prop_map(|k| k.to_vec()),
        1 => Just(vec![]),
    ]
}

fn range_end() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => Just(vec![]),
        1 => Just(vec![0]),
        3 => prop::sample::select(KEYS).prop_map(|k| k.to_vec()),
    ]
}

fn small_rev() -> impl Strategy<Value = i64> {
    prop_oneof![8 => Just(0i64), 3 => 1i64..14, 1 => -1i64..30]
}

fn range_req() -> impl Strategy<Value = RangeRequest> {
    let wide_end = prop_oneof![
        2 => Just(vec![]),
        2 => Just(vec![0]),
        3 => prop::sample::select(KEYS).prop_map(|k| k.to_vec()),
    ];
    (
        (
            key(),
            wide_end,
            prop_oneof![3 => Just(0i64), 2 => 1i64..4],
            small_rev(),
        ),
        (
            0i32..3,
            prop_oneof![2 => Just(0i32), 1 => 0i32..5],
            any::<bool>(),
            prop::bool::weighted(0.15),
        ),
        (
            prop_oneof![12 => Just(0i64), 1 => 1i64..12],
            prop_oneof![12 => Just(0i64), 1 => 1i64..12],
            prop_oneof![12 => Just(0i64), 1 => 1i64..12],
            prop_oneof![12 => Just(0i64), 1 => 1i64..12],
        ),
    )
        .prop_map(
            |((key, range_end, limit, revision), (order, target, keys_only, count_only), f)| {
                RangeRequest {
                    key,
                    range_end,
                    limit,
                    revision,
                    sort_order: order,
                    sort_target: target,
                    serializable: false,
                    keys_only,
                    count_only,
                    min_mod_revision: f.0,
                    max_mod_revision: f.1,
                    min_create_revision: f.2,
                    max_create_revision: f.3,
                }
            },
        )
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    const VALUES: &[&[u8]] = &[b"", b"x", b"y", b"zz"];
    prop::sample::select(VALUES).prop_map(|v| v.to_vec())
}

fn put_req() -> impl Strategy<Value = PutRequest> {
    (
        key(),
        value(),
        prop_oneof![7 => Just(0i64), 3 => 1i64..4],
        any::<bool>(),
        prop::bool::weighted(0.06),
        prop::bool::weighted(0.06),
    )
        .prop_map(
            |(key, value, lease, prev_kv, ignore_value, ignore_lease)| PutRequest {
                key,
                value,
                lease,
                prev_kv,
                ignore_value,
                ignore_lease,
            },
        )
}

fn delete_req() -> impl Strategy<Value = DeleteRangeRequest> {
    (key(), range_end(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

fn compare() -> impl Strategy<Value = Compare> {
    (
        0i32..4,
        0i32..5,
        key(),
        prop_oneof![4 => Just(vec![]), 1 => range_end()],
        0i64..8,
        value(),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(result, target, key, range_end, n, v, matching)| {
            let union = match (target, matching) {
                (0, true) => TargetUnion::Version(n),
                (1, true) => TargetUnion::CreateRevision(n),
                (2, true) => TargetUnion::ModRevision(n),
                (3, true) => TargetUnion::Value(v),
                (4, true) => TargetUnion::Lease(n % 4),
                _ => TargetUnion::Version(n),
            };
            Compare {
                result,
                target,
                key,
                range_end,
                target_union: Some(union),
            }
        })
}

fn leaf_op() -> impl Strategy<Value = RequestOp> {
    prop_oneof![
        range_req().prop_map(|r| Some(Request::RequestRange(r))),
        put_req().prop_map(|p| Some(Request::RequestPut(p))),
        delete_req().prop_map(|d| Some(Request::RequestDeleteRange(d))),
    ]
    .prop_map(|request| RequestOp { request })
}

fn txn_req() -> impl Strategy<Value = TxnRequest> {
    let ops = leaf_op().prop_recursive(2, 12, 3, |inner| {
        (
            prop::collection::vec(compare(), 0..3),
            prop::collection::vec(inner.clone(), 0..3),
            prop::collection::vec(inner, 0..3),
        )
            .prop_map(|(compare, success, failure)| RequestOp {
                request: Some(Request::RequestTxn(TxnRequest {
                    compare,
                    success,
                    failure,
                })),
            })
    });
    (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(ops.clone(), 0..4),
        prop::collection::vec(ops, 0..4),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
}

/// A random step.
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => range_req().prop_map(Op::Range),
        12 => put_req().prop_map(Op::Put),
        2 => delete_req().prop_map(Op::Delete),
        4 => txn_req().prop_map(Op::Txn),
        2 => (-1i64..14).prop_map(Op::Compact),
        1 => (-1i64..14).prop_map(Op::HashKv),
        2 => (prop_oneof![1 => Just(0i64), 6 => 1i64..4], 0i64..10)
            .prop_map(|(id, ttl)| Op::Grant(id, ttl)),
        2 => (0i64..4).prop_map(Op::Revoke),
        1 => Just(Op::Snapshot),
    ]
}
