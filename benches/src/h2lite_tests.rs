//! Unit tests of the lean HTTP/2 client against a scripted server: normal calls, flow
//! control, stream limits, and known-bad replies that must become errors, not panics.

use super::*;
use crate::h2wire::*;
use proptest::prelude::*;

/// The scripted server's side: its own HPACK encoder (dynamic table in use).
struct Server {
    enc: loona_hpack::Encoder<'static>,
}

impl Server {
    fn new() -> Self {
        Server {
            enc: loona_hpack::Encoder::new(),
        }
    }

    fn headers(&mut self, stream: u32, flags: u8, fields: &[(&str, &str)]) -> Vec<u8> {
        let block = self
            .enc
            .encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
        let mut out = Vec::new();
        put_frame(&mut out, HEADERS, flags | FLAG_END_HEADERS, stream, &block);
        out
    }

    /// A whole successful unary response carrying `msg`.
    fn ok(&mut self, stream: u32, msg: &[u8]) -> Vec<u8> {
        let mut out = self.headers(
            stream,
            0,
            &[(":status", "200"), ("content-type", "application/grpc")],
        );
        let mut body = Vec::new();
        grpc_prefix(&mut body, msg.len());
        body.extend_from_slice(msg);
        put_frame(&mut out, DATA, 0, stream, &body);
        out.extend(self.headers(stream, FLAG_END_STREAM, &[("grpc-status", "0")]));
        out
    }
}

fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in entries {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    let mut out = Vec::new();
    put_frame(&mut out, SETTINGS, 0, 0, &p);
    out
}

/// The frames the client wrote since the last call (the preface skipped), drained.
fn sent(c: &mut H2Lite) -> Vec<(FrameHeader, Vec<u8>)> {
    let out = std::mem::take(c.output());
    let mut b = out.strip_prefix(PREFACE).unwrap_or(&out);
    let mut frames = Vec::new();
    while let Some(h) = parse_frame_header(b) {
        let end = FRAME_HEADER_BYTES + h.len;
        frames.push((h, b[FRAME_HEADER_BYTES..end].to_vec()));
        b = &b[end..];
    }
    assert!(b.is_empty(), "client wrote a partial frame");
    frames
}

fn client() -> H2Lite {
    let mut c = H2Lite::new(vec![request_header_block("/etcdserverpb.KV/Put", "h:1")]);
    let first = sent(&mut c);
    assert_eq!(first[0].0.kind, SETTINGS);
    assert_eq!(first[1].0.kind, WINDOW_UPDATE);
    c
}

fn feed_all(c: &mut H2Lite, input: &[u8]) -> Result<(), H2Error> {
    let used = c.feed(input)?;
    assert_eq!(used, input.len(), "whole frames must be consumed");
    Ok(())
}

fn body(msg: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    grpc_prefix(&mut b, msg.len());
    b.extend_from_slice(msg);
    b
}

#[test]
fn a_call_sends_headers_and_data_and_completes_with_the_message() {
    let mut c = client();
    let mut srv = Server::new();
    feed_all(&mut c, &settings(&[(SETTINGS_MAX_CONCURRENT_STREAMS, 100)])).expect("settings");
    let acks = sent(&mut c);
    assert_eq!(acks.len(), 1);
    assert_eq!((acks[0].0.kind, acks[0].0.flags), (SETTINGS, FLAG_ACK));
    for (tag, stream) in [(7u64, 1u32), (9, 3)] {
        c.start(tag, 0, &body(b"req"));
        let f = sent(&mut c);
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].0.kind, f[0].0.stream), (HEADERS, stream));
        assert_eq!(f[0].0.flags, FLAG_END_HEADERS);
        assert_eq!((f[1].0.kind, f[1].0.flags), (DATA, FLAG_END_STREAM));
        assert_eq!(f[1].1, body(b"req"));
        // The second response's headers come from the server's dynamic table.
        let reply = srv.ok(stream, b"resp");
        // Byte by byte: partial frames wait, nothing completes early.
        let mut buf = Vec::new();
        for (i, b) in reply.iter().enumerate() {
            buf.push(*b);
            let used = c.feed(&buf).expect("feed");
            buf.drain(..used);
            let done: Vec<Completion> = c.take_completions().collect();
            if i + 1 < reply.len() {
                assert!(done.is_empty());
            } else {
                assert_eq!(
                    done,
                    vec![Completion {
                        tag,
                        result: Ok(body(b"resp"))
                    }]
                );
            }
        }
        assert_eq!(c.in_flight(), 0);
    }
}

