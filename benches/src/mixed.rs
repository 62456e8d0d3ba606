//! The `mixed` workload: a small key space read and written by clients that outlive
//! faults, recorded as a checker history, so a live cluster whose members are killed,
//! paused and restarted can be judged for linearizability and lost writes.
//!
//! Each client loops: a linearizable get (sometimes serializable), a put of a value
//! unique to the client and request, a compare-and-set txn (compare the value the client
//! last saw for the key, or version 0 when it saw none; put on success, read on
//! failure), or a delete. Every request has a timeout; an error or timeout is recorded
//! as an unknown outcome (never as failed: the write may have applied) and moves the
//! client to the next endpoint. Connections are lazy tonic channels, reconnected after
//! a member restarts.
//!
//! After the duration every client stops and a final reader reads the whole key space
//! (linearizable) through every endpoint in turn, retrying until each answers or the
//! final deadline passes: those reads are what make a lost acknowledged write visible to
//! the checker. It does not measure throughput precisely (see `load`) and judges nothing
//! itself (see `detcd-check`).

use crate::load::{LoadError, url};
use crate::record;
use detcd_checker::history::{
    self as h, Compare as HCompare, CompareResult as HResult, CompareTarget as HTarget, OkOutcome,
    OpRecord, OpResult, Outcome,
};
use detcd_engine::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, compare,
    kv_client::KvClient, request_op,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

/// Prefix of every key the workload touches.
pub const KEY_PREFIX: &str = "rf/";
/// Range end of [`KEY_PREFIX`] (the prefix with its last byte incremented).
pub const KEY_PREFIX_END: &str = "rf0";
/// Time allowed to open one connection, in milliseconds.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Pause between final-read attempts through an endpoint that did not answer, in ms.
pub const FINAL_RETRY_PAUSE_MS: u64 = 200;
/// Pause of a client after a request without an answer, in milliseconds (a member that
/// is down refuses at once; without it the client would spin on refusals).
pub const ERROR_BACKOFF_MS: u64 = 100;
/// Share of requests, in percent, that are gets (a tenth of them serializable).
const GET_PERCENT: u32 = 40;
/// Share of requests, in percent, that are puts.
const PUT_PERCENT: u32 = 30;
/// Share of requests, in percent, that are compare-and-set txns (the rest: deletes).
const CAS_PERCENT: u32 = 22;

/// Options of a mixed run.
#[derive(Clone, Debug)]
pub struct MixedOpts {
    /// Endpoints (`host:port` or `http://host:port`).
    pub endpoints: Vec<String>,
    /// Concurrent clients, each with one request in flight.
    pub clients: usize,
    /// How long the clients run.
    pub duration: Duration,
    /// Distinct keys.
    pub keys: u64,
    /// Time allowed for one request, in milliseconds.
    pub op_timeout_ms: u64,
    /// Pause of a client between requests, in milliseconds.
    pub think_ms: u64,
    /// How long the final reads may retry in all, in milliseconds.
    pub final_read_timeout_ms: u64,
    /// Seed of the clients' choices.
    pub seed: u64,
    /// Where to write the history.
    pub record: Option<PathBuf>,
}

/// What a mixed run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MixedSummary {
    /// Requests answered with success.
    pub ok: u64,
    /// Requests with an unknown outcome (error or timeout), final reads included.
    pub unknown: u64,
    /// Answered requests per kind (get, put, cas, delete).
    pub ok_by_kind: BTreeMap<&'static str, u64>,
    /// Successful compare-and-set txns (the compare held).
    pub cas_succeeded: u64,
    /// Endpoints that answered the final read.
    pub final_reads_ok: usize,
    /// Endpoints that never answered it before the deadline.
    pub final_reads_missing: Vec<String>,
    /// Keys the last final read showed.
    pub final_keys: usize,
    /// Wall time of the client phase and the final reads, in seconds.
    pub elapsed_s: f64,
}

