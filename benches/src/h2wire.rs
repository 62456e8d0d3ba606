//! Wire encodings for the lean HTTP/2 gRPC client (`h2lite`): HTTP/2 frame headers, the
//! request header block, and the gRPC message framing of etcd's put and txn-put
//! requests, written straight into an output buffer.
//!
//! The request header block uses only static-table references and literals that are
//! not indexed, so it never touches the server's HPACK dynamic table and one block can
//! be reused for every request to the same path. Responses are decoded elsewhere (a
//! crate's HPACK decoder, prost for messages); this module does no I/O and keeps no
//! connection state.

/// Bytes a client sends first on every HTTP/2 connection.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Length of an HTTP/2 frame header.
pub const FRAME_HEADER_BYTES: usize = 9;
/// Length of the gRPC message prefix (compressed flag and 4-byte length).
pub const GRPC_PREFIX_BYTES: usize = 5;

/// Frame type DATA.
pub const DATA: u8 = 0x0;
/// Frame type HEADERS.
pub const HEADERS: u8 = 0x1;
/// Frame type PRIORITY.
pub const PRIORITY: u8 = 0x2;
/// Frame type RST_STREAM.
pub const RST_STREAM: u8 = 0x3;
/// Frame type SETTINGS.
pub const SETTINGS: u8 = 0x4;
/// Frame type PUSH_PROMISE.
pub const PUSH_PROMISE: u8 = 0x5;
/// Frame type PING.
pub const PING: u8 = 0x6;
/// Frame type GOAWAY.
pub const GOAWAY: u8 = 0x7;
/// Frame type WINDOW_UPDATE.
pub const WINDOW_UPDATE: u8 = 0x8;
/// Frame type CONTINUATION.
pub const CONTINUATION: u8 = 0x9;

/// Flag END_STREAM (DATA, HEADERS).
pub const FLAG_END_STREAM: u8 = 0x1;
/// Flag ACK (SETTINGS, PING).
pub const FLAG_ACK: u8 = 0x1;
/// Flag END_HEADERS (HEADERS, CONTINUATION).
pub const FLAG_END_HEADERS: u8 = 0x4;
/// Flag PADDED (DATA, HEADERS).
pub const FLAG_PADDED: u8 = 0x8;
/// Flag PRIORITY (HEADERS).
pub const FLAG_PRIORITY: u8 = 0x20;

/// Setting HEADER_TABLE_SIZE.
pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
/// Setting ENABLE_PUSH.
pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
/// Setting MAX_CONCURRENT_STREAMS.
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
/// Setting INITIAL_WINDOW_SIZE.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
/// Setting MAX_FRAME_SIZE.
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

/// RST_STREAM / GOAWAY error code CANCEL.
pub const ERROR_CANCEL: u32 = 0x8;

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length in bytes.
    pub len: usize,
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream id (reserved bit cleared).
    pub stream: u32,
}

/// Parses the frame header at the start of `b` (None when fewer than 9 bytes).
pub fn parse_frame_header(b: &[u8]) -> Option<FrameHeader> {
    let h: &[u8; FRAME_HEADER_BYTES] = b.get(..FRAME_HEADER_BYTES)?.try_into().ok()?;
    Some(FrameHeader {
        len: usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]),
        kind: h[3],
        flags: h[4],
        stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
    })
}

/// Appends a frame header. `len` must fit in 24 bits (callers split larger payloads).
pub fn put_frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = u32::try_from(len).unwrap_or(u32::MAX).min(0x00ff_ffff);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
}

/// Appends a whole frame.
pub fn put_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    put_frame_header(out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
}

/// Appends an HPACK integer with an `prefix_bits`-bit prefix whose high bits are `high`.
fn hpack_int(out: &mut Vec<u8>, high: u8, prefix_bits: u8, mut value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// Appends a raw (not Huffman-coded) HPACK string.
fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// Static-table index of `:authority`.
const STATIC_AUTHORITY: usize = 1;
/// Static-table index of `:method: POST`.
const STATIC_METHOD_POST: usize = 3;
/// Static-table index of `:path`.
const STATIC_PATH: usize = 4;
/// Static-table index of `:scheme: http`.
const STATIC_SCHEME_HTTP: usize = 6;
/// Static-table index of `content-type`.
const STATIC_CONTENT_TYPE: usize = 31;

/// The header block of a gRPC request to `path` (e.g. `/etcdserverpb.KV/Put`) on
/// `authority`: indexed method and scheme, the rest literals without indexing.
pub fn request_header_block(path: &str, authority: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + path.len() + authority.len());
    hpack_int(&mut b, 0x80, 7, STATIC_METHOD_POST);
    hpack_int(&mut b, 0x80, 7, STATIC_SCHEME_HTTP);
    for (index, value) in [
        (STATIC_PATH, path.as_bytes()),
        (STATIC_AUTHORITY, authority.as_bytes()),
        (STATIC_CONTENT_TYPE, b"application/grpc".as_slice()),
    ] {
        hpack_int(&mut b, 0x00, 4, index);
        hpack_str(&mut b, value);
    }
    b.push(0x00);
    hpack_str(&mut b, b"te");
    hpack_str(&mut b, b"trailers");
    b
}

/// Appends a protobuf varint.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes a varint of `v` takes.
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Length of an encoded length-delimited field with a one-byte tag.
fn field_len(payload: usize) -> usize {
    1 + varint_len(payload as u64) + payload
}

