//! Property test of the key space against a reference model.
//!
//! The model keeps the whole key -> value map after every revision (`revs[r]`) and
//! answers each request from those maps in the most direct way; the real store keeps an
//! index of revisions, compacts, and replays events. Random sequences of Range (all
//! options), Put, DeleteRange, Txn (random compares, nested txns), Compact, HashKV,
//! lease grant/revoke/attach and snapshot round trips must get equal answers from both,
//! errors included, and equal events. The model shares only the request-only checks
//! (`validate_*`) with the store; state semantics are written twice.
//!
//! `known_bad_models_are_caught` keeps the comparison honest: models with a planted bug
//! must be told apart.

use std::collections::BTreeMap;

use detcd_engine::mvcc::{
    KvConfig, KvState, MvccError, validate_delete, validate_put, validate_txn,
};
use detcd_engine::pb::etcdserverpb::compare::{CompareTarget, TargetUnion};
use detcd_engine::pb::etcdserverpb::request_op::Request;
use detcd_engine::pb::etcdserverpb::response_op::Response;
use detcd_engine::pb::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest,
    LeaseRevokeRequest, LeaseTimeToLiveRequest, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use detcd_engine::pb::mvccpb::{Event, KeyValue, event::EventType};
use proptest::prelude::*;

type Map = BTreeMap<Vec<u8>, KeyValue>;
/// The changes of one revision in order: a key and its new value (`None` = deleted).
type Changes = Vec<(Vec<u8>, Option<KeyValue>)>;

const TXN_OPS_MAX: usize = 8;
const LEASE_TTL_S_MIN: i64 = 5;

/// A bug planted in the model, to show the comparison catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    None,
    /// Overwriting a key keeps its version.
    VersionNotBumped,
    /// A read-only txn moves the revision.
    ReadOnlyTxnBumps,
    /// `count` is taken after the limit.
    CountAfterLimit,
    /// Compaction forgets to refuse reads below it.
    CompactionIgnored,
    /// Revoking a lease leaves its keys.
    RevokeKeepsKeys,
}

struct Model {
    /// `revs[r]`: all live keys after revision `r` (`revs[0]` is unused).
    revs: Vec<Map>,
    /// `changes[r]`: what revision `r` changed, in order.
    changes: Vec<Changes>,
    compact: i64,
    leases: BTreeMap<i64, i64>,
    bug: Bug,
}

