//! Damage to synced WAL records before the tail is an error naming file and offset;
//! damage to the final record is cut off as a torn tail; a forged length field cannot
//! make the reader allocate or panic.

mod storage_util;

use detcd_engine::storage::wal::format::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use detcd_engine::storage::{Disk, DiskFile, MemDisk, Preallocation, Wal, WalError, WalOptions};
use storage_util::{block_on, payload};

const RECORDS: u64 = 24;

fn opts(preallocation: Preallocation) -> WalOptions {
    WalOptions {
        segment_bytes: 512,
        record_bytes_max: 200,
        preallocation,
    }
}

/// Writes `RECORDS` synced records over several segments; returns the disk and, per
/// segment path, the end of its records.
fn filled(preallocation: Preallocation) -> (MemDisk, Vec<(String, u64)>) {
    block_on(async {
        let disk = MemDisk::new();
        let (mut wal, _) = Wal::open(disk.clone(), opts(preallocation)).await.unwrap();
        for seq in 1..=RECORDS {
            wal.append_sync(&[payload(seq, 0, 20 + (seq as usize * 7) % 90)])
                .await
                .unwrap();
        }
        assert!(wal.segment_count() >= 3, "want several segments");
        drop(wal);
        let mut ends = Vec::new();
        for (path, _) in disk.files() {
            let (_, end) = scan_one(&disk, &path).await;
            ends.push((path, end));
        }
        (disk, ends)
    })
}

/// End offset of the records in one segment, by decoding frames from its header on.
async fn scan_one(disk: &MemDisk, path: &str) -> (Vec<u8>, u64) {
    let bytes = disk.read_all(path).await.unwrap();
    let mut off = SEGMENT_HEADER_BYTES;
    while off + RECORD_HEADER_BYTES <= bytes.len() {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        if bytes[off..off + RECORD_HEADER_BYTES]
            .iter()
            .all(|b| *b == 0)
        {
            break;
        }
        off += RECORD_HEADER_BYTES + len;
    }
    (bytes, off as u64)
}

#[test]
fn flipped_bit_before_the_tail_is_reported_with_file_and_offset() {
    for mode in [Preallocation::ZeroFill, Preallocation::None] {
        let (disk, ends) = filled(mode);
        let last_path = ends.last().unwrap().0.clone();
        let last_record_start = {
            let (bytes, end) = block_on(scan_one(&disk, &last_path));
            // Walk again to find where the final record starts.
            let mut off = SEGMENT_HEADER_BYTES as u64;
            let mut start = off;
            while off < end {
                start = off;
                let o = off as usize;
                let len = u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) as u64;
                off += RECORD_HEADER_BYTES as u64 + len;
            }
            start
        };
        let mut checked = 0;
        for (path, end) in &ends {
            for at in 0..*end {
                if *path == last_path && at >= last_record_start {
                    continue;
                }
                disk.flip_bit(path, at, (at % 8) as u8).unwrap();
                let result = block_on(Wal::open(disk.clone(), opts(mode)));
                disk.flip_bit(path, at, (at % 8) as u8).unwrap();
                match result {
                    Err(WalError::Corrupt {
                        path: p, offset, ..
                    }) => {
                        assert_eq!(p, *path, "{mode:?} flip at {path}:{at}");
                        assert!(offset <= at, "{mode:?} flip at {at} reported at {offset}");
                    }
                    Err(e) => panic!("{mode:?} flip at {path}:{at}: unexpected error {e}"),
                    Ok(_) => panic!("{mode:?} flip at {path}:{at} went unnoticed"),
                }
                checked += 1;
            }
        }
        assert!(checked > 1000, "only {checked} positions checked");
    }
}

#[test]
fn flipped_bit_in_the_final_record_is_cut_as_a_torn_tail() {
    let (disk, ends) = filled(Preallocation::ZeroFill);
    let (path, end) = ends.last().unwrap().clone();
    disk.flip_bit(&path, end - 1, 0).unwrap();
    let (mut wal, replay) =
        block_on(Wal::open(disk.clone(), opts(Preallocation::ZeroFill))).unwrap();
    let torn = replay.torn_tail.expect("torn tail reported");
    assert_eq!(torn.path, path);
    assert_eq!(replay.records.len() as u64, RECORDS - 1);
    assert_eq!(wal.next_seq(), RECORDS);
    block_on(wal.append_sync(&[b"replacement".to_vec()])).unwrap();
    drop(wal);
    let (_, replay) = block_on(Wal::open(disk.clone(), opts(Preallocation::ZeroFill))).unwrap();
    assert_eq!(replay.records.last().unwrap().payload, b"replacement");
    assert!(replay.torn_tail.is_none());
}

/// Writes a record header with a valid header checksum but the given length, followed
/// by non-zero bytes, at the end of the last segment.
fn forge_length(len: u32) -> Result<(), WalError> {
    let (disk, ends) = filled(Preallocation::ZeroFill);
    let (path, end) = ends.last().unwrap().clone();
    let mut h = [0u8; RECORD_HEADER_BYTES];
    h[..4].copy_from_slice(&len.to_le_bytes());
    h[4] = 1;
    h[8..16].copy_from_slice(&(RECORDS + 1).to_le_bytes());
    let crc = crc32c::crc32c(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    block_on(async {
        let mut f = disk.open(&path, false).await.unwrap();
        f.write_at(end, &h).await.unwrap();
        f.write_at(end + RECORD_HEADER_BYTES as u64 + 300, &[0xAB; 8])
            .await
            .unwrap();
    });
    block_on(Wal::open(disk, opts(Preallocation::ZeroFill))).map(|_| ())
}

#[test]
fn forged_huge_length_is_an_error_without_allocation() {
    for len in [u32::MAX, 1 << 30, 201] {
        match forge_length(len) {
            Err(WalError::Corrupt { reason, .. }) => {
                assert!(reason.contains("over the limit"), "{len}: {reason}")
            }
            other => panic!("length {len}: expected corruption, got {other:?}"),
        }
    }
}

#[test]
fn forged_length_past_more_data_is_an_error() {
    // Within the limit but covering the later non-zero bytes: not a torn tail.
    match forge_length(150) {
        Err(WalError::Corrupt { reason, .. }) => assert!(reason.contains("checksum"), "{reason}"),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn missing_middle_segment_is_an_error() {
    let (disk, ends) = filled(Preallocation::None);
    let middle = &ends[1].0;
    block_on(disk.remove_file(middle)).unwrap();
    match block_on(Wal::open(disk, opts(Preallocation::None))) {
        Err(WalError::Corrupt { path, reason, .. }) => {
            assert_eq!(path, ends[2].0);
            assert!(reason.contains("not consecutive"), "{reason}");
        }
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn half_made_segment_is_removed_on_open() {
    let (disk, ends) = filled(Preallocation::None);
    let temp = "wal/00000000000000ff-00000000000000ff.wal.tmp";
    block_on(async {
        let mut f = disk.open(temp, true).await.unwrap();
        f.write_at(0, b"partial").await.unwrap();
    });
    let (_, replay) = block_on(Wal::open(disk.clone(), opts(Preallocation::None))).unwrap();
    assert_eq!(replay.records.len() as u64, RECORDS);
    assert!(!block_on(disk.exists(temp)).unwrap());
    assert_eq!(block_on(disk.list_dir("wal")).unwrap().len(), ends.len());
}
