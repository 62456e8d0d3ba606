//! Conversions between the checker's history requests and results and the wire
//! (etcd v3 gRPC) messages: a history request as a direct call ([`super::direct`]), a
//! reply as a history outcome, and the keep-alive stream over a gRPC channel. It records
//! nothing and decides nothing about outcomes.

use detcd_checker::history::{
    self as h, CompareResult, CompareTarget, DeleteRangeResult, LeaseGrantResult,
    LeaseKeepAliveResult, LeaseTimeToLiveResult, OkOutcome, Op, OpResult, PutResult, RangeResult,
    TxnResult,
};
use detcd_engine::pb::etcdserverpb::compare::{
    CompareResult as WireResult, CompareTarget as WireTarget, TargetUnion,
};
use detcd_engine::pb::etcdserverpb::lease_client::LeaseClient;
use detcd_engine::pb::etcdserverpb::request_op::Request as WireRequest;
use detcd_engine::pb::etcdserverpb::response_op::Response as WireResponse;
use detcd_engine::pb::etcdserverpb::{
    self as pb, CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest,
    LeaseRevokeRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest, RequestOp, ResponseOp,
    TxnRequest,
};
use detcd_engine::pb::mvccpb;
use tonic::transport::Channel;

use super::direct::{Call, Reply};

fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A history key-value from a wire key-value.
pub fn kv_to_history(kv: &mvccpb::KeyValue) -> h::KeyValue {
    h::KeyValue {
        key: text(&kv.key),
        value: text(&kv.value),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

fn range_request(q: &h::RangeRequest) -> RangeRequest {
    RangeRequest {
        key: bytes(&q.key),
        range_end: q.range_end.as_deref().map(bytes).unwrap_or_default(),
        revision: q.revision,
        limit: q.limit,
        count_only: q.count_only,
        keys_only: q.keys_only,
        serializable: q.serializable,
        ..RangeRequest::default()
    }
}

fn put_request(p: &h::PutRequest) -> PutRequest {
    PutRequest {
        key: bytes(&p.key),
        value: bytes(&p.value),
        lease: p.lease,
        prev_kv: p.prev_kv,
        ..PutRequest::default()
    }
}

fn delete_request(d: &h::DeleteRangeRequest) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: bytes(&d.key),
        range_end: d.range_end.as_deref().map(bytes).unwrap_or_default(),
        prev_kv: d.prev_kv,
    }
}

fn compare(c: &h::Compare) -> pb::Compare {
    let (target, union) = match &c.target {
        CompareTarget::Version(v) => (WireTarget::Version, TargetUnion::Version(*v)),
        CompareTarget::Create(v) => (WireTarget::Create, TargetUnion::CreateRevision(*v)),
        CompareTarget::Mod(v) => (WireTarget::Mod, TargetUnion::ModRevision(*v)),
        CompareTarget::Value(v) => (WireTarget::Value, TargetUnion::Value(bytes(v))),
        CompareTarget::Lease(v) => (WireTarget::Lease, TargetUnion::Lease(*v)),
    };
    let result = match c.result {
        CompareResult::Equal => WireResult::Equal,
        CompareResult::Greater => WireResult::Greater,
        CompareResult::Less => WireResult::Less,
        CompareResult::NotEqual => WireResult::NotEqual,
    };
    pb::Compare {
        result: result as i32,
        target: target as i32,
        key: bytes(&c.key),
        range_end: c.range_end.as_deref().map(bytes).unwrap_or_default(),
        target_union: Some(union),
    }
}

fn txn_request(t: &h::TxnRequest) -> Result<TxnRequest, String> {
    let ops = |ops: &[Op]| -> Result<Vec<RequestOp>, String> {
        ops.iter()
            .map(|op| {
                let request = match op {
                    Op::Range(q) => WireRequest::RequestRange(range_request(q)),
                    Op::Put(p) => WireRequest::RequestPut(put_request(p)),
                    Op::DeleteRange(d) => WireRequest::RequestDeleteRange(delete_request(d)),
                    Op::Txn(t) => WireRequest::RequestTxn(txn_request(t)?),
                    other => return Err(format!("not allowed in a txn: {other:?}")),
                };
                Ok(RequestOp {
                    request: Some(request),
                })
            })
            .collect()
    };
    Ok(TxnRequest {
        compare: t.compare.iter().map(compare).collect(),
        success: ops(&t.success)?,
        failure: ops(&t.failure)?,
    })
}

fn range_result(r: &pb::RangeResponse) -> RangeResult {
    RangeResult {
        kvs: r.kvs.iter().map(kv_to_history).collect(),
        count: r.count,
        more: r.more,
    }
}

fn put_result(r: &pb::PutResponse) -> PutResult {
    PutResult {
        prev_kv: r.prev_kv.as_ref().map(kv_to_history),
    }
}

