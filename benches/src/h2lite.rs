//! A minimal HTTP/2 client state machine for unary gRPC calls: the load generator's
//! put, txn-put and range path.
//!
//! The general stack (tonic over hyper over h2) costs the generator ~20 µs of CPU per
//! request, and the generator shares the CPU with the server under test. This client
//! does only what one unary call needs: it writes a reused request header block and a
//! DATA frame straight into one output buffer, and parses the server's frames in place.
//! It still speaks plain HTTP/2 to any gRPC server: it acknowledges SETTINGS and PING,
//! honours the server's flow-control windows, frame size and stream limit (requests
//! beyond the limit wait), returns its own receive window with WINDOW_UPDATE, decodes
//! every response header block with an HPACK decoder (dynamic table and Huffman
//! included), and turns RST_STREAM, GOAWAY, a non-200 `:status` and a non-zero or
//! missing `grpc-status` into call errors.
//!
//! It does no I/O (the caller moves bytes between [`H2Lite::output`] and the socket and
//! feeds what it reads to [`H2Lite::feed`]), no streaming calls, no server push, no
//! compression, no TLS and no reconnects. Malformed input is an error value, never a
//! panic; a connection-level error ends the connection.

use crate::h2wire::{self, FrameHeader};
use std::collections::{HashMap, VecDeque};

/// Largest frame this client accepts (the HTTP/2 default; it advertises no other).
pub const FRAME_BYTES_MAX: usize = 16_384;
/// Receive window this client grants per stream and for the connection, in bytes.
pub const RECV_WINDOW_BYTES: u32 = 1 << 30;
/// HPACK table size this client's decoder allows (the HTTP/2 default, not changed).
pub const HEADER_TABLE_BYTES: usize = 4_096;
/// Largest flow-control window HTTP/2 allows.
const WINDOW_MAX: i64 = (1 << 31) - 1;
/// Window both sides start with before SETTINGS say otherwise.
const DEFAULT_WINDOW_BYTES: i64 = 65_535;
/// Highest stream id a client may open.
const STREAM_ID_MAX: u32 = (1 << 31) - 1;

/// Why one call failed (the connection may go on).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The server answered with an HTTP status other than 200.
    #[error("http status {0}")]
    Http(u16),
    /// The server answered with a non-zero grpc-status.
    #[error("grpc-status {code}: {message}")]
    Status {
        /// gRPC status code.
        code: u32,
        /// grpc-message, as sent.
        message: String,
    },
    /// The response ended without a grpc-status.
    #[error("response ended without grpc-status")]
    MissingStatus,
    /// The response body is not one uncompressed gRPC message.
    #[error("bad response body: {0}")]
    Body(&'static str),
    /// The server reset the stream.
    #[error("stream reset by server (code {0})")]
    Reset(u32),
    /// The server is going away and did not process the call.
    #[error("connection going away (code {0})")]
    GoAway(u32),
    /// The connection has no stream ids left.
    #[error("stream ids exhausted")]
    StreamsExhausted,
}

/// Why the whole connection failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum H2Error {
    /// The server broke the HTTP/2 protocol.
    #[error("http/2 protocol error: {0}")]
    Protocol(&'static str),
    /// A header block did not decode.
    #[error("hpack: {0}")]
    Hpack(String),
}

/// A finished call: the caller's tag and the gRPC message (its 5-byte prefix included,
/// see [`h2wire::GRPC_PREFIX_BYTES`]) or why it failed.
#[derive(Debug, PartialEq, Eq)]
pub struct Completion {
    /// The tag given to [`H2Lite::start`].
    pub tag: u64,
    /// The framed response message or the error.
    pub result: Result<Vec<u8>, CallError>,
}

