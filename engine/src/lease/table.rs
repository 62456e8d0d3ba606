//! The lease table itself (see the module doc of [`crate::lease`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::mvcc::{Lessor, MvccError};

/// The largest TTL a grant may ask for, in seconds (etcd's limit).
pub const LEASE_TTL_S_MAX: i64 = 9_000_000_000;

const MS_PER_S: i64 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Lease {
    ttl_s: i64,
    keys: BTreeSet<Vec<u8>>,
    /// When the lease expires (ms on the caller's monotonic clock); `None` = never
    /// (on a member that is not the primary).
    expiry_ms: Option<u64>,
}

/// What [`LeaseTable::time_to_live`] reports about one lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeToLive {
    /// The lease id.
    pub id: i64,
    /// Seconds left before expiry, truncated toward zero (the granted TTL on a member
    /// that does not track expiries).
    pub remaining_s: i64,
    /// The TTL the lease was granted with (after the minimum-TTL rule).
    pub granted_ttl_s: i64,
    /// The attached keys in key order, when asked for.
    pub keys: Vec<Vec<u8>>,
}

/// All leases of one member (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTable {
    leases: BTreeMap<i64, Lease>,
    ttl_s_min: i64,
    primary: bool,
}

fn expiry_after(now_ms: u64, extend_ms: u64, ttl_s: i64) -> u64 {
    let ttl_ms = u64::try_from(ttl_s.saturating_mul(MS_PER_S)).unwrap_or(0);
    now_ms.saturating_add(extend_ms).saturating_add(ttl_ms)
}

impl LeaseTable {
    /// An empty table; grants below `ttl_s_min` seconds are raised to it. A new table
    /// is not primary.
    pub fn new(ttl_s_min: i64) -> LeaseTable {
        LeaseTable {
            leases: BTreeMap::new(),
            ttl_s_min,
            primary: false,
        }
    }

