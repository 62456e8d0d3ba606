//! Property test of the key space against a reference model.
//!
//! The model keeps the whole key -> value map after every revision (`revs[r]`) and
//! answers each request from those maps in the most direct way; the real store keeps an
//! index of revisions, compacts, and replays events. Random sequences of Range (all
//! options), Put, DeleteRange, Txn (random compares, nested txns), Compact, HashKV,
//! lease grant/revoke/attach and snapshot round trips must get equal answers from both,
//! errors included, and equal events. The model shares only the request-only checks
//! (`validate_*`) with the store; state semantics are written twice.
//!
//! `known_bad_models_are_caught` keeps the comparison honest: models with a planted bug
//! must be told apart.

use detcd_engine::mvcc::{KvConfig, KvState, MvccError};
use detcd_engine::pb::etcdserverpb::request_op::Request;
use detcd_engine::pb::etcdserverpb::response_op::Response;
use detcd_engine::pb::etcdserverpb::{
    CompactionRequest, LeaseGrantRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest, PutRequest,
    RangeRequest, RangeResponse, RequestOp, TxnRequest,
};
use detcd_engine::pb::mvccpb::Event;
use proptest::prelude::*;

#[path = "mvcc_model/gen.rs"]
mod generate;
#[path = "mvcc_model/model.rs"]
mod model;

use generate::{Op, op};
use model::{Bug, LEASE_TTL_S_MIN, Model, TXN_OPS_MAX};

fn same<T: PartialEq + std::fmt::Debug>(what: &str, real: T, model: T) -> Result<(), String> {
    if real == model {
        Ok(())
    } else {
        Err(format!("{what}:\n real:  {real:?}\n model: {model:?}"))
    }
}

/// Events of revision `r`, in order, with `prev_kv` dropped when the previous revision is compacted.
fn comparable(mut events: Vec<Event>, r: i64, compact: i64) -> Vec<Event> {
    if r - 1 < compact {
        events.iter_mut().for_each(|e| e.prev_kv = None);
    }
    events
}

/// How often interesting outcomes happened, to check the generators reach them.
#[derive(Debug, Default)]
struct Stats {
    txn_writes: usize,
    txn_failure_branch: usize,
    nested_txn_responses: usize,
    range_more: usize,
    range_hits: usize,
    compacted_errors: usize,
    duplicate_key_errors: usize,
    revokes_deleting: usize,
    multi_change_revisions: usize,
}

fn run(ops: &[Op], bug: Bug) -> Result<(), String> {
    run_counting(ops, bug, &mut Stats::default())
}

