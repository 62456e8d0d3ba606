//! Compare-and-set registers via Txn: each client reads a register (a key `cas/<i>`),
//! then writes a new unique value in a Txn guarded by the mod_revision it read (or by
//! create_revision 0 when the key was absent, or sometimes by the value it read); the
//! failure branch reads the key back. Every read and Txn is recorded; it does not retry
//! a lost race or check results.

use std::time::Duration;

use detcd_checker::history::{
    self as h, Compare, CompareResult, CompareTarget, Op, OpResult, Outcome,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use super::Recorder;
use super::kv::{BACKOFF_MS, Connections, KvClientConfig, THINK_MS, call_op};
use crate::trace::TraceLog;

/// The read of one key.
pub fn get(key: &str) -> Op {
    Op::Range(h::RangeRequest {
        key: key.to_owned(),
        ..h::RangeRequest::default()
    })
}

/// The key-value a recorded single-key read returned: `Some(None)` when the key was
/// absent, `None` when the read failed.
pub fn read_kv(outcome: &Outcome) -> Option<Option<h::KeyValue>> {
    match outcome {
        Outcome::Ok(ok) => match &ok.result {
            OpResult::Range(r) => Some(r.kvs.first().cloned()),
            _ => None,
        },
        _ => None,
    }
}

/// The guard for "the key is still as read".
pub fn unchanged(key: &str, seen: Option<&h::KeyValue>) -> Compare {
    let target = match seen {
        Some(kv) => CompareTarget::Mod(kv.mod_revision),
        None => CompareTarget::Create(0),
    };
    Compare {
        key: key.to_owned(),
        range_end: None,
        target,
        result: CompareResult::Equal,
    }
}

/// Runs one CAS client until `cfg.stop`.
pub async fn run_client(cfg: KvClientConfig, recorder: Recorder, trace: TraceLog) {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut seq = 0;
    let mut conns = Connections::new(cfg.reach.clone());
    while Instant::now() < cfg.stop {
        seq += 1;
        let key = format!("cas/{}", rng.random_range(0..cfg.keys.max(1)));
        let endpoint = rng.random_range(1..=cfg.members.max(1));
        let c = cfg.client;
        let read = call_op(
            c,
            endpoint,
            get(&key),
            cfg.start,
            &mut conns,
            &recorder,
            &trace,
        )
        .await;
        let Some(seen) = read_kv(&read) else {
            tokio::time::sleep(Duration::from_millis(BACKOFF_MS)).await;
            continue;
        };
        let compare = match &seen {
            Some(kv) if rng.random_bool(0.3) => Compare {
                key: key.clone(),
                range_end: None,
                target: CompareTarget::Value(kv.value.clone()),
                result: CompareResult::Equal,
            },
            other => unchanged(&key, other.as_ref()),
        };
        let txn = Op::Txn(h::TxnRequest {
            compare: vec![compare],
            success: vec![Op::Put(h::PutRequest {
                key: key.clone(),
                value: format!("c{c}.{seq}"),
                lease: 0,
                prev_kv: false,
            })],
            failure: vec![get(&key)],
        });
        let endpoint = rng.random_range(1..=cfg.members.max(1));
        let outcome = call_op(c, endpoint, txn, cfg.start, &mut conns, &recorder, &trace).await;
        let pause = if matches!(outcome, Outcome::Ok(_)) {
            THINK_MS
        } else {
            BACKOFF_MS
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}
