//! The etcd KV model: a multi-version key space with leases, executed one request at a
//! time, with an undo log so the checker can try a choice and take it back.
//!
//! It keeps every version of every key (nothing is ever compacted here: compaction is
//! judged separately from real time), and it does not model time, so lease expiry is an
//! explicit [`Store::revoke`] chosen by the checker.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::history::{
    Compare, CompareResult, CompareTarget, DeleteRangeResult, Event, EventKind, KeyValue, Op,
    OpResult, PutResult, RangeResult, TxnResult,
};

/// Error text of a put naming a lease that does not exist.
pub const ERR_LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
/// Error text of a read above the current revision.
pub const ERR_FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
/// Error text of a read below the compacted revision.
pub const ERR_COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

#[derive(Debug, Clone)]
struct Version {
    rev: i64,
    kv: Option<KeyValue>,
}

/// A lease known to the model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lease {
    /// False once revoked or expired.
    pub alive: bool,
    /// Keys currently attached.
    pub keys: BTreeSet<String>,
}

#[derive(Debug)]
enum Undo {
    KeyPush(String),
    Lease(i64, Option<Lease>),
    Rev,
}

/// The model state: every version of every key, the leases, the current revision and the
/// events each revision produced.
#[derive(Debug)]
pub struct Store {
    keys: BTreeMap<String, Vec<Version>>,
    leases: BTreeMap<i64, Lease>,
    rev: i64,
    undo: Vec<Undo>,
    events: Vec<Vec<Event>>,
    /// Leases a put may use even though no acknowledged grant created them (their grant
    /// had an unknown outcome).
    pub maybe_leases: BTreeSet<i64>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

fn key_range<'a>(
    map: &'a BTreeMap<String, Vec<Version>>,
    key: &str,
    end: Option<&str>,
) -> Box<dyn Iterator<Item = (&'a String, &'a Vec<Version>)> + 'a> {
    match end {
        None => Box::new(map.get_key_value(key).into_iter()),
        Some("\0") => Box::new(map.range::<str, _>((Bound::Included(key), Bound::Unbounded))),
        Some(e) if e <= key => Box::new(std::iter::empty()),
        Some(e) => Box::new(map.range::<str, _>((Bound::Included(key), Bound::Excluded(e)))),
    }
}

/// Whether `k` lies in the range `[key, end)` with etcd's conventions.
pub fn in_range(k: &str, key: &str, end: Option<&str>) -> bool {
    match end {
        None => k == key,
        Some("\0") => k >= key,
        Some(e) => k >= key && k < e,
    }
}

fn at(versions: &[Version], rev: i64) -> Option<&KeyValue> {
    // Most lookups are of the latest version: skip the binary search then.
    if let Some(last) = versions.last()
        && last.rev <= rev
    {
        return last.kv.as_ref();
    }
    let i = versions.partition_point(|v| v.rev <= rev);
    if i == 0 {
        None
    } else {
        versions[i - 1].kv.as_ref()
    }
}

impl Store {
    /// An empty store at revision 1 (etcd's first revision holds no keys).
    pub fn new() -> Self {
        Store {
            keys: BTreeMap::new(),
            leases: BTreeMap::new(),
            rev: 1,
            undo: Vec::new(),
            events: vec![Vec::new(), Vec::new()],
            maybe_leases: BTreeSet::new(),
        }
    }

    /// The current revision.
    pub fn rev(&self) -> i64 {
        self.rev
    }

    /// The events revision `rev` produced (empty for unknown revisions).
    pub fn events(&self, rev: i64) -> &[Event] {
        usize::try_from(rev)
            .ok()
            .and_then(|r| self.events.get(r))
            .map_or(&[], |v| v.as_slice())
    }

    /// A mark to [`Store::rollback`] to.
    pub fn mark(&self) -> usize {
        self.undo.len()
    }

