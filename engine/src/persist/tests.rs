//! Raft state survives restarts, power loss and snapshots; damage is a clear error.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::raft::{ConfState, Config, EntryKind, RawNode};
use crate::storage::{MemDisk, Preallocation};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

fn small_wal() -> WalOptions {
    WalOptions {
        segment_bytes: 16 * 1024,
        record_bytes_max: 4 * 1024,
        preallocation: Preallocation::None,
    }
}

fn voters(ids: &[u64]) -> ConfState {
    ConfState::with_voters(ids.iter().copied())
}

/// A single-voter node on `disk`, freshly bootstrapped, elected leader.
fn new_leader(disk: &MemDisk) -> (RawNode, RaftStorage<MemDisk>) {
    let (mut storage, recovered) =
        block_on(RaftStorage::open(disk.clone(), small_wal())).expect("open");
    assert!(recovered.is_none(), "a fresh disk has no state");
    let mut node = RawNode::new(Config::new(1), voters(&[1])).expect("node");
    drive(&mut node, &mut storage).expect("persist the founding membership");
    node.campaign();
    drive(&mut node, &mut storage).expect("drive");
    (node, storage)
}

/// Persists and advances until the node has nothing more to hand out; returns how many
/// entries were applied.
fn drive(node: &mut RawNode, storage: &mut RaftStorage<MemDisk>) -> Result<usize, PersistError> {
    let mut applied = 0;
    while node.has_ready() {
        let ready = node.ready();
        block_on(storage.persist(&ready))?;
        applied += ready.committed_entries.len();
        node.advance();
    }
    Ok(applied)
}

fn propose(node: &mut RawNode, storage: &mut RaftStorage<MemDisk>, n: usize, tag: &str) {
    for i in 0..n {
        node.propose(payload(tag, i)).expect("leader accepts");
        drive(node, storage).expect("drive");
    }
}

/// A proposal payload: the tag and number, padded so the log spans several segments.
fn payload(tag: &str, i: usize) -> Vec<u8> {
    let mut data = format!("{tag}-{i}:").into_bytes();
    data.resize(256, b'.');
    data
}

fn reopen(disk: &MemDisk) -> Result<Recovered, PersistError> {
    let (_, recovered) = block_on(RaftStorage::open(disk.clone(), small_wal()))?;
    Ok(recovered.expect("state exists"))
}

#[test]
fn a_restart_recovers_exactly_what_was_persisted() {
    let disk = MemDisk::new();
    let (mut node, mut storage) = new_leader(&disk);
    propose(&mut node, &mut storage, 20, "a");
    let before = node.status();
    disk.crash();

    let recovered = reopen(&disk).expect("reopen");
    assert!(recovered.torn_tail.is_none());
    let restart = recovered.restart;
    assert_eq!(restart.hard_state.term, before.term);
    assert_eq!(restart.hard_state.vote, before.vote);
    assert_eq!(restart.hard_state.commit, before.commit);
    assert_eq!(
        restart.entries.last().map(|e| e.index),
        Some(before.last_index)
    );
    let payloads: Vec<Vec<u8>> = restart
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Normal && !e.data.is_empty())
        .map(|e| e.data.clone())
        .collect();
    let expected: Vec<Vec<u8>> = (0..20).map(|i| payload("a", i)).collect();
    assert_eq!(payloads, expected);

    let mut restarted = RawNode::restart(Config::new(1), restart).expect("restart");
    let status = restarted.status();
    assert_eq!(
        (status.term, status.commit, status.last_index),
        (before.term, before.commit, before.last_index)
    );
    // The committed entries are handed out again for the state machine.
    let ready = restarted.ready();
    assert_eq!(
        ready.committed_entries.last().map(|e| e.index),
        Some(before.commit)
    );
}

