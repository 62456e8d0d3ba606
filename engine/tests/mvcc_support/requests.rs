//! Request builders shared by the mvcc rule tests.

#![allow(dead_code)]

use detcd_engine::mvcc::{KvConfig, KvState};
use detcd_engine::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use detcd_engine::pb::etcdserverpb::request_op::Request;
use detcd_engine::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

/// The txn op limit the rule tests run with.
pub const TXN_OPS_MAX: usize = 4;

pub fn state() -> KvState {
    KvState::new(KvConfig {
        txn_ops_max: TXN_OPS_MAX,
        lease_ttl_s_min: 2,
    })
}

pub fn put_req(key: &str, value: &str, lease: i64) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        lease,
        ..Default::default()
    }
}

pub fn put(s: &mut KvState, key: &str, value: &str) -> i64 {
    let w = s.put(&put_req(key, value, 0)).expect("put");
    w.response.header.expect("header").revision
}

pub fn range(key: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

pub fn keys(s: &KvState, req: &RangeRequest) -> Vec<String> {
    s.range(req)
        .expect("range")
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

pub fn op(request: Request) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

pub fn op_put(key: &str, value: &str) -> RequestOp {
    op(Request::RequestPut(put_req(key, value, 0)))
}

pub fn op_del(key: &str, end: &str) -> RequestOp {
    op(Request::RequestDeleteRange(DeleteRangeRequest {
        key: key.into(),
        range_end: end.into(),
        prev_kv: false,
    }))
}

pub fn op_txn(
    compare: Vec<Compare>,
    success: Vec<RequestOp>,
    failure: Vec<RequestOp>,
) -> RequestOp {
    op(Request::RequestTxn(TxnRequest {
        compare,
        success,
        failure,
    }))
}

pub fn txn(success: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        success,
        ..Default::default()
    }
}

pub fn cmp(key: &str, result: CompareResult, target: CompareTarget, union: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.into(),
        range_end: vec![],
        target_union: Some(union),
    }
}
