//! Conversion of one report record into the checker's history records. Whatever the
//! report does not say precisely enough to judge is mapped to the weakest honest form
//! (an unknown outcome, a partially compared watch event); nothing here judges.

use super::format::{
    ReportEvent, ReportKv, ReportOpResult, ReportOperation, ReportRange, ReportRequest,
    ReportTxnOp, ReportWatch, ValueOrHash,
};
use super::known::Known;
use crate::history::{
    CompactRequest, Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResult,
    Event, EventKind, KeyValue, LeaseGrantRequest, LeaseGrantResult, LeaseIdRequest, OkOutcome, Op,
    OpRecord, OpResult, Outcome, PutRequest, PutResult, RangeRequest, RangeResult, TxnRequest,
    TxnResult, WatchEventsRecord, WatchProgressRecord, WatchRecord, WatchRequest, WatchResponse,
};

/// The checker's text for a reported value. A hashed value becomes a marker at least
/// 20 bytes long, which no plain value in a report can equal (longer values are always
/// hashed), so equal markers mean equal values up to hash collisions.
pub fn value_text(v: &Option<ValueOrHash>) -> String {
    match v {
        Some(v) if v.hash != 0 => format!("<hashed value fnv32a={}>", v.hash),
        Some(v) => v.value.clone(),
        None => String::new(),
    }
}

/// Converts one operation of client `client`. `Ok(None)`: an operation without effect
/// on keys (defragment) that is left out.
pub fn operation(
    client: u64,
    rep: &ReportOperation,
    known: &Known,
) -> Result<Option<OpRecord>, String> {
    let input = rep.input.as_ref().ok_or("operation without Input")?;
    let call = u64::try_from(rep.call).map_err(|_| format!("negative Call {}", rep.call))?;
    let Some(op) = request(input)? else {
        return Ok(None);
    };
    let out = rep.output.as_ref().ok_or("operation without Output")?;
    let unknown = |op: Op| {
        Ok(Some(OpRecord {
            client,
            call,
            ret: None,
            op,
            outcome: Outcome::Unknown,
        }))
    };
    // An error seen by the client, or a write found persisted without its answer:
    // it may have happened, at no known revision.
    if !out.error.is_empty() || out.persisted {
        return unknown(op);
    }
    let ret = u64::try_from(rep.ret)
        .ok()
        .filter(|r| *r >= call)
        .ok_or_else(|| format!("Return {} is before Call {}", rep.ret, rep.call))?;
    if !out.client_error.is_empty() {
        return Ok(Some(OpRecord {
            client,
            call,
            ret: Some(ret),
            op,
            outcome: Outcome::Fail(out.client_error.clone()),
        }));
    }
    // A response marked as not linearizable carries no revision to place it at.
    if out.revision < 0 {
        return unknown(op);
    }
    let result = match (&op, input.kind.as_str()) {
        (Op::Range(r), _) => {
            let body = out.range.as_ref().ok_or("range response without Range")?;
            range_result(r.limit, &body.kvs, body.count, known)
        }
        (Op::Txn(t), _) => {
            let body = out.txn.as_ref().ok_or("txn response without Txn")?;
            let branch = if body.failure { &t.failure } else { &t.success };
            let results: &[ReportOpResult] = body.results.as_deref().unwrap_or(&[]);
            if results.len() != branch.len() {
                return Err(format!(
                    "txn branch has {} operations but {} results",
                    branch.len(),
                    results.len()
                ));
            }
            let mut responses = Vec::with_capacity(branch.len());
            for (o, r) in branch.iter().zip(results) {
                responses.push(match o {
                    Op::Range(q) => range_result(q.limit, &r.kvs, r.count, known),
                    Op::Put(_) => Some(OpResult::Put(PutResult::default())),
                    _ => Some(OpResult::DeleteRange(DeleteRangeResult {
                        deleted: r.deleted,
                        prev_kvs: Vec::new(),
                    })),
                });
            }
            responses
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .map(|responses| {
                    OpResult::Txn(TxnResult {
                        succeeded: !body.failure,
                        responses,
                    })
                })
        }
        (Op::LeaseGrant(g), _) => Some(OpResult::LeaseGrant(LeaseGrantResult {
            id: out.lease_grant.as_ref().map_or(g.id, |l| l.lease_id),
            ttl: g.ttl,
        })),
        (Op::LeaseRevoke(_), _) => Some(OpResult::LeaseRevoke {}),
        (Op::Compact(_), _) => Some(OpResult::Compact {}),
        (_, kind) => return Err(format!("unexpected request type {kind}")),
    };
    match result {
        Some(result) => Ok(Some(OpRecord {
            client,
            call,
            ret: Some(ret),
            op,
            outcome: Outcome::Ok(OkOutcome {
                revision: out.revision,
                result,
            }),
        })),
        None => unknown(op),
    }
}