fn hdr(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

fn in_range(key: &[u8], range_end: &[u8], k: &[u8]) -> bool {
    if range_end.is_empty() {
        k == key
    } else if range_end == [0] {
        k >= key
    } else {
        k >= key && k < range_end
    }
}

fn matching(map: &Map, key: &[u8], range_end: &[u8]) -> Vec<KeyValue> {
    map.values()
        .filter(|kv| in_range(key, range_end, &kv.key))
        .cloned()
        .collect()
}

impl Model {
    fn new(bug: Bug) -> Model {
        Model {
            revs: vec![Map::new(), Map::new()],
            changes: vec![vec![], vec![]],
            compact: -1,
            leases: BTreeMap::new(),
            bug,
        }
    }

    fn cur(&self) -> i64 {
        self.revs.len() as i64 - 1
    }

    fn latest(&self) -> &Map {
        &self.revs[self.revs.len() - 1]
    }

    fn read_rev(&self, rev: i64) -> Result<i64, MvccError> {
        if rev > self.cur() {
            return Err(MvccError::FutureRevision);
        }
        let r = if rev <= 0 { self.cur() } else { rev };
        if r < self.compact && self.bug != Bug::CompactionIgnored {
            return Err(MvccError::Compacted);
        }
        Ok(r)
    }

    fn range_map(&self, map: &Map, req: &RangeRequest, header_rev: i64) -> RangeResponse {
        let mut kvs = matching(map, &req.key, &req.range_end);
        let mut count = kvs.len() as i64;
        if req.count_only {
            return RangeResponse {
                header: hdr(header_rev),
                kvs: vec![],
                more: false,
                count,
            };
        }
        kvs.retain(|kv| {
            (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
        });
        // Order: NONE with a non-key target means ascending; key order otherwise.
        let descending = req.sort_order == 2;
        let sorted = req.sort_order != 0 || req.sort_target != 0;
        if sorted {
            let field = |kv: &KeyValue| -> (Vec<u8>, i64) {
                match req.sort_target {
                    1 => (vec![], kv.version),
                    2 => (vec![], kv.create_revision),
                    3 => (vec![], kv.mod_revision),
                    4 => (kv.value.clone(), 0),
                    _ => (kv.key.clone(), 0),
                }
            };
            if descending {
                kvs.sort_by_key(|a| std::cmp::Reverse(field(a)));
            } else {
                kvs.sort_by_key(|a| field(a));
            }
        }
        let mut more = false;
        if req.limit > 0 && kvs.len() as i64 > req.limit {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        if self.bug == Bug::CountAfterLimit {
            count = kvs.len() as i64;
        }
        if req.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value.clear());
        }
        RangeResponse {
            header: hdr(header_rev),
            kvs,
            more,
            count,
        }
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        if req.key.is_empty() {
            return Err(MvccError::EmptyKey);
        }
        let r = self.read_rev(req.revision)?;
        Ok(self.range_map(&self.revs[r as usize], req, self.cur()))
    }

    fn check_put(&self, map: &Map, req: &PutRequest) -> Result<(), MvccError> {
        if req.lease != 0 && !self.leases.contains_key(&req.lease) {
            return Err(MvccError::LeaseNotFound);
        }
        if (req.ignore_value || req.ignore_lease) && !map.contains_key(&req.key) {
            return Err(MvccError::KeyNotFound);
        }
        Ok(())
    }

    fn put_into(
        &self,
        map: &mut Map,
        log: &mut Changes,
        req: &PutRequest,
        rev: i64,
    ) -> PutResponse {
        let prev = map.get(&req.key).cloned();
        let bump = if self.bug == Bug::VersionNotBumped {
            0
        } else {
            1
        };
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |p| p.version + bump),
            value: match (&prev, req.ignore_value) {
                (Some(p), true) => p.value.clone(),
                _ => req.value.clone(),
            },
            lease: match (&prev, req.ignore_lease) {
                (Some(p), true) => p.lease,
                _ => req.lease,
            },
        };
        map.insert(req.key.clone(), kv.clone());
        log.push((req.key.clone(), Some(kv)));
        PutResponse {
            header: hdr(rev),
            prev_kv: if req.prev_kv { prev } else { None },
        }
    }

    fn delete_from(
        map: &mut Map,
        log: &mut Changes,
        req: &DeleteRangeRequest,
    ) -> DeleteRangeResponse {
        let gone = matching(map, &req.key, &req.range_end);
        for kv in &gone {
            map.remove(&kv.key);
            log.push((kv.key.clone(), None));
        }
        DeleteRangeResponse {
            header: None,
            deleted: gone.len() as i64,
            prev_kvs: if req.prev_kv { gone } else { vec![] },
        }
    }

    fn commit(&mut self, map: Map, log: Changes) -> i64 {
        if !log.is_empty() {
            self.revs.push(map);
            self.changes.push(log);
        }
        self.cur()
    }

    fn put(&mut self, req: &PutRequest) -> Result<PutResponse, MvccError> {
        validate_put(req)?;
        self.check_put(self.latest(), req)?;
        let mut map = self.latest().clone();
        let mut log = vec![];
        let resp = self.put_into(&mut map, &mut log, req, self.cur() + 1);
        self.commit(map, log);
        Ok(resp)
    }

    fn delete(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, MvccError> {
        validate_delete(req)?;
        let mut map = self.latest().clone();
        let mut log = vec![];
        let mut resp = Self::delete_from(&mut map, &mut log, req);
        resp.header = hdr(self.commit(map, log));
        Ok(resp)
    }

    fn compare(map: &Map, c: &Compare) -> bool {
        let kvs = matching(map, &c.key, &c.range_end);
        if kvs.is_empty() && c.target == CompareTarget::Value as i32 {
            return false;
        }
        let kvs = if kvs.is_empty() {
            vec![KeyValue::default()]
        } else {
            kvs
        };
        kvs.iter().all(|kv| {
            let ord = match (c.target, &c.target_union) {
                (3, Some(TargetUnion::Value(v))) => kv.value.cmp(v),
                (3, _) => kv.value.cmp(&vec![]),
                (0, Some(TargetUnion::Version(v))) => kv.version.cmp(v),
                (0, _) => kv.version.cmp(&0),
                (1, Some(TargetUnion::CreateRevision(v))) => kv.create_revision.cmp(v),
                (1, _) => kv.create_revision.cmp(&0),
                (2, Some(TargetUnion::ModRevision(v))) => kv.mod_revision.cmp(v),
                (2, _) => kv.mod_revision.cmp(&0),
                (4, Some(TargetUnion::Lease(v))) => kv.lease.cmp(v),
                (4, _) => kv.lease.cmp(&0),
                _ => std::cmp::Ordering::Equal,
            };
            match c.result {
                0 => ord.is_eq(),
                1 => ord.is_gt(),
                2 => ord.is_lt(),
                3 => ord.is_ne(),
                _ => true,
            }
        })
    }

    fn only_ranges(req: &TxnRequest) -> bool {
        req.success
            .iter()
            .chain(&req.failure)
            .all(|op| match &op.request {
                Some(Request::RequestRange(_)) => true,
                Some(Request::RequestTxn(t)) => Self::only_ranges(t),
                _ => false,
            })
    }

    /// The ops a txn would run (nested txns expanded), with the branch taken, against
    /// `base`.
    fn chosen<'a>(base: &Map, req: &'a TxnRequest, out: &mut Vec<&'a Request>) {
        let ok = req.compare.iter().all(|c| Self::compare(base, c));
        for op in if ok { &req.success } else { &req.failure } {
            match &op.request {
                Some(Request::RequestTxn(t)) => Self::chosen(base, t, out),
                Some(r) => out.push(r),
                None => {}
            }
        }
    }

    fn run_txn(
        &self,
        base: &Map,
        work: &mut Map,
        log: &mut Changes,
        req: &TxnRequest,
    ) -> TxnResponse {
        let cur = self.cur();
        let ok = req.compare.iter().all(|c| Self::compare(base, c));
        let mut responses = vec![];
        for op in if ok { &req.success } else { &req.failure } {
            let resp = match &op.request {
                Some(Request::RequestRange(r)) => {
                    let visible = if log.is_empty() { cur } else { cur + 1 };
                    let map = if r.revision <= 0 {
                        &*work
                    } else {
                        &self.revs[r.revision as usize]
                    };
                    Response::ResponseRange(self.range_map(map, r, visible))
                }
                Some(Request::RequestPut(p)) => {
                    Response::ResponsePut(self.put_into(work, log, p, cur + 1))
                }
                Some(Request::RequestDeleteRange(d)) => {
                    let mut resp = Self::delete_from(work, log, d);
                    resp.header = hdr(if log.is_empty() { cur } else { cur + 1 });
                    Response::ResponseDeleteRange(resp)
                }
                Some(Request::RequestTxn(t)) => {
                    Response::ResponseTxn(self.run_txn(base, work, log, t))
                }
                None => continue,
            };
            responses.push(ResponseOp {
                response: Some(resp),
            });
        }
        TxnResponse {
            header: Some(ResponseHeader::default()),
            succeeded: ok,
            responses,
        }
    }

    fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        validate_txn(req, TXN_OPS_MAX)?;
        let base = self.latest().clone();
        let mut ops = vec![];
        Self::chosen(&base, req, &mut ops);
        if !Self::only_ranges(req) {
            for op in &ops {
                if let Request::RequestPut(p) = op {
                    self.check_put(&base, p)?;
                }
            }
        }
        for op in &ops {
            if let Request::RequestRange(r) = op {
                // Inside a txn a negative revision is checked against compaction.
                if r.revision > self.cur() {
                    return Err(MvccError::FutureRevision);
                }
                if r.revision != 0 && r.revision < self.compact {
                    return Err(MvccError::Compacted);
                }
            }
        }
        let mut work = base.clone();
        let mut log = vec![];
        let mut resp = self.run_txn(&base, &mut work, &mut log, req);
        if self.bug == Bug::ReadOnlyTxnBumps && Self::only_ranges(req) {
            // A bogus change: the model thinks the revision moves.
            log.push((b"bogus".to_vec(), None));
        }
        resp.header = hdr(self.commit(work, log));
        Ok(resp)
    }

    fn compact(&mut self, rev: i64) -> Result<i64, MvccError> {
        if rev <= self.compact {
            return Err(MvccError::Compacted);
        }
        if rev > self.cur() {
            return Err(MvccError::FutureRevision);
        }
        self.compact = rev;
        Ok(self.cur())
    }

    fn grant(&mut self, id: i64, ttl: i64) -> Result<(i64, i64), MvccError> {
        if id == 0 {
            return Err(MvccError::LeaseNotFound);
        }
        if self.leases.contains_key(&id) {
            return Err(MvccError::LeaseExists);
        }
        let ttl = ttl.max(LEASE_TTL_S_MIN);
        self.leases.insert(id, ttl);
        Ok((id, ttl))
    }

    fn revoke(&mut self, id: i64) -> Result<i64, MvccError> {
        self.leases.remove(&id).ok_or(MvccError::LeaseNotFound)?;
        let mut map = self.latest().clone();
        let mut log = vec![];
        if self.bug != Bug::RevokeKeepsKeys {
            let doomed: Vec<Vec<u8>> = map
                .values()
                .filter(|kv| kv.lease == id)
                .map(|kv| kv.key.clone())
                .collect();
            for key in doomed {
                map.remove(&key);
                log.push((key, None));
            }
        }
        Ok(self.commit(map, log))
    }

    /// The changes of revision `r` as watch events, in order; `prev_kv` is the key's
    /// value at `r - 1`.
    fn diff(&self, r: i64) -> Vec<Event> {
        let before = &self.revs[r as usize - 1];
        self.changes[r as usize]
            .iter()
            .map(|(key, kv)| match kv {
                Some(kv) => Event {
                    r#type: EventType::Put as i32,
                    kv: Some(kv.clone()),
                    prev_kv: before.get(key).cloned(),
                },
                None => Event {
                    r#type: EventType::Delete as i32,
                    kv: Some(KeyValue {
                        key: key.clone(),
                        mod_revision: r,
                        ..Default::default()
                    }),
                    prev_kv: before.get(key).cloned(),
                },
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Op {
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

fn same<T: PartialEq + std::fmt::Debug>(what: &str, real: T, model: T) -> Result<(), String> {
    if real == model {
        Ok(())
    } else {
        Err(format!("{what}:\n real:  {real:?}\n model: {model:?}"))
    }
}

/// Events of revision `r`, in order, with `prev_kv` dropped when the previous revision is compacted.
fn comparable(mut events: Vec<Event>, r: i64, compact: i64) -> Vec<Event> {
    if r - 1 < compact {
        events.iter_mut().for_each(|e| e.prev_kv = None);
    }
    events
}

/// How often interesting outcomes happened, to check the generators reach them.
#[derive(Debug, Default)]
struct Stats {
    txn_writes: usize,
    txn_failure_branch: usize,
    nested_txn_responses: usize,
    range_more: usize,
    range_hits: usize,
    compacted_errors: usize,
    duplicate_key_errors: usize,
    revokes_deleting: usize,
    multi_change_revisions: usize,
}

fn run(ops: &[Op], bug: Bug) -> Result<(), String> {
    run_counting(ops, bug, &mut Stats::default())
}

fn run_counting(ops: &[Op], bug: Bug, stats: &mut Stats) -> Result<(), String> {
    let config = KvConfig {
        txn_ops_max: TXN_OPS_MAX,
        lease_ttl_s_min: LEASE_TTL_S_MIN,
    };
    let mut state = KvState::new(config);
    let mut model = Model::new(bug);
    for (step, op) in ops.iter().enumerate() {
        let ctx = |what: &str| format!("step {step} {op:?}: {what}");
        let rev_before = model.cur();
        let write_events = match op {
            Op::Range(r) => {
                let real = state.range(r);
                match &real {
                    Ok(resp) => {
                        stats.range_more += usize::from(resp.more);
                        stats.range_hits += usize::from(!resp.kvs.is_empty());
                    }
                    Err(MvccError::Compacted) => stats.compacted_errors += 1,
                    Err(_) => {}
                }
                same(&ctx("range"), real, model.range(r))?;
                None
            }
            Op::Put(p) => {
                let real = state.put(p);
                same(
                    &ctx("put"),
                    real.as_ref().map(|w| &w.response),
                    model.put(p).as_ref(),
                )?;
                real.ok().map(|w| w.events)
            }
            Op::Delete(d) => {
                let real = state.delete_range(d);
                same(
                    &ctx("delete"),
                    real.as_ref().map(|w| &w.response),
                    model.delete(d).as_ref(),
                )?;
                real.ok().map(|w| w.events)
            }
            Op::Txn(t) => {
                let real = state.txn(t);
                match &real {
                    Ok(w) => {
                        stats.txn_writes += usize::from(!w.events.is_empty());
                        stats.txn_failure_branch += usize::from(!w.response.succeeded);
                        stats.nested_txn_responses += w
                            .response
                            .responses
                            .iter()
                            .filter(|r| matches!(r.response, Some(Response::ResponseTxn(_))))
                            .count();
                    }
                    Err(MvccError::DuplicateKey) => stats.duplicate_key_errors += 1,
                    Err(_) => {}
                }
                same(
                    &ctx("txn"),
                    real.as_ref().map(|w| &w.response),
                    model.txn(t).as_ref(),
                )?;
                real.ok().map(|w| w.events)
            }
            Op::Compact(rev) => {
                let real = state.compact(&CompactionRequest {
                    revision: *rev,
                    physical: false,
                });
                let real = real.map(|r| r.header.map(|h| h.revision).unwrap_or(-7));
                same(&ctx("compact"), real, model.compact(*rev))?;
                None
            }
            Op::HashKv(rev) => {
                let real = state
                    .hash_kv(*rev)
                    .map(|h| (h.header.map(|h| h.revision), h.compact_revision));
                let expect = if *rev > 0 && *rev <= model.compact {
                    Err(MvccError::Compacted)
                } else if *rev > model.cur() {
                    Err(MvccError::FutureRevision)
                } else {
                    Ok((Some(model.cur()), model.compact))
                };
                same(&ctx("hash_kv"), real, expect)?;
                None
            }
            Op::Grant(id, ttl) => {
                let real = state
                    .lease_grant(&LeaseGrantRequest { ttl: *ttl, id: *id }, 0)
                    .map(|r| (r.id, r.ttl));
                same(&ctx("grant"), real, model.grant(*id, *ttl))?;
                None
            }
            Op::Revoke(id) => {
                let real = state.lease_revoke(&LeaseRevokeRequest { id: *id });
                if real.as_ref().is_ok_and(|w| !w.events.is_empty()) {
                    stats.revokes_deleting += 1;
                }
                let rev = real
                    .as_ref()
                    .map(|w| w.response.header.map(|h| h.revision))
                    .map_err(Clone::clone);
                same(&ctx("revoke"), rev, model.revoke(*id).map(Some))?;
                real.ok().map(|w| w.events)
            }
            Op::Snapshot => {
                let restored = KvState::restore(&state.snapshot(), config)
                    .map_err(|e| ctx(&format!("restore failed: {e}")))?;
                same(&ctx("restored state"), &restored, &state)?;
                same(&ctx("restored hash"), restored.hash_kv(0), state.hash_kv(0))?;
                state = restored;
                None
            }
        };
        // A write's own events are exactly the model's change at the new revision.
        if let Some(events) = write_events {
            let expect = if model.cur() > rev_before {
                model.diff(model.cur())
            } else {
                vec![]
            };
            if events.len() > 1 {
                stats.multi_change_revisions += 1;
            }
            same(&ctx("write events"), events, expect)?;
        }
        same(
            &ctx("revision"),
            state.store().current_revision(),
            model.cur(),
        )?;
        // Every servable revision reads the same; event replay matches the model.
        let first = model.compact.max(1);
        for r in first..=model.cur() {
            let all = RangeRequest {
                key: vec![0],
                range_end: vec![0],
                revision: r,
                ..Default::default()
            };
            same(
                &ctx(&format!("full read at {r}")),
                state.range(&all),
                model.range(&all),
            )?;
        }
        let from = model.compact.max(2);
        let replay = state
            .events(&[0], &[0], from, i64::MAX)
            .map_err(|e| ctx(&format!("events: {e}")))?;
        for r in from..=model.cur() {
            let real: Vec<Event> = replay
                .iter()
                .filter(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision == r))
                .cloned()
                .collect();
            same(
                &ctx(&format!("events at {r}")),
                comparable(real, r, model.compact),
                comparable(model.diff(r), r, model.compact),
            )?;
        }
        if model.compact > 1 {
            same(
                &ctx("events below compaction"),
                state.events(&[0], &[0], model.compact - 1, i64::MAX),
                Err(MvccError::Compacted),
            )?;
        }
        // Lease attachments follow the keys.
        same(
            &ctx("lease ids"),
            state.leases().ids(),
            model.leases.keys().copied().collect(),
        )?;
        for id in model.leases.keys() {
            let real = state
                .lease_time_to_live(
                    &LeaseTimeToLiveRequest {
                        id: *id,
                        keys: true,
                    },
                    0,
                )
                .map(|r| r.keys);
            let expect: Vec<Vec<u8>> = model
                .latest()
                .values()
                .filter(|kv| kv.lease == *id)
                .map(|kv| kv.key.clone())
                .collect();
            same(&ctx(&format!("keys of lease {id}")), real, Ok(expect))?;
        }
    }
    Ok(())
}

// ---- generators ----

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

fn op() -> impl Strategy<Value = Op> {
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in prop::collection::vec(op(), 1..50)) {
        if let Err(e) = run(&ops, Bug::None) {
            return Err(TestCaseError::fail(e));
        }
    }
}

fn put(key: &[u8], value: &[u8], lease: i64) -> Op {
    Op::Put(PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        lease,
        ..Default::default()
    })
}

fn get(key: &[u8], revision: i64) -> Op {
    Op::Range(RangeRequest {
        key: key.to_vec(),
        revision,
        ..Default::default()
    })
}

#[test]
fn known_bad_models_are_caught() {
    let scripts: Vec<(Bug, Vec<Op>)> = vec![
        (
            Bug::VersionNotBumped,
            vec![put(b"a", b"1", 0), put(b"a", b"2", 0)],
        ),
        (
            Bug::ReadOnlyTxnBumps,
            vec![Op::Txn(TxnRequest {
                success: vec![RequestOp {
                    request: Some(Request::RequestRange(RangeRequest {
                        key: b"a".to_vec(),
                        ..Default::default()
                    })),
                }],
                ..Default::default()
            })],
        ),
        (
            Bug::CountAfterLimit,
            vec![
                put(b"a", b"1", 0),
                put(b"b", b"1", 0),
                Op::Range(RangeRequest {
                    key: b"a".to_vec(),
                    range_end: vec![0],
                    limit: 1,
                    ..Default::default()
                }),
            ],
        ),
        (
            Bug::CompactionIgnored,
            vec![
                put(b"a", b"1", 0),
                put(b"a", b"2", 0),
                Op::Compact(3),
                get(b"a", 2),
            ],
        ),
        (
            Bug::RevokeKeepsKeys,
            vec![Op::Grant(1, 10), put(b"a", b"1", 1), Op::Revoke(1)],
        ),
    ];
    for (bug, ops) in scripts {
        assert!(
            run(&ops, Bug::None).is_ok(),
            "{bug:?} script fails on the right model"
        );
        assert!(run(&ops, bug).is_err(), "{bug:?} not caught");
    }
}

/// The generators reach the interesting cases often enough for the model test to mean
/// something (fixed seed, so this is deterministic).
#[test]
fn generators_reach_interesting_cases() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = prop::collection::vec(op(), 1..50);
    let mut stats = Stats::default();
    for _ in 0..200 {
        let ops = strategy.new_tree(&mut runner).expect("generate").current();
        run_counting(&ops, Bug::None, &mut stats).expect("model agrees");
    }
    eprintln!("{stats:?}");
    for (what, n) in [
        ("txn writes", stats.txn_writes),
        ("txn failure branches", stats.txn_failure_branch),
        ("nested txn responses", stats.nested_txn_responses),
        ("ranges with more", stats.range_more),
        ("ranges with hits", stats.range_hits),
        ("compacted errors", stats.compacted_errors),
        ("duplicate key errors", stats.duplicate_key_errors),
        ("revokes deleting keys", stats.revokes_deleting),
        ("multi-change revisions", stats.multi_change_revisions),
    ] {
        assert!(n >= 10, "{what}: only {n} in 200 sequences");
    }
}

#[test]
fn a_mutated_result_is_caught() {
    let real: Result<RangeResponse, MvccError> = Ok(RangeResponse::default());
    let other = RangeResponse {
        more: true,
        ..Default::default()
    };
    assert!(same("range", real.clone(), Ok(other)).is_err());
    assert!(same("range", real, Err(MvccError::Compacted)).is_err());
}
