//! Generates etcd histories for tests and benchmarks: a correct sequential execution on
//! the [`Store`] model, spread over clients with random overlapping call/return
//! intervals around each operation's linearization point, some writes of unknown
//! outcome (half of them never applied), watch streams fed from the revisions'
//! events; and [`mutate`], which breaks a history in one named way. Seeded, so every
//! history is reproducible. It is not a workload for a real server.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::etcd::store::{ERR_COMPACTED, Store};
use crate::history::{
    CompactRequest, Compare, CompareResult, CompareTarget, DeleteRangeRequest, Event, History,
    LeaseGrantRequest, LeaseGrantResult, LeaseIdRequest, OkOutcome, Op, OpEntry, OpRecord,
    OpResult, Outcome, PutRequest, RangeRequest, TxnRequest, WatchEventsRecord, WatchFilter,
    WatchProgressRecord, WatchRecord, WatchRequest, WatchResponse, WatchStream,
};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// RNG seed.
    pub seed: u64,
    /// Client operations.
    pub ops: usize,
    /// Clients.
    pub clients: usize,
    /// Distinct keys.
    pub keys: usize,
    /// Per-mille of writes with unknown outcome.
    pub unknown_write_permille: u32,
    /// Watch streams.
    pub watches: usize,
    /// Generate lease grants, leased puts and revokes.
    pub leases: bool,
    /// Generate compactions and historical reads.
    pub compactions: bool,
    /// Simulate partitions: in some periods a part of the clients is cut off, and all
    /// their writes get unknown outcomes; such a write never applies, applies at once,
    /// or applies up to [`DELAYED_OPS_MAX`] operations later. Their reads fail.
    pub partitions: bool,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 0,
            ops: 1000,
            clients: 8,
            keys: 10,
            unknown_write_permille: 10,
            watches: 2,
            leases: true,
            compactions: true,
            partitions: false,
        }
    }
}

/// One way to break a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// A linearizable read returns an older revision's state.
    StaleRead,
    /// An acknowledged put's effect disappears (later reads miss it).
    LostWrite,
    /// Two responses of a watch stream swap places.
    ReorderWatch,
    /// An acknowledged write reports another write's revision.
    DuplicateRevision,
}

/// Linearization-time step between operations, in time units.
const LIN_STEP_MAX: u64 = 10;
/// Watch delivery delay after a revision, in time units.
const WATCH_DELAY: u64 = 3;
/// Operations per partition period (with `partitions`).
pub const PARTITION_PERIOD_OPS: usize = 200;
/// How many operations later a cut-off write may still apply (with `partitions`).
pub const DELAYED_OPS_MAX: usize = 100;

/// Generates a history that is correct by construction.
pub fn generate(cfg: &GenConfig) -> History {
    Gen::new(cfg, None).run()
}

/// Generates a history and breaks it with `m`; None if `m` found nothing to break.
pub fn generate_mutated(cfg: &GenConfig, m: Mutation) -> Option<History> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed);
    match m {
        Mutation::LostWrite => {
            let lose = cfg.ops / 2 + rng.random_range(0..cfg.ops.max(4) / 4);
            let h = Gen::new(cfg, Some(lose)).run();
            Some(h)
        }
        _ => {
            let mut h = generate(cfg);
            mutate(&mut h, m, &mut rng).then_some(h)
        }
    }
}

struct Gen<'a> {
    cfg: &'a GenConfig,
    rng: ChaCha8Rng,
    store: Store,
    /// Linearization time of each revision.
    rev_time: Vec<u64>,
    busy_until: Vec<u64>,
    /// (lease id, alive)
    leases: Vec<(i64, bool)>,
    compacted: i64,
    lose_at: Option<usize>,
    force_read: Option<String>,
    /// Clients cut off in the current partition period.
    cut_off: Vec<bool>,
    /// Cut-off writes still to apply: (operation index to apply at, request).
    delayed: Vec<(usize, Op)>,
}

