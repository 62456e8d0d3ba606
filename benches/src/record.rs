//! Writes what a load run did as a history in the checker's JSON-lines format, using
//! the checker's own `detcd_checker::history` serde types, so `detcd-check` can judge a
//! live run and the two can never disagree on the format.
//!
//! Only the requests the load generators send are covered (put, range, delete, txn);
//! keys and values are ASCII, as the format wants UTF-8 strings (anything else is shown
//! lossily). It does not record watches or leases.

use detcd_checker::history::{
    DeleteRangeResult, KeyValue, Meta, Op, OpRecord, OpResult, PutRequest, PutResult, RangeRequest,
    RangeResult, Record, TxnRequest, TxnResult,
};
use detcd_engine::pb::{etcdserverpb as pb, mvccpb};
use std::io::Write;
use std::path::Path;

/// History format version written in the `meta` line.
pub const HISTORY_FORMAT_VERSION: u32 = 1;

/// The op of a put.
pub fn put_op(key: &str, value: &str) -> Op {
    Op::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
}

/// The op of a one-key range.
pub fn range_op(key: &str, serializable: bool) -> Op {
    Op::Range(RangeRequest {
        key: key.into(),
        serializable,
        ..Default::default()
    })
}

/// The op of a txn with no compares whose success branch is one put.
pub fn txn_put_op(key: &str, value: &str) -> Op {
    Op::Txn(TxnRequest {
        compare: vec![],
        success: vec![put_op(key, value)],
        failure: vec![],
    })
}

/// The result of a put.
pub fn put_result() -> OpResult {
    OpResult::Put(PutResult::default())
}

/// The result of a txn that ran its success branch of one put.
pub fn txn_put_result(succeeded: bool) -> OpResult {
    OpResult::Txn(TxnResult {
        succeeded,
        responses: if succeeded {
            vec![put_result()]
        } else {
            vec![]
        },
    })
}

/// The result of a range.
pub fn range_result(kvs: Vec<KeyValue>, count: i64, more: bool) -> OpResult {
    OpResult::Range(RangeResult { kvs, count, more })
}

/// Keys and values the generators write are ASCII; anything else is shown lossily.
pub fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The checker's view of a key-value from a response.
pub fn kv_from_pb(kv: &mvccpb::KeyValue) -> KeyValue {
    KeyValue {
        key: ascii(&kv.key),
        value: ascii(&kv.value),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

/// The header revision and the checker's view of a range response.
pub fn range_result_from_pb(r: pb::RangeResponse) -> (i64, OpResult) {
    let kvs = r.kvs.iter().map(kv_from_pb).collect();
    (revision(&r.header), range_result(kvs, r.count, r.more))
}

/// The header revision and the checker's view of a delete response.
pub fn delete_result_from_pb(r: pb::DeleteRangeResponse) -> (i64, OpResult) {
    let result = OpResult::DeleteRange(DeleteRangeResult {
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.iter().map(kv_from_pb).collect(),
    });
    (revision(&r.header), result)
}

/// The header revision and the checker's view of a txn response (nested ones too).
pub fn txn_result_from_pb(r: pb::TxnResponse) -> (i64, OpResult) {
    let responses = r
        .responses
        .into_iter()
        .filter_map(|op| op.response)
        .map(|resp| match resp {
            pb::response_op::Response::ResponseRange(r) => range_result_from_pb(r).1,
            pb::response_op::Response::ResponsePut(r) => OpResult::Put(PutResult {
                prev_kv: r.prev_kv.as_ref().map(kv_from_pb),
            }),
            pb::response_op::Response::ResponseDeleteRange(r) => delete_result_from_pb(r).1,
            pb::response_op::Response::ResponseTxn(r) => txn_result_from_pb(r).1,
        })
        .collect();
    let result = OpResult::Txn(TxnResult {
        succeeded: r.succeeded,
        responses,
    });
    (revision(&r.header), result)
}

fn revision(header: &Option<pb::ResponseHeader>) -> i64 {
    header.as_ref().map_or(0, |h| h.revision)
}

/// Writes a `meta` line and then `records` sorted by call time to `path`.
pub fn write_history(path: &Path, source: &str, records: &mut [OpRecord]) -> std::io::Result<()> {
    records.sort_by_key(|r| (r.call, r.client));
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let meta = Record::Meta(Meta {
        version: HISTORY_FORMAT_VERSION,
        source: source.into(),
    });
    writeln!(out, "{}", serde_json::to_string(&meta)?)?;
    for r in records.iter() {
        writeln!(out, "{}", serde_json::to_string(&Record::Op(r.clone()))?)?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use detcd_checker::history::{History, OkOutcome, Outcome};

    fn ok_put(client: u64, call: u64) -> OpRecord {
        OpRecord {
            client,
            call,
            ret: Some(call + 1),
            op: put_op("k", "v"),
            outcome: Outcome::Ok(OkOutcome {
                revision: 2,
                result: put_result(),
            }),
        }
    }

    #[test]
    fn history_file_is_sorted_by_call_and_parses_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.jsonl");
        let mut unknown = ok_put(3, 20);
        unknown.ret = None;
        unknown.outcome = Outcome::Unknown;
        let mut range = ok_put(4, 40);
        range.op = range_op("k", true);
        range.outcome = Outcome::Ok(OkOutcome {
            revision: 2,
            result: range_result(
                vec![KeyValue {
                    key: "k".into(),
                    value: "v".into(),
                    create_revision: 2,
                    mod_revision: 2,
                    version: 1,
                    lease: 0,
                }],
                1,
                false,
            ),
        });
        let mut txn = ok_put(5, 50);
        txn.op = txn_put_op("k", "w");
        txn.outcome = Outcome::Ok(OkOutcome {
            revision: 3,
            result: txn_put_result(true),
        });
        let mut recs = [ok_put(2, 30), ok_put(1, 10), unknown, range, txn];
        write_history(&path, "test", &mut recs).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6);
        assert!(lines[0].contains("\"meta\""));
        assert!(lines[1].contains("\"call\":10") && lines[2].contains("\"call\":20"));
        assert!(!lines[2].contains("\"ret\"") && lines[2].contains("\"unknown\""));
        let h = History::parse(&text).expect("the checker parses what we write");
        assert_eq!(h.meta.map(|m| m.source), Some("test".to_string()));
        let calls: Vec<u64> = h.ops.iter().map(|o| o.rec.call).collect();
        assert_eq!(calls, vec![10, 20, 30, 40, 50]);
        assert_eq!(h.ops[4].rec.op, txn_put_op("k", "w"));
    }
}