#[test]
fn known_bad_replies_are_call_errors() {
    let mut c = client();
    let mut srv = Server::new();
    for tag in 1..=6 {
        c.start(tag, 0, &body(b"x"));
    }
    let mut input = Vec::new();
    // Trailers-only error with a message.
    input.extend(srv.headers(
        1,
        FLAG_END_STREAM,
        &[
            (":status", "200"),
            ("grpc-status", "14"),
            ("grpc-message", "unavailable"),
        ],
    ));
    // HTTP error status.
    input.extend(srv.headers(3, FLAG_END_STREAM, &[(":status", "503")]));
    // No grpc-status at all.
    input.extend(srv.headers(5, 0, &[(":status", "200")]));
    put_frame(&mut input, DATA, FLAG_END_STREAM, 5, &body(b"m"));
    // Reset by the server.
    put_frame(&mut input, RST_STREAM, 0, 7, &2u32.to_be_bytes());
    // A body that is not one gRPC message.
    input.extend(srv.headers(9, 0, &[(":status", "200")]));
    put_frame(&mut input, DATA, 0, 9, &[0, 0, 0, 0, 9, 1]);
    input.extend(srv.headers(9, FLAG_END_STREAM, &[("grpc-status", "0")]));
    // Going away after stream 9: stream 11 was not processed.
    let mut goaway = 9u32.to_be_bytes().to_vec();
    goaway.extend_from_slice(&0u32.to_be_bytes());
    put_frame(&mut input, GOAWAY, 0, 0, &goaway);
    feed_all(&mut c, &input).expect("stream errors are not connection errors");
    let done: Vec<(u64, Result<Vec<u8>, CallError>)> =
        c.take_completions().map(|d| (d.tag, d.result)).collect();
    assert_eq!(
        done,
        vec![
            (
                1,
                Err(CallError::Status {
                    code: 14,
                    message: "unavailable".into()
                })
            ),
            (2, Err(CallError::Http(503))),
            (3, Err(CallError::MissingStatus)),
            (4, Err(CallError::Reset(2))),
            (
                5,
                Err(CallError::Body(
                    "gRPC message length does not match the response body"
                ))
            ),
            (6, Err(CallError::GoAway(0))),
        ]
    );
    // New calls after GOAWAY fail at once.
    c.start(42, 0, &body(b"x"));
    let done: Vec<Completion> = c.take_completions().collect();
    assert_eq!(done[0].result, Err(CallError::GoAway(0)));
}