    /// Undoes every change made since `mark`.
    pub fn rollback(&mut self, mark: usize) {
        while self.undo.len() > mark {
            match self.undo.pop() {
                Some(Undo::KeyPush(k)) => {
                    if let Some(v) = self.keys.get_mut(&k) {
                        v.pop();
                        if v.is_empty() {
                            self.keys.remove(&k);
                        }
                    }
                }
                Some(Undo::Lease(id, old)) => match old {
                    Some(l) => {
                        self.leases.insert(id, l);
                    }
                    None => {
                        self.leases.remove(&id);
                    }
                },
                Some(Undo::Rev) => {
                    self.rev -= 1;
                    self.events.pop();
                }
                None => break,
            }
        }
    }

    /// The live key-value of `key` at `rev`.
    pub fn get_at(&self, key: &str, rev: i64) -> Option<&KeyValue> {
        self.keys.get(key).and_then(|v| at(v, rev))
    }

    /// Every key ever written with its live key-value at the current revision, in key
    /// order (None: deleted). A merge walk over this is cheaper than one lookup per key.
    pub fn current(&self) -> impl Iterator<Item = (&str, Option<&KeyValue>)> {
        // Versions are appended in revision order and none lies above the current
        // revision, so the last one is live now.
        self.keys
            .iter()
            .map(|(k, v)| (k.as_str(), v.last().and_then(|x| x.kv.as_ref())))
    }