impl<'a> Gen<'a> {
    fn new(cfg: &'a GenConfig, lose_at: Option<usize>) -> Self {
        Gen {
            cfg,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            store: Store::new(),
            rev_time: vec![0, 0],
            busy_until: vec![0; cfg.clients.max(1)],
            leases: Vec::new(),
            compacted: 0,
            lose_at,
            force_read: None,
            cut_off: vec![false; cfg.clients.max(1)],
            delayed: Vec::new(),
        }
    }

    fn key(&mut self) -> String {
        format!("k{:03}", self.rng.random_range(0..self.cfg.keys.max(1)))
    }

    fn pick_op(&mut self, i: usize) -> Op {
        if let Some(k) = self.force_read.take() {
            return Op::Range(RangeRequest {
                key: k,
                ..Default::default()
            });
        }
        let value = format!("v{i}");
        let roll = self.rng.random_range(0..100);
        let key = self.key();
        match roll {
            0..35 => Op::Put(PutRequest {
                key,
                value,
                lease: 0,
                prev_kv: self.rng.random_bool(0.3),
            }),
            35..65 => Op::Range(RangeRequest {
                key,
                serializable: self.rng.random_bool(0.05),
                ..Default::default()
            }),
            65..70 => Op::Range(RangeRequest {
                // A prefix of up to ten keys: "k12" covers k120..k129.
                key: key[..3].to_owned(),
                range_end: Some(prefix_end(&key[..3])),
                limit: if self.rng.random_bool(0.2) { 3 } else { 0 },
                keys_only: self.rng.random_bool(0.1),
                ..Default::default()
            }),
            70..75 => Op::DeleteRange(DeleteRangeRequest {
                key,
                range_end: None,
                prev_kv: self.rng.random_bool(0.5),
            }),
            75..90 => {
                let ver = self
                    .store
                    .get_at(&key, self.store.rev())
                    .map_or(0, |k| k.version);
                let guess = if self.rng.random_bool(0.7) {
                    ver
                } else {
                    ver + 1
                };
                Op::Txn(TxnRequest {
                    compare: vec![Compare {
                        key: key.clone(),
                        range_end: None,
                        target: CompareTarget::Version(guess),
                        result: CompareResult::Equal,
                    }],
                    success: vec![Op::Put(PutRequest {
                        key: key.clone(),
                        value,
                        lease: 0,
                        prev_kv: false,
                    })],
                    failure: vec![Op::Range(RangeRequest {
                        key,
                        ..Default::default()
                    })],
                })
            }
            90..93 if self.cfg.leases => Op::LeaseGrant(LeaseGrantRequest { id: 0, ttl: 60 }),
            93..96 if self.cfg.leases => {
                let alive: Vec<i64> = self.leases.iter().filter(|l| l.1).map(|l| l.0).collect();
                let lease = if alive.is_empty() {
                    0
                } else {
                    alive[self.rng.random_range(0..alive.len())]
                };
                Op::Put(PutRequest {
                    key,
                    value,
                    lease,
                    prev_kv: false,
                })
            }
            96..98 if self.cfg.leases && self.leases.iter().any(|l| l.1) => {
                let alive: Vec<i64> = self.leases.iter().filter(|l| l.1).map(|l| l.0).collect();
                Op::LeaseRevoke(LeaseIdRequest {
                    id: alive[self.rng.random_range(0..alive.len())],
                })
            }
            98 if self.cfg.compactions => Op::Compact(CompactRequest {
                revision: (self.store.rev() - 20).max(self.compacted).max(1),
            }),
            99 if self.cfg.compactions => Op::Range(RangeRequest {
                key,
                revision: self.rng.random_range(1..=self.store.rev()),
                ..Default::default()
            }),
            _ => Op::Range(RangeRequest {
                key,
                ..Default::default()
            }),
        }
    }