/// One open stream.
#[derive(Debug, Default)]
struct Stream {
    tag: u64,
    send_window: i64,
    /// Request body bytes not yet sent (flow control held them back).
    pending: Vec<u8>,
    pending_sent: usize,
    data: Vec<u8>,
    recv_unacked: u32,
    http_status: Option<u16>,
    grpc_status: Option<u32>,
    grpc_message: String,
}

/// A call waiting for a free stream slot.
struct Waiting {
    tag: u64,
    block: usize,
    body: Vec<u8>,
}

/// A header block split over HEADERS and CONTINUATION frames.
struct PartialHeaders {
    stream: u32,
    end_stream: bool,
    block: Vec<u8>,
}

/// The client side of one HTTP/2 connection.
pub struct H2Lite {
    blocks: Vec<Vec<u8>>,
    out: Vec<u8>,
    decoder: loona_hpack::Decoder<'static>,
    next_stream: u32,
    streams: HashMap<u32, Stream>,
    /// Streams whose body waits for window, in order.
    blocked: VecDeque<u32>,
    waiting: VecDeque<Waiting>,
    send_window: i64,
    peer_initial_window: i64,
    peer_frame_max: usize,
    peer_streams_max: usize,
    recv_unacked: u32,
    partial: Option<PartialHeaders>,
    goaway: Option<u32>,
    done: Vec<Completion>,
}

impl H2Lite {
    /// A connection whose requests use the header blocks `blocks` (see
    /// [`h2wire::request_header_block`]); the preface and this client's SETTINGS are
    /// already in the output.
    pub fn new(blocks: Vec<Vec<u8>>) -> Self {
        let mut out = Vec::with_capacity(64 * 1024);
        out.extend_from_slice(h2wire::PREFACE);
        let mut settings = Vec::new();
        for (id, value) in [
            (h2wire::SETTINGS_ENABLE_PUSH, 0),
            (h2wire::SETTINGS_INITIAL_WINDOW_SIZE, RECV_WINDOW_BYTES),
        ] {
            settings.extend_from_slice(&id.to_be_bytes());
            settings.extend_from_slice(&value.to_be_bytes());
        }
        h2wire::put_frame(&mut out, h2wire::SETTINGS, 0, 0, &settings);
        let grow = RECV_WINDOW_BYTES - DEFAULT_WINDOW_BYTES as u32;
        h2wire::put_frame(&mut out, h2wire::WINDOW_UPDATE, 0, 0, &grow.to_be_bytes());
        let mut decoder = loona_hpack::Decoder::new();
        // The server may not grow its table past the default this client advertises.
        decoder.set_max_allowed_table_size(HEADER_TABLE_BYTES);
        H2Lite {
            blocks,
            out,
            decoder,
            next_stream: 1,
            streams: HashMap::new(),
            blocked: VecDeque::new(),
            waiting: VecDeque::new(),
            send_window: DEFAULT_WINDOW_BYTES,
            peer_initial_window: DEFAULT_WINDOW_BYTES,
            peer_frame_max: FRAME_BYTES_MAX,
            peer_streams_max: usize::MAX,
            recv_unacked: 0,
            partial: None,
            goaway: None,
            done: Vec::new(),
        }
    }

    /// Bytes to write to the socket; the caller removes what it wrote.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Calls open or waiting for a stream slot.
    pub fn in_flight(&self) -> usize {
        self.streams.len() + self.waiting.len()
    }