    /// A hash of the current state for a replay that reads nothing older, where each
    /// live key-value counts only as far as `visible` says later records can see it
    /// (see `symmetry::Shown::visible`). Used like [`Store::state_hash`].
    pub fn current_hash(&self, visible: impl Fn(&KeyValue) -> Visible) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.rev.hash(&mut h);
        for (k, kv) in self.current() {
            k.hash(&mut h);
            match kv.map(|kv| (visible(kv), kv)) {
                Some((Visible::Lease, kv)) => (3u8, kv.lease).hash(&mut h),
                Some((Visible::Revisions, kv)) => {
                    (1u8, kv.create_revision, kv.version, kv.lease).hash(&mut h)
                }
                Some((Visible::All, kv)) => (2u8, kv).hash(&mut h),
                None => 0u8.hash(&mut h),
            }
        }
        for (id, l) in &self.leases {
            id.hash(&mut h);
            l.alive.hash(&mut h);
            l.keys.hash(&mut h);
        }
        h.finish()
    }

    /// A hash of everything a replay from the current revision on can observe: each
    /// key's versions from revision `from` on and the one live before it, and the
    /// leases. Equal states hash equally; used to remember states that failed.
    pub fn state_hash(&self, from: i64) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.rev.hash(&mut h);
        for (k, versions) in &self.keys {
            let i = versions.partition_point(|v| v.rev < from).saturating_sub(1);
            k.hash(&mut h);
            for v in &versions[i..] {
                v.rev.hash(&mut h);
                v.kv.hash(&mut h);
            }
        }
        for (id, l) in &self.leases {
            id.hash(&mut h);
            l.alive.hash(&mut h);
            l.keys.hash(&mut h);
        }
        h.finish()
    }

    /// A lease's model state.
    pub fn lease(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Leases alive with at least one key, in id order.
    pub fn leases_with_keys(&self) -> Vec<i64> {
        self.leases
            .iter()
            .filter(|(_, l)| l.alive && !l.keys.is_empty())
            .map(|(id, _)| *id)
            .collect()
    }

    fn set_lease(&mut self, id: i64, new: Option<Lease>) {
        let old = match new {
            Some(l) => self.leases.insert(id, l),
            None => self.leases.remove(&id),
        };
        self.undo.push(Undo::Lease(id, old));
    }

    fn edit_lease(&mut self, id: i64, f: impl FnOnce(&mut Lease)) {
        if id == 0 {
            return;
        }
        let mut l = self.leases.get(&id).cloned().unwrap_or_default();
        f(&mut l);
        self.set_lease(id, Some(l));
    }

    /// Grants lease `id`; false if it already exists.
    pub fn grant(&mut self, id: i64) -> bool {
        if self.leases.contains_key(&id) {
            return false;
        }
        self.set_lease(
            id,
            Some(Lease {
                alive: true,
                keys: BTreeSet::new(),
            }),
        );
        true
    }

    /// Revokes (or expires) lease `id`, deleting its keys in one new revision. Returns
    /// the number of keys deleted.
    pub fn revoke(&mut self, id: i64) -> usize {
        let keys: Vec<String> = self
            .leases
            .get(&id)
            .map(|l| l.keys.iter().cloned().collect())
            .unwrap_or_default();
        let r = self.rev + 1;
        self.events.push(Vec::new());
        for k in &keys {
            self.delete_key(k, r);
        }
        self.edit_lease(id, |l| {
            l.alive = false;
            l.keys.clear();
        });
        self.finish_write(r);
        keys.len()
    }

    /// Advances the revision with no change (a revision whose writer is outside the
    /// history at hand, e.g. in a shrunk sub-history).
    pub fn skip_revision(&mut self) {
        self.events.push(Vec::new());
        self.rev += 1;
        self.undo.push(Undo::Rev);
    }

    fn finish_write(&mut self, r: i64) {
        if self.events.last().is_some_and(|e| !e.is_empty()) {
            self.rev = r;
            self.undo.push(Undo::Rev);
        } else {
            self.events.pop();
        }
    }

    /// Executes a KV request (range, put, delete_range, txn) at the current state. A
    /// request that changes keys gets the next revision. On error nothing changes.
    pub fn exec(&mut self, op: &Op) -> Result<OpResult, String> {
        let mark = self.mark();
        let r = self.rev + 1;
        self.events.push(Vec::new());
        match self.exec_in(op, r) {
            Ok(res) => {
                self.finish_write(r);
                Ok(res)
            }
            Err(e) => {
                self.rollback(mark);
                self.events.pop();
                Err(e)
            }
        }
    }

    fn exec_in(&mut self, op: &Op, r: i64) -> Result<OpResult, String> {
        match op {
            Op::Range(q) => {
                let read_rev = if q.revision > 0 {
                    if q.revision > self.rev {
                        return Err(ERR_FUTURE_REV.into());
                    }
                    q.revision
                } else {
                    r
                };
                let mut res = RangeResult::default();
                for (_, vs) in key_range(&self.keys, &q.key, q.range_end.as_deref()) {
                    if let Some(kv) = at(vs, read_rev) {
                        res.count += 1;
                        if q.count_only || (q.limit > 0 && res.kvs.len() as i64 >= q.limit) {
                            continue;
                        }
                        let mut kv = kv.clone();
                        if q.keys_only {
                            kv.value.clear();
                        }
                        res.kvs.push(kv);
                    }
                }
                res.more = !q.count_only && q.limit > 0 && res.count > q.limit;
                Ok(OpResult::Range(res))
            }
            Op::Put(p) => {
                if p.lease != 0 && !self.leases.get(&p.lease).is_some_and(|l| l.alive) {
                    if self.maybe_leases.contains(&p.lease) && !self.leases.contains_key(&p.lease) {
                        self.grant(p.lease);
                    } else {
                        return Err(ERR_LEASE_NOT_FOUND.into());
                    }
                }
                let prev = self.get_at(&p.key, r).cloned();
                let kv = KeyValue {
                    key: p.key.clone(),
                    value: p.value.clone(),
                    create_revision: prev.as_ref().map_or(r, |k| k.create_revision),
                    mod_revision: r,
                    version: prev.as_ref().map_or(1, |k| k.version + 1),
                    lease: p.lease,
                };
                if let Some(old) = &prev
                    && old.lease != 0
                {
                    self.edit_lease(old.lease, |l| {
                        l.keys.remove(&p.key);
                    });
                }
                self.edit_lease(p.lease, |l| {
                    l.keys.insert(p.key.clone());
                });
                self.push_version(&p.key, r, Some(kv.clone()));
                self.push_event(EventKind::Put, kv, prev.clone());
                Ok(OpResult::Put(PutResult {
                    prev_kv: if p.prev_kv { prev } else { None },
                }))
            }
            Op::DeleteRange(d) => {
                let keys: Vec<String> = key_range(&self.keys, &d.key, d.range_end.as_deref())
                    .filter(|(_, vs)| at(vs, r).is_some())
                    .map(|(k, _)| k.clone())
                    .collect();
                let mut res = DeleteRangeResult {
                    deleted: keys.len() as i64,
                    prev_kvs: Vec::new(),
                };
                for k in &keys {
                    let prev = self.delete_key(k, r);
                    if d.prev_kv
                        && let Some(p) = prev
                    {
                        res.prev_kvs.push(p);
                    }
                }
                Ok(OpResult::DeleteRange(res))
            }
            Op::Txn(t) => {
                let succeeded = t.compare.iter().all(|c| self.compare(c, r));
                let branch = if succeeded { &t.success } else { &t.failure };
                let mut responses = Vec::with_capacity(branch.len());
                for o in branch {
                    responses.push(self.exec_in(o, r)?);
                }
                Ok(OpResult::Txn(TxnResult {
                    succeeded,
                    responses,
                }))
            }
            other => Err(format!("not a KV request: {other:?}")),
        }
    }

    fn delete_key(&mut self, k: &str, r: i64) -> Option<KeyValue> {
        let prev = self.get_at(k, r).cloned()?;
        self.edit_lease(prev.lease, |l| {
            l.keys.remove(k);
        });
        self.push_version(k, r, None);
        let kv = KeyValue {
            key: k.to_owned(),
            mod_revision: r,
            ..KeyValue::default()
        };
        self.push_event(EventKind::Delete, kv, Some(prev.clone()));
        Some(prev)
    }

    fn push_version(&mut self, k: &str, rev: i64, kv: Option<KeyValue>) {
        self.keys
            .entry(k.to_owned())
            .or_default()
            .push(Version { rev, kv });
        self.undo.push(Undo::KeyPush(k.to_owned()));
    }

    fn push_event(&mut self, kind: EventKind, kv: KeyValue, prev_kv: Option<KeyValue>) {
        if let Some(e) = self.events.last_mut() {
            e.push(Event { kind, kv, prev_kv });
        }
    }

    fn compare(&self, c: &Compare, r: i64) -> bool {
        let kvs: Vec<&KeyValue> = key_range(&self.keys, &c.key, c.range_end.as_deref())
            .filter_map(|(_, vs)| at(vs, r))
            .collect();
        if kvs.is_empty() {
            return holds_when_absent(c);
        }
        kvs.into_iter().all(|kv| compare_one(c, kv))
    }
}

