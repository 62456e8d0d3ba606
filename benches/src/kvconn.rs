//! One connection's share of a put, txn-put or range workload, driven by a single task
//! over the lean HTTP/2 client ([`crate::h2lite`]).
//!
//! The task owns the socket and all the clients assigned to the connection. Each client
//! has at most one call in flight; when a batch of responses arrives, every finished
//! client sends its next request and the whole batch leaves in one write. There is no
//! task, timer or future per request: latencies go into the connection's own histogram
//! (merged at the end), and one periodic check abandons calls older than
//! [`REQUEST_TIMEOUT_MS`]. It does not retry, reconnect or balance: a broken connection
//! fails its in-flight calls and stops.

use crate::h2lite::{CallError, Completion, H2Lite};
use crate::h2wire;
use crate::load::{Budget, ClientResult, KeyOrder, LoadError, REQUEST_TIMEOUT_MS, Workload};
use crate::record::{self, ascii};
use crate::stats::Latencies;
use detcd_checker::history::{OkOutcome, Op, OpRecord, OpResult, Outcome};
use detcd_engine::pb::etcdserverpb::{PutResponse, RangeRequest, RangeResponse, TxnResponse};
use prost::Message as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// How often in-flight calls are checked against the request timeout, in milliseconds.
pub const TIMEOUT_CHECK_MS: u64 = 250;
/// Spare room kept in the read buffer before each read, in bytes.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// What a kv call is, fixed for a run.
enum Kind {
    Put {
        key_bytes: usize,
        value_bytes: usize,
        key_space: u64,
        order: KeyOrder,
        txn: bool,
    },
    Range {
        key: String,
        serializable: bool,
        /// The gRPC-framed request, the same for every call.
        body: Vec<u8>,
    },
}

impl Kind {
    fn of(workload: &Workload) -> Result<(Kind, &'static str), LoadError> {
        match workload {
            Workload::Put {
                key_bytes,
                value_bytes,
                key_space,
                order,
                txn,
            } => Ok((
                Kind::Put {
                    key_bytes: *key_bytes,
                    value_bytes: *value_bytes,
                    key_space: (*key_space).max(1),
                    order: *order,
                    txn: *txn,
                },
                if *txn {
                    "/etcdserverpb.KV/Txn"
                } else {
                    "/etcdserverpb.KV/Put"
                },
            )),
            Workload::Range { key, serializable } => {
                let req = RangeRequest {
                    key: key.clone().into_bytes(),
                    serializable: *serializable,
                    ..Default::default()
                };
                let mut body = Vec::new();
                h2wire::grpc_prefix(&mut body, req.encoded_len());
                req.encode(&mut body)
                    .map_err(|e| LoadError::Options(format!("encode range: {e}")))?;
                Ok((
                    Kind::Range {
                        key: key.clone(),
                        serializable: *serializable,
                        body,
                    },
                    "/etcdserverpb.KV/Range",
                ))
            }
            _ => Err(LoadError::Options(format!(
                "{} is not a kv workload",
                workload.name()
            ))),
        }
    }
}

/// One client of the connection.
struct Client {
    id: u64,
    rng: ChaCha8Rng,
    /// When its call was sent and, when recording, what it was.
    busy: Option<(Instant, Option<Op>)>,
}

/// The connection task's state apart from the socket.
struct Driver {
    kind: Kind,
    h2: H2Lite,
    clients: Vec<Client>,
    idle: Vec<usize>,
    budget: Arc<Budget>,
    record: bool,
    out: ClientResult,
    key: Vec<u8>,
    value: Vec<u8>,
    body: Vec<u8>,
}

