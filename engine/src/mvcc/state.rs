//! The applied state of one member: the key space, the lease table and the Raft index
//! last applied, with the request entry points the server calls.
//!
//! Writes that go through Raft (put, delete, txn, compact, lease grant and revoke) are
//! deterministic functions of the state, the request and, for grants, the `now_ms` the
//! caller passes (used only on the primary to set the expiry, never stored in a
//! snapshot). Leader-local lease calls (keep-alive, time-to-live, expiry scans,
//! promotion) never change what a snapshot holds. Snapshots live in
//! [`super::snapshot`].

use super::error::MvccError;
use super::store::{Store, TXN_OPS_MAX_DEFAULT, Written, header};
use crate::lease::LeaseTable;
use crate::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, HashKvResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, TxnRequest, TxnResponse,
};
use crate::pb::mvccpb::Event;

/// Limits and parameters of the applied state; not part of a snapshot (every member
/// must be configured alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvConfig {
    /// The most compares, success ops or failure ops one txn may have.
    pub txn_ops_max: usize,
    /// Grants below this TTL (seconds) are raised to it.
    pub lease_ttl_s_min: i64,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            txn_ops_max: TXN_OPS_MAX_DEFAULT,
            lease_ttl_s_min: 1,
        }
    }
}

/// The key space, leases and applied index of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvState {
    pub(crate) store: Store,
    pub(crate) leases: LeaseTable,
    pub(crate) applied_index: u64,
    pub(crate) config: KvConfig,
}

impl KvState {
    /// An empty state (revision 1, no leases, nothing applied).
    pub fn new(config: KvConfig) -> KvState {
        KvState {
            store: Store::new(),
            leases: LeaseTable::new(config.lease_ttl_s_min),
            applied_index: 0,
            config,
        }
    }

    /// The configuration this state runs with.
    pub fn config(&self) -> KvConfig {
        self.config
    }

    /// The key space (read-only).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The lease table (read-only).
    pub fn leases(&self) -> &LeaseTable {
        &self.leases
    }

    /// The Raft index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Records that the entry at `index` has been applied; indexes never go back.
    pub fn set_applied_index(&mut self, index: u64) {
        debug_assert!(index >= self.applied_index, "applied index goes back");
        self.applied_index = self.applied_index.max(index);
    }

    /// Range.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        self.store.range(req)
    }

    /// Put (attaching the key to its lease, detaching it from the old one).
    pub fn put(&mut self, req: &PutRequest) -> Result<Written<PutResponse>, MvccError> {
        self.put_with_events(req, true)
    }

    /// [`Self::put`], listing the events only when `events_wanted` (see
    /// [`Store::put_with_events`]).
    pub fn put_with_events(
        &mut self,
        req: &PutRequest,
        events_wanted: bool,
    ) -> Result<Written<PutResponse>, MvccError> {
        self.store
            .put_with_events(req, &mut self.leases, events_wanted)
    }

    /// DeleteRange.
    pub fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<Written<DeleteRangeResponse>, MvccError> {
        self.delete_range_with_events(req, true)
    }

    /// [`Self::delete_range`], listing the events only when `events_wanted`.
    pub fn delete_range_with_events(
        &mut self,
        req: &DeleteRangeRequest,
        events_wanted: bool,
    ) -> Result<Written<DeleteRangeResponse>, MvccError> {
        self.store
            .delete_range_with_events(req, &mut self.leases, events_wanted)
    }

    /// Txn, with the configured op limit.
    pub fn txn(&mut self, req: &TxnRequest) -> Result<Written<TxnResponse>, MvccError> {
        self.txn_with_events(req, true)
    }

    /// [`Self::txn`], listing the events only when `events_wanted`.
    pub fn txn_with_events(
        &mut self,
        req: &TxnRequest,
        events_wanted: bool,
    ) -> Result<Written<TxnResponse>, MvccError> {
        self.store.txn_with_events(
            req,
            &mut self.leases,
            self.config.txn_ops_max,
            events_wanted,
        )
    }

    /// Compaction.
    pub fn compact(&mut self, req: &CompactionRequest) -> Result<CompactionResponse, MvccError> {
        self.store.compact(req)
    }

    /// HashKV at `revision` (0 = current).
    pub fn hash_kv(&self, revision: i64) -> Result<HashKvResponse, MvccError> {
        self.store.hash_kv(revision)
    }

    /// Events in a revision range, for watches starting in the past.
    pub fn events(
        &self,
        key: &[u8],
        range_end: &[u8],
        from: i64,
        to: i64,
    ) -> Result<Vec<Event>, MvccError> {
        self.store.events(key, range_end, from, to)
    }

    /// LeaseGrant with the id the server chose (`req.id`, never 0 here). `now_ms` sets
    /// the expiry when this member is the primary.
    pub fn lease_grant(
        &mut self,
        req: &LeaseGrantRequest,
        now_ms: u64,
    ) -> Result<LeaseGrantResponse, MvccError> {
        let ttl = self.leases.grant(req.id, req.ttl, now_ms)?;
        Ok(LeaseGrantResponse {
            header: header(self.store.current_revision()),
            id: req.id,
            ttl,
            error: String::new(),
        })
    }

    /// LeaseRevoke: removes the lease and deletes all its keys in one revision.
    pub fn lease_revoke(
        &mut self,
        req: &LeaseRevokeRequest,
    ) -> Result<Written<LeaseRevokeResponse>, MvccError> {
        let keys = self.leases.revoke(req.id)?;
        let (revision, events) = self.store.delete_keys(&keys, &mut self.leases);
        Ok(Written {
            response: LeaseRevokeResponse {
                header: header(revision),
            },
            events,
        })
    }

    /// LeaseKeepAlive (leader only; not through Raft).
    pub fn lease_keep_alive(
        &mut self,
        req: &LeaseKeepAliveRequest,
        now_ms: u64,
    ) -> Result<LeaseKeepAliveResponse, MvccError> {
        let ttl = self.leases.keep_alive(req.id, now_ms)?;
        Ok(LeaseKeepAliveResponse {
            header: header(self.store.current_revision()),
            id: req.id,
            ttl,
        })
    }

    /// LeaseTimeToLive.
    pub fn lease_time_to_live(
        &self,
        req: &LeaseTimeToLiveRequest,
        now_ms: u64,
    ) -> Result<LeaseTimeToLiveResponse, MvccError> {
        let ttl = self.leases.time_to_live(req.id, now_ms, req.keys)?;
        Ok(LeaseTimeToLiveResponse {
            header: header(self.store.current_revision()),
            id: ttl.id,
            ttl: ttl.remaining_s,
            granted_ttl: ttl.granted_ttl_s,
            keys: ttl.keys,
        })
    }

    /// LeaseLeases: every lease id, ascending.
    pub fn lease_leases(&self) -> LeaseLeasesResponse {
        LeaseLeasesResponse {
            header: header(self.store.current_revision()),
            leases: self
                .leases
                .ids()
                .into_iter()
                .map(|id| LeaseStatus { id })
                .collect(),
        }
    }

    /// Up to `count_max` leases the primary should revoke now (earliest first).
    pub fn expired_leases(&self, now_ms: u64, count_max: usize) -> Vec<i64> {
        self.leases.expired(now_ms, count_max)
    }

    /// This member became leader: track expiries, renewing every lease from `now_ms`
    /// plus `extend_ms`.
    pub fn promote(&mut self, now_ms: u64, extend_ms: u64) {
        self.leases.promote(now_ms, extend_ms);
    }

    /// This member stopped being leader: stop tracking expiries.
    pub fn demote(&mut self) {
        self.leases.demote();
    }
}
