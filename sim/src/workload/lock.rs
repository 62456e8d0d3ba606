//! Locks and leader election through the `v3lockpb.Lock` and `v3electionpb.Election`
//! services. Each session grants a lease with an id the client picks (recorded), then:
//!
//! - lock: Lock `lock/l<n>` with the lease (keeping it alive while waiting), a guarded
//!   write (one Txn: if our key still exists, read every key queued under the lock and
//!   put a unique value on `lockdata/l<n>`), Unlock;
//! - election: Campaign on `elect/e0` with a unique value, Proclaim a new one, Leader,
//!   the first answer of Observe, a guarded write like the lock's (on `electdata/e0`),
//!   Resign;
//!
//! and finally revokes the lease (recorded). The history gets every KV request the
//! client sends itself, plus the writes the services make on the client's behalf as
//! operations of unknown outcome, in the exact form the server applies them: the
//! session key's creation (a put with the lease; the key is new because each lease
//! serves one session), Proclaim's guarded put, and the deletes of Unlock, Resign and a
//! failed Lock or Campaign (the server drops the key of a call that fails). Those
//! writes consume revisions; unknown outcome lets the checker place them (or not) where
//! the revisions and later reads say. A service call's own answer is not a KV result
//! and is not recorded as one.
//!
//! Each guarded write that went through becomes a [`Hold`] for the mutual-exclusion
//! check ([`super::lock_check`]). Lease expiry timing is not judged here.

use std::time::Duration;

use detcd_checker::history::{self as h, CompareResult, CompareTarget, Op, OpRecord, OpResult};
use detcd_checker::history::{OkOutcome, Outcome};
use detcd_engine::pb::v3electionpb::election_client::ElectionClient;
use detcd_engine::pb::v3electionpb::{
    CampaignRequest, LeaderKey, LeaderRequest, ProclaimRequest, ResignRequest,
};
use detcd_engine::pb::v3lockpb::lock_client::LockClient;
use detcd_engine::pb::v3lockpb::{LockRequest, UnlockRequest};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::Recorder;
use super::kv::{BACKOFF_MS, Connections, KvClientConfig, OP_TIMEOUT_MS, call_op, connect, since};
use super::lock_check::Hold;
use crate::trace::TraceLog;

/// The TTL of every session lease, seconds.
pub const SESSION_TTL_S: i64 = 5;
/// Pause between keep-alives while waiting or holding, simulated ms.
pub const KEEP_ALIVE_EVERY_MS: u64 = 1_000;
/// How long a Lock or Campaign may wait for the sessions queued before it.
pub const ACQUIRE_TIMEOUT_MS: u64 = 6_000;
/// Longest pause while holding a lock, before the guarded write, simulated ms.
pub const HOLD_MS_MAX: u64 = 400;
/// Lock names `lock/l0..`; few, so clients contend.
pub const LOCK_NAMES: u64 = 2;
/// The election every election session campaigns in.
pub const ELECTION_NAME: &str = "elect/e0";

/// One client's connections and identity, shared by its steps.
struct Session<'a> {
    cfg: &'a KvClientConfig,
    recorder: &'a Recorder,
    trace: &'a TraceLog,
    conns: Connections,
    rng: ChaCha8Rng,
}