    /// Whether this table tracks expiries (it belongs to the leader).
    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// Grants lease `id` (chosen by the caller; 0 is refused) for `ttl_s` seconds.
    /// Returns the TTL actually granted.
    pub fn grant(&mut self, id: i64, ttl_s: i64, now_ms: u64) -> Result<i64, MvccError> {
        if id == 0 {
            return Err(MvccError::LeaseNotFound);
        }
        if ttl_s > LEASE_TTL_S_MAX {
            return Err(MvccError::LeaseTtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(MvccError::LeaseExists);
        }
        let ttl_s = ttl_s.max(self.ttl_s_min);
        let expiry_ms = self.primary.then(|| expiry_after(now_ms, 0, ttl_s));
        self.leases.insert(
            id,
            Lease {
                ttl_s,
                keys: BTreeSet::new(),
                expiry_ms,
            },
        );
        Ok(ttl_s)
    }

    /// Restores a lease from a snapshot (no keys yet, no expiry).
    pub(crate) fn insert_restored(&mut self, id: i64, ttl_s: i64) {
        self.leases.insert(
            id,
            Lease {
                ttl_s,
                keys: BTreeSet::new(),
                expiry_ms: None,
            },
        );
    }

    /// Removes lease `id`, returning its keys in key order (the caller deletes them).
    pub fn revoke(&mut self, id: i64) -> Result<Vec<Vec<u8>>, MvccError> {
        let lease = self.leases.remove(&id).ok_or(MvccError::LeaseNotFound)?;
        Ok(lease.keys.into_iter().collect())
    }

    /// The keys attached to lease `id`, in key order.
    pub fn keys(&self, id: i64) -> Result<Vec<Vec<u8>>, MvccError> {
        let lease = self.leases.get(&id).ok_or(MvccError::LeaseNotFound)?;
        Ok(lease.keys.iter().cloned().collect())
    }

    /// Renews lease `id` (expiry = now + TTL) and returns its TTL. Only the primary
    /// renews; a lease whose expiry already passed is as good as revoked and answers
    /// "not found" (etcd waits for the revoke and then answers the same).
    pub fn keep_alive(&mut self, id: i64, now_ms: u64) -> Result<i64, MvccError> {
        if !self.primary {
            return Err(MvccError::NotLeader);
        }
        let lease = self.leases.get_mut(&id).ok_or(MvccError::LeaseNotFound)?;
        if lease.expiry_ms.is_some_and(|e| e <= now_ms) {
            return Err(MvccError::LeaseNotFound);
        }
        lease.expiry_ms = Some(expiry_after(now_ms, 0, lease.ttl_s));
        Ok(lease.ttl_s)
    }

    /// Granted and remaining TTL of lease `id`, with its keys if `with_keys`.
    pub fn time_to_live(
        &self,
        id: i64,
        now_ms: u64,
        with_keys: bool,
    ) -> Result<TimeToLive, MvccError> {
        let lease = self.leases.get(&id).ok_or(MvccError::LeaseNotFound)?;
        let remaining_s = match lease.expiry_ms {
            Some(e) => {
                let left_ms = i128::from(e) - i128::from(now_ms);
                i64::try_from(left_ms / i128::from(MS_PER_S)).unwrap_or(i64::MAX)
            }
            None => lease.ttl_s,
        };
        Ok(TimeToLive {
            id,
            remaining_s,
            granted_ttl_s: lease.ttl_s,
            keys: if with_keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    /// All lease ids, ascending.
    pub fn ids(&self) -> Vec<i64> {
        self.leases.keys().copied().collect()
    }

    /// Every lease with its granted TTL, ascending by id.
    pub fn ttls(&self) -> Vec<(i64, i64)> {
        self.leases.iter().map(|(id, l)| (*id, l.ttl_s)).collect()
    }

    /// Up to `count_max` leases whose expiry is at or before `now_ms`, earliest expiry
    /// first (ties by id). Empty unless primary. Nothing is removed: a lease stays listed
    /// until its revoke is applied, so the caller must not propose a second revoke for
    /// one it already proposed.
    pub fn expired(&self, now_ms: u64, count_max: usize) -> Vec<i64> {
        let mut due: Vec<(u64, i64)> = self
            .leases
            .iter()
            .filter_map(|(id, l)| l.expiry_ms.filter(|e| *e <= now_ms).map(|e| (e, *id)))
            .collect();
        due.sort_unstable();
        due.into_iter().take(count_max).map(|(_, id)| id).collect()
    }

    /// Makes this table the primary (its member became leader): every lease gets a
    /// fresh expiry of now + `extend_ms` + its TTL, as etcd's promotion does, so no lease
    /// expires because of time that passed under a previous leader.
    pub fn promote(&mut self, now_ms: u64, extend_ms: u64) {
        self.primary = true;
        for lease in self.leases.values_mut() {
            lease.expiry_ms = Some(expiry_after(now_ms, extend_ms, lease.ttl_s));
        }
    }

    /// Stops tracking expiries (this member lost leadership).
    pub fn demote(&mut self) {
        self.primary = false;
        for lease in self.leases.values_mut() {
            lease.expiry_ms = None;
        }
    }
}

impl Lessor for LeaseTable {
    fn lease_exists(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    fn attach(&mut self, id: i64, key: &[u8]) {
        match self.leases.get_mut(&id) {
            Some(lease) => {
                lease.keys.insert(key.to_vec());
            }
            None => tracing::error!(id, "attach to a lease that does not exist"),
        }
    }

    fn detach(&mut self, id: i64, key: &[u8]) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_rules() {
        let mut t = LeaseTable::new(5);
        assert_eq!(t.grant(0, 10, 0), Err(MvccError::LeaseNotFound));
        assert_eq!(
            t.grant(1, LEASE_TTL_S_MAX + 1, 0),
            Err(MvccError::LeaseTtlTooLarge)
        );
        assert_eq!(t.grant(1, 2, 0), Ok(5), "raised to the minimum TTL");
        assert_eq!(t.grant(1, 10, 0), Err(MvccError::LeaseExists));
        assert_eq!(t.grant(2, 10, 0), Ok(10));
        assert_eq!(t.ids(), vec![1, 2]);
    }

    #[test]
    fn expiry_follows_the_passed_clock() {
        let mut t = LeaseTable::new(1);
        t.grant(7, 10, 0).unwrap();
        assert!(
            t.expired(1_000_000, 10).is_empty(),
            "a follower never expires"
        );
        assert_eq!(t.keep_alive(7, 0), Err(MvccError::NotLeader));
        t.promote(1_000, 500);
        assert_eq!(t.time_to_live(7, 1_000, false).unwrap().remaining_s, 10);
        assert!(t.expired(11_499, 10).is_empty());
        assert_eq!(t.expired(11_500, 10), vec![7]);
        // Renewing before expiry pushes it out by the TTL.
        assert_eq!(t.keep_alive(7, 11_000), Ok(10));
        assert!(t.expired(20_999, 10).is_empty());
        assert_eq!(t.expired(21_000, 10), vec![7]);
        // Once expired, renewals are refused; the table still holds it until revoked.
        assert_eq!(t.keep_alive(7, 21_000), Err(MvccError::LeaseNotFound));
        assert_eq!(t.ids(), vec![7]);
        // A new leader renews everything.
        t.demote();
        assert!(t.expired(u64::MAX, 10).is_empty());
        t.promote(50_000, 0);
        assert_eq!(t.expired(60_000, 10), vec![7]);
        assert!(t.expired(59_999, 10).is_empty());
    }

    #[test]
    fn expired_is_ordered_and_bounded() {
        let mut t = LeaseTable::new(1);
        t.promote(0, 0);
        t.grant(3, 5, 0).unwrap();
        t.grant(1, 5, 0).unwrap();
        t.grant(2, 1, 0).unwrap();
        assert_eq!(t.expired(10_000, 10), vec![2, 1, 3]);
        assert_eq!(t.expired(10_000, 2), vec![2, 1]);
    }

    #[test]
    fn attach_detach_revoke() {
        let mut t = LeaseTable::new(1);
        t.grant(1, 5, 0).unwrap();
        t.attach(1, b"b");
        t.attach(1, b"a");
        t.detach(1, b"b");
        t.attach(1, b"c");
        assert_eq!(
            t.time_to_live(1, 0, true).unwrap().keys,
            vec![b"a".to_vec(), b"c".to_vec()]
        );
        assert_eq!(t.revoke(1), Ok(vec![b"a".to_vec(), b"c".to_vec()]));
        assert_eq!(t.revoke(1), Err(MvccError::LeaseNotFound));
        assert!(!t.lease_exists(1));
    }
}