#[test]
fn huffman_and_dynamic_table_headers_decode() {
    // A server's response header blocks using Huffman strings and its dynamic table
    // (the RFC 7541 appendix C.6 example): :status 302, then 307 built from the table.
    let first: &[u8] = &[
        0x48, 0x82, 0x64, 0x02, 0x58, 0x85, 0xae, 0xc3, 0x77, 0x1a, 0x4b, 0x61, 0x96, 0xd0, 0x7a,
        0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20, 0x05, 0x95, 0x04, 0x0b, 0x81, 0x66, 0xe0,
        0x82, 0xa6, 0x2d, 0x1b, 0xff, 0x6e, 0x91, 0x9d, 0x29, 0xad, 0x17, 0x18, 0x63, 0xc7, 0x8f,
        0x0b, 0x97, 0xc8, 0xe9, 0xae, 0x82, 0xae, 0x43, 0xd3,
    ];
    let second: &[u8] = &[0x48, 0x83, 0x64, 0x0e, 0xff, 0xc1, 0xc0, 0xbf];
    let mut c = client();
    c.start(1, 0, &body(b"a"));
    c.start(2, 0, &body(b"b"));
    let mut input = Vec::new();
    put_frame(
        &mut input,
        HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        1,
        first,
    );
    // The second block split over HEADERS and CONTINUATION.
    put_frame(&mut input, HEADERS, FLAG_END_STREAM, 3, &second[..3]);
    put_frame(&mut input, CONTINUATION, FLAG_END_HEADERS, 3, &second[3..]);
    feed_all(&mut c, &input).expect("valid blocks");
    let done: Vec<Completion> = c.take_completions().collect();
    assert_eq!(done[0].result, Err(CallError::Http(302)));
    assert_eq!(done[1].result, Err(CallError::Http(307)));
}

#[test]
fn broken_connections_are_errors_not_panics() {
    let mut bad_ping = Vec::new();
    put_frame(&mut bad_ping, PING, 0, 0, &[1, 2, 3]);
    let mut bad_settings = Vec::new();
    put_frame(&mut bad_settings, SETTINGS, 0, 0, &[0, 4, 0, 0, 0]);
    let mut bad_index = Vec::new();
    put_frame(&mut bad_index, HEADERS, FLAG_END_HEADERS, 1, &[0xff, 0x7f]);
    let mut interrupted = Vec::new();
    put_frame(&mut interrupted, HEADERS, 0, 1, &[0x88]);
    put_frame(&mut interrupted, DATA, 0, 1, &[]);
    let mut huge = Vec::new();
    put_frame_header(&mut huge, FRAME_BYTES_MAX + 1, DATA, 0, 1);
    let mut zero_window = Vec::new();
    put_frame(&mut zero_window, WINDOW_UPDATE, 0, 0, &0u32.to_be_bytes());
    let mut push = Vec::new();
    put_frame(
        &mut push,
        PUSH_PROMISE,
        FLAG_END_HEADERS,
        1,
        &[0, 0, 0, 2, 0x88],
    );
    // A dynamic table size update beyond the advertised 4,096 bytes.
    let mut table_grow = Vec::new();
    put_frame(
        &mut table_grow,
        HEADERS,
        FLAG_END_HEADERS,
        1,
        &[0x3f, 0xe2, 0x3f, 0x88],
    );
    let mut overpadded = Vec::new();
    put_frame(&mut overpadded, DATA, FLAG_PADDED, 1, &[9, 1]);
    for (what, input) in [
        ("ping", bad_ping),
        ("settings", bad_settings),
        ("hpack index", bad_index),
        ("interrupted block", interrupted),
        ("oversized frame", huge),
        ("zero window update", zero_window),
        ("push", push),
        ("padding", overpadded),
        ("table size", table_grow),
    ] {
        let mut c = client();
        c.start(1, 0, &body(b"x"));
        assert!(c.feed(&input).is_err(), "{what} must be a connection error");
    }
}

#[test]
fn pings_are_answered_and_cancelled_streams_are_ignored() {
    let mut c = client();
    let mut srv = Server::new();
    let mut ping = Vec::new();
    put_frame(&mut ping, PING, 0, 0, b"12345678");
    feed_all(&mut c, &ping).expect("ping");
    let f = sent(&mut c);
    assert_eq!((f[0].0.kind, f[0].0.flags), (PING, FLAG_ACK));
    assert_eq!(f[0].1, b"12345678");
    c.start(1, 0, &body(b"x"));
    c.start(2, 0, &body(b"y"));
    sent(&mut c);
    assert!(c.cancel(1));
    assert!(!c.cancel(1));
    let f = sent(&mut c);
    assert_eq!((f[0].0.kind, f[0].0.stream), (RST_STREAM, 1));
    // The late answer to stream 1 still feeds the HPACK table stream 3's answer uses.
    let mut input = srv.ok(1, b"late");
    input.extend(srv.ok(3, b"ok"));
    feed_all(&mut c, &input).expect("late answer");
    let done: Vec<Completion> = c.take_completions().collect();
    assert_eq!(
        done,
        vec![Completion {
            tag: 2,
            result: Ok(body(b"ok"))
        }]
    );
}

