//! Txn semantics: request checks (op limits, empty keys, the duplicate-key rule),
//! compare evaluation, and applying the chosen branches.
//!
//! As in etcd v3.4, every compare (nested ones included) is evaluated against the state
//! before the txn, and so are the state-dependent checks (leases exist, keys exist for
//! `ignore_value`/`ignore_lease`, range revisions are servable); only then is anything
//! written, so a txn either applies whole or not at all. Ops inside the txn see the
//! txn's earlier writes.
//!
//! One deliberate difference: in the duplicate-key rule a delete whose `range_end` is
//! `"\0"` covers every key from its start (etcd's interval check treats it as an empty
//! interval and would accept a txn it then cannot apply).

use std::collections::BTreeSet;

use super::error::MvccError;
use super::keyspace::KeyRange;
use super::store::{Lessor, Store, WriteCtx, validate_delete, validate_put, validate_range};
use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::request_op::Request;
use crate::pb::etcdserverpb::response_op::Response;
use crate::pb::etcdserverpb::{Compare, RequestOp, ResponseOp, TxnRequest, TxnResponse};
use crate::pb::mvccpb::KeyValue;

/// The request-only checks of a Txn, in etcd's order: op counts (`txn_ops_max`, shrunk
/// for nested txns by the parent's count), empty compare keys, each op's own checks,
/// then the duplicate-key rule on each branch.
pub fn validate_txn(req: &TxnRequest, txn_ops_max: usize) -> Result<(), MvccError> {
    check_txn_shape(req, txn_ops_max)?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

fn check_txn_shape(req: &TxnRequest, txn_ops_max: usize) -> Result<(), MvccError> {
    let ops = req
        .compare
        .len()
        .max(req.success.len())
        .max(req.failure.len());
    if ops > txn_ops_max {
        return Err(MvccError::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(MvccError::EmptyKey);
    }
    for op in req.success.iter().chain(&req.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) => validate_range(r)?,
            Some(Request::RequestPut(p)) => validate_put(p)?,
            Some(Request::RequestDeleteRange(d)) => validate_delete(d)?,
            Some(Request::RequestTxn(t)) => check_txn_shape(t, txn_ops_max - ops)?,
            None => return Err(MvccError::KeyNotFound),
        }
    }
    Ok(())
}

/// The keys a delete removes, for the duplicate-key rule.
fn delete_covers(deletes: &[KeyRange], key: &[u8]) -> bool {
    deletes.iter().any(|d| d.contains(key))
}

/// etcd's duplicate-key rule for one branch: no key is put twice, and no put key lies
/// in a delete range, counting nested txns (whose two branches may put the same key,
/// since only one of them runs). Returns the branch's put keys and delete ranges.
fn check_intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Vec<KeyRange>), MvccError> {
    let mut deletes: Vec<KeyRange> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(KeyRange::new(&d.key, &d.range_end)),
            _ => None,
        })
        .collect();
    let mut puts = BTreeSet::new();
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for key in &puts_then {
            if puts.contains(key) || delete_covers(&deletes, key) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in puts_else {
            if (puts.contains(&key) && !puts_then.contains(&key)) || delete_covers(&deletes, &key) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(key);
        }
        deletes.extend(dels_then);
        deletes.extend(dels_else);
    }
    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || delete_covers(&deletes, &p.key) {
            return Err(MvccError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, deletes))
}

/// Whether every op in both branches (recursively) is a Range.
pub fn is_read_only(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| match &op.request {
            Some(Request::RequestRange(_)) => true,
            Some(Request::RequestTxn(t)) => is_read_only(t),
            _ => false,
        })
}

/// The outcome of a txn's compares, and of the nested txns in the chosen branch (in
/// op order), all evaluated against the state before the txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnPath {
    /// Whether the compares held (the success branch runs).
    pub succeeded: bool,
    /// One entry per nested txn in the chosen branch.
    pub nested: Vec<TxnPath>,
}