impl Session<'_> {
    /// A random member.
    fn member(&mut self) -> u64 {
        self.rng.random_range(1..=self.cfg.members.max(1))
    }

    /// Sends a KV or lease request to a random member and records it.
    async fn op(&mut self, op: Op) -> Outcome {
        let endpoint = self.member();
        let c = self.cfg;
        call_op(
            c.client,
            endpoint,
            op,
            c.start,
            &mut self.conns,
            self.recorder,
            self.trace,
        )
        .await
    }

    /// Records a write the server may make on this client's behalf.
    fn on_behalf(&self, call: u64, op: Op) {
        self.trace.push(format!(
            "{call} c{} on behalf: {}",
            self.cfg.client,
            serde_json::to_string(&op).unwrap_or_default()
        ));
        self.recorder.record(OpRecord {
            client: self.cfg.client,
            call,
            ret: None,
            op,
            outcome: Outcome::Unknown,
        });
    }

    /// A channel to `endpoint` (reused if open).
    async fn channel(&mut self, endpoint: u64) -> Option<Channel> {
        if let Some(c) = self.conns.channel(endpoint) {
            return Some(c);
        }
        let timeout = Duration::from_millis(OP_TIMEOUT_MS);
        match tokio::time::timeout(timeout, connect(endpoint)).await {
            Ok(Ok(c)) => {
                self.conns.keep_channel(endpoint, c.clone());
                Some(c)
            }
            _ => None,
        }
    }

    fn note(&self, what: &str) {
        let at = since(self.cfg.start);
        self.trace.push(format!("{at} c{} {what}", self.cfg.client));
    }

    /// Runs `call` (a service call that may wait) while keeping `lease` alive, up to
    /// [`ACQUIRE_TIMEOUT_MS`]. `None` on timeout.
    async fn keeping_alive<T>(
        &mut self,
        lease: i64,
        call: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Option<Result<T, tonic::Status>> {
        let deadline = Instant::now() + Duration::from_millis(ACQUIRE_TIMEOUT_MS);
        tokio::pin!(call);
        loop {
            let tick = Instant::now() + Duration::from_millis(KEEP_ALIVE_EVERY_MS);
            tokio::select! {
                biased;
                result = &mut call => return Some(result),
                () = tokio::time::sleep_until(deadline) => return None,
                () = tokio::time::sleep_until(tick) => {
                    self.op(Op::LeaseKeepAlive(h::LeaseIdRequest { id: lease })).await;
                }
            }
        }
    }

    /// The guarded write: if `key` still has its session (its create revision matches
    /// `compare`), read every key under `prefix` and put a unique value on `data_key`.
    /// A [`Hold`] when it went through.
    async fn guarded_write(&mut self, guard: GuardedWrite<'_>) -> Option<Hold> {
        if guard.acquired <= 0 {
            // An answer without a header revision proves nothing about order.
            self.note(&format!("{} acquired without a revision", guard.key));
            return None;
        }
        let range_end = prefix_end(guard.prefix);
        let txn = Op::Txn(h::TxnRequest {
            compare: vec![h::Compare {
                key: guard.key.to_owned(),
                range_end: None,
                target: CompareTarget::Create(guard.create_revision.max(0)),
                result: if guard.create_revision > 0 {
                    CompareResult::Equal
                } else {
                    CompareResult::Greater
                },
            }],
            success: vec![
                Op::Range(h::RangeRequest {
                    key: guard.prefix.to_owned(),
                    range_end: Some(range_end),
                    ..h::RangeRequest::default()
                }),
                Op::Put(h::PutRequest {
                    key: guard.data_key.to_owned(),
                    value: guard.value.to_owned(),
                    lease: 0,
                    prev_kv: false,
                }),
            ],
            failure: Vec::new(),
        });
        let Outcome::Ok(OkOutcome {
            revision,
            result: OpResult::Txn(result),
        }) = self.op(txn).await
        else {
            return None;
        };
        if !result.succeeded {
            self.note(&format!("lost {} before the guarded write", guard.key));
            return None;
        }
        let first_in_line = match result.responses.first() {
            Some(OpResult::Range(range)) => range
                .kvs
                .iter()
                .min_by_key(|kv| kv.create_revision)
                .map(|kv| kv.key.clone()),
            _ => None,
        };
        Some(Hold {
            name: guard.name.to_owned(),
            client: self.cfg.client,
            key: guard.key.to_owned(),
            acquired: guard.acquired,
            wrote: revision,
            first_in_line,
        })
    }
}

/// What a guarded write guards and writes.
struct GuardedWrite<'a> {
    name: &'a str,
    prefix: &'a str,
    key: &'a str,
    /// The session key's create revision, or 0: only that it exists.
    create_revision: i64,
    acquired: i64,
    data_key: &'a str,
    value: &'a str,
}