#[test]
fn power_loss_never_loses_a_persisted_ready() {
    let mut cut_short = 0;
    for seed in 0..16u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let disk = MemDisk::new();
        let (mut node, mut storage) = new_leader(&disk);
        propose(&mut node, &mut storage, 5 + seed as usize, "p");
        let durable = node.status();
        // One more proposal whose persist is cut short after a few disk operations: it
        // fails, so nothing of it was acknowledged.
        disk.set_ops_limit(Some(disk.ops() + seed % 3));
        node.propose(b"unacknowledged".to_vec())
            .expect("leader accepts");
        let ready = node.ready();
        let cut = block_on(storage.persist(&ready));
        disk.set_ops_limit(None);
        disk.power_loss(&mut rng);

        let recovered = reopen(&disk).unwrap_or_else(|e| panic!("seed {seed}: reopen failed: {e}"));
        let restart = recovered.restart;
        let last = restart.entries.last().map_or(0, |e| e.index);
        assert!(
            last >= durable.last_index,
            "seed {seed}: lost entries ({last} < {})",
            durable.last_index
        );
        assert!(
            restart.hard_state.commit >= durable.commit,
            "seed {seed}: lost the commit index"
        );
        assert_eq!(restart.hard_state.term, durable.term, "seed {seed}");
        assert_eq!(restart.hard_state.vote, durable.vote, "seed {seed}");
        if cut.is_err() {
            cut_short += 1;
            // What survived of the cut batch is a prefix of what was written.
            for e in restart
                .entries
                .iter()
                .filter(|e| e.index > durable.last_index)
            {
                assert_eq!(
                    Some(e),
                    ready.entries.iter().find(|r| r.index == e.index),
                    "seed {seed}"
                );
            }
        }
        RawNode::restart(Config::new(1), restart)
            .unwrap_or_else(|e| panic!("seed {seed}: restart: {e}"));
    }
    assert!(
        cut_short > 0,
        "no persist was cut short: the test exercised nothing"
    );
}

#[test]
fn a_snapshot_releases_wal_segments_and_restores_with_the_log_after_it() {
    let disk = MemDisk::new();
    let (mut node, mut storage) = new_leader(&disk);
    propose(&mut node, &mut storage, 200, "s");
    let segments_before = storage.wal_segment_count();
    assert!(
        segments_before > 2,
        "the test needs several segments, got {segments_before}"
    );

    let status = node.status();
    let meta = SnapshotMeta {
        index: status.applied,
        term: status.term,
        conf_state: status.conf_state.clone(),
    };
    block_on(storage.save_snapshot(meta.clone(), b"state-machine")).expect("snapshot");
    node.compact(meta.index, b"state-machine".to_vec())
        .expect("compact");
    assert!(
        storage.wal_segment_count() < segments_before,
        "old segments are released"
    );
    propose(&mut node, &mut storage, 3, "after");
    let last = node.status().last_index;
    disk.crash();

    let restart = reopen(&disk).expect("reopen").restart;
    assert_eq!(restart.snapshot.meta, meta);
    assert_eq!(restart.snapshot.data, b"state-machine");
    assert_eq!(restart.applied, meta.index);
    assert_eq!(
        restart.entries.first().map(|e| e.index),
        Some(meta.index + 1)
    );
    assert_eq!(restart.entries.last().map(|e| e.index), Some(last));
    assert_eq!(restart.hard_state.term, status.term);
    assert_eq!(restart.hard_state.vote, 1);
    RawNode::restart(Config::new(1), restart).expect("restart");
}

#[test]
fn a_damaged_snapshot_the_log_no_longer_covers_is_a_clear_error() {
    let disk = MemDisk::new();
    let (mut node, mut storage) = new_leader(&disk);
    propose(&mut node, &mut storage, 200, "d");
    let status = node.status();
    let meta = SnapshotMeta {
        index: status.applied,
        term: status.term,
        conf_state: status.conf_state.clone(),
    };
    block_on(storage.save_snapshot(meta.clone(), b"payload")).expect("snapshot");
    disk.crash();
    let snap_file = disk
        .files()
        .into_keys()
        .find(|p| p.starts_with("snap/") && p.ends_with(".snap"))
        .expect("the new snapshot file");
    disk.flip_bit(&snap_file, 45, 1).expect("flip");

    let Err(err) = reopen(&disk) else {
        panic!("recovered although the log no longer reaches back to the start");
    };
    let text = err.to_string();
    assert!(matches!(err, PersistError::Corrupt(_)), "{text}");
    assert!(
        text.contains("damaged"),
        "names the damaged snapshot: {text}"
    );
}

#[test]
fn a_bad_ready_is_refused_not_written() {
    let disk = MemDisk::new();
    let (mut node, mut storage) = new_leader(&disk);
    propose(&mut node, &mut storage, 3, "x");
    let commit = node.status().commit;
    let rewrite = Ready {
        entries: vec![Entry {
            term: 1,
            index: commit,
            kind: EntryKind::Normal,
            data: b"conflict".to_vec(),
        }],
        ..Ready::default()
    };
    let err = block_on(storage.persist(&rewrite)).expect_err("committed entries are immutable");
    assert!(matches!(err, PersistError::Corrupt(_)));
}

