//! Snapshot store: a power loss at any point of a save never leaves a damaged "latest"
//! that shadows the previous snapshot, and a damaged newest snapshot falls back to the
//! previous one.

mod storage_util;

use detcd_engine::storage::{Disk, LossModel, MemDisk, SnapshotStore};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use storage_util::{block_on, payload};

const SEEDS_PER_CUT: u64 = 8;

fn disk_with_one_snapshot() -> MemDisk {
    let disk = MemDisk::new();
    block_on(async {
        let store = SnapshotStore::open(disk.clone()).await.unwrap();
        store.save(10, 1, &payload(10, 0, 3000)).await.unwrap();
    });
    disk
}

#[test]
fn power_loss_during_save_keeps_old_or_new_never_broken() {
    let ops_per_save = {
        let disk = disk_with_one_snapshot();
        let before = disk.ops();
        block_on(async {
            let store = SnapshotStore::open(disk.clone()).await.unwrap();
            store.save(20, 2, &payload(20, 0, 5000)).await.unwrap();
        });
        disk.ops() - before
    };
    assert!(ops_per_save >= 4, "save took {ops_per_save} ops");
    let mut saw_new = false;
    let mut saw_old = false;
    let models = [LossModel::PrefixOfWrites, LossModel::SectorsOutOfOrder];
    for cut in 0..=ops_per_save {
        for (seed, model) in (0..SEEDS_PER_CUT).flat_map(|s| models.map(|m| (s, m))) {
            let disk = disk_with_one_snapshot();
            disk.set_ops_limit(Some(disk.ops() + cut));
            let saved = block_on(async {
                let store = SnapshotStore::open(disk.clone()).await.ok()?;
                store.save(20, 2, &payload(20, 0, 5000)).await.ok()
            });
            disk.power_loss_with(model, &mut ChaCha8Rng::seed_from_u64(cut << 8 | seed));
            let ctx = format!("{model:?} cut {cut}/{ops_per_save} seed {seed}");
            let (loaded, names) = block_on(async {
                let store = SnapshotStore::open(disk.clone()).await.unwrap();
                let loaded = store.load_latest().await.unwrap();
                (loaded, disk.list_dir("snap").await.unwrap())
            });
            assert!(loaded.skipped.is_empty(), "{ctx}: {:?}", loaded.skipped);
            assert!(
                names.iter().all(|n| !n.ends_with(".tmp")),
                "{ctx}: temp file left: {names:?}"
            );
            let snap = loaded.snapshot.expect("some snapshot");
            match snap.meta.index {
                10 => {
                    assert!(saved.is_none(), "{ctx}: acknowledged save lost");
                    assert_eq!(snap.data, payload(10, 0, 3000), "{ctx}");
                    saw_old = true;
                }
                20 => {
                    assert_eq!(snap.data, payload(20, 0, 5000), "{ctx}");
                    saw_new = true;
                }
                other => panic!("{ctx}: unexpected snapshot {other}"),
            }
        }
    }
    assert!(saw_old && saw_new, "cuts should give both outcomes");
}

#[test]
fn damaged_newest_falls_back_to_previous_and_is_set_aside() {
    block_on(async {
        let disk = MemDisk::new();
        let store = SnapshotStore::open(disk.clone()).await.unwrap();
        store.save(5, 1, b"older").await.unwrap();
        store.save(9, 2, b"newer state").await.unwrap();
        let newest = "snap/0000000000000009-0000000000000002.snap";
        disk.flip_bit(newest, 45, 3).unwrap();
        let loaded = store.load_latest().await.unwrap();
        let snap = loaded.snapshot.expect("fallback");
        assert_eq!((snap.meta.index, snap.meta.term), (5, 1));
        assert_eq!(snap.data, b"older");
        assert_eq!(loaded.skipped.len(), 1);
        assert_eq!(loaded.skipped[0].path, newest);
        assert!(!disk.exists(newest).await.unwrap());
        // Purging down to one keeps the good snapshot, not the set-aside one.
        assert_eq!(store.purge(1).await.unwrap(), 0);
        let again = store.load_latest().await.unwrap();
        assert_eq!(again.snapshot.unwrap().data, b"older");
    });
}

#[test]
fn purge_keeps_the_newest_n() {
    block_on(async {
        let disk = MemDisk::new();
        let store = SnapshotStore::open(disk.clone()).await.unwrap();
        for i in 1..=5u64 {
            store.save(i * 100, 1, &payload(i, 0, 50)).await.unwrap();
        }
        assert_eq!(store.purge(2).await.unwrap(), 3);
        let left: Vec<u64> = store
            .list()
            .await
            .unwrap()
            .iter()
            .map(|m| m.index)
            .collect();
        assert_eq!(left, vec![400, 500]);
        let latest = store.load_latest().await.unwrap().snapshot.unwrap();
        assert_eq!(latest.data, payload(5, 0, 50));
    });
}

#[test]
fn snapshot_loaded_after_a_crash_survives_a_later_power_loss() {
    let disk = disk_with_one_snapshot();
    let start = disk.ops();
    block_on(async {
        let store = SnapshotStore::open(disk.clone()).await.unwrap();
        store.save(20, 2, &payload(20, 0, 5000)).await.unwrap();
    });
    let ops_per_save = disk.ops() - start;
    for cut in 0..=ops_per_save {
        let disk = disk_with_one_snapshot();
        disk.set_ops_limit(Some(disk.ops() + cut));
        block_on(async {
            let store = SnapshotStore::open(disk.clone()).await.ok()?;
            store.save(20, 2, &payload(20, 0, 5000)).await.ok()
        });
        disk.crash();
        let load = || {
            block_on(async {
                let store = SnapshotStore::open(disk.clone()).await.unwrap();
                store.load_latest().await.unwrap().snapshot.unwrap()
            })
        };
        let after_crash = load();
        disk.power_loss(&mut ChaCha8Rng::seed_from_u64(cut));
        assert_eq!(
            load(),
            after_crash,
            "cut {cut}: loaded snapshot did not survive"
        );
    }
}
