//! Reading one WAL segment's bytes back into records, and telling a torn tail from
//! corruption.
//!
//! The rule: a bad record in the *last* segment is a torn tail when nothing after the
//! part of it that could have been written is non-zero, that is, when the segment's
//! trailing run of zeros starts at or before the record's claimed end (its header's
//! end if the header cannot be trusted). A torn write in a preallocated file or at the
//! end of a file looks exactly like that; damage to a record followed by more data does
//! not. Because a device may also persist the sectors of unsynced writes out of order,
//! a bad record in the last segment that overlaps a sector reading as zeros from the
//! record on is a torn tail too (whatever follows it was written after it, so was not
//! synced either). Any bad record elsewhere is corruption.
//!
//! Known ambiguity (inherent to the format, as in etcd): damage to the very last record
//! of the log cannot be told from a torn write, so it is cut off and reported as a torn
//! tail rather than raised as an error. This module does no I/O.

use super::format::{BadRecord, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, decode_record};

/// Granularity at which a device may persist unsynced writes out of order.
pub const TORN_SECTOR_BYTES: usize = 512;

/// The records of a segment and where its valid data ends.
#[derive(Debug, Default)]
pub struct SegmentScan {
    /// `(seq, payload)` in order.
    pub records: Vec<(u64, Vec<u8>)>,
    /// Offset just past the last valid record (where the next append goes).
    pub end_offset: u64,
    /// If the segment ends in a torn record: the offset just past the last non-zero byte
    /// (the region `end_offset..torn_until` must be zeroed).
    pub torn_until: Option<u64>,
}

/// Corruption found while scanning, at a byte offset of the segment.
#[derive(Debug, PartialEq, Eq)]
pub struct ScanError {
    /// Byte offset in the segment.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// Scans a whole segment (`bytes` starts with the segment header, already checked).
/// `first_seq` is the sequence number its first record must carry; `is_last` says
/// whether a torn tail is allowed.
pub fn scan_segment(
    bytes: &[u8],
    first_seq: u64,
    is_last: bool,
    record_bytes_max: u32,
) -> Result<SegmentScan, ScanError> {
    let zeros_from = without_zero_tail(bytes);
    let mut scan = SegmentScan::default();
    let mut off = SEGMENT_HEADER_BYTES;
    let mut seq = first_seq;
    while off < zeros_from {
        let claimed_end = match decode_record(&bytes[off..], record_bytes_max) {
            Ok(rec) => {
                if rec.seq != seq {
                    return Err(ScanError {
                        offset: off as u64,
                        reason: format!(
                            "sequence gap: record has seq {} where {seq} was expected",
                            rec.seq
                        ),
                    });
                }
                scan.records.push((seq, rec.payload.to_vec()));
                off += RECORD_HEADER_BYTES + rec.payload.len();
                seq += 1;
                continue;
            }
            Err(BadRecord::TooLarge { payload_bytes }) => {
                return Err(ScanError {
                    offset: off as u64,
                    reason: format!(
                        "record claims {payload_bytes} payload bytes, over the limit of \
                         {record_bytes_max}"
                    ),
                });
            }
            Err(BadRecord::Header(why)) => (off + RECORD_HEADER_BYTES, why),
            Err(BadRecord::Payload { payload_bytes, why }) => (
                (off + RECORD_HEADER_BYTES).saturating_add(payload_bytes as usize),
                why,
            ),
        };
        let (end, why) = claimed_end;
        if is_last && (zeros_from <= end || lost_sector(bytes, off, end)) {
            scan.end_offset = off as u64;
            scan.torn_until = Some(zeros_from as u64);
            return Ok(scan);
        }
        return Err(ScanError {
            offset: off as u64,
            reason: format!("{why}, followed by more data"),
        });
    }
    scan.end_offset = off as u64;
    Ok(scan)
}

/// The length of `bytes` without its trailing zeros. A preallocated segment is mostly
/// zeros after its records, so they are skipped a block at a time (a byte-wise search
/// from the end was a large part of a restart).
fn without_zero_tail(bytes: &[u8]) -> usize {
    const BLOCK: usize = 256;
    let mut end = bytes.len();
    // OR-ing a whole block, without stopping early, lets the compiler vectorize it.
    while end >= BLOCK && bytes[end - BLOCK..end].iter().fold(0, |acc, &b| acc | b) == 0 {
        end -= BLOCK;
    }
    bytes[..end]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last_nonzero| last_nonzero + 1)
}

