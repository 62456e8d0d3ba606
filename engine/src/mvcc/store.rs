//! The MVCC store: etcd v3's KV requests (Range, Put, DeleteRange, Txn, Compact,
//! HashKV) applied to the revisioned key space, plus event replay for watches.
//!
//! Every method is a pure function of the store's state and its arguments, so all
//! replicas that apply the same requests in the same order end in the same state. The
//! store does not own leases: writes report attach/detach through the [`Lessor`] trait
//! (implemented by [`crate::lease::LeaseTable`]). It does not persist anything either;
//! durability is a snapshot of the whole state plus Raft log replay.

use serde::{Deserialize, Serialize};

use super::error::MvccError;
use super::keyspace::{KeyRange, KeySpace, Revision, key_value};
use super::range::range_response;
use super::txn::{compare_path, is_read_only, validate_txn};
use crate::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, HashKvResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::pb::mvccpb::{Event, KeyValue};

/// etcd's default for `--max-txn-ops`: compares, success ops and failure ops of one
/// txn are each limited to this many.
pub const TXN_OPS_MAX_DEFAULT: usize = 128;

/// What the store needs from the lease table: whether a lease exists, and to be told
/// which keys are attached to which lease.
pub trait Lessor {
    /// Whether lease `id` exists.
    fn lease_exists(&self, id: i64) -> bool;
    /// `key` now carries lease `id`.
    fn attach(&mut self, id: i64, key: &[u8]);
    /// `key` no longer carries lease `id`.
    fn detach(&mut self, id: i64, key: &[u8]);
}

/// A lessor in which no lease exists; for stores used without leases.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLeases;

impl Lessor for NoLeases {
    fn lease_exists(&self, _id: i64) -> bool {
        false
    }
    fn attach(&mut self, _id: i64, _key: &[u8]) {}
    fn detach(&mut self, _id: i64, _key: &[u8]) {}
}

/// The answer to a write request with the events it produced, in the order they
/// happened (each with `prev_kv` filled when the key existed before), for watchers.
#[derive(Debug, Clone, PartialEq)]
pub struct Written<R> {
    /// The response to send to the client.
    pub response: R,
    /// The changes made, all at one revision; empty when nothing changed, and when the
    /// write was made with its events not wanted (the `*_with_events` forms).
    pub events: Vec<Event>,
}

/// The revisioned key space with its current and compacted revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Store {
    keys: KeySpace,
    current_revision: i64,
    compact_revision: i64,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..ResponseHeader::default()
    })
}

/// One write in progress: all its changes get revision `main` (= current + 1) with
/// increasing `sub`.
pub(crate) struct WriteCtx<'a> {
    store: &'a mut Store,
    lessor: &'a mut dyn Lessor,
    main: i64,
    /// How many changes this write made so far (the next change's `sub`).
    changes: i64,
    /// Whether [`Self::finish`] lists the changes as events (only watchers need them).
    events_wanted: bool,
}

impl<'a> WriteCtx<'a> {
    fn new(store: &'a mut Store, lessor: &'a mut dyn Lessor, events_wanted: bool) -> Self {
        let main = store.current_revision + 1;
        WriteCtx {
            store,
            lessor,
            main,
            changes: 0,
            events_wanted,
        }
    }

    fn next_revision(&self) -> Revision {
        Revision {
            main: self.main,
            sub: self.changes,
        }
    }

    /// The revision reads inside this write see: the new one once something changed.
    pub(crate) fn visible_revision(&self) -> i64 {
        if self.changes == 0 {
            self.main - 1
        } else {
            self.main
        }
    }

    /// Range inside the write; the revision was checked before the write began.
    pub(crate) fn range(&self, req: &RangeRequest) -> RangeResponse {
        let visible = self.visible_revision();
        let read = if req.revision <= 0 {
            visible
        } else {
            req.revision
        };
        range_response(&self.store.keys, req, read, visible)
    }

