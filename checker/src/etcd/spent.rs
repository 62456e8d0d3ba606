//! Unknown-outcome writes that can produce no revision any more, whatever happens next.
//! A lease that is revoked or has expired never comes back (lease ids are not reused),
//! so a put naming it fails, and a key whose every put names such a lease stays absent
//! once it is gone: a delete of it changes nothing and a txn that needs it to exist
//! (see `lifetime`) never writes. Such a write is as good as used: the replay neither
//! tries it nor tells apart states that differ only in whether it was used. It decides
//! nothing itself (see `replay`).

use std::collections::BTreeMap;

use crate::history::{History, Op};

use super::store::{Store, may_write};

/// Per key some request may put (any outcome but a definite failure), the leases of
/// those puts, or None when one puts it without a lease (it may always come back).
#[derive(Debug, Clone, Default)]
pub struct PutLeases(BTreeMap<String, Option<Vec<i64>>>);

impl PutLeases {
    /// Collects the puts of `h`.
    pub fn build(h: &History) -> PutLeases {
        let puts = super::lifetime::possible_puts(h);
        let mut by_key: BTreeMap<String, Option<Vec<i64>>> = BTreeMap::new();
        for (key, lease) in puts {
            let e = by_key
                .entry(key.to_owned())
                .or_insert_with(|| Some(Vec::new()));
            match e.as_mut() {
                Some(v) if lease != 0 => v.push(lease),
                _ => *e = None,
            }
        }
        for v in by_key.values_mut().flatten() {
            v.sort_unstable();
            v.dedup();
        }
        PutLeases(by_key)
    }

    /// Whether `key` is absent in `store` and can never be put again: no request puts
    /// it, or every put of it names a lease the model has ended.
    pub fn gone(&self, store: &Store, key: &str) -> bool {
        if store.get_at(key, store.rev()).is_some() {
            return false;
        }
        match self.0.get(key) {
            None => true,
            Some(None) => false,
            Some(Some(leases)) => leases.iter().all(|&l| ended(store, l)),
        }
    }
}

/// Whether lease `id` is known to the model and no longer alive (revoked or expired).
pub fn ended(store: &Store, id: i64) -> bool {
    store.lease(id).is_some_and(|l| !l.alive)
}

/// Whether `op`, as an unknown-outcome write, can produce no revision from the state of
/// `store` on, whatever is applied next.
pub fn spent(op: &Op, store: &Store, puts: &PutLeases) -> bool {
    match op {
        Op::Put(p) => p.lease != 0 && ended(store, p.lease),
        Op::LeaseRevoke(l) => ended(store, l.id),
        Op::DeleteRange(d) => d.range_end.is_none() && puts.gone(store, &d.key),
        Op::Txn(t) => {
            // Only the success branch can write; it fails as a whole on a put naming an
            // ended lease, and it never runs while a key it needs is absent.
            !t.failure.iter().any(may_write)
                && (t
                    .success
                    .iter()
                    .any(|o| matches!(o, Op::Put(p) if p.lease != 0 && ended(store, p.lease)))
                    || super::lifetime::needed_keys(op)
                        .into_iter()
                        .any(|k| puts.gone(store, k)))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = r#"
{"type":"op","client":1,"call":1,"ret":2,"op":{"lease_grant":{"id":7,"ttl":5}},"outcome":{"ok":{"revision":1,"result":{"lease_grant":{"id":7,"ttl":5}}}}}
{"type":"op","client":1,"call":3,"op":{"put":{"key":"lock/a","value":"","lease":7}},"outcome":"unknown"}
{"type":"op","client":2,"call":4,"op":{"txn":{"compare":[{"key":"lock/a","target":{"create":0},"result":"greater"}],"success":[{"put":{"key":"data","value":"x"}}],"failure":[]}},"outcome":"unknown"}
{"type":"op","client":3,"call":5,"op":{"delete_range":{"key":"lock/a"}},"outcome":"unknown"}
{"type":"op","client":4,"call":6,"op":{"put":{"key":"k","value":"u"}},"outcome":"unknown"}
{"type":"op","client":4,"call":7,"op":{"delete_range":{"key":"k"}},"outcome":"unknown"}
"#;

    #[test]
    fn writes_of_an_ended_lease_and_its_keys_are_spent() {
        let h = History::parse(H).expect("parses");
        let puts = PutLeases::build(&h);
        let mut s = Store::new();
        assert!(s.grant(7));
        let spent_now =
            |s: &Store| -> Vec<bool> { h.ops.iter().map(|o| spent(&o.rec.op, s, &puts)).collect() };
        assert_eq!(
            spent_now(&s),
            vec![false; 6],
            "lease 7 alive: all may write"
        );
        assert!(s.exec(&h.ops[1].rec.op).is_ok(), "lock/a put");
        s.revoke(7);
        // The revoke deleted lock/a; only puts naming lease 7 could bring it back.
        assert_eq!(
            spent_now(&s),
            vec![false, true, true, true, false, false],
            "the put, the txn needing lock/a and the delete of lock/a are spent"
        );
    }

    #[test]
    fn a_key_put_without_a_lease_may_always_come_back() {
        let h = History::parse(H).expect("parses");
        let puts = PutLeases::build(&h);
        let s = Store::new();
        assert!(!puts.gone(&s, "k"), "k is put without a lease");
        assert!(puts.gone(&s, "never-put"), "no request puts it");
        assert!(!puts.gone(&s, "lock/a"), "lease 7 is not known ended");
    }
}
