//! The WAL's on-disk format: segment names, the segment header and record framing.
//!
//! A segment is `wal/<segment_no:016x>-<first_seq:016x>.wal`:
//!
//! ```text
//! segment header (32 bytes): magic "DTCDWAL1" | segment_no u64 | first_seq u64
//!                            | reserved u32 (0) | crc32c of the 28 bytes before u32
//! record header  (24 bytes): payload_len u32 | kind u8 | reserved [u8; 3] (0)
//!                            | seq u64 | crc32c(payload) u32 | crc32c of the 20 bytes before u32
//! payload        (payload_len bytes)
//! ```
//!
//! All integers are little-endian. The header has its own CRC so that a damaged length
//! field is recognised before it is trusted; an all-zero region (preallocated, never
//! written) never decodes as a record. This module only encodes and decodes; deciding
//! what a bad record means (torn tail or corruption) is `scan`'s job.

/// Bytes of the segment header.
pub const SEGMENT_HEADER_BYTES: usize = 32;
/// Bytes of a record header.
pub const RECORD_HEADER_BYTES: usize = 24;
/// Magic at the start of every segment (format version 1).
pub const SEGMENT_MAGIC: &[u8; 8] = b"DTCDWAL1";
/// The only record kind so far: an opaque payload.
pub const RECORD_KIND_DATA: u8 = 1;
/// Suffix of a finished segment.
pub const SEGMENT_SUFFIX: &str = ".wal";
/// Suffix of a segment being prepared (removed on open).
pub const TEMP_SUFFIX: &str = ".wal.tmp";

/// Identity of a segment, as in its name and header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentId {
    /// Position of the segment in the log (1, 2, ...).
    pub segment_no: u64,
    /// Sequence number of its first record.
    pub first_seq: u64,
}

impl SegmentId {
    /// The file name (without directory).
    pub fn file_name(&self) -> String {
        format!(
            "{:016x}-{:016x}{SEGMENT_SUFFIX}",
            self.segment_no, self.first_seq
        )
    }

    /// Parses a finished segment's file name; `None` if it is not one.
    pub fn parse(name: &str) -> Option<Self> {
        let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
        let (no, seq) = stem.split_once('-')?;
        if no.len() != 16 || seq.len() != 16 {
            return None;
        }
        Some(Self {
            segment_no: u64::from_str_radix(no, 16).ok()?,
            first_seq: u64::from_str_radix(seq, 16).ok()?,
        })
    }

    /// Encodes the segment header.
    pub fn encode_header(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut h = [0u8; SEGMENT_HEADER_BYTES];
        h[..8].copy_from_slice(SEGMENT_MAGIC);
        h[8..16].copy_from_slice(&self.segment_no.to_le_bytes());
        h[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        let crc = crc32c::crc32c(&h[..28]);
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Decodes a segment header; the error says what is wrong.
    pub fn decode_header(bytes: &[u8]) -> Result<Self, String> {
        let Some(h) = bytes.get(..SEGMENT_HEADER_BYTES) else {
            return Err(format!(
                "segment shorter than its {SEGMENT_HEADER_BYTES}-byte header"
            ));
        };
        if &h[..8] != SEGMENT_MAGIC {
            return Err("bad segment magic".into());
        }
        if u32_at(h, 28) != crc32c::crc32c(&h[..28]) || u32_at(h, 24) != 0 {
            return Err("segment header checksum mismatch".into());
        }
        Ok(Self {
            segment_no: u64_at(h, 8),
            first_seq: u64_at(h, 16),
        })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Appends the framed record `(seq, payload)` to `out`. The caller has checked the
/// payload against the record size limit (which is below `u32::MAX`).
pub fn encode_record(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    let mut h = [0u8; RECORD_HEADER_BYTES];
    h[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[4] = RECORD_KIND_DATA;
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..20].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let crc = crc32c::crc32c(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
}

/// Bytes a record with a payload of `payload_bytes` takes on disk.
pub fn framed_bytes(payload_bytes: usize) -> u64 {
    (RECORD_HEADER_BYTES + payload_bytes) as u64
}

/// A record decoded from the front of a byte slice.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The record's sequence number.
    pub seq: u64,
    /// The payload, borrowed from the input.
    pub payload: &'a [u8],
}

/// Why the bytes at some offset are not a valid record.
#[derive(Debug, PartialEq, Eq)]
pub enum BadRecord {
    /// The header is cut short, fails its checksum or has unknown fields: nothing in it
    /// can be trusted.
    Header(&'static str),
    /// The header is intact and claims a payload longer than the limit.
    TooLarge {
        /// The claimed length.
        payload_bytes: u64,
    },
    /// The header is intact but the payload is cut short or fails its checksum.
    Payload {
        /// The (trusted) claimed payload length.
        payload_bytes: u64,
        /// What is wrong.
        why: &'static str,
    },
}

/// Decodes the record at the front of `bytes`, refusing payloads over
/// `record_bytes_max` before looking at them.
pub fn decode_record(bytes: &[u8], record_bytes_max: u32) -> Result<Decoded<'_>, BadRecord> {
    let Some(h) = bytes.get(..RECORD_HEADER_BYTES) else {
        return Err(BadRecord::Header("record header cut short"));
    };
    if u32_at(h, 20) != crc32c::crc32c(&h[..20]) {
        return Err(BadRecord::Header("record header checksum mismatch"));
    }
    if h[4] != RECORD_KIND_DATA || h[5..8] != [0, 0, 0] {
        return Err(BadRecord::Header("unknown record kind"));
    }
    let len = u32_at(h, 0);
    if len > record_bytes_max {
        return Err(BadRecord::TooLarge {
            payload_bytes: u64::from(len),
        });
    }
    let payload_bytes = u64::from(len);
    let Some(payload) = bytes.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len as usize) else {
        return Err(BadRecord::Payload {
            payload_bytes,
            why: "payload cut short",
        });
    };
    if crc32c::crc32c(payload) != u32_at(h, 16) {
        return Err(BadRecord::Payload {
            payload_bytes,
            why: "payload checksum mismatch",
        });
    }
    Ok(Decoded {
        seq: u64_at(h, 8),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zeros_never_decode() {
        let zeros = [0u8; 64];
        assert!(matches!(
            decode_record(&zeros, 1024),
            Err(BadRecord::Header(_))
        ));
    }

    #[test]
    fn segment_names_and_headers_round_trip() {
        let id = SegmentId {
            segment_no: 7,
            first_seq: 0x1234,
        };
        assert_eq!(SegmentId::parse(&id.file_name()), Some(id));
        assert_eq!(SegmentId::decode_header(&id.encode_header()), Ok(id));
        let mut h = id.encode_header();
        h[9] ^= 1;
        assert!(SegmentId::decode_header(&h).is_err());
        assert_eq!(SegmentId::parse("x.wal"), None);
        assert_eq!(SegmentId::parse(&format!("{}.tmp", id.file_name())), None);
    }

    proptest! {
        #[test]
        fn records_round_trip_and_any_flip_is_caught(
            seq in any::<u64>(),
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut buf = Vec::new();
            encode_record(seq, &payload, &mut buf);
            prop_assert_eq!(buf.len() as u64, framed_bytes(payload.len()));
            let d = decode_record(&buf, 1024).unwrap();
            prop_assert_eq!(d.seq, seq);
            prop_assert_eq!(d.payload, &payload[..]);
            let at = flip.index(buf.len());
            buf[at] ^= 1 << bit;
            prop_assert!(decode_record(&buf, 1024).is_err());
        }
    }
}