    /// Finished calls since the last take.
    pub fn take_completions(&mut self) -> std::vec::Drain<'_, Completion> {
        self.done.drain(..)
    }

    /// Starts a call with header block `block` and the gRPC-framed request `body`; its
    /// completion carries `tag`. It waits when the server's stream limit is reached.
    pub fn start(&mut self, tag: u64, block: usize, body: &[u8]) {
        if let Some(code) = self.goaway {
            self.done.push(Completion {
                tag,
                result: Err(CallError::GoAway(code)),
            });
        } else if self.streams.len() >= self.peer_streams_max {
            self.waiting.push_back(Waiting {
                tag,
                block,
                body: body.to_vec(),
            });
        } else {
            self.open(tag, block, body);
        }
    }

    /// Abandons the call tagged `tag` (RST_STREAM CANCEL if it is open); no completion
    /// follows. Returns whether it was in flight.
    pub fn cancel(&mut self, tag: u64) -> bool {
        if let Some(i) = self.waiting.iter().position(|w| w.tag == tag) {
            self.waiting.remove(i);
            return true;
        }
        let Some(id) = self
            .streams
            .iter()
            .find(|(_, s)| s.tag == tag)
            .map(|(id, _)| *id)
        else {
            return false;
        };
        self.streams.remove(&id);
        h2wire::put_frame(
            &mut self.out,
            h2wire::RST_STREAM,
            0,
            id,
            &h2wire::ERROR_CANCEL.to_be_bytes(),
        );
        self.open_waiting();
        true
    }

    fn open(&mut self, tag: u64, block: usize, body: &[u8]) {
        let id = self.next_stream;
        if id > STREAM_ID_MAX {
            self.done.push(Completion {
                tag,
                result: Err(CallError::StreamsExhausted),
            });
            return;
        }
        self.next_stream += 2;
        let header_block = self.blocks.get(block).map_or(&[][..], |b| b.as_slice());
        let mut chunks = header_block.chunks(self.peer_frame_max.max(1)).peekable();
        let mut kind = h2wire::HEADERS;
        loop {
            let chunk = chunks.next().unwrap_or(&[]);
            let flags = if chunks.peek().is_none() {
                h2wire::FLAG_END_HEADERS
            } else {
                0
            };
            h2wire::put_frame(&mut self.out, kind, flags, id, chunk);
            kind = h2wire::CONTINUATION;
            if flags != 0 {
                break;
            }
        }
        let mut stream = Stream {
            tag,
            send_window: self.peer_initial_window,
            ..Default::default()
        };
        let len = body.len() as i64;
        if self.blocked.is_empty() && len <= self.send_window && len <= stream.send_window {
            self.send_window -= len;
            stream.send_window -= len;
            put_data(&mut self.out, id, body, self.peer_frame_max, true);
            self.streams.insert(id, stream);
        } else {
            stream.pending = body.to_vec();
            self.streams.insert(id, stream);
            self.blocked.push_back(id);
            self.flush_blocked();
        }
    }

    /// Sends what the windows allow of held-back bodies, oldest first.
    fn flush_blocked(&mut self) {
        let mut i = 0;
        while i < self.blocked.len() {
            let id = self.blocked[i];
            let Some(s) = self.streams.get_mut(&id) else {
                self.blocked.remove(i);
                continue;
            };
            let left = s.pending.len() - s.pending_sent;
            let n = (left as i64)
                .min(self.send_window)
                .min(s.send_window)
                .max(0) as usize;
            if n < left && n == 0 {
                if self.send_window <= 0 {
                    return;
                }
                i += 1;
                continue;
            }
            let end = n == left;
            let from = s.pending_sent;
            put_data(
                &mut self.out,
                id,
                &s.pending[from..from + n],
                self.peer_frame_max,
                end,
            );
            s.pending_sent += n;
            s.send_window -= n as i64;
            self.send_window -= n as i64;
            if end {
                s.pending = Vec::new();
                self.blocked.remove(i);
            } else {
                i += 1;
            }
        }
    }

    fn open_waiting(&mut self) {
        while self.streams.len() < self.peer_streams_max {
            let Some(w) = self.waiting.pop_front() else {
                return;
            };
            self.open(w.tag, w.block, &w.body);
        }
    }

    /// Processes every whole frame at the start of `input`; returns how many bytes it
    /// consumed (a partial frame stays for the next call).
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, H2Error> {
        let mut at = 0;
        while let Some(h) = h2wire::parse_frame_header(&input[at..]) {
            if h.len > FRAME_BYTES_MAX {
                return Err(H2Error::Protocol(
                    "frame larger than the advertised maximum",
                ));
            }
            let start = at + h2wire::FRAME_HEADER_BYTES;
            let Some(payload) = input.get(start..start + h.len) else {
                break;
            };
            self.frame(h, payload)?;
            at = start + h.len;
        }
        Ok(at)
    }

    fn frame(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), H2Error> {
        if let Some(p) = &self.partial
            && (h.kind != h2wire::CONTINUATION || h.stream != p.stream)
        {
            return Err(H2Error::Protocol("header block interrupted"));
        }
        match h.kind {
            h2wire::DATA => self.data(h, payload),
            h2wire::HEADERS => {
                if h.stream == 0 {
                    return Err(H2Error::Protocol("HEADERS on stream 0"));
                }
                let mut block = unpad(h, payload)?;
                if h.flags & h2wire::FLAG_PRIORITY != 0 {
                    block = block
                        .get(5..)
                        .ok_or(H2Error::Protocol("HEADERS priority field cut short"))?;
                }
                let end_stream = h.flags & h2wire::FLAG_END_STREAM != 0;
                if h.flags & h2wire::FLAG_END_HEADERS != 0 {
                    self.headers(h.stream, end_stream, block)
                } else {
                    self.partial = Some(PartialHeaders {
                        stream: h.stream,
                        end_stream,
                        block: block.to_vec(),
                    });
                    Ok(())
                }
            }
            h2wire::CONTINUATION => {
                let Some(mut p) = self.partial.take() else {
                    return Err(H2Error::Protocol("CONTINUATION without HEADERS"));
                };
                p.block.extend_from_slice(payload);
                if h.flags & h2wire::FLAG_END_HEADERS != 0 {
                    self.headers(p.stream, p.end_stream, &p.block)
                } else {
                    self.partial = Some(p);
                    Ok(())
                }
            }
            h2wire::RST_STREAM => {
                let code = u32_of(payload, h.stream != 0, "bad RST_STREAM")?;
                if let Some(s) = self.streams.remove(&h.stream) {
                    self.done.push(Completion {
                        tag: s.tag,
                        result: Err(CallError::Reset(code)),
                    });
                    self.open_waiting();
                }
                Ok(())
            }
            h2wire::SETTINGS => self.settings(h, payload),
            h2wire::PUSH_PROMISE => Err(H2Error::Protocol("PUSH_PROMISE with push disabled")),
            h2wire::PING => {
                if h.stream != 0 || payload.len() != 8 {
                    return Err(H2Error::Protocol("bad PING"));
                }
                if h.flags & h2wire::FLAG_ACK == 0 {
                    h2wire::put_frame(&mut self.out, h2wire::PING, h2wire::FLAG_ACK, 0, payload);
                }
                Ok(())
            }
            h2wire::GOAWAY => {
                if h.stream != 0 || payload.len() < 8 {
                    return Err(H2Error::Protocol("bad GOAWAY"));
                }
                let last = u32_of(&payload[..4], true, "bad GOAWAY")? & 0x7fff_ffff;
                let code = u32_of(&payload[4..8], true, "bad GOAWAY")?;
                self.goaway = Some(code);
                let mut gone: Vec<u32> = self
                    .streams
                    .keys()
                    .copied()
                    .filter(|id| *id > last)
                    .collect();
                gone.sort_unstable();
                for id in gone {
                    if let Some(s) = self.streams.remove(&id) {
                        self.done.push(Completion {
                            tag: s.tag,
                            result: Err(CallError::GoAway(code)),
                        });
                    }
                }
                for w in std::mem::take(&mut self.waiting) {
                    self.done.push(Completion {
                        tag: w.tag,
                        result: Err(CallError::GoAway(code)),
                    });
                }
                Ok(())
            }
            h2wire::WINDOW_UPDATE => {
                let inc = i64::from(u32_of(payload, true, "bad WINDOW_UPDATE")? & 0x7fff_ffff);
                if inc == 0 {
                    return Err(H2Error::Protocol("WINDOW_UPDATE of 0"));
                }
                if h.stream == 0 {
                    self.send_window += inc;
                    if self.send_window > WINDOW_MAX {
                        return Err(H2Error::Protocol("connection window overflow"));
                    }
                } else if let Some(s) = self.streams.get_mut(&h.stream) {
                    s.send_window += inc;
                    if s.send_window > WINDOW_MAX {
                        return Err(H2Error::Protocol("stream window overflow"));
                    }
                }
                self.flush_blocked();
                Ok(())
            }
            // PRIORITY and unknown frame types carry nothing a client must act on.
            _ => Ok(()),
        }
    }

    fn data(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), H2Error> {
        if h.stream == 0 {
            return Err(H2Error::Protocol("DATA on stream 0"));
        }
        let body = unpad(h, payload)?;
        let len = payload.len() as u32;
        self.recv_unacked += len;
        if self.recv_unacked >= RECV_WINDOW_BYTES / 2 {
            let n = std::mem::take(&mut self.recv_unacked);
            h2wire::put_frame(&mut self.out, h2wire::WINDOW_UPDATE, 0, 0, &n.to_be_bytes());
        }
        let end = h.flags & h2wire::FLAG_END_STREAM != 0;
        let Some(s) = self.streams.get_mut(&h.stream) else {
            // A stream this client cancelled: the bytes only count for the connection.
            return Ok(());
        };
        s.data.extend_from_slice(body);
        s.recv_unacked += len;
        if !end && s.recv_unacked >= RECV_WINDOW_BYTES / 2 {
            let n = std::mem::take(&mut s.recv_unacked);
            h2wire::put_frame(
                &mut self.out,
                h2wire::WINDOW_UPDATE,
                0,
                h.stream,
                &n.to_be_bytes(),
            );
        }
        if end {
            self.finish(h.stream);
        }
        Ok(())
    }

    fn headers(&mut self, id: u32, end_stream: bool, block: &[u8]) -> Result<(), H2Error> {
        // Every block is decoded, even a cancelled stream's: it updates the table.
        let mut status = None;
        let mut grpc_status = None;
        let mut grpc_message = None;
        let mut bad_field = false;
        self.decoder
            .decode_with_cb(block, |name, value| match &*name {
                b":status" => {
                    status = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|v| v.parse().ok());
                    bad_field |= status.is_none();
                }
                b"grpc-status" => {
                    grpc_status = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|v| v.parse().ok());
                    bad_field |= grpc_status.is_none();
                }
                b"grpc-message" => {
                    grpc_message = Some(String::from_utf8_lossy(&value).into_owned());
                }
                _ => {}
            })
            .map_err(|e| H2Error::Hpack(e.to_string()))?;
        if bad_field {
            return Err(H2Error::Protocol("unparsable :status or grpc-status"));
        }
        let Some(s) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        if s.http_status.is_none() {
            s.http_status = status;
            if status.is_none() {
                return Err(H2Error::Protocol("response headers without :status"));
            }
        }
        if grpc_status.is_some() {
            s.grpc_status = grpc_status;
        }
        if let Some(m) = grpc_message {
            s.grpc_message = m;
        }
        if end_stream {
            self.finish(id);
        }
        Ok(())
    }

    fn finish(&mut self, id: u32) {
        let Some(s) = self.streams.remove(&id) else {
            return;
        };
        let result = match (s.http_status, s.grpc_status) {
            (Some(code), _) if code != 200 => Err(CallError::Http(code)),
            (_, None) => Err(CallError::MissingStatus),
            (_, Some(0)) => match h2wire::grpc_unframe(&s.data) {
                Ok(_) => Ok(s.data),
                Err(why) => Err(CallError::Body(why)),
            },
            (_, Some(code)) => Err(CallError::Status {
                code,
                message: s.grpc_message,
            }),
        };
        self.done.push(Completion { tag: s.tag, result });
        self.open_waiting();
    }

    fn settings(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), H2Error> {
        if h.stream != 0 {
            return Err(H2Error::Protocol("SETTINGS on a stream"));
        }
        if h.flags & h2wire::FLAG_ACK != 0 {
            return if payload.is_empty() {
                Ok(())
            } else {
                Err(H2Error::Protocol("SETTINGS ack with a payload"))
            };
        }
        if !payload.len().is_multiple_of(6) {
            return Err(H2Error::Protocol("SETTINGS length not a multiple of 6"));
        }
        for e in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([e[0], e[1]]);
            let value = u32::from_be_bytes([e[2], e[3], e[4], e[5]]);
            match id {
                h2wire::SETTINGS_MAX_CONCURRENT_STREAMS => {
                    self.peer_streams_max = value as usize;
                }
                h2wire::SETTINGS_INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > WINDOW_MAX {
                        return Err(H2Error::Protocol("initial window too large"));
                    }
                    let delta = value - self.peer_initial_window;
                    self.peer_initial_window = value;
                    for s in self.streams.values_mut() {
                        s.send_window += delta;
                        if s.send_window > WINDOW_MAX {
                            return Err(H2Error::Protocol("stream window overflow"));
                        }
                    }
                }
                h2wire::SETTINGS_MAX_FRAME_SIZE => {
                    if !(FRAME_BYTES_MAX as u32..=0x00ff_ffff).contains(&value) {
                        return Err(H2Error::Protocol("bad MAX_FRAME_SIZE"));
                    }
                    self.peer_frame_max = value as usize;
                }
                // HEADER_TABLE_SIZE bounds an encoder table this client never uses.
                _ => {}
            }
        }
        h2wire::put_frame(&mut self.out, h2wire::SETTINGS, h2wire::FLAG_ACK, 0, &[]);
        self.flush_blocked();
        self.open_waiting();
        Ok(())
    }
}