    /// Put inside the write; key existence and lease were checked before.
    pub(crate) fn put(&mut self, req: &PutRequest) -> PutResponse {
        let rev = self.next_revision();
        // One look-up serves all the put needs of the value it replaces; the key and the
        // value are copied out only when the request asks for them.
        let live = self.store.keys.live(&req.key, rev.main);
        let value = match (live, req.ignore_value) {
            (Some((_, p)), true) => p.value.clone(),
            _ => req.value.clone(),
        };
        let prev_lease = live.map(|(_, p)| p.lease);
        let lease = match (prev_lease, req.ignore_lease) {
            (Some(l), true) => l,
            _ => req.lease,
        };
        let prev = match live {
            Some((prev_rev, p)) if req.prev_kv => Some(key_value(&req.key, prev_rev, p)),
            _ => None,
        };
        if live.is_none() && (req.ignore_value || req.ignore_lease) {
            tracing::error!(
                "put with ignore_value/ignore_lease on a missing key passed validation"
            );
        }
        if let Some(l) = prev_lease
            && l != 0
        {
            self.lessor.detach(l, &req.key);
        }
        if lease != 0 {
            self.lessor.attach(lease, &req.key);
        }
        self.store.keys.put_value(&req.key, value, lease, rev);
        self.changes += 1;
        PutResponse {
            header: header(self.main),
            prev_kv: prev,
        }
    }

    /// Deletes the live keys of `range` in key order; returns the deleted values.
    pub(crate) fn delete(&mut self, range: &KeyRange) -> Vec<KeyValue> {
        let live = self.store.keys.range(range, self.main);
        for kv in &live {
            let rev = self.next_revision();
            if self.store.keys.delete(&kv.key, rev).is_some() {
                if kv.lease != 0 {
                    self.lessor.detach(kv.lease, &kv.key);
                }
                self.changes += 1;
            }
        }
        live
    }

    /// DeleteRange inside the write.
    pub(crate) fn delete_range(&mut self, req: &DeleteRangeRequest) -> DeleteRangeResponse {
        let deleted = self.delete(&KeyRange::new(&req.key, &req.range_end));
        DeleteRangeResponse {
            header: header(self.visible_revision()),
            deleted: deleted.len() as i64,
            prev_kvs: if req.prev_kv { deleted } else { Vec::new() },
        }
    }

    /// Ends the write: the store's revision moves on iff something changed. Returns
    /// the changes as events, each `prev_kv` being the key's value before this write
    /// (what a watcher reading at the previous revision sees).
    fn finish(self) -> Vec<Event> {
        if self.changes == 0 {
            return Vec::new();
        }
        self.store.current_revision = self.main;
        if !self.events_wanted {
            return Vec::new();
        }
        self.store.keys.events_at(self.main)
    }
}

impl Store {
    /// An empty store; its revision starts at 1 as in etcd.
    pub fn new() -> Store {
        Store {
            keys: KeySpace::default(),
            current_revision: 1,
            compact_revision: -1,
        }
    }

    /// A store of `keys` at `current_revision`, compacted at `compact_revision` (a
    /// decoded snapshot's parts; [`Self::check_consistent`] says whether they fit).
    pub(crate) fn from_parts(
        keys: KeySpace,
        current_revision: i64,
        compact_revision: i64,
    ) -> Store {
        Store {
            keys,
            current_revision,
            compact_revision,
        }
    }

    /// Every held version of every key.
    pub(crate) fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// The revision of the latest change (1 on an empty store).
    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    /// The estimated backend size in bytes (see [`KeySpace::size_bytes`]); O(1).
    pub fn size_bytes(&self) -> u64 {
        self.keys.size_bytes()
    }

    /// Recomputes the size estimate after decoding.
    pub(crate) fn recount(&mut self) {
        self.keys.recount();
    }

    /// The revision of the last compaction (-1 before any, as etcd reports it).
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// The revision a read at `rev` (0 = current) sees, or why it cannot be served.
    fn read_revision(&self, rev: i64) -> Result<i64, MvccError> {
        if rev > self.current_revision {
            return Err(MvccError::FutureRevision);
        }
        let rev = if rev <= 0 { self.current_revision } else { rev };
        if rev < self.compact_revision {
            return Err(MvccError::Compacted);
        }
        Ok(rev)
    }

    /// The value of one key at the current revision.
    pub fn get(&self, key: &[u8]) -> Option<KeyValue> {
        self.keys.get(key, self.current_revision)
    }