/// Runs the clients `ids` of `workload` over a fresh connection to `endpoint`
/// (`host:port`) until the budget is spent, and returns what they measured.
pub(crate) async fn run(
    endpoint: &str,
    tcp: TcpStream,
    ids: Vec<u64>,
    workload: &Workload,
    budget: Arc<Budget>,
    seed: u64,
    record: bool,
) -> Result<ClientResult, LoadError> {
    let (kind, path) = Kind::of(workload)?;
    let block = h2wire::request_header_block(path, endpoint);
    let clients: Vec<Client> = ids
        .iter()
        .map(|&id| Client {
            id,
            rng: ChaCha8Rng::seed_from_u64(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            busy: None,
        })
        .collect();
    let mut d = Driver {
        kind,
        h2: H2Lite::new(vec![block]),
        idle: (0..clients.len()).rev().collect(),
        clients,
        budget,
        record,
        out: ClientResult {
            lat: Latencies::new()?,
            errors: 0,
            records: Vec::new(),
        },
        key: Vec::new(),
        value: Vec::new(),
        body: Vec::new(),
    };
    if let Err(why) = d.drive(&tcp).await {
        tracing::warn!(endpoint, %why, "connection failed; its calls count as errors");
        let now = Instant::now();
        for c in 0..d.clients.len() {
            if d.clients[c].busy.is_some() {
                d.fail(c, now);
            }
        }
    }
    Ok(d.out)
}

impl Driver {
    async fn drive(&mut self, tcp: &TcpStream) -> Result<(), String> {
        let mut inbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
        let mut tick = tokio::time::interval(Duration::from_millis(TIMEOUT_CHECK_MS));
        let mut now = Instant::now();
        let mut claiming = true;
        loop {
            while claiming && let Some(c) = self.idle.pop() {
                match self.budget.claim_at(now) {
                    Some(n) => self.send(c, n, now),
                    None => {
                        self.idle.push(c);
                        claiming = false;
                    }
                }
                // Calls refused at once (the server is going away) finish here.
                self.complete(now);
            }
            let out = self.h2.output();
            while !out.is_empty() {
                match tcp.try_write(out) {
                    Ok(n) => {
                        out.drain(..n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("write: {e}")),
                }
            }
            let unsent = !self.h2.output().is_empty();
            if !claiming && self.h2.in_flight() == 0 && !unsent {
                return Ok(());
            }
            let interest = if !unsent {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            tokio::select! {
                r = tcp.ready(interest) => {
                    r.map_err(|e| format!("poll: {e}"))?;
                }
                _ = tick.tick() => {
                    now = Instant::now();
                    self.expire(now);
                    continue;
                }
            }
            loop {
                inbuf.reserve(READ_CHUNK_BYTES);
                match tcp.try_read_buf(&mut inbuf) {
                    Ok(0) => return Err("server closed the connection".into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
            now = Instant::now();
            let used = self.h2.feed(&inbuf).map_err(|e| e.to_string())?;
            inbuf.drain(..used);
            self.complete(now);
        }
    }

    /// Builds and starts client `c`'s call number `n`.
    fn send(&mut self, c: usize, n: u64, now: Instant) {
        let client = &mut self.clients[c];
        self.body.clear();
        let op = match &self.kind {
            Kind::Put {
                key_bytes,
                value_bytes,
                key_space,
                order,
                txn,
            } => {
                let index = match order {
                    KeyOrder::Sequential => n % key_space,
                    KeyOrder::Random => client.rng.random_range(0..*key_space),
                };
                key_value(
                    &mut self.key,
                    &mut self.value,
                    index,
                    *key_bytes,
                    client.id,
                    n,
                );
                self.value.resize(self.value.len().max(*value_bytes), b'v');
                h2wire::grpc_put(&mut self.body, &self.key, &self.value, *txn);
                self.record.then(|| {
                    let (k, v) = (ascii(&self.key), ascii(&self.value));
                    if *txn {
                        record::txn_put_op(&k, &v)
                    } else {
                        record::put_op(&k, &v)
                    }
                })
            }
            Kind::Range {
                key,
                serializable,
                body,
            } => {
                self.body.extend_from_slice(body);
                self.record.then(|| record::range_op(key, *serializable))
            }
        };
        client.busy = Some((now, op));
        self.h2.start(c as u64, 0, &self.body);
    }

    /// Accounts every finished call and frees its client.
    fn complete(&mut self, now: Instant) {
        let done: Vec<Completion> = self.h2.take_completions().collect();
        for Completion { tag, result } in done {
            let c = tag as usize;
            let Some((sent, op)) = self.clients.get_mut(c).and_then(|cl| cl.busy.take()) else {
                continue;
            };
            self.idle.push(c);
            match result.and_then(|msg| self.decode(&msg)) {
                Ok((revision, result)) => {
                    self.out.lat.record(now.saturating_duration_since(sent));
                    if let Some(op) = op {
                        let rec = self.op_record(c, sent, Some(now), op);
                        self.out.records.push(OpRecord {
                            outcome: Outcome::Ok(OkOutcome { revision, result }),
                            ..rec
                        });
                    }
                }
                Err(e) => {
                    tracing::debug!(client = self.clients[c].id, error = %e, "request failed");
                    self.out.errors += 1;
                    if let Some(op) = op {
                        let rec = self.op_record(c, sent, None, op);
                        self.out.records.push(rec);
                    }
                }
            }
        }
    }

    /// The response's revision and the checker's view of its result.
    fn decode(&self, framed: &[u8]) -> Result<(i64, OpResult), CallError> {
        let msg = framed.get(h2wire::GRPC_PREFIX_BYTES..).unwrap_or_default();
        let bad = |_| CallError::Body("response does not decode");
        match &self.kind {
            Kind::Put { txn: false, .. } => {
                let r = PutResponse::decode(msg).map_err(bad)?;
                Ok((r.header.map_or(0, |h| h.revision), record::put_result()))
            }
            Kind::Put { txn: true, .. } => {
                let r = TxnResponse::decode(msg).map_err(bad)?;
                let rev = r.header.map_or(0, |h| h.revision);
                Ok((rev, record::txn_put_result(r.succeeded)))
            }
            Kind::Range { .. } => {
                let r = RangeResponse::decode(msg).map_err(bad)?;
                let rev = r.header.map_or(0, |h| h.revision);
                let kvs = if self.record {
                    r.kvs.iter().map(record::kv_from_pb).collect()
                } else {
                    Vec::new()
                };
                Ok((rev, record::range_result(kvs, r.count, r.more)))
            }
        }
    }

    /// A record of client `c`'s call with outcome unknown (callers set it when known).
    fn op_record(&self, c: usize, sent: Instant, ret: Option<Instant>, op: Op) -> OpRecord {
        let ns = |t: Instant| {
            u64::try_from(t.saturating_duration_since(self.budget.started).as_nanos())
                .unwrap_or(u64::MAX)
        };
        OpRecord {
            client: self.clients[c].id,
            call: ns(sent),
            ret: ret.map(ns),
            op,
            outcome: Outcome::Unknown,
        }
    }

    /// Counts client `c`'s call as failed (outcome unknown) and frees the client.
    fn fail(&mut self, c: usize, _now: Instant) {
        let Some((sent, op)) = self.clients[c].busy.take() else {
            return;
        };
        self.out.errors += 1;
        if let Some(op) = op {
            let rec = self.op_record(c, sent, None, op);
            self.out.records.push(rec);
        }
        self.idle.push(c);
    }

    /// Abandons calls older than the request timeout.
    fn expire(&mut self, now: Instant) {
        let limit = Duration::from_millis(REQUEST_TIMEOUT_MS);
        for c in 0..self.clients.len() {
            let late = matches!(self.clients[c].busy, Some((sent, _)) if now.saturating_duration_since(sent) > limit);
            if late {
                self.h2.cancel(c as u64);
                self.fail(c, now);
            }
        }
    }
}

/// Writes key `index` zero-padded to `key_bytes` digits and the value prefix naming
/// client `id` and request `n` (so every written value is unique).
fn key_value(
    key: &mut Vec<u8>,
    value: &mut Vec<u8>,
    index: u64,
    key_bytes: usize,
    id: u64,
    n: u64,
) {
    key.clear();
    value.clear();
    // Writes into a Vec cannot fail.
    let _ = write!(key, "{index:0key_bytes$}");
    let _ = write!(value, "c{id}r{n}-");
}
