//! The reference model: the whole key -> value map after every revision, answering
//! each request from those maps in the most direct way (no index, no compaction of
//! its own). Shares only the request-only checks (`validate_*`) with the store.

use std::collections::BTreeMap;

use detcd_engine::mvcc::{MvccError, validate_delete, validate_put, validate_txn};
use detcd_engine::pb::etcdserverpb::compare::{CompareTarget, TargetUnion};
use detcd_engine::pb::etcdserverpb::request_op::Request;
use detcd_engine::pb::etcdserverpb::response_op::Response;
use detcd_engine::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use detcd_engine::pb::mvccpb::{Event, KeyValue, event::EventType};

type Map = BTreeMap<Vec<u8>, KeyValue>;
/// The changes of one revision in order: a key and its new value (`None` = deleted).
type Changes = Vec<(Vec<u8>, Option<KeyValue>)>;

/// The txn op limit both sides run with.
pub const TXN_OPS_MAX: usize = 8;
/// The minimum lease TTL both sides run with.
pub const LEASE_TTL_S_MIN: i64 = 5;

/// A bug planted in the model, to show the comparison catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
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

pub struct Model {
    /// `revs[r]`: all live keys after revision `r` (`revs[0]` is unused).
    revs: Vec<Map>,
    /// `changes[r]`: what revision `r` changed, in order.
    changes: Vec<Changes>,
    /// The compact revision (-1 before any).
    pub compact: i64,
    /// Lease id -> granted TTL.
    pub leases: BTreeMap<i64, i64>,
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
    pub fn new(bug: Bug) -> Model {
        Model {
            revs: vec![Map::new(), Map::new()],
            changes: vec![vec![], vec![]],
            compact: -1,
            leases: BTreeMap::new(),
            bug,
        }
    }

    pub fn cur(&self) -> i64 {
        self.revs.len() as i64 - 1
    }

    pub fn latest(&self) -> &Map {
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

    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        if req.key.is_empty() {
            return Err(MvccError::EmptyKey);
        }
        let r = self.read_rev(req.revision)?;
        Ok(self.range_map(&self.revs[r as usize], req, self.cur()))
    }

    /// Lease and key-existence checks of a put; a plain Put checks the lease first, a
    /// put inside a txn last.
    fn check_put(&self, map: &Map, req: &PutRequest, in_txn: bool) -> Result<(), MvccError> {
        let lease_missing = req.lease != 0 && !self.leases.contains_key(&req.lease);
        let key_missing = (req.ignore_value || req.ignore_lease) && !map.contains_key(&req.key);
        match (lease_missing, key_missing) {
            (true, true) if in_txn => Err(MvccError::KeyNotFound),
            (true, _) => Err(MvccError::LeaseNotFound),
            (_, true) => Err(MvccError::KeyNotFound),
            _ => Ok(()),
        }
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

    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse, MvccError> {
        validate_put(req)?;
        self.check_put(self.latest(), req, false)?;
        let mut map = self.latest().clone();
        let mut log = vec![];
        let resp = self.put_into(&mut map, &mut log, req, self.cur() + 1);
        self.commit(map, log);
        Ok(resp)
    }

    pub fn delete(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, MvccError> {
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

    pub fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        validate_txn(req, TXN_OPS_MAX)?;
        let base = self.latest().clone();
        let mut ops = vec![];
        Self::chosen(&base, req, &mut ops);
        if !Self::only_ranges(req) {
            for op in &ops {
                if let Request::RequestPut(p) = op {
                    self.check_put(&base, p, true)?;
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

    pub fn compact(&mut self, rev: i64) -> Result<i64, MvccError> {
        if rev <= self.compact {
            return Err(MvccError::Compacted);
        }
        if rev > self.cur() {
            return Err(MvccError::FutureRevision);
        }
        self.compact = rev;
        Ok(self.cur())
    }

    pub fn grant(&mut self, id: i64, ttl: i64) -> Result<(i64, i64), MvccError> {
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

    pub fn revoke(&mut self, id: i64) -> Result<i64, MvccError> {
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
    pub fn diff(&self, r: i64) -> Vec<Event> {
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