impl MixedSummary {
    /// Human-readable lines.
    pub fn to_text(&self) -> String {
        let kinds: Vec<String> = self
            .ok_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let mut s = format!(
            "mixed: {} ok ({}; cas succeeded {}), {} unknown, {:.1} s\n",
            self.ok,
            kinds.join(", "),
            self.cas_succeeded,
            self.unknown,
            self.elapsed_s
        );
        s += &format!(
            "final reads: {} endpoint(s) answered, {} key(s) shown",
            self.final_reads_ok, self.final_keys
        );
        if !self.final_reads_missing.is_empty() {
            s += &format!("; no answer from {}", self.final_reads_missing.join(", "));
        }
        s.push('\n');
        s
    }
}

/// The requests a client sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Get,
    Put,
    Cas,
    Delete,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Get => "get",
            Kind::Put => "put",
            Kind::Cas => "cas",
            Kind::Delete => "delete",
        }
    }

    fn pick(rng: &mut ChaCha8Rng) -> Kind {
        let p = rng.random_range(0..100);
        if p < GET_PERCENT {
            Kind::Get
        } else if p < GET_PERCENT + PUT_PERCENT {
            Kind::Put
        } else if p < GET_PERCENT + PUT_PERCENT + CAS_PERCENT {
            Kind::Cas
        } else {
            Kind::Delete
        }
    }
}

/// One request in both forms: what goes on the wire and what the history says.
enum Request {
    Range(RangeRequest),
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
}

/// A client's connections, one lazy channel per endpoint.
struct Conns {
    kv: Vec<KvClient<Channel>>,
    at: usize,
}

impl Conns {
    fn open(endpoints: &[String], first: usize) -> Result<Conns, LoadError> {
        let mut kv = Vec::new();
        for ep in endpoints {
            let ch = Endpoint::from_shared(url(ep))
                .map_err(|source| LoadError::Connect {
                    endpoint: ep.clone(),
                    source,
                })?
                .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
                .connect_lazy();
            kv.push(KvClient::new(ch));
        }
        Ok(Conns {
            at: first % kv.len().max(1),
            kv,
        })
    }

    fn next(&mut self) {
        self.at = (self.at + 1) % self.kv.len();
    }

    /// Sends `req` through the current endpoint; None on error or timeout.
    async fn call(&mut self, req: Request, timeout: Duration) -> Option<(i64, OpResult)> {
        let kv = &mut self.kv[self.at];
        let answer = tokio::time::timeout(timeout, async {
            match req {
                Request::Range(r) => kv
                    .range(r)
                    .await
                    .map(|r| record::range_result_from_pb(r.into_inner())),
                Request::Put(r) => kv.put(r).await.map(|r| {
                    let r = r.into_inner();
                    (r.header.map_or(0, |h| h.revision), record::put_result())
                }),
                Request::Delete(r) => kv
                    .delete_range(r)
                    .await
                    .map(|r| record::delete_result_from_pb(r.into_inner())),
                Request::Txn(r) => kv
                    .txn(r)
                    .await
                    .map(|r| record::txn_result_from_pb(r.into_inner())),
            }
        })
        .await;
        match answer {
            Ok(Ok(ok)) => Some(ok),
            Ok(Err(status)) => {
                tracing::debug!(%status, "request failed");
                None
            }
            Err(_) => None,
        }
    }
}

/// Nanoseconds since `start`.
fn ns_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Appends the record of one call; a None answer is an unknown outcome.
fn push(
    out: &mut Vec<OpRecord>,
    client: u64,
    call: u64,
    ret: u64,
    op: h::Op,
    answer: Option<(i64, OpResult)>,
) {
    let (ret, outcome) = match answer {
        Some((revision, result)) => (Some(ret), Outcome::Ok(OkOutcome { revision, result })),
        None => (None, Outcome::Unknown),
    };
    out.push(OpRecord {
        client,
        call,
        ret,
        op,
        outcome,
    });
}

/// What one client did.
struct ClientOut {
    records: Vec<OpRecord>,
    summary: MixedSummary,
}

