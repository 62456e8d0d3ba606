//! Tests of leases as applied state (revoke deletes keys in one revision, expiry on a
//! passed-in clock, promotion after restore), snapshots (round trip, corruption) and
//! HashKV.

#[path = "mvcc_support/requests.rs"]
mod support;

use support::*;

use detcd_engine::mvcc::{KvState, MvccError, SnapshotError};
use detcd_engine::pb::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, RangeRequest,
};
use proptest::prelude::*;

#[test]
fn lease_revoke_deletes_keys_in_one_revision() {
    let mut s = state();
    let grant = s
        .lease_grant(&LeaseGrantRequest { ttl: 1, id: 7 }, 0)
        .unwrap();
    assert_eq!((grant.id, grant.ttl), (7, 2), "raised to the minimum TTL");
    let err = s
        .lease_grant(&LeaseGrantRequest { ttl: 10, id: 7 }, 0)
        .unwrap_err();
    assert_eq!(err.to_string(), "etcdserver: lease already exists");
    assert_eq!(err.code().as_u8(), 9);
    for k in ["c", "a", "b"] {
        s.put(&put_req(k, "v", 7)).unwrap();
    }
    put(&mut s, "b", "unleased"); // detached again
    let before = s.store().current_revision();
    let w = s.lease_revoke(&LeaseRevokeRequest { id: 7 }).unwrap();
    assert_eq!(w.response.header.unwrap().revision, before + 1);
    let deleted: Vec<&[u8]> = w
        .events
        .iter()
        .map(|e| e.kv.as_ref().unwrap().key.as_slice())
        .collect();
    assert_eq!(deleted, [b"a", b"c"]);
    assert!(
        w.events
            .iter()
            .all(|e| e.kv.as_ref().unwrap().mod_revision == before + 1)
    );
    assert_eq!(keys(&s, &range("\0", "\0")), ["b"]);
    assert_eq!(
        s.lease_revoke(&LeaseRevokeRequest { id: 7 }).unwrap_err(),
        MvccError::LeaseNotFound
    );
    // Revoking a lease without keys does not move the revision.
    s.lease_grant(&LeaseGrantRequest { ttl: 10, id: 8 }, 0)
        .unwrap();
    let w = s.lease_revoke(&LeaseRevokeRequest { id: 8 }).unwrap();
    assert!(w.events.is_empty());
    assert_eq!(w.response.header.unwrap().revision, before + 1);
}

#[test]
fn lease_expiry_with_a_passed_in_clock() {
    let mut s = state();
    s.promote(1_000, 0);
    s.lease_grant(&LeaseGrantRequest { ttl: 10, id: 1 }, 1_000)
        .unwrap();
    s.lease_grant(&LeaseGrantRequest { ttl: 20, id: 2 }, 1_000)
        .unwrap();
    s.put(&put_req("k", "v", 1)).unwrap();
    assert!(s.expired_leases(10_999, 10).is_empty());
    assert_eq!(s.expired_leases(11_000, 10), [1]);
    let ttl = s
        .lease_time_to_live(&LeaseTimeToLiveRequest { id: 2, keys: false }, 11_000)
        .unwrap();
    assert_eq!((ttl.ttl, ttl.granted_ttl), (10, 20));
    // Nothing is deleted until the revoke is applied.
    assert!(s.store().get(b"k").is_some());
    s.lease_revoke(&LeaseRevokeRequest { id: 1 }).unwrap();
    assert!(s.store().get(b"k").is_none());
    // A restored member renews on promotion: nothing expires from old time.
    let mut restored = KvState::restore(&s.snapshot(), s.config()).unwrap();
    assert!(restored.expired_leases(u64::MAX, 10).is_empty());
    restored.promote(500_000, 1_000);
    assert!(restored.expired_leases(520_999, 10).is_empty());
    assert_eq!(restored.expired_leases(521_000, 10), [2]);
}

fn sample_state() -> KvState {
    let mut s = state();
    s.lease_grant(&LeaseGrantRequest { ttl: 30, id: 3 }, 0)
        .unwrap();
    put(&mut s, "a", "1");
    s.put(&put_req("b", "2", 3)).unwrap();
    put(&mut s, "a", "3");
    s.delete_range(&DeleteRangeRequest {
        key: "a".into(),
        ..Default::default()
    })
    .unwrap();
    s.compact(&CompactionRequest {
        revision: 3,
        physical: false,
    })
    .unwrap();
    put(&mut s, "c", "4");
    s.set_applied_index(42);
    s
}