fn request(r: &ReportRequest) -> Result<Option<Op>, String> {
    let missing = |what: &str| format!("{} request without {what}", r.kind);
    Ok(Some(match r.kind.as_str() {
        "range" => {
            let q = r.range.as_ref().ok_or_else(|| missing("Range"))?;
            Op::Range(range_request(q, q.revision))
        }
        "txn" => {
            let t = r.txn.as_ref().ok_or_else(|| missing("Txn"))?;
            let compare = t
                .conditions
                .iter()
                .flatten()
                .map(|c| Compare {
                    key: c.key.clone(),
                    range_end: None,
                    target: if c.expected_version > 0 {
                        CompareTarget::Version(c.expected_version)
                    } else {
                        CompareTarget::Mod(c.expected_revision)
                    },
                    result: CompareResult::Equal,
                })
                .collect();
            let ops = |v: &Option<Vec<ReportTxnOp>>| -> Result<Vec<Op>, String> {
                v.iter().flatten().map(txn_op).collect()
            };
            Op::Txn(TxnRequest {
                compare,
                success: ops(&t.operations_on_success)?,
                failure: ops(&t.operations_on_failure)?,
            })
        }
        "leaseGrant" => {
            let l = r
                .lease_grant
                .as_ref()
                .ok_or_else(|| missing("LeaseGrant"))?;
            Op::LeaseGrant(LeaseGrantRequest {
                id: l.lease_id,
                ttl: 0,
            })
        }
        "leaseRevoke" => {
            let l = r
                .lease_revoke
                .as_ref()
                .ok_or_else(|| missing("LeaseRevoke"))?;
            Op::LeaseRevoke(LeaseIdRequest { id: l.lease_id })
        }
        "compact" => {
            let c = r.compact.as_ref().ok_or_else(|| missing("Compact"))?;
            Op::Compact(CompactRequest {
                revision: c.revision,
            })
        }
        "defragment" => return Ok(None),
        other => return Err(format!("unknown request type {other:?}")),
    }))
}

fn range_request(q: &ReportRange, revision: i64) -> RangeRequest {
    RangeRequest {
        key: q.start.clone(),
        range_end: (!q.end.is_empty()).then(|| q.end.clone()),
        revision,
        limit: q.limit,
        ..Default::default()
    }
}

fn txn_op(o: &ReportTxnOp) -> Result<Op, String> {
    let missing = |what: &str| format!("{} without {what}", o.kind);
    Ok(match o.kind.as_str() {
        "range-operation" => {
            let q = o.range.as_ref().ok_or_else(|| missing("Range"))?;
            Op::Range(range_request(q, 0))
        }
        "put-operation" => {
            let p = o.put.as_ref().ok_or_else(|| missing("Put"))?;
            Op::Put(PutRequest {
                key: p.key.clone(),
                value: value_text(&p.value),
                lease: p.lease_id,
                prev_kv: false,
            })
        }
        "delete-operation" => {
            let d = o.delete.as_ref().ok_or_else(|| missing("Delete"))?;
            Op::DeleteRange(DeleteRangeRequest {
                key: d.key.clone(),
                range_end: None,
                prev_kv: false,
            })
        }
        other => return Err(format!("unknown txn operation type {other:?}")),
    })
}