/// One client: requests until `until`, each recorded.
async fn client(
    id: u64,
    opts: MixedOpts,
    start: Instant,
    until: Instant,
) -> Result<ClientOut, LoadError> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut conns = Conns::open(&opts.endpoints, id as usize)?;
    let timeout = Duration::from_millis(opts.op_timeout_ms);
    // The value this client last saw for each key (None: absent), for its CAS compares.
    let mut seen: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut out = ClientOut {
        records: Vec::new(),
        summary: MixedSummary::default(),
    };
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let kind = Kind::pick(&mut rng);
        let key = format!("{KEY_PREFIX}{:03}", rng.random_range(0..opts.keys.max(1)));
        let value = format!("c{id}r{n}");
        let (op, req) = match kind {
            Kind::Get => {
                let serializable = rng.random_ratio(1, 10);
                (
                    record::range_op(&key, serializable),
                    Request::Range(RangeRequest {
                        key: key.clone().into_bytes(),
                        serializable,
                        ..Default::default()
                    }),
                )
            }
            Kind::Put => (
                record::put_op(&key, &value),
                Request::Put(PutRequest {
                    key: key.clone().into_bytes(),
                    value: value.clone().into_bytes(),
                    ..Default::default()
                }),
            ),
            Kind::Delete => (
                h::Op::DeleteRange(h::DeleteRangeRequest {
                    key: key.clone(),
                    ..Default::default()
                }),
                Request::Delete(DeleteRangeRequest {
                    key: key.clone().into_bytes(),
                    ..Default::default()
                }),
            ),
            Kind::Cas => cas(&key, &value, seen.get(&key).cloned().flatten()),
        };
        let call = ns_since(start);
        let answer = conns.call(req, timeout).await;
        let ret = ns_since(start);
        match &answer {
            Some((_, result)) => {
                out.summary.ok += 1;
                *out.summary.ok_by_kind.entry(kind.name()).or_default() += 1;
                learn(&mut seen, &key, &value, kind, result, &mut out.summary);
            }
            None => {
                out.summary.unknown += 1;
                // The write may or may not have applied: what this client saw is stale.
                seen.remove(&key);
                conns.next();
            }
        }
        let failed = answer.is_none();
        push(&mut out.records, id, call, ret, op, answer);
        if failed {
            tokio::time::sleep(Duration::from_millis(ERROR_BACKOFF_MS)).await;
        } else if opts.think_ms > 0 {
            tokio::time::sleep(Duration::from_millis(opts.think_ms)).await;
        }
    }
    Ok(out)
}

/// The CAS txn: compare the key's value with `expected` (version 0 when it was absent
/// or never seen), put `value` on success, read the key on failure.
fn cas(key: &str, value: &str, expected: Option<String>) -> (h::Op, Request) {
    let (hist_target, target, target_union) = match &expected {
        Some(v) => (
            HTarget::Value(v.clone()),
            compare::CompareTarget::Value,
            compare::TargetUnion::Value(v.clone().into_bytes()),
        ),
        None => (
            HTarget::Version(0),
            compare::CompareTarget::Version,
            compare::TargetUnion::Version(0),
        ),
    };
    let op = h::Op::Txn(h::TxnRequest {
        compare: vec![HCompare {
            key: key.into(),
            range_end: None,
            target: hist_target,
            result: HResult::Equal,
        }],
        success: vec![record::put_op(key, value)],
        failure: vec![record::range_op(key, false)],
    });
    let req = TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: target as i32,
            key: key.as_bytes().to_vec(),
            target_union: Some(target_union),
            range_end: Vec::new(),
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })),
        }],
    };
    (op, Request::Txn(req))
}

/// Updates what the client knows of `key` from an answered request.
fn learn(
    seen: &mut BTreeMap<String, Option<String>>,
    key: &str,
    value: &str,
    kind: Kind,
    result: &OpResult,
    summary: &mut MixedSummary,
) {
    let shown = |r: &h::RangeResult| r.kvs.first().map(|kv| kv.value.clone());
    match (kind, result) {
        (Kind::Get, OpResult::Range(r)) => {
            seen.insert(key.into(), shown(r));
        }
        (Kind::Put, _) => {
            seen.insert(key.into(), Some(value.into()));
        }
        (Kind::Delete, _) => {
            seen.insert(key.into(), None);
        }
        (Kind::Cas, OpResult::Txn(t)) if t.succeeded => {
            summary.cas_succeeded += 1;
            seen.insert(key.into(), Some(value.into()));
        }
        (Kind::Cas, OpResult::Txn(t)) => match t.responses.first() {
            Some(OpResult::Range(r)) => {
                seen.insert(key.into(), shown(r));
            }
            _ => {
                seen.remove(key);
            }
        },
        _ => {}
    }
}