    /// Executes on the model; returns the outcome (header revision and result).
    fn exec(&mut self, op: &Op) -> Outcome {
        let res = match op {
            Op::LeaseGrant(_) => {
                let id = self.leases.len() as i64 + 1;
                self.store.grant(id);
                self.leases.push((id, true));
                Ok(OpResult::LeaseGrant(LeaseGrantResult { id, ttl: 60 }))
            }
            Op::LeaseRevoke(l) => {
                self.store.revoke(l.id);
                if let Some(x) = self.leases.iter_mut().find(|x| x.0 == l.id) {
                    x.1 = false;
                }
                Ok(OpResult::LeaseRevoke {})
            }
            Op::Compact(c) => {
                self.compacted = self.compacted.max(c.revision);
                Ok(OpResult::Compact {})
            }
            Op::Range(q) if q.revision > 0 && q.revision < self.compacted => {
                Err(ERR_COMPACTED.to_string())
            }
            op => self.store.exec(op),
        };
        match res {
            Ok(result) => Outcome::Ok(OkOutcome {
                revision: self.store.rev(),
                result,
            }),
            Err(e) => Outcome::Fail(e),
        }
    }

    /// Starts or ends partition periods and applies delayed writes due at op `i`.
    fn partition_step(&mut self, i: usize) {
        if i.is_multiple_of(PARTITION_PERIOD_OPS) {
            let on = self.rng.random_bool(0.5);
            for c in 0..self.cut_off.len() {
                // A minority at most: the rest can still make progress.
                self.cut_off[c] = on && c < self.cut_off.len() / 2 + 1 && self.rng.random_bool(0.6);
            }
        }
        let due: Vec<Op> = {
            let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
                .into_iter()
                .partition(|d| d.0 <= i);
            self.delayed = later;
            now.into_iter().map(|d| d.1).collect()
        };
        for op in due {
            // Leases and compaction are left to the regular path.
            if matches!(op, Op::Put(_) | Op::DeleteRange(_) | Op::Txn(_)) {
                let _ = self.store.exec(&op);
            }
        }
    }

    fn run(mut self) -> History {
        let mut h = History::default();
        let mut lin: u64 = 0;
        let spread = (self.cfg.clients as u64).max(1) * LIN_STEP_MAX;
        for i in 0..self.cfg.ops {
            lin += self.rng.random_range(1..=LIN_STEP_MAX);
            if self.cfg.partitions {
                self.partition_step(i);
            }
            let free: Vec<usize> = (0..self.busy_until.len())
                .filter(|&c| self.busy_until[c] < lin)
                .collect();
            let client = if free.is_empty() {
                let c = (0..self.busy_until.len())
                    .min_by_key(|&c| self.busy_until[c])
                    .unwrap_or(0);
                lin = self.busy_until[c] + 1;
                c
            } else {
                free[self.rng.random_range(0..free.len())]
            };
            let lo = (self.busy_until[client] + 1).max(lin.saturating_sub(spread));
            let call = self.rng.random_range(lo..=lin);
            let ret = lin + self.rng.random_range(1..=spread);
            self.busy_until[client] = ret;
            let op = self.pick_op(i);
            let is_write = crate::etcd::store::may_write(&op);
            let mark = self.store.mark();
            let mut outcome = self.exec(&op);
            let mut lost_now = false;
            if self.lose_at.is_some_and(|l| i >= l)
                && matches!(op, Op::Put(_))
                && matches!(outcome, Outcome::Ok(_))
            {
                // The write is acknowledged but its effect is lost; later writes still
                // get fresh revisions.
                self.store.rollback(mark);
                self.store.skip_revision();
                self.lose_at = None;
                lost_now = true;
                if let Op::Put(p) = &op {
                    self.force_read = Some(p.key.clone());
                }
            }
            let mut rec_ret = Some(ret);
            let kv_op = matches!(
                op,
                Op::Range(_) | Op::Put(_) | Op::DeleteRange(_) | Op::Txn(_)
            );
            if self.cut_off[client] && kv_op && !lost_now {
                // The request never reached a majority: writes are unknown (and apply
                // never, now, or later), reads fail.
                rec_ret = None;
                if is_write {
                    outcome = Outcome::Unknown;
                    match self.rng.random_range(0..3) {
                        0 => self.store.rollback(mark),
                        1 => {}
                        _ => {
                            self.store.rollback(mark);
                            let at = i + self.rng.random_range(1..=DELAYED_OPS_MAX);
                            self.delayed.push((at, op.clone()));
                        }
                    }
                } else {
                    self.store.rollback(mark);
                    outcome = Outcome::Fail("connect: transport error".into());
                    rec_ret = Some(ret);
                }
            } else if is_write
                && !lost_now
                && self.rng.random_range(0..1000) < self.cfg.unknown_write_permille
            {
                outcome = Outcome::Unknown;
                rec_ret = None;
                if self.rng.random_bool(0.5) {
                    self.store.rollback(mark);
                }
            }
            while (self.rev_time.len() as i64) <= self.store.rev() {
                self.rev_time.push(lin);
            }
            h.ops.push(OpEntry {
                line: 0,
                rec: OpRecord {
                    client: client as u64,
                    call,
                    ret: rec_ret,
                    op,
                    outcome,
                },
            });
        }
        self.add_watches(&mut h);
        number_lines(&mut h);
        h
    }