#[test]
fn bodies_wait_for_flow_control_windows_and_frames_are_split() {
    let mut c = client();
    // Stream windows of 10 bytes; the connection window stays 65,535.
    feed_all(&mut c, &settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 10)])).expect("settings");
    sent(&mut c);
    let big = vec![7u8; 70_000];
    c.start(1, 0, &big);
    let f = sent(&mut c);
    assert_eq!(f.len(), 2);
    assert_eq!((f[1].0.kind, f[1].0.len, f[1].0.flags), (DATA, 10, 0));
    // Open the stream window wide: the connection window (65,525 left) limits next.
    let mut wu = Vec::new();
    put_frame(&mut wu, WINDOW_UPDATE, 0, 1, &1_000_000u32.to_be_bytes());
    feed_all(&mut c, &wu).expect("window update");
    let f = sent(&mut c);
    let lens: Vec<usize> = f.iter().map(|(h, _)| h.len).collect();
    assert!(lens.iter().all(|l| *l <= FRAME_BYTES_MAX));
    assert_eq!(lens.iter().sum::<usize>(), 65_525);
    assert!(f.iter().all(|(h, _)| h.flags & FLAG_END_STREAM == 0));
    let mut wu = Vec::new();
    put_frame(&mut wu, WINDOW_UPDATE, 0, 0, &100_000u32.to_be_bytes());
    feed_all(&mut c, &wu).expect("window update");
    let f = sent(&mut c);
    assert_eq!(f.iter().map(|(h, _)| h.len).sum::<usize>(), 70_000 - 65_535);
    assert_eq!(f.last().map(|(h, _)| h.flags), Some(FLAG_END_STREAM));
    let all: Vec<u8> = f.into_iter().flat_map(|(_, p)| p).collect();
    assert!(all.iter().all(|b| *b == 7));
}

#[test]
fn calls_beyond_the_stream_limit_wait_for_a_free_stream() {
    let mut c = client();
    let mut srv = Server::new();
    feed_all(&mut c, &settings(&[(SETTINGS_MAX_CONCURRENT_STREAMS, 1)])).expect("settings");
    sent(&mut c);
    c.start(1, 0, &body(b"a"));
    c.start(2, 0, &body(b"b"));
    assert_eq!(c.in_flight(), 2);
    let f = sent(&mut c);
    assert!(f.iter().all(|(h, _)| h.stream == 1), "stream 3 must wait");
    feed_all(&mut c, &srv.ok(1, b"r")).expect("reply");
    let f = sent(&mut c);
    assert_eq!((f[0].0.kind, f[0].0.stream), (HEADERS, 3));
    assert_eq!(c.take_completions().count(), 1);
}

proptest! {
    #[test]
    fn arbitrary_server_frames_never_panic(
        frames in proptest::collection::vec(
            (0u8..11, any::<u8>(), 0u32..8, proptest::collection::vec(any::<u8>(), 0..40)),
            0..12,
        ),
        calls in 0u64..4,
    ) {
        let mut c = H2Lite::new(vec![request_header_block("/p", "h")]);
        for tag in 0..calls {
            c.start(tag, 0, b"\0\0\0\0\0");
        }
        let mut bytes = Vec::new();
        for (kind, flags, stream, payload) in frames {
            put_frame(&mut bytes, kind, flags, stream, &payload);
        }
        if let Ok(used) = c.feed(&bytes) {
            prop_assert_eq!(used, bytes.len());
        }
        let _ = c.take_completions().count();
    }
}
