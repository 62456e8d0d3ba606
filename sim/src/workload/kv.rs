//! The mixed KV workload: each client, on its own simulated host, sends puts with
//! unique values, linearizable gets and deletes over a small key set to random
//! members, one request at a time, and records each with its outcome. A timeout or a
//! broken connection after sending makes a write's outcome unknown. It does not retry
//! and does not check results.

use std::collections::BTreeMap;
use std::time::Duration;

use detcd_checker::history::{self as h, OkOutcome, Op, OpRecord, Outcome};
use detcd_engine::server::transport::timer::quiet_timeout;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use super::direct::{Conn, Reach};
use super::{Recorder, wire};
use crate::trace::TraceLog;

/// How long a client waits for one response before calling it unknown.
pub const OP_TIMEOUT_MS: u64 = 1_000;
/// Pause between a client's requests.
pub const THINK_MS: u64 = 20;
/// Pause after a failed or timed-out request.
pub const BACKOFF_MS: u64 = 100;

/// One client's parameters.
#[derive(Clone, Debug)]
pub struct KvClientConfig {
    /// Client id in the history (1-based).
    pub client: u64,
    /// Cluster size; members are at `10.0.0.<i>:2379`.
    pub members: u64,
    /// Distinct keys `k0..k<keys>`.
    pub keys: u64,
    /// Seed of this client's choices.
    pub seed: u64,
    /// Time zero of the history.
    pub start: Instant,
    /// When to stop sending.
    pub stop: Instant,
    /// Which members' direct connections are still usable (kept by the world).
    pub reach: Reach,
}

/// The client URL of member `i`.
pub fn member_url(i: u64) -> String {
    format!("http://10.0.0.{i}:2379")
}

/// Opens a channel to member `i`'s client port.
pub async fn connect(i: u64) -> Result<Channel, String> {
    Endpoint::from_shared(member_url(i))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())
}

/// Nanoseconds since `start`.
pub fn since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

pub use super::wire::kv_to_history;

/// A request and whether it may change state.
fn draw_op(rng: &mut ChaCha8Rng, cfg: &KvClientConfig, seq: u64) -> Op {
    let key = format!("k{}", rng.random_range(0..cfg.keys.max(1)));
    match rng.random_range(0..100u32) {
        0..50 => Op::Put(h::PutRequest {
            key,
            value: format!("c{}.{seq}", cfg.client),
            lease: 0,
            prev_kv: false,
        }),
        50..85 => Op::Range(h::RangeRequest {
            key,
            range_end: None,
            revision: 0,
            limit: 0,
            count_only: false,
            keys_only: false,
            serializable: false,
        }),
        _ => Op::DeleteRange(h::DeleteRangeRequest {
            key,
            range_end: None,
            prev_kv: false,
        }),
    }
}

/// A client's open connections, by member: direct ones for unary calls and gRPC
/// channels for streams; a connection that failed is dropped.
pub struct Connections {
    direct: BTreeMap<u64, Conn>,
    channels: BTreeMap<u64, Channel>,
    reach: Reach,
}

impl Connections {
    /// No connections yet; `reach` tells which direct ones are still usable.
    pub fn new(reach: Reach) -> Self {
        Connections {
            direct: BTreeMap::new(),
            channels: BTreeMap::new(),
            reach,
        }
    }

    /// The open gRPC channel to `member`, if any.
    pub fn channel(&self, member: u64) -> Option<Channel> {
        self.channels.get(&member).cloned()
    }

    /// Keeps `channel` as the open gRPC channel to `member`.
    pub fn keep_channel(&mut self, member: u64, channel: Channel) {
        self.channels.insert(member, channel);
    }

    /// Drops every connection to `member`.
    pub fn forget(&mut self, member: u64) {
        self.channels.remove(&member);
        self.direct.remove(&member);
    }
}