/// Whether a sector-aligned region overlapping the record at `start..end` reads as
/// zeros from the record's start (or the sector's start) to the sector's end: the mark
/// of a sector whose write never reached the disk when the device persisted the
/// unsynced sectors out of order. A bit flip cannot produce it (it would need a whole
/// aligned zero run in a payload, the one case this heuristic misjudges).
fn lost_sector(bytes: &[u8], start: usize, end: usize) -> bool {
    let end = end.min(bytes.len());
    let mut sector = start - start % TORN_SECTOR_BYTES;
    while sector < end {
        let from = sector.max(start);
        let to = (sector + TORN_SECTOR_BYTES).min(bytes.len());
        if from < to && bytes[from..to].iter().all(|b| *b == 0) {
            return true;
        }
        sector += TORN_SECTOR_BYTES;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::wal::format::{SegmentId, encode_record};

    #[test]
    fn the_zero_tail_is_found_at_every_length_and_position() {
        for len in [0, 1, 255, 256, 257, 511, 512, 513, 2000] {
            let zeros = vec![0u8; len];
            assert_eq!(without_zero_tail(&zeros), 0, "len {len}");
            for at in (0..len).step_by(37).chain(len.checked_sub(1)) {
                let mut bytes = zeros.clone();
                bytes[at] = 0x80;
                assert_eq!(without_zero_tail(&bytes), at + 1, "len {len}, byte {at}");
                if at > 0 {
                    bytes[at / 2] = 1;
                    assert_eq!(
                        without_zero_tail(&bytes),
                        at + 1,
                        "len {len}, bytes {} and {at}",
                        at / 2
                    );
                }
            }
        }
    }

    fn segment(payloads: &[&[u8]], pad_zeros: usize) -> Vec<u8> {
        let id = SegmentId {
            segment_no: 1,
            first_seq: 10,
        };
        let mut out = id.encode_header().to_vec();
        for (i, p) in payloads.iter().enumerate() {
            encode_record(10 + i as u64, p, &mut out);
        }
        out.resize(out.len() + pad_zeros, 0);
        out
    }

    #[test]
    fn clean_segment_reads_back() {
        let bytes = segment(&[b"a", b"", b"ccc"], 100);
        let scan = scan_segment(&bytes, 10, false, 64).unwrap();
        let seqs: Vec<u64> = scan.records.iter().map(|r| r.0).collect();
        assert_eq!(seqs, vec![10, 11, 12]);
        assert_eq!(scan.records[2].1, b"ccc");
        assert_eq!(scan.end_offset as usize, bytes.len() - 100);
        assert_eq!(scan.torn_until, None);
    }

    #[test]
    fn every_torn_prefix_of_the_last_record_is_a_torn_tail() {
        let full = segment(&[b"first", b"second record"], 0);
        let cut_from = full.len() - RECORD_HEADER_BYTES - b"second record".len();
        for cut in cut_from + 1..full.len() {
            for pad in [0, 50] {
                let mut bytes = full[..cut].to_vec();
                bytes.resize(bytes.len() + pad, 0);
                let scan = scan_segment(&bytes, 10, true, 64).unwrap();
                assert_eq!(scan.records.len(), 1, "cut at {cut}");
                assert_eq!(scan.end_offset as usize, cut_from);
                // Not last segment: the same bytes are corruption... unless nothing of
                // the record survived but zeros, which the cut never produces here.
                assert!(scan_segment(&bytes, 10, false, 64).is_err());
            }
        }
    }

    #[test]
    fn damage_before_more_data_is_corruption_with_offset() {
        let mut bytes = segment(&[b"first", b"second"], 0);
        bytes[SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES] ^= 1;
        let err = scan_segment(&bytes, 10, true, 64).unwrap_err();
        assert_eq!(err.offset, SEGMENT_HEADER_BYTES as u64);
        assert!(err.reason.contains("checksum"), "{}", err.reason);
    }

    #[test]
    fn lost_sector_in_the_last_segment_is_a_torn_tail() {
        let big = vec![0x77u8; 1500];
        let bytes = segment(&[b"a", &big, b"after", b"more"], 0);
        let second = SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + 1;
        // The first whole sector inside the big record never reached the disk, while the
        // records after it did.
        let sector = (second / TORN_SECTOR_BYTES + 1) * TORN_SECTOR_BYTES;
        let mut torn = bytes.clone();
        torn[sector..sector + TORN_SECTOR_BYTES].fill(0);
        let scan = scan_segment(&torn, 10, true, 2048).unwrap();
        assert_eq!(scan.records.len(), 1);
        assert_eq!(scan.end_offset as usize, second);
        assert_eq!(scan.torn_until, Some(bytes.len() as u64));
        assert!(scan_segment(&torn, 10, false, 2048).is_err());
        // Likewise when the sector holding the record's header was lost.
        let mut torn = bytes.clone();
        let head_sector_end = (second / TORN_SECTOR_BYTES + 1) * TORN_SECTOR_BYTES;
        torn[second..head_sector_end].fill(0);
        assert_eq!(
            scan_segment(&torn, 10, true, 2048).unwrap().records.len(),
            1
        );
        // A flipped bit in the same record is still corruption.
        let mut flipped = bytes.clone();
        flipped[sector + 7] ^= 4;
        assert!(scan_segment(&flipped, 10, true, 2048).is_err());
    }

    #[test]
    fn sequence_gap_is_corruption() {
        let bytes = segment(&[b"x"], 0);
        let err = scan_segment(&bytes, 11, true, 64).unwrap_err();
        assert!(err.reason.contains("sequence gap"), "{}", err.reason);
    }
}