/// Length of an encoded proto3 `bytes` field (left out when empty).
fn bytes_field_len(payload: usize) -> usize {
    if payload == 0 { 0 } else { field_len(payload) }
}

/// Appends a proto3 `bytes` field (tag byte, length, bytes), nothing when empty.
fn bytes_field(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    if b.is_empty() {
        return;
    }
    out.push(tag);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Tag of PutRequest.key (field 1, length-delimited).
const TAG_PUT_KEY: u8 = 0x0a;
/// Tag of PutRequest.value (field 2).
const TAG_PUT_VALUE: u8 = 0x12;
/// Tag of TxnRequest.success (field 2).
const TAG_TXN_SUCCESS: u8 = 0x12;
/// Tag of RequestOp.request_put (field 2).
const TAG_OP_PUT: u8 = 0x12;

/// Appends the gRPC message prefix (uncompressed) for a message of `len` bytes.
pub fn grpc_prefix(out: &mut Vec<u8>, len: usize) {
    out.push(0);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

/// Appends a gRPC-framed `PutRequest { key, value }`, or with `txn` a
/// `TxnRequest { success: [RequestOp { request_put }] }` holding it.
pub fn grpc_put(out: &mut Vec<u8>, key: &[u8], value: &[u8], txn: bool) {
    let put_len = bytes_field_len(key.len()) + bytes_field_len(value.len());
    let msg_len = if txn {
        field_len(field_len(put_len))
    } else {
        put_len
    };
    grpc_prefix(out, msg_len);
    if txn {
        out.push(TAG_TXN_SUCCESS);
        varint(out, field_len(put_len) as u64);
        out.push(TAG_OP_PUT);
        varint(out, put_len as u64);
    }
    bytes_field(out, TAG_PUT_KEY, key);
    bytes_field(out, TAG_PUT_VALUE, value);
}

/// The payload of a gRPC message framed with [`GRPC_PREFIX_BYTES`], when `b` holds
/// exactly one uncompressed message.
pub fn grpc_unframe(b: &[u8]) -> Result<&[u8], &'static str> {
    let (prefix, rest) = b
        .split_at_checked(GRPC_PREFIX_BYTES)
        .ok_or("response body shorter than the gRPC message prefix")?;
    if prefix[0] != 0 {
        return Err("compressed gRPC response (no compression was offered)");
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len != rest.len() {
        return Err("gRPC message length does not match the response body");
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use detcd_engine::pb::etcdserverpb::{PutRequest, RequestOp, TxnRequest, request_op};
    use prost::Message as _;

    #[test]
    fn put_and_txn_bodies_match_prost() {
        for (klen, vlen) in [(0, 0), (8, 256), (130, 20_000), (3, 127), (3, 128)] {
            let key = vec![b'k'; klen];
            let value = vec![b'v'; vlen];
            let put = PutRequest {
                key: key.clone(),
                value: value.clone(),
                ..Default::default()
            };
            let txn = TxnRequest {
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(put.clone())),
                }],
                ..Default::default()
            };
            for (is_txn, expect) in [(false, put.encode_to_vec()), (true, txn.encode_to_vec())] {
                let mut out = Vec::new();
                grpc_put(&mut out, &key, &value, is_txn);
                assert_eq!(grpc_unframe(&out), Ok(expect.as_slice()), "{klen}/{vlen}");
            }
        }
    }

    #[test]
    fn header_block_decodes_to_the_grpc_request_headers() {
        let long_path = format!("/{}", "p".repeat(300));
        for path in ["/etcdserverpb.KV/Put", long_path.as_str()] {
            let block = request_header_block(path, "127.0.0.1:2379");
            let mut d = loona_hpack::Decoder::new();
            // Decoding twice shows the block leaves the decoder's table untouched.
            for _ in 0..2 {
                let h = d.decode(&block).expect("valid block");
                let h: Vec<(&[u8], &[u8])> = h
                    .iter()
                    .map(|(n, v)| (n.as_slice(), v.as_slice()))
                    .collect();
                assert_eq!(
                    h,
                    vec![
                        (b":method".as_slice(), b"POST".as_slice()),
                        (b":scheme", b"http"),
                        (b":path", path.as_bytes()),
                        (b":authority", b"127.0.0.1:2379"),
                        (b"content-type", b"application/grpc"),
                        (b"te", b"trailers"),
                    ]
                );
            }
        }
    }

    #[test]
    fn frame_headers_round_trip_and_bad_grpc_bodies_are_errors() {
        let mut out = Vec::new();
        put_frame(&mut out, DATA, FLAG_END_STREAM, 0x8000_0007, b"abc");
        let h = parse_frame_header(&out).expect("header");
        assert_eq!(
            h,
            FrameHeader {
                len: 3,
                kind: DATA,
                flags: FLAG_END_STREAM,
                stream: 7
            }
        );
        assert_eq!(parse_frame_header(&out[..8]), None);
        assert!(grpc_unframe(&[0, 0, 0]).is_err());
        assert!(grpc_unframe(&[1, 0, 0, 0, 1, 9]).is_err());
        assert!(grpc_unframe(&[0, 0, 0, 0, 2, 9]).is_err());
        assert_eq!(grpc_unframe(&[0, 0, 0, 0, 1, 9]), Ok([9u8].as_slice()));
    }
}