/// The range end selecting every key that starts with `prefix` (ASCII prefixes here).
fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut() {
        *last = last.saturating_add(1);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn delete(key: &str) -> Op {
    Op::DeleteRange(h::DeleteRangeRequest {
        key: key.to_owned(),
        range_end: None,
        prev_kv: false,
    })
}

fn session_put(key: &str, value: &str, lease: i64) -> Op {
    Op::Put(h::PutRequest {
        key: key.to_owned(),
        value: value.to_owned(),
        lease,
        prev_kv: false,
    })
}

/// Runs one lock/election client until `cfg.stop`.
pub async fn run_client(cfg: KvClientConfig, recorder: Recorder, trace: TraceLog) {
    let mut s = Session {
        cfg: &cfg,
        recorder: &recorder,
        trace: &trace,
        conns: Connections::new(cfg.reach.clone()),
        rng: ChaCha8Rng::seed_from_u64(cfg.seed),
    };
    let mut seq: u64 = 0;
    while Instant::now() < cfg.stop {
        seq += 1;
        let lease = i64::try_from((cfg.client << 24) | seq).unwrap_or(i64::MAX);
        let grant = Op::LeaseGrant(h::LeaseGrantRequest {
            id: lease,
            ttl: SESSION_TTL_S,
        });
        if !matches!(s.op(grant).await, Outcome::Ok(_)) {
            tokio::time::sleep(Duration::from_millis(BACKOFF_MS)).await;
            continue;
        }
        let hold = if s.rng.random_bool(0.7) {
            lock_session(&mut s, lease, seq).await
        } else {
            election_session(&mut s, lease, seq).await
        };
        if let Some(hold) = hold {
            s.note(&format!(
                "held {} {}..={}",
                hold.key, hold.acquired, hold.wrote
            ));
            recorder.record_hold(hold);
        }
        s.op(Op::LeaseRevoke(h::LeaseIdRequest { id: lease })).await;
        tokio::time::sleep(Duration::from_millis(BACKOFF_MS)).await;
    }
}

/// Lock, guarded write, Unlock.
async fn lock_session(s: &mut Session<'_>, lease: i64, seq: u64) -> Option<Hold> {
    let name = format!("lock/l{}", s.rng.random_range(0..LOCK_NAMES));
    let data_key = format!("lockdata/l{}", &name["lock/l".len()..]);
    let prefix = format!("{name}/");
    let key = format!("{name}/{lease:x}");
    let endpoint = s.member();
    let channel = s.channel(endpoint).await?;
    let call = since(s.cfg.start);
    s.on_behalf(call, session_put(&key, "", lease));
    let request = LockRequest {
        name: name.clone().into_bytes(),
        lease,
    };
    let mut client = LockClient::new(channel);
    let answer = s.keeping_alive(lease, client.lock(request)).await;
    let acquired = match answer {
        Some(Ok(response)) => {
            let response = response.into_inner();
            if response.key != key.as_bytes() {
                s.note(&format!("lock answered another key for {key}"));
            }
            response.header.map_or(0, |hd| hd.revision)
        }
        other => {
            s.note(&format!("lock {key} failed: {}", describe(&other)));
            s.conns.forget(endpoint);
            s.on_behalf(call, delete(&key));
            return None;
        }
    };
    s.note(&format!("locked {key} at {acquired}"));
    tokio::time::sleep(Duration::from_millis(s.rng.random_range(0..=HOLD_MS_MAX))).await;
    let value = format!("c{}.{seq}", s.cfg.client);
    let hold = s
        .guarded_write(GuardedWrite {
            name: &name,
            prefix: &prefix,
            key: &key,
            create_revision: 0,
            acquired,
            data_key: &data_key,
            value: &value,
        })
        .await;
    let endpoint = s.member();
    let call = since(s.cfg.start);
    s.on_behalf(call, delete(&key));
    if let Some(channel) = s.channel(endpoint).await {
        let mut client = LockClient::new(channel);
        let unlock = client.unlock(UnlockRequest {
            key: key.clone().into_bytes(),
        });
        let timeout = Duration::from_millis(OP_TIMEOUT_MS);
        if !matches!(tokio::time::timeout(timeout, unlock).await, Ok(Ok(_))) {
            s.conns.forget(endpoint);
        }
    }
    hold
}

/// Campaign, Proclaim, Leader, Observe, guarded write, Resign.
async fn election_session(s: &mut Session<'_>, lease: i64, seq: u64) -> Option<Hold> {
    let name = ELECTION_NAME;
    let prefix = format!("{name}/");
    let key = format!("{name}/{lease:x}");
    let first_value = format!("c{}.{seq}.0", s.cfg.client);
    let endpoint = s.member();
    let channel = s.channel(endpoint).await?;
    let mut client = ElectionClient::new(channel);
    let call = since(s.cfg.start);
    s.on_behalf(call, session_put(&key, &first_value, lease));
    let request = CampaignRequest {
        name: name.as_bytes().to_vec(),
        lease,
        value: first_value.into_bytes(),
    };
    let answer = s.keeping_alive(lease, client.campaign(request)).await;
    let (leader, acquired) = match answer {
        Some(Ok(response)) => {
            let response = response.into_inner();
            let acquired = response.header.map_or(0, |hd| hd.revision);
            match response.leader {
                Some(leader) if leader.key == key.as_bytes() => (leader, acquired),
                other => {
                    s.note(&format!("campaign {key} answered leader {other:?}"));
                    return None;
                }
            }
        }
        other => {
            s.note(&format!("campaign {key} failed: {}", describe(&other)));
            s.conns.forget(endpoint);
            s.on_behalf(call, delete(&key));
            return None;
        }
    };
    s.note(&format!("leads {key} at {acquired}"));
    let timeout = Duration::from_millis(OP_TIMEOUT_MS);

    let proclaimed = format!("c{}.{seq}.1", s.cfg.client);
    s.on_behalf(
        since(s.cfg.start),
        proclaim_op(&leader, &key, &proclaimed, lease),
    );
    let proclaim = client.proclaim(ProclaimRequest {
        leader: Some(leader.clone()),
        value: proclaimed.into_bytes(),
    });
    let result = tokio::time::timeout(timeout, proclaim).await;
    s.note(&format!("proclaim: {}", describe(&result.ok())));

    let request = LeaderRequest {
        name: name.as_bytes().to_vec(),
    };
    let result = tokio::time::timeout(timeout, client.leader(request.clone())).await;
    if let Ok(Ok(response)) = result {
        let kv = response.into_inner().kv.map(|kv| kv.key);
        s.note(&format!(
            "leader: {:?}",
            kv.map(|k| String::from_utf8_lossy(&k).into_owned())
        ));
    }
    let observed = tokio::time::timeout(timeout, async {
        let mut stream = client.observe(request).await?.into_inner();
        stream.message().await
    })
    .await;
    if let Ok(Ok(Some(response))) = observed {
        let kv = response.kv.map(|kv| kv.key);
        s.note(&format!(
            "observed: {:?}",
            kv.map(|k| String::from_utf8_lossy(&k).into_owned())
        ));
    }

    let value = format!("c{}.{seq}.w", s.cfg.client);
    let hold = s
        .guarded_write(GuardedWrite {
            name,
            prefix: &prefix,
            key: &key,
            create_revision: leader.rev,
            acquired,
            data_key: "electdata/e0",
            value: &value,
        })
        .await;
    s.on_behalf(since(s.cfg.start), delete(&key));
    let resign = client.resign(ResignRequest {
        leader: Some(leader),
    });
    if !matches!(tokio::time::timeout(timeout, resign).await, Ok(Ok(_))) {
        s.conns.forget(endpoint);
    }
    hold
}

/// Proclaim as the server applies it: put the value if the leader key still has its
/// create revision.
fn proclaim_op(leader: &LeaderKey, key: &str, value: &str, lease: i64) -> Op {
    Op::Txn(h::TxnRequest {
        compare: vec![h::Compare {
            key: key.to_owned(),
            range_end: None,
            target: CompareTarget::Create(leader.rev),
            result: CompareResult::Equal,
        }],
        success: vec![session_put(key, value, lease)],
        failure: Vec::new(),
    })
}

/// A short text for a service call's result.
fn describe<T>(result: &Option<Result<T, tonic::Status>>) -> String {
    match result {
        Some(Ok(_)) => "ok".to_owned(),
        Some(Err(status)) => format!("error {}", status.message()),
        None => "timed out".to_owned(),
    }
}