#[test]
fn snapshot_round_trip() {
    let s = sample_state();
    let r = KvState::restore(&s.snapshot(), s.config()).unwrap();
    assert_eq!(r, s);
    assert_eq!(r.applied_index(), 42);
    assert_eq!(r.hash_kv(0), s.hash_kv(0));
    for rev in 0..=s.store().current_revision() + 1 {
        let req = RangeRequest {
            revision: rev,
            ..range("\0", "\0")
        };
        assert_eq!(r.range(&req), s.range(&req), "at {rev}");
    }
    assert_eq!(
        r.events(b"\0", b"\0", 3, 100),
        s.events(b"\0", b"\0", 3, 100)
    );
    let keys_of = |st: &KvState| {
        st.lease_time_to_live(&LeaseTimeToLiveRequest { id: 3, keys: true }, 0)
            .unwrap()
            .keys
    };
    assert_eq!(keys_of(&r), vec![b"b".to_vec()]);
}

#[test]
fn corrupt_snapshots_are_errors() {
    let bytes = sample_state().snapshot();
    let config = state().config();
    assert!(matches!(
        KvState::restore(&bytes[..5], config),
        Err(SnapshotError::TooShort { .. })
    ));
    let mut bad_magic = bytes.clone();
    bad_magic[0] ^= 0xff;
    assert_eq!(
        KvState::restore(&bad_magic, config).unwrap_err(),
        SnapshotError::BadMagic
    );
    let mut future = bytes.clone();
    future[5] = 99;
    assert!(matches!(
        KvState::restore(&future, config),
        Err(SnapshotError::UnsupportedVersion(_))
    ));
    for cut in 0..bytes.len() {
        assert!(
            KvState::restore(&bytes[..cut], config).is_err(),
            "cut at {cut}"
        );
    }
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut flipped = bytes.clone();
            flipped[i] ^= bit;
            assert!(KvState::restore(&flipped, config).is_err(), "flip at {i}");
        }
    }
}

#[test]
fn hash_kv_agrees_on_equal_histories_only() {
    let a = sample_state();
    let b = sample_state();
    assert_eq!(a.hash_kv(0).unwrap().hash, b.hash_kv(0).unwrap().hash);
    let mut c = sample_state();
    put(&mut c, "c", "5");
    assert_ne!(a.hash_kv(0).unwrap().hash, c.hash_kv(0).unwrap().hash);
    // The hash at an older revision ignores later changes.
    assert_eq!(
        a.hash_kv(a.store().current_revision()).unwrap().hash,
        c.hash_kv(a.store().current_revision()).unwrap().hash
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary bytes, or a snapshot with arbitrary bytes spliced in, never panic.
    #[test]
    fn restore_never_panics(junk in prop::collection::vec(any::<u8>(), 0..64), at in any::<prop::sample::Index>()) {
        let config = state().config();
        let _ = KvState::restore(&junk, config);
        let mut bytes = sample_state().snapshot();
        let i = at.index(bytes.len());
        bytes.splice(i..i, junk.iter().copied());
        prop_assert!(junk.is_empty() || KvState::restore(&bytes, config).is_err());
    }
}

/// A step of [`incremental_snapshots_match_fresh_ones`].
#[derive(Clone, Debug)]
enum Step {
    Put(u8, u8),
    Delete(u8),
    Compact,
    /// Keep a copy of the state as it is now.
    Copy,
    /// Snapshot the live state, or the copy this index picks.
    Snapshot(Option<prop::sample::Index>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..6u8, any::<u8>()).prop_map(|(k, v)| Step::Put(k, v)),
        1 => (0..6u8).prop_map(Step::Delete),
        1 => Just(Step::Compact),
        1 => Just(Step::Copy),
        3 => proptest::option::of(any::<prop::sample::Index>()).prop_map(Step::Snapshot),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Snapshots reuse the previous snapshot's encoding of older changes: whatever the
    /// order of writes, compactions, copies and snapshots, each snapshot restores to the
    /// state it was taken of and has the bytes of a fresh encoding (a restored state has
    /// none kept).
    #[test]
    fn incremental_snapshots_match_fresh_ones(steps in prop::collection::vec(step(), 1..80)) {
        let mut s = state();
        let mut copies: Vec<KvState> = Vec::new();
        for st in steps {
            match st {
                Step::Put(k, v) => {
                    put(&mut s, &format!("k{k}"), &v.to_string());
                }
                Step::Delete(k) => {
                    s.delete_range(&DeleteRangeRequest { key: format!("k{k}").into(), ..Default::default() }).unwrap();
                }
                Step::Compact => {
                    let revision = s.store().current_revision();
                    if revision > s.store().compact_revision() {
                        s.compact(&CompactionRequest { revision, physical: false }).unwrap();
                    }
                }
                Step::Copy => copies.push(s.clone()),
                Step::Snapshot(pick) => {
                    let taken = match pick {
                        Some(i) if !copies.is_empty() => &copies[i.index(copies.len())],
                        _ => &s,
                    };
                    let bytes = taken.snapshot();
                    let restored = KvState::restore(&bytes, taken.config()).unwrap();
                    prop_assert_eq!(&restored, taken);
                    prop_assert!(restored.snapshot() == bytes, "a fresh encoding differs");
                }
            }
        }
    }
}