/// Appends `body` as DATA frames of at most `frame_max` bytes, END_STREAM on the last
/// when `end`.
fn put_data(out: &mut Vec<u8>, id: u32, body: &[u8], frame_max: usize, end: bool) {
    let mut chunks = body.chunks(frame_max.max(1)).peekable();
    if chunks.peek().is_none() {
        let flags = if end { h2wire::FLAG_END_STREAM } else { 0 };
        h2wire::put_frame(out, h2wire::DATA, flags, id, &[]);
    }
    while let Some(c) = chunks.next() {
        let last = chunks.peek().is_none();
        let flags = if last && end {
            h2wire::FLAG_END_STREAM
        } else {
            0
        };
        h2wire::put_frame(out, h2wire::DATA, flags, id, c);
    }
}

/// The payload without its padding when the frame is PADDED.
fn unpad(h: FrameHeader, payload: &[u8]) -> Result<&[u8], H2Error> {
    if h.flags & h2wire::FLAG_PADDED == 0 {
        return Ok(payload);
    }
    let (&pad, rest) = payload
        .split_first()
        .ok_or(H2Error::Protocol("padded frame without pad length"))?;
    rest.len()
        .checked_sub(usize::from(pad))
        .map(|n| &rest[..n])
        .ok_or(H2Error::Protocol("padding longer than the frame"))
}

/// A 4-byte big-endian field, when `ok` and the payload is exactly 4 bytes.
fn u32_of(payload: &[u8], ok: bool, what: &'static str) -> Result<u32, H2Error> {
    match <[u8; 4]>::try_from(payload) {
        Ok(b) if ok => Ok(u32::from_be_bytes(b)),
        _ => Err(H2Error::Protocol(what)),
    }
}

#[cfg(test)]
#[path = "h2lite_tests.rs"]
mod tests;