    fn add_watches(&mut self, h: &mut History) {
        let last = self.store.rev();
        for w in 0..self.cfg.watches {
            // Watches start at or above the final compaction, so none is cancelled.
            let start = if w == 0 {
                1
            } else {
                self.rng.random_range(1..=last.max(1))
            };
            let start = if w == 0 {
                start
            } else {
                start.max(self.compacted).min(last.max(1))
            };
            let req = WatchRequest {
                key: if w % 2 == 0 {
                    "k".into()
                } else {
                    "k000".into()
                },
                range_end: if w % 2 == 0 { Some("l".into()) } else { None },
                start_revision: start,
                prev_kv: w % 3 == 0,
                progress_notify: true,
                filters: if w % 4 == 3 {
                    vec![WatchFilter::NoDelete]
                } else {
                    vec![]
                },
            };
            let client = (self.cfg.clients + w) as u64;
            let mut stream = WatchStream {
                line: 0,
                create: WatchRecord {
                    client,
                    watch: 1,
                    call: self.rev_time[start as usize],
                    created_revision: None,
                    request: req.clone(),
                },
                responses: Vec::new(),
            };
            for r in start.max(2)..=last {
                let evs: Vec<Event> = self
                    .store
                    .events(r)
                    .iter()
                    .filter(|e| {
                        crate::etcd::store::in_range(&e.kv.key, &req.key, req.range_end.as_deref())
                            && !(req.filters.contains(&WatchFilter::NoDelete)
                                && e.kind == crate::history::EventKind::Delete)
                    })
                    .map(|e| Event {
                        kind: e.kind,
                        kv: e.kv.clone(),
                        prev_kv: if req.prev_kv { e.prev_kv.clone() } else { None },
                    })
                    .collect();
                let time = self.rev_time[r as usize] + WATCH_DELAY;
                if !evs.is_empty() {
                    stream.responses.push((
                        0,
                        WatchResponse::Events(WatchEventsRecord {
                            client,
                            watch: 1,
                            time,
                            revision: r,
                            events: evs,
                        }),
                    ));
                } else if r % 50 == 0 {
                    stream.responses.push((
                        0,
                        WatchResponse::Progress(WatchProgressRecord {
                            client,
                            watch: 1,
                            time,
                            revision: r,
                        }),
                    ));
                }
            }
            h.watches.push(stream);
        }
    }
}

/// The end of the range of keys starting with `prefix` (its last byte plus one).
fn prefix_end(prefix: &str) -> String {
    let mut b = prefix.as_bytes().to_vec();
    if let Some(last) = b.last_mut() {
        *last += 1;
    }
    String::from_utf8(b).unwrap_or_else(|_| "\0".into())
}

/// Gives records the line numbers they would have in a written file.
pub fn number_lines(h: &mut History) {
    let mut line = 1;
    for o in &mut h.ops {
        o.line = line;
        line += 1;
    }
    for w in &mut h.watches {
        w.line = line;
        line += 1;
        for r in &mut w.responses {
            r.0 = line;
            line += 1;
        }
    }
}

