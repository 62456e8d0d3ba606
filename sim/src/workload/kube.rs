//! A Kubernetes-like client: objects under `kube/<i>` updated optimistically (read,
//! then a Txn guarded by the mod_revision read; creates guarded by create_revision 0;
//! guarded deletes), paginated lists (`limit` pages, later pages pinned to the first
//! page's revision, as list-watch does) and a periodic Compact a fixed distance behind
//! the newest revision seen. Watches from a revision are the [`super::watch`] profile's
//! job. Everything is recorded; nothing is retried or checked here.

use std::time::Duration;

use detcd_checker::history::{self as h, Op, OpResult, Outcome};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use super::Recorder;
use super::cas::{get, read_kv, unchanged};
use super::kv::{BACKOFF_MS, Connections, KvClientConfig, THINK_MS, call_op};
use crate::trace::TraceLog;

/// The prefix of every object key.
pub const PREFIX: &str = "kube/";
/// The end of the object key range (`PREFIX` with its last byte incremented).
pub const PREFIX_END: &str = "kube0";
/// Objects per list page.
pub const PAGE_LIMIT: i64 = 3;
/// Pages per list at most (a list stops early rather than loop under churn).
pub const PAGES_MAX: usize = 20;
/// How often a client compacts, simulated ms.
pub const COMPACT_EVERY_MS: u64 = 2_500;
/// How many revisions behind the newest seen revision a compaction cuts.
pub const COMPACT_LAG_REVISIONS: i64 = 30;

fn revision_of(outcome: &Outcome) -> Option<i64> {
    match outcome {
        Outcome::Ok(ok) => Some(ok.revision),
        _ => None,
    }
}

/// The state one Kubernetes-like client carries between requests.
struct Client {
    cfg: KvClientConfig,
    rng: ChaCha8Rng,
    conns: Connections,
    recorder: Recorder,
    trace: TraceLog,
    seq: u64,
    newest_revision: i64,
}

impl Client {
    async fn send(&mut self, op: Op) -> Outcome {
        let endpoint = self.rng.random_range(1..=self.cfg.members.max(1));
        let outcome = call_op(
            self.cfg.client,
            endpoint,
            op,
            self.cfg.start,
            &mut self.conns,
            &self.recorder,
            &self.trace,
        )
        .await;
        if let Some(r) = revision_of(&outcome) {
            self.newest_revision = self.newest_revision.max(r);
        }
        outcome
    }

    /// Read, then create / update / delete guarded by what was read.
    async fn update(&mut self, delete: bool) -> bool {
        let key = format!("{PREFIX}{}", self.rng.random_range(0..self.cfg.keys.max(1)));
        let read = self.send(get(&key)).await;
        let Some(seen) = read_kv(&read) else {
            return false;
        };
        self.seq += 1;
        let write = match (&seen, delete) {
            (Some(_), true) => Op::DeleteRange(h::DeleteRangeRequest {
                key: key.clone(),
                range_end: None,
                prev_kv: false,
            }),
            _ => Op::Put(h::PutRequest {
                key: key.clone(),
                value: format!("c{}.{}", self.cfg.client, self.seq),
                lease: 0,
                prev_kv: false,
            }),
        };
        let txn = Op::Txn(h::TxnRequest {
            compare: vec![unchanged(&key, seen.as_ref())],
            success: vec![write],
            failure: vec![get(&key)],
        });
        matches!(self.send(txn).await, Outcome::Ok(_))
    }

    /// A paginated list of every object, later pages at the first page's revision.
    async fn list(&mut self) -> bool {
        let mut from = PREFIX.to_owned();
        let mut at_revision = 0;
        for _ in 0..PAGES_MAX {
            let page = Op::Range(h::RangeRequest {
                key: from.clone(),
                range_end: Some(PREFIX_END.to_owned()),
                revision: at_revision,
                limit: PAGE_LIMIT,
                ..h::RangeRequest::default()
            });
            let outcome = self.send(page).await;
            let Outcome::Ok(ok) = &outcome else {
                return false;
            };
            let OpResult::Range(r) = &ok.result else {
                return false;
            };
            if at_revision == 0 {
                at_revision = ok.revision;
            }
            match r.kvs.last() {
                Some(last) if r.more => from = format!("{}\u{0}", last.key),
                _ => return true,
            }
        }
        true
    }

    async fn compact(&mut self) -> bool {
        let revision = self.newest_revision - COMPACT_LAG_REVISIONS;
        if revision <= 1 {
            return true;
        }
        let op = Op::Compact(h::CompactRequest { revision });
        matches!(self.send(op).await, Outcome::Ok(_))
    }
}

/// Runs one Kubernetes-like client until `cfg.stop`.
pub async fn run_client(cfg: KvClientConfig, recorder: Recorder, trace: TraceLog) {
    let stop = cfg.stop;
    let mut next_compact = Instant::now() + Duration::from_millis(COMPACT_EVERY_MS);
    let conns = Connections::new(cfg.reach.clone());
    let mut c = Client {
        rng: ChaCha8Rng::seed_from_u64(cfg.seed),
        cfg,
        conns,
        recorder,
        trace,
        seq: 0,
        newest_revision: 0,
    };
    while Instant::now() < stop {
        let ok = if Instant::now() >= next_compact {
            next_compact += Duration::from_millis(COMPACT_EVERY_MS);
            c.compact().await
        } else {
            match c.rng.random_range(0..100u32) {
                0..55 => c.update(false).await,
                55..70 => c.update(true).await,
                _ => c.list().await,
            }
        };
        let pause = if ok { THINK_MS } else { BACKOFF_MS };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}