/// Evaluates `req`'s compares (and those of nested txns on the chosen path).
pub(crate) fn compare_path(store: &Store, req: &TxnRequest) -> TxnPath {
    let succeeded = req.compare.iter().all(|c| compare_holds(store, c));
    let nested = branch(req, succeeded)
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestTxn(t)) => Some(compare_path(store, t)),
            _ => None,
        })
        .collect();
    TxnPath { succeeded, nested }
}

fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

/// One compare: it holds when it holds for every key in its range; on an empty range a
/// value compare fails and the others compare against zero.
fn compare_holds(store: &Store, c: &Compare) -> bool {
    let kvs = store.range_now(&KeyRange::new(&c.key, &c.range_end));
    if kvs.is_empty() {
        if c.target == CompareTarget::Value as i32 {
            return false;
        }
        return compare_kv(c, &KeyValue::default());
    }
    kvs.iter().all(|kv| compare_kv(c, kv))
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let int_operand =
        |want: fn(&TargetUnion) -> Option<i64>| c.target_union.as_ref().and_then(want).unwrap_or(0);
    let ord = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let operand: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(operand)
        }
        Ok(CompareTarget::Version) => kv.version.cmp(&int_operand(|t| match t {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Create) => kv.create_revision.cmp(&int_operand(|t| match t {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Mod) => kv.mod_revision.cmp(&int_operand(|t| match t {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Lease) => kv.lease.cmp(&int_operand(|t| match t {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        })),
        Err(_) => std::cmp::Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord.is_eq(),
        Ok(CompareResult::NotEqual) => ord.is_ne(),
        Ok(CompareResult::Greater) => ord.is_gt(),
        Ok(CompareResult::Less) => ord.is_lt(),
        Err(_) => true,
    }
}

impl TxnPath {
    /// Walks the chosen ops (nested txns included) in order.
    fn for_each_op<'r>(
        &self,
        req: &'r TxnRequest,
        f: &mut dyn FnMut(&'r Request) -> Result<(), MvccError>,
    ) -> Result<(), MvccError> {
        let mut nested = self.nested.iter();
        for op in branch(req, self.succeeded) {
            match &op.request {
                Some(Request::RequestTxn(t)) => {
                    if let Some(path) = nested.next() {
                        path.for_each_op(t, f)?;
                    }
                }
                Some(r) => f(r)?,
                None => {}
            }
        }
        Ok(())
    }

    /// Puts on the chosen path: leases exist, keys exist for `ignore_*`.
    pub(crate) fn check_puts(
        &self,
        store: &Store,
        req: &TxnRequest,
        lessor: &dyn Lessor,
    ) -> Result<(), MvccError> {
        self.for_each_op(req, &mut |r| match r {
            Request::RequestPut(p) => store.check_put(p, lessor, true),
            _ => Ok(()),
        })
    }

    /// Ranges on the chosen path: revisions neither future nor compacted.
    pub(crate) fn check_ranges(&self, store: &Store, req: &TxnRequest) -> Result<(), MvccError> {
        self.for_each_op(req, &mut |r| match r {
            Request::RequestRange(rr) => store.check_range(rr),
            _ => Ok(()),
        })
    }

    /// Applies the chosen branch; all checks passed before.
    pub(crate) fn apply(&self, ctx: &mut WriteCtx<'_>, req: &TxnRequest) -> TxnResponse {
        let mut nested = self.nested.iter();
        let mut responses = Vec::new();
        for op in branch(req, self.succeeded) {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => Response::ResponseRange(ctx.range(r)),
                Some(Request::RequestPut(p)) => Response::ResponsePut(ctx.put(p)),
                Some(Request::RequestDeleteRange(d)) => {
                    Response::ResponseDeleteRange(ctx.delete_range(d))
                }
                Some(Request::RequestTxn(t)) => {
                    let Some(path) = nested.next() else {
                        tracing::error!("txn path shorter than the txn");
                        continue;
                    };
                    Response::ResponseTxn(path.apply(ctx, t))
                }
                None => continue,
            };
            responses.push(ResponseOp {
                response: Some(response),
            });
        }
        TxnResponse {
            header: Some(Default::default()),
            succeeded: self.succeeded,
            responses,
        }
    }
}