/// The final reads: the whole key space through every endpoint, each endpoint retried
/// in turn (so one that never answers does not use up the others' time) until it
/// answers or `deadline` passes.
async fn final_reads(
    opts: &MixedOpts,
    id: u64,
    start: Instant,
    deadline: Instant,
    out: &mut ClientOut,
) -> Result<(), LoadError> {
    let timeout = Duration::from_millis(opts.op_timeout_ms);
    let mut pending: Vec<(usize, Conns)> = Vec::new();
    for (i, ep) in opts.endpoints.iter().enumerate() {
        pending.push((i, Conns::open(std::slice::from_ref(ep), 0)?));
    }
    while !pending.is_empty() && Instant::now() < deadline {
        let mut left = Vec::new();
        for (i, mut conns) in pending {
            let op = h::Op::Range(h::RangeRequest {
                key: KEY_PREFIX.into(),
                range_end: Some(KEY_PREFIX_END.into()),
                ..Default::default()
            });
            let req = Request::Range(RangeRequest {
                key: KEY_PREFIX.as_bytes().to_vec(),
                range_end: KEY_PREFIX_END.as_bytes().to_vec(),
                ..Default::default()
            });
            let call = ns_since(start);
            let answer = conns.call(req, timeout).await;
            let ret = ns_since(start);
            if let Some((_, OpResult::Range(r))) = &answer {
                out.summary.ok += 1;
                out.summary.final_reads_ok += 1;
                out.summary.final_keys = r.kvs.len();
            } else {
                out.summary.unknown += 1;
                left.push((i, conns));
            }
            // Each endpoint's reads get their own client id: one request at a time each.
            push(&mut out.records, id + i as u64, call, ret, op, answer);
        }
        pending = left;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(FINAL_RETRY_PAUSE_MS)).await;
        }
    }
    for (i, _) in pending {
        out.summary
            .final_reads_missing
            .push(opts.endpoints[i].clone());
    }
    Ok(())
}

/// Runs the mixed workload, writes the history when asked, and returns the summary.
pub async fn run(opts: &MixedOpts) -> Result<MixedSummary, LoadError> {
    if opts.endpoints.is_empty() || opts.clients == 0 || opts.keys == 0 {
        return Err(LoadError::Options(
            "need at least one endpoint, client and key".into(),
        ));
    }
    let start = Instant::now();
    let until = start + opts.duration;
    let mut tasks = Vec::new();
    for id in 1..=opts.clients as u64 {
        tasks.push(tokio::spawn(client(id, opts.clone(), start, until)));
    }
    let mut records = Vec::new();
    let mut summary = MixedSummary::default();
    for t in tasks {
        let out = t
            .await
            .map_err(|e| LoadError::Options(format!("client task failed: {e}")))??;
        merge(&mut summary, &out.summary);
        records.extend(out.records);
    }
    let mut last = ClientOut {
        records: Vec::new(),
        summary: MixedSummary::default(),
    };
    let deadline = Instant::now() + Duration::from_millis(opts.final_read_timeout_ms);
    final_reads(opts, opts.clients as u64 + 1, start, deadline, &mut last).await?;
    merge(&mut summary, &last.summary);
    summary.final_reads_ok = last.summary.final_reads_ok;
    summary.final_reads_missing = last.summary.final_reads_missing;
    summary.final_keys = last.summary.final_keys;
    records.extend(last.records);
    summary.elapsed_s = start.elapsed().as_secs_f64();
    if let Some(path) = &opts.record {
        let source = format!("detcd-bench mixed seed {}", opts.seed);
        record::write_history(path, &source, &mut records)?;
    }
    Ok(summary)
}