/// Sends `op` to member `endpoint` (reusing or opening a connection in `conns`) with a
/// timeout and records it. Returns whether it succeeded.
pub async fn call(
    client_id: u64,
    endpoint: u64,
    op: Op,
    start: Instant,
    conns: &mut Connections,
    recorder: &Recorder,
    trace: &TraceLog,
) -> bool {
    matches!(
        call_op(client_id, endpoint, op, start, conns, recorder, trace).await,
        Outcome::Ok(_)
    )
}

/// Sends `op` over a direct connection (a keep-alive over a gRPC channel) to
/// `endpoint`; the connection used comes back on success. `Err((sent, message))`.
async fn send_op(
    endpoint: u64,
    op: &Op,
    conns: &mut Connections,
) -> Result<OkOutcome, (bool, String)> {
    let call = wire::call_of(op).map_err(|m| (true, m))?;
    let Some(call) = call else {
        let id = match op {
            Op::LeaseKeepAlive(l) => l.id,
            _ => 0,
        };
        let c = match conns.channels.remove(&endpoint) {
            Some(c) => c,
            None => connect(endpoint)
                .await
                // Nothing was sent: the request had no effect.
                .map_err(|e| (false, format!("connect: {e}")))?,
        };
        let sent = wire::keep_alive(&c, id).await.map_err(|m| (true, m))?;
        conns.channels.insert(endpoint, c);
        return Ok(sent);
    };
    let mut c = match conns.direct.remove(&endpoint) {
        Some(c) if c.usable(&conns.reach) => c,
        _ => Conn::open(endpoint, &conns.reach)
            .await
            .map_err(|e| (false, format!("connect: {e}")))?,
    };
    let reply = c.call(call).await?;
    conns.direct.insert(endpoint, c);
    wire::outcome_of(reply.map_err(|m| (true, m))?).map_err(|m| (true, m))
}

/// Like [`call`], returning the recorded outcome.
pub async fn call_op(
    client_id: u64,
    endpoint: u64,
    op: Op,
    start: Instant,
    conns: &mut Connections,
    recorder: &Recorder,
    trace: &TraceLog,
) -> Outcome {
    let writes = !matches!(op, Op::Range(_) | Op::LeaseTimeToLive(_));
    let call = since(start);
    let timeout = Duration::from_millis(OP_TIMEOUT_MS);
    let deadline = Instant::now() + timeout;
    let result = quiet_timeout(deadline, send_op(endpoint, &op, conns)).await;
    let ret = since(start);
    let (outcome, ret) = match result {
        Ok(Ok(ok)) => (Outcome::Ok(ok), Some(ret)),
        Ok(Err((sent, message))) if sent && writes && !wire::definitely_failed(&message) => {
            trace.push(format!("{ret} c{client_id} n{endpoint} unknown: {message}"));
            (Outcome::Unknown, None)
        }
        Ok(Err((_, message))) => (Outcome::Fail(message), Some(ret)),
        Err(_) => (Outcome::Unknown, None),
    };
    trace.push(format!(
        "{call} c{client_id} n{endpoint} {} -> {}",
        serde_json::to_string(&op).unwrap_or_default(),
        serde_json::to_string(&outcome).unwrap_or_default()
    ));
    recorder.record(OpRecord {
        client: client_id,
        call,
        ret,
        op,
        outcome: outcome.clone(),
    });
    outcome
}

/// Runs one client until `cfg.stop`.
pub async fn run_client(cfg: KvClientConfig, recorder: Recorder, trace: TraceLog) {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut seq = 0;
    let mut conns = Connections::new(cfg.reach.clone());
    while Instant::now() < cfg.stop {
        seq += 1;
        let op = draw_op(&mut rng, &cfg, seq);
        let endpoint = rng.random_range(1..=cfg.members.max(1));
        let ok = call(
            cfg.client, endpoint, op, cfg.start, &mut conns, &recorder, &trace,
        )
        .await;
        let pause = if ok { THINK_MS } else { BACKOFF_MS };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}