/// How much of a live key-value the rest of a history can tell apart from another
/// (for remembering states; see `symmetry::Shown::visible`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visible {
    /// Everything.
    All,
    /// Its create revision, version and lease, not its value or mod revision.
    Revisions,
    /// Only that it exists and its lease.
    Lease,
}

/// Whether compare `c` holds when no key of its range exists (an absent key has
/// version, create and mod revision and lease 0, and fails every value compare).
pub fn holds_when_absent(c: &Compare) -> bool {
    !matches!(c.target, CompareTarget::Value(_)) && compare_one(c, &KeyValue::default())
}

fn compare_one(c: &Compare, kv: &KeyValue) -> bool {
    let ord = match &c.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
        CompareTarget::Value(v) => kv.value.as_bytes().cmp(v.as_bytes()),
    };
    match c.result {
        CompareResult::Equal => ord.is_eq(),
        CompareResult::NotEqual => !ord.is_eq(),
        CompareResult::Greater => ord.is_gt(),
        CompareResult::Less => ord.is_lt(),
    }
}

/// Whether a request could change keys (a write), judging by its shape only.
pub fn may_write(op: &Op) -> bool {
    match op {
        Op::Put(_) | Op::DeleteRange(_) | Op::LeaseRevoke(_) => true,
        Op::Txn(t) => t.success.iter().chain(&t.failure).any(may_write),
        _ => false,
    }
}