fn merge(into: &mut MixedSummary, from: &MixedSummary) {
    into.ok += from.ok;
    into.unknown += from.unknown;
    into.cas_succeeded += from.cas_succeeded;
    for (k, n) in &from.ok_by_kind {
        *into.ok_by_kind.entry(k).or_default() += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_mix() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for _ in 0..10_000 {
            *counts.entry(Kind::pick(&mut rng).name()).or_default() += 1;
        }
        let share = |k: &str| counts.get(k).copied().unwrap_or(0) / 100;
        assert!((37..=43).contains(&share("get")), "{counts:?}");
        assert!((27..=33).contains(&share("put")), "{counts:?}");
        assert!((19..=25).contains(&share("cas")), "{counts:?}");
        assert!((5..=11).contains(&share("delete")), "{counts:?}");
    }

    #[test]
    fn cas_compares_the_seen_value_or_absence() {
        let (op, req) = cas("rf/001", "c1r2", Some("c3r4".into()));
        let Request::Txn(t) = req else {
            panic!("a txn")
        };
        assert_eq!(
            t.compare[0].target_union,
            Some(compare::TargetUnion::Value(b"c3r4".to_vec()))
        );
        let h::Op::Txn(ht) = op else { panic!("a txn") };
        assert_eq!(ht.compare[0].target, HTarget::Value("c3r4".into()));
        assert_eq!(ht.success, vec![record::put_op("rf/001", "c1r2")]);
        let (op, _) = cas("rf/001", "c1r2", None);
        let h::Op::Txn(ht) = op else { panic!("a txn") };
        assert_eq!(ht.compare[0].target, HTarget::Version(0));
    }

    #[test]
    fn a_failed_cas_learns_the_value_it_read() {
        let mut seen = BTreeMap::new();
        let mut s = MixedSummary::default();
        let read = OpResult::Txn(h::TxnResult {
            succeeded: false,
            responses: vec![record::range_result(
                vec![h::KeyValue {
                    key: "k".into(),
                    value: "v9".into(),
                    create_revision: 2,
                    mod_revision: 3,
                    version: 2,
                    lease: 0,
                }],
                1,
                false,
            )],
        });
        learn(&mut seen, "k", "mine", Kind::Cas, &read, &mut s);
        assert_eq!(seen.get("k"), Some(&Some("v9".to_string())));
        assert_eq!(s.cas_succeeded, 0);
        let won = OpResult::Txn(h::TxnResult {
            succeeded: true,
            responses: vec![record::put_result()],
        });
        learn(&mut seen, "k", "mine", Kind::Cas, &won, &mut s);
        assert_eq!(seen.get("k"), Some(&Some("mine".to_string())));
        assert_eq!(s.cas_succeeded, 1);
    }

    #[test]
    fn unreachable_endpoints_give_unknown_outcomes_not_errors() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.jsonl");
        // Port 1 on loopback is closed: every request fails at once.
        let opts = MixedOpts {
            endpoints: vec!["127.0.0.1:1".into()],
            clients: 2,
            duration: Duration::from_millis(200),
            keys: 4,
            op_timeout_ms: 100,
            think_ms: 20,
            final_read_timeout_ms: 300,
            seed: 3,
            record: Some(path.clone()),
        };
        let s = rt
            .block_on(run(&opts))
            .expect("a run with no answers still ends");
        assert_eq!(s.ok, 0);
        assert!(s.unknown > 2, "{s:?}");
        assert_eq!(s.final_reads_missing, vec!["127.0.0.1:1".to_string()]);
        let text = std::fs::read_to_string(&path).expect("history");
        let hist = h::History::parse(&text).expect("the checker parses it");
        assert_eq!(hist.ops.len() as u64, s.unknown);
        assert!(hist.ops.iter().all(|o| o.rec.outcome == Outcome::Unknown));
        assert!(hist.ops.iter().all(|o| o.rec.ret.is_none()));
    }
}