fn run_counting(ops: &[Op], bug: Bug, stats: &mut Stats) -> Result<(), String> {
    let config = KvConfig {
        txn_ops_max: TXN_OPS_MAX,
        lease_ttl_s_min: LEASE_TTL_S_MIN,
    };
    let mut state = KvState::new(config);
    let mut model = Model::new(bug);
    for (step, op) in ops.iter().enumerate() {
        let ctx = |what: &str| format!("step {step} {op:?}: {what}");
        let rev_before = model.cur();
        let write_events = match op {
            Op::Range(r) => {
                let real = state.range(r);
                match &real {
                    Ok(resp) => {
                        stats.range_more += usize::from(resp.more);
                        stats.range_hits += usize::from(!resp.kvs.is_empty());
                    }
                    Err(MvccError::Compacted) => stats.compacted_errors += 1,
                    Err(_) => {}
                }
                same(&ctx("range"), real, model.range(r))?;
                None
            }
            Op::Put(p) => {
                let real = state.put(p);
                same(
                    &ctx("put"),
                    real.as_ref().map(|w| &w.response),
                    model.put(p).as_ref(),
                )?;
                real.ok().map(|w| w.events)
            }
            Op::Delete(d) => {
                let real = state.delete_range(d);
                same(
                    &ctx("delete"),
                    real.as_ref().map(|w| &w.response),
                    model.delete(d).as_ref(),
                )?;
                real.ok().map(|w| w.events)
            }
            Op::Txn(t) => {
                let real = state.txn(t);
                match &real {
                    Ok(w) => {
                        stats.txn_writes += usize::from(!w.events.is_empty());
                        stats.txn_failure_branch += usize::from(!w.response.succeeded);
                        stats.nested_txn_responses += w
                            .response
                            .responses
                            .iter()
                            .filter(|r| matches!(r.response, Some(Response::ResponseTxn(_))))
                            .count();
                    }
                    Err(MvccError::DuplicateKey) => stats.duplicate_key_errors += 1,
                    Err(_) => {}
                }
                same(
                    &ctx("txn"),
                    real.as_ref().map(|w| &w.response),
                    model.txn(t).as_ref(),
                )?;
                real.ok().map(|w| w.events)
            }
            Op::Compact(rev) => {
                let real = state.compact(&CompactionRequest {
                    revision: *rev,
                    physical: false,
                });
                let real = real.map(|r| r.header.map(|h| h.revision).unwrap_or(-7));
                same(&ctx("compact"), real, model.compact(*rev))?;
                None
            }
            Op::HashKv(rev) => {
                let real = state
                    .hash_kv(*rev)
                    .map(|h| (h.header.map(|h| h.revision), h.compact_revision));
                let expect = if *rev > 0 && *rev <= model.compact {
                    Err(MvccError::Compacted)
                } else if *rev > model.cur() {
                    Err(MvccError::FutureRevision)
                } else {
                    Ok((Some(model.cur()), model.compact))
                };
                same(&ctx("hash_kv"), real, expect)?;
                None
            }
            Op::Grant(id, ttl) => {
                let real = state
                    .lease_grant(&LeaseGrantRequest { ttl: *ttl, id: *id }, 0)
                    .map(|r| (r.id, r.ttl));
                same(&ctx("grant"), real, model.grant(*id, *ttl))?;
                None
            }
            Op::Revoke(id) => {
                let real = state.lease_revoke(&LeaseRevokeRequest { id: *id });
                if real.as_ref().is_ok_and(|w| !w.events.is_empty()) {
                    stats.revokes_deleting += 1;
                }
                let rev = real
                    .as_ref()
                    .map(|w| w.response.header.map(|h| h.revision))
                    .map_err(Clone::clone);
                same(&ctx("revoke"), rev, model.revoke(*id).map(Some))?;
                real.ok().map(|w| w.events)
            }
            Op::Snapshot => {
                let restored = KvState::restore(&state.snapshot(), config)
                    .map_err(|e| ctx(&format!("restore failed: {e}")))?;
                same(&ctx("restored state"), &restored, &state)?;
                same(&ctx("restored hash"), restored.hash_kv(0), state.hash_kv(0))?;
                state = restored;
                None
            }
        };
        // A write's own events are exactly the model's change at the new revision.
        if let Some(events) = write_events {
            let expect = if model.cur() > rev_before {
                model.diff(model.cur())
            } else {
                vec![]
            };
            if events.len() > 1 {
                stats.multi_change_revisions += 1;
            }
            same(&ctx("write events"), events, expect)?;
        }
        same(
            &ctx("revision"),
            state.store().current_revision(),
            model.cur(),
        )?;
        // Every servable revision reads the same; event replay matches the model.
        let first = model.compact.max(1);
        for r in first..=model.cur() {
            let all = RangeRequest {
                key: vec![0],
                range_end: vec![0],
                revision: r,
                ..Default::default()
            };
            same(
                &ctx(&format!("full read at {r}")),
                state.range(&all),
                model.range(&all),
            )?;
        }
        let from = model.compact.max(2);
        let replay = state
            .events(&[0], &[0], from, i64::MAX)
            .map_err(|e| ctx(&format!("events: {e}")))?;
        for r in from..=model.cur() {
            let real: Vec<Event> = replay
                .iter()
                .filter(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision == r))
                .cloned()
                .collect();
            same(
                &ctx(&format!("events at {r}")),
                comparable(real, r, model.compact),
                comparable(model.diff(r), r, model.compact),
            )?;
        }
        if model.compact > 1 {
            same(
                &ctx("events below compaction"),
                state.events(&[0], &[0], model.compact - 1, i64::MAX),
                Err(MvccError::Compacted),
            )?;
        }
        // Lease attachments follow the keys.
        same(
            &ctx("lease ids"),
            state.leases().ids(),
            model.leases.keys().copied().collect(),
        )?;
        for id in model.leases.keys() {
            let real = state
                .lease_time_to_live(
                    &LeaseTimeToLiveRequest {
                        id: *id,
                        keys: true,
                    },
                    0,
                )
                .map(|r| r.keys);
            let expect: Vec<Vec<u8>> = model
                .latest()
                .values()
                .filter(|kv| kv.lease == *id)
                .map(|kv| kv.key.clone())
                .collect();
            same(&ctx(&format!("keys of lease {id}")), real, Ok(expect))?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in prop::collection::vec(op(), 1..50)) {
        if let Err(e) = run(&ops, Bug::None) {
            return Err(TestCaseError::fail(e));
        }
    }
}

