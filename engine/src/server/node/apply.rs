//! Applying committed entries: requests to the key space and leases, membership changes
//! to the member table, events to the watch hub, results to waiting callers.
//!
//! Every member applies the same entries in the same order with the same outcome; the
//! only member-local input is the clock for lease expiries, which matters only on the
//! leader. A request that fails (a compacted revision, a missing lease) is a result, not
//! a failure of the member.

use prost::Message as _;

use crate::pb::detcdpeerpb::{InternalRequest, internal_request::Request};
use crate::pb::etcdserverpb::{
    AlarmMember, AlarmType, LeaseRevokeRequest, alarm_request::AlarmAction,
};
use crate::pb::mvccpb::Event;
use crate::raft::{ConfChange, ConfChangeKind, Entry, EntryKind};
use crate::storage::Disk;

use super::raft_loop::RaftLoop;
use super::{Applied, lock};
use crate::server::error::ServerError;

impl<D: Disk> RaftLoop<D> {
    pub(super) fn apply_entries(&mut self, entries: Vec<Entry>) {
        let Some(last) = entries.last().map(|e| e.index) else {
            return;
        };
        for entry in entries {
            match entry.kind {
                EntryKind::Normal if entry.data.is_empty() => {}
                EntryKind::Normal => self.apply_normal(&entry),
                EntryKind::ConfChange => self.apply_conf_change(&entry),
            }
        }
        lock(&self.shared.kv).set_applied_index(last);
    }

    fn apply_normal(&mut self, entry: &Entry) {
        let req = match InternalRequest::decode(entry.data.as_slice()) {
            Ok(req) => req,
            Err(e) => {
                // Every member skips it alike, so the state stays the same everywhere.
                tracing::error!(index = entry.index, error = %e, "skipping an entry that does not decode");
                return;
            }
        };
        let Some(request) = req.request else {
            self.shared.resolve(req.id, Ok(Applied::Done));
            return;
        };
        let result = self.apply_request(request);
        self.shared.resolve(req.id, result);
    }

    fn apply_request(&mut self, request: Request) -> Result<Applied, ServerError> {
        let mut kv = lock(&self.shared.kv);
        // Watchers are created with the key space locked (`NodeHandle::with_watch_hub`), so
        // with none now, none can miss this write's events: one created after it starts
        // from the revision this write makes current. Lock order: `kv`, then `hub`.
        let watched = lock(&self.shared.hub).watcher_count() > 0;
        let (applied, events) = match request {
            Request::Put(r) => {
                let w = kv.put_with_events(&r, watched)?;
                (Applied::Put(w.response), w.events)
            }
            Request::DeleteRange(r) => {
                let w = kv.delete_range_with_events(&r, watched)?;
                (Applied::DeleteRange(w.response), w.events)
            }
            Request::Txn(r) => {
                let w = kv.txn_with_events(&r, watched)?;
                (Applied::Txn(w.response), w.events)
            }
            Request::Compaction(r) => (Applied::Compaction(kv.compact(&r)?), Vec::new()),
            Request::LeaseGrant(r) => {
                // The clock is read only here: under the simulator a read is not free,
                // and every applied entry passes this way.
                let now = self.shared.now_ms();
                (Applied::LeaseGrant(kv.lease_grant(&r, now)?), Vec::new())
            }
            Request::LeaseRevoke(r) => {
                let w = kv.lease_revoke(&r)?;
                (Applied::LeaseRevoke(w.response), w.events)
            }
            Request::LeaseExpire(expire) => {
                // Each revoke is a revision of its own; a lease revoked meanwhile is gone.
                for id in expire.ids {
                    self.expiring.remove(&id);
                    if let Ok(w) = kv.lease_revoke(&LeaseRevokeRequest { id }) {
                        notify_hub(&self.shared, &w.events);
                    }
                }
                (Applied::Done, Vec::new())
            }
            Request::Alarm(r) => {
                drop(kv);
                return Ok(Applied::Alarms(self.apply_alarm(&r)));
            }
            Request::MemberAttributes(attrs) => {
                lock(&self.shared.members).apply_attributes(&attrs);
                (Applied::Done, Vec::new())
            }
            Request::MemberUpdate(member) => {
                let peers = {
                    let mut members = lock(&self.shared.members);
                    members.replace_peer_urls(member.id, member.peer_urls);
                    members.peer_urls()
                };
                self.network.set_peers(peers);
                (Applied::Done, Vec::new())
            }
        };
        drop(kv);
        notify_hub(&self.shared, &events);
        Ok(applied)
    }

    fn apply_alarm(&mut self, req: &crate::pb::etcdserverpb::AlarmRequest) -> Vec<AlarmMember> {
        let mut alarms = lock(&self.shared.alarms);
        let member = AlarmMember {
            member_id: req.member_id,
            alarm: req.alarm,
        };
        match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Activate)
                if req.alarm != AlarmType::None as i32 && !alarms.contains(&member) =>
            {
                alarms.push(member);
            }
            Ok(AlarmAction::Deactivate) => {
                alarms.retain(|a| !(a.member_id == req.member_id && a.alarm == req.alarm))
            }
            _ => {}
        }
        alarms.sort_by_key(|a| (a.member_id, a.alarm));
        alarms.clone()
    }

    fn apply_conf_change(&mut self, entry: &Entry) {
        let change: ConfChange = match postcard::from_bytes(&entry.data) {
            Ok(change) => change,
            Err(e) => {
                tracing::error!(index = entry.index, error = %e, "skipping a membership change that does not decode");
                return;
            }
        };
        let peers = {
            let mut members = lock(&self.shared.members);
            members.apply_conf_change(&change);
            members.peer_urls()
        };
        self.network.set_peers(peers);
        if let Some(waiter) = self.conf_waiters.remove(&entry.index) {
            let _ = waiter.send(Ok(()));
        }
        if change.kind == ConfChangeKind::RemoveNode
            && change.node_id == self.shared.config.member_id
        {
            tracing::warn!(
                member = change.node_id,
                "this member was removed from the cluster; stopping"
            );
            self.stop = true;
        }
    }
}

/// Hands one revision's events to the watch hub.
fn notify_hub(shared: &super::Shared, events: &[Event]) {
    let Some(revision) = events
        .first()
        .and_then(|e| e.kv.as_ref())
        .map(|kv| kv.mod_revision)
    else {
        return;
    };
    lock(&shared.hub).notify(revision, events);
}
