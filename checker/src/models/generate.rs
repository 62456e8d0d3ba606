//! Seeded generators of linearizable register, cas-register and kv histories.
//!
//! Each history comes from a correct sequential execution: clients call operations at
//! random times, every operation takes effect (is applied to the model) at one moment
//! between its call and its return, and some operations end with an unknown outcome
//! (the client gives up; the effect may or may not have happened, and the client
//! continues under a new id, as in Jepsen). The result is linearizable by construction,
//! which makes it the baseline for randomized tests and benchmarks. Written values are
//! unique (a counter), so a test can mutate a history into a certainly illegal one.
//! This file does not mutate histories or check them.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Keyed, KvOp, KvOutput, RegisterOp, RegisterOutput, Value};
use crate::wgl::Operation;

/// Shape of a generated history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenConfig {
    /// Seed of the generator; the same seed gives the same history.
    pub seed: u64,
    /// Number of operations invoked. A cas-register history holds fewer: a cas known to
    /// have failed is left out, as Jepsen's `:fail` (about a fifth of all operations).
    pub ops: usize,
    /// Number of concurrent clients.
    pub clients: u64,
    /// Number of keys (1: a single register named by the empty key).
    pub keys: u32,
    /// Operations out of 1000 that end with an unknown outcome.
    pub unknown_per_mille: u32,
    /// Written values are drawn from `0..values_max` (as Jepsen's `rand-int`) when set;
    /// None: every written value is unique (a counter).
    pub values_max: Option<Value>,
}

impl GenConfig {
    /// `ops` operations from `clients` clients on one key, unique values.
    pub fn new(seed: u64, ops: usize, clients: u64, unknown_per_mille: u32) -> Self {
        GenConfig {
            seed,
            ops,
            clients,
            keys: 1,
            unknown_per_mille,
            values_max: None,
        }
    }
}

/// The next written value: a fresh one, or a random one below `values_max`.
fn next_value(cfg: &GenConfig, counter: &mut Value, rng: &mut ChaCha8Rng) -> Value {
    *counter += 1;
    match cfg.values_max {
        Some(max) if max > 0 => rng.random_range(0..max),
        _ => *counter,
    }
}

/// Register operations of one generated history.
pub type RegisterHistory = Vec<Operation<Keyed<RegisterOp>, RegisterOutput>>;
/// Kv operations of one generated history.
pub type KvHistory = Vec<Operation<Keyed<KvOp>, KvOutput>>;

fn key_of(cfg: &GenConfig, rng: &mut ChaCha8Rng) -> Vec<u8> {
    if cfg.keys <= 1 {
        Vec::new()
    } else {
        rng.random_range(0..cfg.keys).to_string().into_bytes()
    }
}

/// A register (`with_cas` false) or cas-register history.
///
/// A cas that did not take effect is left out when its client learnt so, as Jepsen
/// records it as `:fail`; with an unknown outcome it stays.
pub fn register_history(cfg: &GenConfig, with_cas: bool) -> RegisterHistory {
    let mut values: Value = 0;
    let mut state = std::collections::BTreeMap::<Vec<u8>, Value>::new();
    let mut ops = simulate(
        cfg,
        |rng| {
            let key = key_of(cfg, rng);
            let roll = rng.random_range(0..100u32);
            let op = if roll < 45 {
                RegisterOp::Read
            } else if !with_cas || roll < 75 {
                RegisterOp::Write(next_value(cfg, &mut values, rng))
            } else {
                let to = next_value(cfg, &mut values, rng);
                // Usually expect a recent value so that many cas operations succeed.
                let from = match cfg.values_max {
                    Some(max) if max > 0 => rng.random_range(0..max),
                    _ => (to - rng.random_range(1..4)).max(0),
                };
                RegisterOp::Cas { from, to }
            };
            Keyed { key, op }
        },
        |input| {
            let current = state.get(&input.key).copied();
            match input.op {
                RegisterOp::Read => RegisterOutput::Read(current),
                RegisterOp::Write(v) => {
                    state.insert(input.key.clone(), v);
                    RegisterOutput::Write
                }
                RegisterOp::Cas { from, to } => {
                    let applies = current == Some(from);
                    if applies {
                        state.insert(input.key.clone(), to);
                    }
                    RegisterOutput::Cas(applies)
                }
            }
        },
    );
    ops.retain(|op| op.output != Some(RegisterOutput::Cas(false)));
    ops
}

