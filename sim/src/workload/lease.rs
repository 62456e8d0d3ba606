//! Service registration with leases: each client grants a lease with an id it picks
//! (so an unknown-outcome grant still names its lease), attaches one or two keys
//! `lease/c<client>/<n>` to it, keeps it alive for a while, then either revokes it or
//! stops and lets it expire, and reads the keys and the lease's time-to-live afterwards.
//! Everything is recorded; TTL timing is not judged here (the checker infers expiry
//! from keys vanishing).

use std::time::Duration;

use detcd_checker::history::{self as h, Op, Outcome};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use super::Recorder;
use super::cas::get;
use super::kv::{BACKOFF_MS, Connections, KvClientConfig, call_op};
use crate::trace::TraceLog;

/// The TTL every lease is granted with, seconds.
pub const LEASE_TTL_S: i64 = 5;
/// Pause between keep-alives, simulated ms.
pub const KEEP_ALIVE_EVERY_MS: u64 = 1_000;
/// Extra wait beyond the TTL before expecting an expiry, simulated ms.
pub const EXPIRY_SLACK_MS: u64 = 2_000;

/// Runs one lease client until `cfg.stop`.
pub async fn run_client(cfg: KvClientConfig, recorder: Recorder, trace: TraceLog) {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut conns = Connections::new(cfg.reach.clone());
    let mut seq: u64 = 0;
    let c = cfg.client;
    let members = cfg.members.max(1);
    while Instant::now() < cfg.stop {
        seq += 1;
        let id = i64::try_from((c << 24) | seq).unwrap_or(i64::MAX);
        let mut send = async |op: Op, rng: &mut ChaCha8Rng| {
            let endpoint = rng.random_range(1..=members);
            call_op(c, endpoint, op, cfg.start, &mut conns, &recorder, &trace).await
        };
        let grant = Op::LeaseGrant(h::LeaseGrantRequest {
            id,
            ttl: LEASE_TTL_S,
        });
        if matches!(send(grant, &mut rng).await, Outcome::Fail(_)) {
            tokio::time::sleep(Duration::from_millis(BACKOFF_MS)).await;
            continue;
        }
        let keys: Vec<String> = (0..rng.random_range(1..=2u64))
            .map(|n| format!("lease/c{c}/{n}"))
            .collect();
        for (n, key) in keys.iter().enumerate() {
            let put = Op::Put(h::PutRequest {
                key: key.clone(),
                value: format!("c{c}.{seq}.{n}"),
                lease: id,
                prev_kv: false,
            });
            send(put, &mut rng).await;
        }
        for _ in 0..rng.random_range(0..=3u32) {
            tokio::time::sleep(Duration::from_millis(KEEP_ALIVE_EVERY_MS)).await;
            send(Op::LeaseKeepAlive(h::LeaseIdRequest { id }), &mut rng).await;
        }
        if rng.random_bool(0.5) {
            send(Op::LeaseRevoke(h::LeaseIdRequest { id }), &mut rng).await;
        } else {
            let ttl_ms = u64::try_from(LEASE_TTL_S).unwrap_or(0) * 1_000;
            tokio::time::sleep(Duration::from_millis(ttl_ms + EXPIRY_SLACK_MS)).await;
        }
        for key in &keys {
            send(get(key), &mut rng).await;
        }
        let ttl = Op::LeaseTimeToLive(h::LeaseTimeToLiveRequest { id, keys: true });
        send(ttl, &mut rng).await;
    }
}