    /// The live keys of `range` at the current revision.
    pub(crate) fn range_now(&self, range: &KeyRange) -> Vec<KeyValue> {
        self.keys.range(range, self.current_revision)
    }

    /// Answers a Range request.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        validate_range(req)?;
        let read = self.read_revision(req.revision)?;
        Ok(range_response(&self.keys, req, read, self.current_revision))
    }

    /// Applies a Put request.
    pub fn put(
        &mut self,
        req: &PutRequest,
        lessor: &mut dyn Lessor,
    ) -> Result<Written<PutResponse>, MvccError> {
        self.put_with_events(req, lessor, true)
    }

    /// [`Self::put`], listing the events only when `events_wanted` (with no watcher
    /// they are work for nothing: a copy of the key and both values).
    pub fn put_with_events(
        &mut self,
        req: &PutRequest,
        lessor: &mut dyn Lessor,
        events_wanted: bool,
    ) -> Result<Written<PutResponse>, MvccError> {
        validate_put(req)?;
        self.check_put(req, &*lessor, false)?;
        let mut ctx = WriteCtx::new(self, lessor, events_wanted);
        let response = ctx.put(req);
        Ok(Written {
            response,
            events: ctx.finish(),
        })
    }

    /// The state-dependent checks of a put: the lease exists, and the key exists when
    /// `ignore_value`/`ignore_lease` is set. etcd checks the lease first for a plain
    /// Put and last for a put inside a txn (`in_txn`); the order decides which error a
    /// request that fails both gets.
    pub(crate) fn check_put(
        &self,
        req: &PutRequest,
        lessor: &dyn Lessor,
        in_txn: bool,
    ) -> Result<(), MvccError> {
        let lease = || {
            if req.lease != 0 && !lessor.lease_exists(req.lease) {
                return Err(MvccError::LeaseNotFound);
            }
            Ok(())
        };
        if !in_txn {
            lease()?;
        }
        if (req.ignore_value || req.ignore_lease) && self.get(&req.key).is_none() {
            return Err(MvccError::KeyNotFound);
        }
        if in_txn {
            lease()?;
        }
        Ok(())
    }

    /// The state-dependent check of a range inside a txn, done before the txn writes.
    /// As in etcd it differs from a plain Range in one corner: a negative revision is
    /// compared with the compact revision instead of meaning "current".
    pub(crate) fn check_range(&self, req: &RangeRequest) -> Result<(), MvccError> {
        if req.revision == 0 {
            Ok(())
        } else if req.revision > self.current_revision {
            Err(MvccError::FutureRevision)
        } else if req.revision < self.compact_revision {
            Err(MvccError::Compacted)
        } else {
            Ok(())
        }
    }

    /// Applies a DeleteRange request; deleting nothing leaves the revision alone.
    pub fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
        lessor: &mut dyn Lessor,
    ) -> Result<Written<DeleteRangeResponse>, MvccError> {
        self.delete_range_with_events(req, lessor, true)
    }

    /// [`Self::delete_range`], listing the events only when `events_wanted`.
    pub fn delete_range_with_events(
        &mut self,
        req: &DeleteRangeRequest,
        lessor: &mut dyn Lessor,
        events_wanted: bool,
    ) -> Result<Written<DeleteRangeResponse>, MvccError> {
        validate_delete(req)?;
        let mut ctx = WriteCtx::new(self, lessor, events_wanted);
        let response = ctx.delete_range(req);
        Ok(Written {
            response,
            events: ctx.finish(),
        })
    }

    /// Deletes the given keys (those that are live) in one revision, in the given order;
    /// used by lease revocation. Returns the store's revision afterwards and the events.
    pub fn delete_keys(&mut self, keys: &[Vec<u8>], lessor: &mut dyn Lessor) -> (i64, Vec<Event>) {
        let mut ctx = WriteCtx::new(self, lessor, true);
        for key in keys {
            ctx.delete(&KeyRange::Single(key.clone()));
        }
        let events = ctx.finish();
        (self.current_revision, events)
    }

    /// Applies a Txn request: checks it, evaluates the compares against the state
    /// before it, then applies the chosen branch as one revision.
    pub fn txn(
        &mut self,
        req: &TxnRequest,
        lessor: &mut dyn Lessor,
        txn_ops_max: usize,
    ) -> Result<Written<TxnResponse>, MvccError> {
        self.txn_with_events(req, lessor, txn_ops_max, true)
    }

    /// [`Self::txn`], listing the events only when `events_wanted`.
    pub fn txn_with_events(
        &mut self,
        req: &TxnRequest,
        lessor: &mut dyn Lessor,
        txn_ops_max: usize,
        events_wanted: bool,
    ) -> Result<Written<TxnResponse>, MvccError> {
        validate_txn(req, txn_ops_max)?;
        let path = compare_path(self, req);
        let read_only = is_read_only(req);
        if !read_only {
            path.check_puts(self, req, &*lessor)?;
        }
        path.check_ranges(self, req)?;
        let mut ctx = WriteCtx::new(self, lessor, events_wanted);
        let mut response = path.apply(&mut ctx, req);
        response.header = header(ctx.visible_revision());
        Ok(Written {
            response,
            events: ctx.finish(),
        })
    }

    /// Applies a Compaction request: history before `revision` is dropped.
    pub fn compact(&mut self, req: &CompactionRequest) -> Result<CompactionResponse, MvccError> {
        if req.revision <= self.compact_revision {
            return Err(MvccError::Compacted);
        }
        if req.revision > self.current_revision {
            return Err(MvccError::FutureRevision);
        }
        self.compact_revision = req.revision;
        self.keys.compact(req.revision);
        tracing::debug!(revision = req.revision, "compacted");
        Ok(CompactionResponse {
            header: header(self.current_revision),
        })
    }

    /// Answers HashKV: a CRC-32C over all held changes up to `revision` (0 = current).
    pub fn hash_kv(&self, revision: i64) -> Result<HashKvResponse, MvccError> {
        if revision > 0 && revision <= self.compact_revision {
            return Err(MvccError::Compacted);
        }
        if revision > self.current_revision {
            return Err(MvccError::FutureRevision);
        }
        let at = if revision <= 0 {
            self.current_revision
        } else {
            revision
        };
        Ok(HashKvResponse {
            header: header(self.current_revision),
            hash: self.keys.hash(at, self.compact_revision),
            compact_revision: self.compact_revision,
        })
    }

    /// The events on keys in `key`/`range_end` (etcd's conventions) with revisions in
    /// `[from, to]` (`to` is capped at the current revision), for watches that start in
    /// the past. Fails when `from` is below the compact revision.
    pub fn events(
        &self,
        key: &[u8],
        range_end: &[u8],
        from: i64,
        to: i64,
    ) -> Result<Vec<Event>, MvccError> {
        if from < self.compact_revision {
            return Err(MvccError::Compacted);
        }
        let to = to.min(self.current_revision);
        Ok(self.keys.events(&KeyRange::new(key, range_end), from, to))
    }

    /// Checks internal invariants (after a restore).
    pub(crate) fn check_consistent(&self) -> Result<(), String> {
        self.keys.check_consistent()?;
        if self.current_revision < 1 {
            return Err("current revision below 1".into());
        }
        if self.compact_revision > self.current_revision {
            return Err("compact revision after current revision".into());
        }
        if let Some(last) = self.keys.last_revision()
            && last.main > self.current_revision
        {
            return Err("a change after the current revision".into());
        }
        Ok(())
    }

    /// Every live key with its lease, at the current revision (to rebuild lease
    /// attachments).
    pub(crate) fn live_leased_keys(&self) -> Vec<(i64, Vec<u8>)> {
        self.keys
            .range(&KeyRange::From(Vec::new()), self.current_revision)
            .into_iter()
            .filter(|kv| kv.lease != 0)
            .map(|kv| (kv.lease, kv.key))
            .collect()
    }
}

/// The request-only checks of a Range (etcd's gRPC layer does them before Raft).
pub fn validate_range(req: &RangeRequest) -> Result<(), MvccError> {
    if req.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    Ok(())
}

/// The request-only checks of a Put.
pub fn validate_put(req: &PutRequest) -> Result<(), MvccError> {
    if req.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(MvccError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(MvccError::LeaseProvided);
    }
    Ok(())
}

/// The request-only checks of a DeleteRange.
pub fn validate_delete(req: &DeleteRangeRequest) -> Result<(), MvccError> {
    if req.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    Ok(())
}