fn put(key: &[u8], value: &[u8], lease: i64) -> Op {
    Op::Put(PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        lease,
        ..Default::default()
    })
}

fn get(key: &[u8], revision: i64) -> Op {
    Op::Range(RangeRequest {
        key: key.to_vec(),
        revision,
        ..Default::default()
    })
}

#[test]
fn known_bad_models_are_caught() {
    let scripts: Vec<(Bug, Vec<Op>)> = vec![
        (
            Bug::VersionNotBumped,
            vec![put(b"a", b"1", 0), put(b"a", b"2", 0)],
        ),
        (
            Bug::ReadOnlyTxnBumps,
            vec![Op::Txn(TxnRequest {
                success: vec![RequestOp {
                    request: Some(Request::RequestRange(RangeRequest {
                        key: b"a".to_vec(),
                        ..Default::default()
                    })),
                }],
                ..Default::default()
            })],
        ),
        (
            Bug::CountAfterLimit,
            vec![
                put(b"a", b"1", 0),
                put(b"b", b"1", 0),
                Op::Range(RangeRequest {
                    key: b"a".to_vec(),
                    range_end: vec![0],
                    limit: 1,
                    ..Default::default()
                }),
            ],
        ),
        (
            Bug::CompactionIgnored,
            vec![
                put(b"a", b"1", 0),
                put(b"a", b"2", 0),
                Op::Compact(3),
                get(b"a", 2),
            ],
        ),
        (
            Bug::RevokeKeepsKeys,
            vec![Op::Grant(1, 10), put(b"a", b"1", 1), Op::Revoke(1)],
        ),
    ];
    for (bug, ops) in scripts {
        assert!(
            run(&ops, Bug::None).is_ok(),
            "{bug:?} script fails on the right model"
        );
        assert!(run(&ops, bug).is_err(), "{bug:?} not caught");
    }
}

/// The generators reach the interesting cases often enough for the model test to mean
/// something (fixed seed, so this is deterministic).
#[test]
fn generators_reach_interesting_cases() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = prop::collection::vec(op(), 1..50);
    let mut stats = Stats::default();
    for _ in 0..200 {
        let ops = strategy.new_tree(&mut runner).expect("generate").current();
        run_counting(&ops, Bug::None, &mut stats).expect("model agrees");
    }
    eprintln!("{stats:?}");
    for (what, n) in [
        ("txn writes", stats.txn_writes),
        ("txn failure branches", stats.txn_failure_branch),
        ("nested txn responses", stats.nested_txn_responses),
        ("ranges with more", stats.range_more),
        ("ranges with hits", stats.range_hits),
        ("compacted errors", stats.compacted_errors),
        ("duplicate key errors", stats.duplicate_key_errors),
        ("revokes deleting keys", stats.revokes_deleting),
        ("multi-change revisions", stats.multi_change_revisions),
    ] {
        assert!(n >= 10, "{what}: only {n} in 200 sequences");
    }
}

#[test]
fn a_mutated_result_is_caught() {
    let real: Result<RangeResponse, MvccError> = Ok(RangeResponse::default());
    let other = RangeResponse {
        more: true,
        ..Default::default()
    };
    assert!(same("range", real.clone(), Ok(other)).is_err());
    assert!(same("range", real, Err(MvccError::Compacted)).is_err());
}