/// Whether an acknowledged result proves the request produced its header revision.
pub fn claims_write(res: &OpResult) -> bool {
    match res {
        OpResult::Put(_) => true,
        OpResult::DeleteRange(d) => d.deleted > 0,
        OpResult::Txn(t) => t.responses.iter().any(claims_write),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest};

    fn put(k: &str, v: &str) -> Op {
        Op::Put(PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })
    }

    fn range(k: &str, end: Option<&str>, rev: i64) -> Op {
        Op::Range(RangeRequest {
            key: k.into(),
            range_end: end.map(Into::into),
            revision: rev,
            ..Default::default()
        })
    }

    fn kvs(res: Result<OpResult, String>) -> Vec<(String, String, i64, i64, i64)> {
        match res {
            Ok(OpResult::Range(r)) => r
                .kvs
                .into_iter()
                .map(|k| (k.key, k.value, k.create_revision, k.mod_revision, k.version))
                .collect(),
            other => panic!("not a range result: {other:?}"),
        }
    }

    #[test]
    fn revisions_versions_and_history() {
        let mut s = Store::new();
        s.exec(&put("a", "1")).expect("put");
        s.exec(&put("a", "2")).expect("put");
        s.exec(&put("b", "3")).expect("put");
        assert_eq!(s.rev(), 4);
        assert_eq!(
            kvs(s.exec(&range("a", Some("\0"), 0))),
            vec![
                ("a".into(), "2".into(), 2, 3, 2),
                ("b".into(), "3".into(), 4, 4, 1)
            ]
        );
        assert_eq!(
            kvs(s.exec(&range("a", None, 2))),
            vec![("a".into(), "1".into(), 2, 2, 1)]
        );
        assert_eq!(
            s.exec(&range("a", None, 9)),
            Err(ERR_FUTURE_REV.to_string())
        );
        let del = Op::DeleteRange(DeleteRangeRequest {
            key: "a".into(),
            range_end: Some("c".into()),
            prev_kv: true,
        });
        let mark = s.mark();
        match s.exec(&del) {
            Ok(OpResult::DeleteRange(d)) => assert_eq!(d.deleted, 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.rev(), 5);
        assert_eq!(s.events(5).len(), 2);
        s.rollback(mark);
        assert_eq!(s.rev(), 4);
        assert_eq!(kvs(s.exec(&range("a", Some("c"), 0))).len(), 2);
        // Recreated keys start at version 1 with a new create revision.
        s.exec(&del).expect("delete");
        s.exec(&put("a", "4")).expect("put");
        assert_eq!(
            kvs(s.exec(&range("a", None, 0))),
            vec![("a".into(), "4".into(), 6, 6, 1)]
        );
    }

    #[test]
    fn txn_compares_and_leases() {
        let mut s = Store::new();
        let txn = Op::Txn(TxnRequest {
            compare: vec![Compare {
                key: "a".into(),
                range_end: None,
                target: CompareTarget::Version(0),
                result: CompareResult::Equal,
            }],
            success: vec![put("a", "x"), range("a", None, 0)],
            failure: vec![range("a", None, 0)],
        });
        match s.exec(&txn) {
            Ok(OpResult::Txn(t)) => {
                assert!(t.succeeded);
                assert_eq!(kvs(Ok(t.responses[1].clone())).len(), 1);
            }
            other => panic!("{other:?}"),
        }
        match s.exec(&txn) {
            Ok(OpResult::Txn(t)) => assert!(!t.succeeded),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.rev(), 2, "a read-only txn makes no revision");
        let leased = Op::Put(PutRequest {
            key: "l".into(),
            value: "v".into(),
            lease: 7,
            prev_kv: false,
        });
        assert_eq!(s.exec(&leased), Err(ERR_LEASE_NOT_FOUND.to_string()));
        assert!(s.grant(7));
        s.exec(&leased).expect("put with lease");
        s.exec(&Op::Put(PutRequest {
            key: "m".into(),
            value: "v".into(),
            lease: 7,
            prev_kv: false,
        }))
        .expect("put");
        assert_eq!(s.revoke(7), 2);
        assert_eq!(
            s.events(s.rev()).len(),
            2,
            "both keys vanish in one revision"
        );
        assert_eq!(s.exec(&leased), Err(ERR_LEASE_NOT_FOUND.to_string()));
    }
}