#[test]
fn a_snapshot_written_apart_survives_power_loss_before_and_after_its_mark() {
    for (seed, mark) in [(1u64, false), (2, true), (3, false), (4, true)] {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let disk = MemDisk::new();
        let (mut node, mut storage) = new_leader(&disk);
        propose(&mut node, &mut storage, 200, "w");
        let status = node.status();
        let meta = SnapshotMeta {
            index: status.applied,
            term: status.term,
            conf_state: status.conf_state.clone(),
        };
        // The file is written by someone else while the log keeps growing.
        block_on(storage.snapshot_writer().write(&meta, b"apart")).expect("write");
        propose(&mut node, &mut storage, 5, "between");
        if mark {
            node.compact(meta.index, b"apart".to_vec())
                .expect("compact");
            block_on(storage.snapshot_written(meta.clone())).expect("mark");
            propose(&mut node, &mut storage, 2, "after");
        }
        let last = node.status().last_index;
        disk.power_loss(&mut rng);

        let restart = reopen(&disk).expect("reopen").restart;
        // The durable file is used whether or not the WAL marked it; the log covers
        // everything after it.
        assert_eq!(restart.snapshot.meta, meta, "seed {seed}");
        assert_eq!(restart.snapshot.data, b"apart");
        assert_eq!(
            restart.entries.first().map(|e| e.index),
            Some(meta.index + 1),
            "seed {seed}"
        );
        assert_eq!(restart.entries.last().map(|e| e.index), Some(last));
        RawNode::restart(Config::new(1), restart).expect("restart");
    }
}

#[test]
fn a_snapshot_older_than_the_current_one_is_not_marked() {
    let disk = MemDisk::new();
    let (mut node, mut storage) = new_leader(&disk);
    propose(&mut node, &mut storage, 20, "o");
    let status = node.status();
    let newer = SnapshotMeta {
        index: status.applied,
        term: status.term,
        conf_state: status.conf_state.clone(),
    };
    let older = SnapshotMeta {
        index: status.applied - 5,
        ..newer.clone()
    };
    block_on(storage.save_snapshot(newer.clone(), b"newer")).expect("newer");
    block_on(storage.snapshot_writer().write(&older, b"older")).expect("write older");
    block_on(storage.snapshot_written(older)).expect("ignored");
    assert_eq!(storage.snapshot_meta().index, newer.index);
    disk.crash();
    let restart = reopen(&disk).expect("reopen").restart;
    assert_eq!(restart.snapshot.meta, newer);
}

proptest::proptest! {
    /// The borrowed entry record writes exactly the owned `Record::Entry`'s bytes, so
    /// recovery reads it back as before.
    #[test]
    fn borrowed_entry_records_encode_like_owned_ones(
        term in 0u64..u64::MAX,
        index in 0u64..u64::MAX,
        conf in proptest::bool::ANY,
        data in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
    ) {
        let entry = Entry {
            term,
            index,
            kind: if conf { EntryKind::ConfChange } else { EntryKind::Normal },
            data,
        };
        let borrowed = encode_record(&EntryRecord::of(&entry)).expect("encodes");
        let owned = encode_record(&Record::Entry(entry.clone())).expect("encodes");
        proptest::prop_assert_eq!(&borrowed, &owned);
        let back: Record = postcard::from_bytes(&borrowed).expect("decodes");
        proptest::prop_assert!(matches!(back, Record::Entry(e) if e == entry));
    }

    /// The lead written before a snapshot's payload, then the payload, are exactly the
    /// owned file's bytes, so recovery reads it back as before.
    #[test]
    fn snapshot_file_lead_and_payload_encode_like_owned_files(
        index in 0u64..u64::MAX,
        term in 0u64..u64::MAX,
        voters in proptest::collection::btree_set(1u64..9, 0..4),
        data in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
    ) {
        let meta = SnapshotMeta {
            index,
            term,
            conf_state: ConfState { voters, ..ConfState::default() },
        };
        let mut borrowed = snapshot_file_lead(&meta, data.len()).expect("encodes");
        borrowed.extend_from_slice(&data);
        let owned = postcard::to_allocvec(&SnapshotFile { meta: meta.clone(), data: data.clone() })
            .expect("encodes");
        proptest::prop_assert_eq!(&borrowed, &owned);
        let back: SnapshotFile = postcard::from_bytes(&borrowed).expect("decodes");
        proptest::prop_assert_eq!(back.data, data);
    }
}