/// A range result, or `None` when a key-value cannot be judged: the reports give no
/// lease and no create revision (known for version 1, or from a watch that saw the
/// creation).
fn range_result(
    limit: i64,
    kvs: &Option<Vec<ReportKv>>,
    count: i64,
    known: &Known,
) -> Option<OpResult> {
    let mut out = Vec::new();
    for kv in kvs.iter().flatten() {
        if kv.version < 1 || known.leased(&kv.key) {
            return None;
        }
        out.push(KeyValue {
            key: kv.key.clone(),
            value: value_text(&kv.value),
            create_revision: known.create_revision(&kv.key, kv.mod_revision, kv.version)?,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: 0,
        });
    }
    let more = limit > 0 && count > out.len() as i64;
    Some(OpResult::Range(RangeResult {
        kvs: out,
        count,
        more,
    }))
}

/// The first key after every key with prefix `key`, when it is valid UTF-8.
fn prefix_end(key: &str) -> Result<String, String> {
    if key.is_empty() {
        return Ok("\u{0}".into());
    }
    let mut bytes = key.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).map_err(|e| e.to_string());
        }
        if last < 0xff {
            return Err(format!("prefix end of {key:?} is not UTF-8"));
        }
    }
    Ok("\u{0}".into())
}

/// Converts watch `watch` (1-based within the client) of client `client`. The reports
/// record no time for the watch request, so it is taken as opened at time 0.
pub fn watch(
    client: u64,
    watch: u64,
    rep: &ReportWatch,
) -> Result<(WatchRecord, Vec<WatchResponse>), String> {
    let r = &rep.request;
    let create = WatchRecord {
        client,
        watch,
        call: 0,
        created_revision: None,
        request: WatchRequest {
            key: r.key.clone(),
            range_end: if r.with_prefix {
                Some(prefix_end(&r.key)?)
            } else {
                None
            },
            start_revision: r.revision,
            prev_kv: r.with_prev_kv,
            progress_notify: r.with_progress_notify,
            filters: Vec::new(),
        },
    };
    let mut responses = Vec::new();
    for resp in rep.responses.iter().flatten() {
        let time = u64::try_from(resp.time).map_err(|_| format!("negative Time {}", resp.time))?;
        let events = resp.events.as_deref().unwrap_or(&[]);
        if !events.is_empty() {
            responses.push(WatchResponse::Events(WatchEventsRecord {
                client,
                watch,
                time,
                revision: resp.revision,
                events: events.iter().map(event).collect::<Result<_, _>>()?,
            }));
        } else if resp.is_progress_notify {
            responses.push(WatchResponse::Progress(WatchProgressRecord {
                client,
                watch,
                time,
                revision: resp.revision,
            }));
        }
    }
    Ok((create, responses))
}

/// A watch event in the partial form the watch check knows: a put with version 0 is
/// compared on key, value, mod revision and is-create (create revision equal to the mod
/// revision) only; a prev_kv with create revision 0 on key, value, mod revision and
/// version when given.
fn event(e: &ReportEvent) -> Result<Event, String> {
    let prev_kv = e.prev_value.as_ref().map(|p| KeyValue {
        key: e.key.clone(),
        value: value_text(&p.value),
        create_revision: 0,
        mod_revision: p.mod_revision,
        version: p.version,
        lease: 0,
    });
    Ok(match e.kind.as_str() {
        "put-operation" => Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: e.key.clone(),
                value: value_text(&e.value),
                create_revision: if e.is_create { e.revision } else { 0 },
                mod_revision: e.revision,
                version: 0,
                lease: 0,
            },
            prev_kv,
        },
        "delete-operation" => Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: e.key.clone(),
                mod_revision: e.revision,
                ..Default::default()
            },
            prev_kv,
        },
        other => return Err(format!("unknown event type {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end("key").as_deref(), Ok("kez"));
        assert_eq!(prefix_end("").as_deref(), Ok("\u{0}"));
        assert!(prefix_end("k\u{e9}").is_err());
    }

    #[test]
    fn hashed_values_never_equal_plain_ones() {
        let h = value_text(&Some(ValueOrHash {
            value: String::new(),
            hash: 7,
        }));
        assert!(h.len() >= 20, "{h}");
        let p = value_text(&Some(ValueOrHash {
            value: "7".into(),
            hash: 0,
        }));
        assert_eq!(p, "7");
    }
}