/// A kv history of gets and appends, plus puts when `with_put`.
pub fn kv_history(cfg: &GenConfig, with_put: bool) -> KvHistory {
    let mut values: Value = 0;
    let mut state = std::collections::BTreeMap::<Vec<u8>, Vec<Value>>::new();
    simulate(
        cfg,
        |rng| {
            let key = key_of(cfg, rng);
            let roll = rng.random_range(0..100u32);
            let v = next_value(cfg, &mut values, rng);
            let op = if roll < 45 {
                KvOp::Get
            } else if with_put && roll < 55 {
                KvOp::Put(v)
            } else {
                KvOp::Append(v)
            };
            Keyed { key, op }
        },
        |input| match input.op {
            KvOp::Get => KvOutput::Get(state.get(&input.key).cloned().unwrap_or_default()),
            KvOp::Put(v) => {
                state.insert(input.key.clone(), vec![v]);
                KvOutput::Done
            }
            KvOp::Append(v) => {
                state.entry(input.key.clone()).or_default().push(v);
                KvOutput::Done
            }
        },
    )
}

/// Where a client's current operation stands.
enum Flight<O> {
    Idle,
    /// Called, not yet applied.
    Called(usize),
    /// Applied with this output, not yet returned.
    Applied(usize, O),
}

/// Runs clients against `apply` (the sequential execution) and records the history.
fn simulate<I, O>(
    cfg: &GenConfig,
    mut next_input: impl FnMut(&mut ChaCha8Rng) -> I,
    mut apply: impl FnMut(&I) -> O,
) -> Vec<Operation<I, O>> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let clients = cfg.clients.max(1);
    let mut ids: Vec<u64> = (0..clients).collect();
    let mut next_id = clients;
    let mut flights: Vec<Flight<O>> = (0..clients).map(|_| Flight::Idle).collect();
    let mut ops: Vec<Operation<I, O>> = Vec::with_capacity(cfg.ops);
    let mut in_flight = 0usize;
    let mut time = 0u64;
    while ops.len() < cfg.ops || in_flight > 0 {
        time += rng.random_range(1..4);
        let c = rng.random_range(0..clients) as usize;
        let flight = std::mem::replace(&mut flights[c], Flight::Idle);
        flights[c] = match flight {
            Flight::Idle if ops.len() < cfg.ops => {
                ops.push(Operation {
                    client: ids[c],
                    call: time,
                    ret: None,
                    input: next_input(&mut rng),
                    output: None,
                    line: None,
                });
                in_flight += 1;
                Flight::Called(ops.len() - 1)
            }
            Flight::Idle => Flight::Idle,
            Flight::Called(i) => {
                // Half of the unknown outcomes never take effect.
                if rng.random_range(0..2000) < cfg.unknown_per_mille {
                    in_flight -= 1;
                    ids[c] = next_id;
                    next_id += 1;
                    Flight::Idle
                } else {
                    let out = apply(&ops[i].input);
                    Flight::Applied(i, out)
                }
            }
            Flight::Applied(i, out) => {
                in_flight -= 1;
                if rng.random_range(0..2000) < cfg.unknown_per_mille {
                    ids[c] = next_id;
                    next_id += 1;
                } else {
                    ops[i].ret = Some(time);
                    ops[i].output = Some(out);
                }
                Flight::Idle
            }
        };
    }
    ops
}