/// Breaks `h` in the way `m` names (not LostWrite, which needs the generator: use
/// [`generate_mutated`]); false if nothing suitable was found.
pub fn mutate(h: &mut History, m: Mutation, rng: &mut ChaCha8Rng) -> bool {
    match m {
        Mutation::StaleRead => stale_read(h, rng),
        Mutation::ReorderWatch => {
            for w in &mut h.watches {
                let evs: Vec<usize> = (0..w.responses.len())
                    .filter(|&i| matches!(w.responses[i].1, WatchResponse::Events(_)))
                    .collect();
                if evs.len() >= 2 {
                    let k = rng.random_range(0..evs.len() - 1);
                    let (a, b) = (evs[k], evs[k + 1]);
                    let ra = w.responses[a].1.clone();
                    w.responses[a].1 = w.responses[b].1.clone();
                    w.responses[b].1 = ra;
                    return true;
                }
            }
            false
        }
        Mutation::DuplicateRevision => {
            let writes: Vec<usize> = (0..h.ops.len())
                .filter(|&i| match &h.ops[i].rec.outcome {
                    Outcome::Ok(ok) => crate::etcd::store::claims_write(&ok.result),
                    _ => false,
                })
                .collect();
            if writes.len() < 2 {
                return false;
            }
            let k = rng.random_range(0..writes.len() - 1);
            let rev = match &h.ops[writes[k]].rec.outcome {
                Outcome::Ok(ok) => ok.revision,
                _ => return false,
            };
            if let Outcome::Ok(ok) = &mut h.ops[writes[k + 1]].rec.outcome {
                ok.revision = rev;
            }
            true
        }
        Mutation::LostWrite => false,
    }
}

/// Makes a linearizable single-key read return the state from before a write that
/// completed before the read was invoked.
fn stale_read(h: &mut History, rng: &mut ChaCha8Rng) -> bool {
    // Writes by return time: (ret, revision, key).
    let mut writes: Vec<(u64, i64, String)> = Vec::new();
    for o in &h.ops {
        if let (Outcome::Ok(ok), Op::Put(p), Some(ret)) = (&o.rec.outcome, &o.rec.op, o.rec.ret) {
            writes.push((ret, ok.revision, p.key.clone()));
        }
    }
    let reads: Vec<usize> = (0..h.ops.len())
        .filter(|&i| {
            let o = &h.ops[i].rec;
            matches!((&o.op, &o.outcome), (Op::Range(q), Outcome::Ok(_))
                if q.range_end.is_none() && q.revision == 0 && !q.serializable)
        })
        .collect();
    let start = if reads.is_empty() {
        0
    } else {
        rng.random_range(0..reads.len())
    };
    for k in 0..reads.len() {
        let i = reads[(start + k) % reads.len()];
        let o = &h.ops[i].rec;
        let Op::Range(q) = &o.op else { continue };
        // A put to this key that returned before the read was invoked.
        let Some(w) = writes
            .iter()
            .filter(|w| w.0 < o.call && w.2 == q.key)
            .max_by_key(|w| w.1)
        else {
            continue;
        };
        let stale_rev = w.1 - 1;
        let Outcome::Ok(ok) = &o.outcome else {
            continue;
        };
        if ok.revision < w.1 || stale_rev < 1 {
            continue;
        }
        // The state just before that put, read from the history's own puts.
        let old = h
            .ops
            .iter()
            .filter_map(|x| match (&x.rec.op, &x.rec.outcome) {
                (Op::Range(qq), Outcome::Ok(okk))
                    if qq.key == q.key && qq.range_end.is_none() && okk.revision == stale_rev =>
                {
                    Some(okk.result.clone())
                }
                _ => None,
            })
            .next();
        let result = old.unwrap_or(OpResult::Range(Default::default()));
        if let Outcome::Ok(ok) = &mut h.ops[i].rec.outcome {
            ok.revision = stale_rev;
            ok.result = result;
        }
        return true;
    }
    false
}
