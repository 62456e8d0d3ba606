//! Unit tests of the in-memory disk model.

use super::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

#[test]
fn synced_bytes_survive_power_loss_and_unsynced_entries_do_not() {
    block_on(async {
        let disk = MemDisk::new();
        disk.create_dir_all("d").await.unwrap();
        disk.sync_dir("").await.unwrap();
        let mut f = disk.open("d/a", true).await.unwrap();
        f.write_at(0, b"hello").await.unwrap();
        f.sync_data().await.unwrap();
        disk.sync_dir("d").await.unwrap();
        let mut g = disk.open("d/b", true).await.unwrap();
        g.write_at(0, b"lost").await.unwrap();
        g.sync_data().await.unwrap();
        f.write_at(5, b" world").await.unwrap();

        disk.power_loss(&mut ChaCha8Rng::seed_from_u64(1));
        assert!(f.len().await.is_err(), "handle must be stale");
        assert!(
            !disk.exists("d/b").await.unwrap(),
            "unsynced entry survived"
        );
        let a = disk.read_all("d/a").await.unwrap();
        assert!(a.starts_with(b"hello"));
        assert!(b"hello world".starts_with(&a), "not a prefix: {a:?}");
    });
}

#[test]
fn power_loss_keeps_a_prefix_and_some_seed_tears_a_write() {
    let mut lengths = BTreeSet::new();
    for seed in 0..64 {
        block_on(async {
            let disk = MemDisk::new();
            let mut f = disk.open("f", true).await.unwrap();
            disk.sync_dir("").await.unwrap();
            f.write_at(0, &[1; 10]).await.unwrap();
            f.write_at(10, &[2; 10]).await.unwrap();
            disk.power_loss(&mut ChaCha8Rng::seed_from_u64(seed));
            let data = disk.read_all("f").await.unwrap();
            let mut full = vec![1; 10];
            full.extend([2; 10]);
            assert_eq!(data[..], full[..data.len()]);
            lengths.insert(data.len());
        });
    }
    assert!(
        lengths.len() > 5,
        "too few distinct cut points: {lengths:?}"
    );
}

#[test]
fn crash_keeps_the_page_cache() {
    block_on(async {
        let disk = MemDisk::new();
        let mut f = disk.open("f", true).await.unwrap();
        disk.sync_dir("").await.unwrap();
        f.write_at(0, b"abc").await.unwrap();
        disk.crash();
        assert_eq!(disk.read_all("f").await.unwrap(), b"abc");
    });
}

#[test]
fn faults_fail_sync_fill_disk_and_cut_ops() {
    block_on(async {
        let disk = MemDisk::new();
        let mut f = disk.open("f", true).await.unwrap();
        disk.fail_next_syncs(1);
        assert!(f.sync_data().await.is_err());
        assert!(f.sync_data().await.is_ok());

        disk.set_capacity_bytes(Some(8));
        f.write_at(0, &[0; 8]).await.unwrap();
        let err = f.write_at(8, &[0; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        disk.set_capacity_bytes(None);

        disk.set_ops_limit(Some(disk.ops()));
        assert!(f.write_at(0, b"x").await.is_err());
        disk.set_ops_limit(None);
        assert_eq!(disk.read_all("f").await.unwrap(), vec![0; 8]);

        disk.flip_bit("f", 3, 0).unwrap();
        assert_eq!(disk.read_all("f").await.unwrap()[3], 1);
    });
}

#[test]
fn rename_is_reverted_by_power_loss_unless_dir_synced() {
    block_on(async {
        let disk = MemDisk::new();
        let mut f = disk.open("tmp", true).await.unwrap();
        f.write_at(0, b"v1").await.unwrap();
        f.sync_data().await.unwrap();
        disk.sync_dir("").await.unwrap();
        disk.rename("tmp", "final").await.unwrap();
        disk.power_loss(&mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(disk.list_dir("").await.unwrap(), vec!["tmp".to_string()]);
        disk.rename("tmp", "final").await.unwrap();
        disk.sync_dir("").await.unwrap();
        disk.power_loss(&mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(disk.read_all("final").await.unwrap(), b"v1");
    });
}

#[test]
fn sector_loss_keeps_each_sector_old_or_new() {
    let mut mixed = 0;
    for seed in 0..64 {
        block_on(async {
            let disk = MemDisk::new();
            let mut f = disk.open("f", true).await.unwrap();
            disk.sync_dir("").await.unwrap();
            f.write_at(0, &[1; 3 * SECTOR_BYTES]).await.unwrap();
            f.sync_data().await.unwrap();
            f.write_at(100, &[2; 2 * SECTOR_BYTES]).await.unwrap();
            let cache = disk.read_all("f").await.unwrap();
            disk.power_loss_with(
                LossModel::SectorsOutOfOrder,
                &mut ChaCha8Rng::seed_from_u64(seed),
            );
            let image = disk.read_all("f").await.unwrap();
            assert_eq!(image.len(), 3 * SECTOR_BYTES);
            let mut kinds = BTreeSet::new();
            for (i, sector) in image.chunks(SECTOR_BYTES).enumerate() {
                let new = &cache[i * SECTOR_BYTES..(i + 1) * SECTOR_BYTES];
                let old = [1u8; SECTOR_BYTES];
                assert!(sector == new || sector == old, "seed {seed} sector {i}");
                if new != old {
                    kinds.insert(sector == new);
                }
            }
            mixed += usize::from(kinds.len() == 2);
        });
    }
    assert!(mixed > 10, "sectors rarely diverge: {mixed}");
}

#[test]
fn data_ends_where_the_written_bytes_do() {
    block_on(async {
        let disk = MemDisk::new();
        let mut f = disk.open("f", true).await.unwrap();
        f.preallocate(1 << 20).await.unwrap();
        assert_eq!(f.data_end().await.unwrap(), 0);
        f.write_at(100, b"abc").await.unwrap();
        assert_eq!(f.data_end().await.unwrap(), 103);
        assert_eq!(f.len().await.unwrap(), 1 << 20);
        let tail = f.read_at(103, (1 << 20) - 103).await.unwrap();
        assert!(tail.iter().all(|&b| b == 0));
        f.set_len(101).await.unwrap();
        assert_eq!(f.data_end().await.unwrap(), 101);
    });
}