fn delete_result(r: &pb::DeleteRangeResponse) -> DeleteRangeResult {
    DeleteRangeResult {
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.iter().map(kv_to_history).collect(),
    }
}

fn txn_result(r: &pb::TxnResponse) -> TxnResult {
    TxnResult {
        succeeded: r.succeeded,
        responses: r.responses.iter().filter_map(response_op).collect(),
    }
}

fn response_op(r: &ResponseOp) -> Option<OpResult> {
    Some(match r.response.as_ref()? {
        WireResponse::ResponseRange(x) => OpResult::Range(range_result(x)),
        WireResponse::ResponsePut(x) => OpResult::Put(put_result(x)),
        WireResponse::ResponseDeleteRange(x) => OpResult::DeleteRange(delete_result(x)),
        WireResponse::ResponseTxn(x) => OpResult::Txn(txn_result(x)),
    })
}

fn rev(header: Option<&pb::ResponseHeader>) -> i64 {
    header.map_or(0, |hd| hd.revision)
}

/// Whether an error message proves the request had no effect.
pub fn definitely_failed(message: &str) -> bool {
    [
        "compacted",
        "lease not found",
        "future revision",
        "lease already exists",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// The direct call ([`direct::Call`]) for a history request; `None` for a keep-alive,
/// which is a stream and goes through [`keep_alive`].
pub fn call_of(op: &Op) -> Result<Option<Call>, String> {
    Ok(Some(match op {
        Op::Range(q) => Call::Range(range_request(q)),
        Op::Put(p) => Call::Put(put_request(p)),
        Op::DeleteRange(d) => Call::DeleteRange(delete_request(d)),
        Op::Txn(t) => Call::Txn(txn_request(t)?),
        Op::Compact(c) => Call::Compact(CompactionRequest {
            revision: c.revision,
            physical: false,
        }),
        Op::LeaseGrant(g) => Call::LeaseGrant(LeaseGrantRequest {
            ttl: g.ttl,
            id: g.id,
        }),
        Op::LeaseRevoke(l) => Call::LeaseRevoke(LeaseRevokeRequest { id: l.id }),
        Op::LeaseKeepAlive(_) => return Ok(None),
        Op::LeaseTimeToLive(l) => Call::LeaseTimeToLive(LeaseTimeToLiveRequest {
            id: l.id,
            keys: l.keys,
        }),
    }))
}

/// The history outcome of a direct reply; `Err` carries an error the reply reports.
pub fn outcome_of(reply: Reply) -> Result<OkOutcome, String> {
    let (revision, result) = match reply {
        Reply::Range(r) => (rev(r.header.as_ref()), OpResult::Range(range_result(&r))),
        Reply::Put(r) => (rev(r.header.as_ref()), OpResult::Put(put_result(&r))),
        Reply::DeleteRange(r) => (
            rev(r.header.as_ref()),
            OpResult::DeleteRange(delete_result(&r)),
        ),
        Reply::Txn(r) => (rev(r.header.as_ref()), OpResult::Txn(txn_result(&r))),
        Reply::Compact(r) => (rev(r.header.as_ref()), OpResult::Compact {}),
        Reply::LeaseGrant(r) => {
            if !r.error.is_empty() {
                return Err(r.error);
            }
            (
                rev(r.header.as_ref()),
                OpResult::LeaseGrant(LeaseGrantResult {
                    id: r.id,
                    ttl: r.ttl,
                }),
            )
        }
        Reply::LeaseRevoke(r) => (rev(r.header.as_ref()), OpResult::LeaseRevoke {}),
        Reply::LeaseTimeToLive(r) => (
            rev(r.header.as_ref()),
            OpResult::LeaseTimeToLive(LeaseTimeToLiveResult {
                ttl: r.ttl,
                granted_ttl: r.granted_ttl,
                keys: r.keys.iter().map(|k| text(k)).collect(),
            }),
        ),
    };
    Ok(OkOutcome { revision, result })
}

/// Sends one keep-alive for lease `id` over `channel` (a stream of one request) and
/// waits for its answer; `Err` carries the gRPC error text.
pub async fn keep_alive(channel: &Channel, id: i64) -> Result<OkOutcome, String> {
    let err = |e: tonic::Status| e.message().to_owned();
    let mut lease = LeaseClient::new(channel.clone());
    let mut responses = lease
        .lease_keep_alive(tokio_stream::iter([LeaseKeepAliveRequest { id }]))
        .await
        .map_err(err)?
        .into_inner();
    let r = responses
        .message()
        .await
        .map_err(err)?
        .ok_or_else(|| "keep-alive stream closed".to_owned())?;
    Ok(OkOutcome {
        revision: rev(r.header.as_ref()),
        result: OpResult::LeaseKeepAlive(LeaseKeepAliveResult { ttl: r.ttl }),
    })
}
