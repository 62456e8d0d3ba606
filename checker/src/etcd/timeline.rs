//! Builds the HTML report's [`Timeline`] for an etcd history: one bar per operation,
//! the records of a violation highlighted, and on hover the model state of the keys
//! the operation touches before and after it, from a replay of the history. When no
//! full replay exists (an Illegal or Unknown verdict), the states come from the
//! search's deepest failing path, replayed up to the point of failure: every op placed
//! before it shows its states, the op it stopped at shows the state it was checked
//! against and the model's result against the recorded one, and later ops say they
//! were not replayed. It does not render anything (see `report`).

use std::collections::BTreeSet;

use crate::history::{History, Op, Outcome};

use super::Options;
use super::conflict::op_ranges;
use super::prep::Prep;
use super::replay::{Partial, replay_for_report};
use super::store::{Store, claims_write, may_write};
use crate::report::{Timeline, TimelineOp};
use crate::verdict::Verdict;

/// Operations drawn at most, so a huge history still gives a usable page.
pub const TIMELINE_OPS_MAX: usize = 20_000;

fn label(op: &Op) -> String {
    match op {
        Op::Range(q) => match &q.range_end {
            Some(e) => format!("range {}..{}", q.key, e),
            None => format!("get {}", q.key),
        },
        Op::Put(p) => format!("put {}={}", p.key, p.value),
        Op::DeleteRange(d) => format!("delete {}", d.key),
        Op::Txn(t) => format!("txn ({} cmp)", t.compare.len()),
        Op::Compact(c) => format!("compact {}", c.revision),
        Op::LeaseGrant(_) => "lease grant".into(),
        Op::LeaseRevoke(l) => format!("revoke {}", l.id),
        Op::LeaseKeepAlive(l) => format!("keep-alive {}", l.id),
        Op::LeaseTimeToLive(l) => format!("ttl {}", l.id),
    }
}

/// The keys `op` names (single keys only; ranges are summarised) at revision `rev`.
fn keys_at(store: &Store, op: &Op, rev: i64) -> String {
    let mut ranges = Vec::new();
    op_ranges(op, &mut ranges);
    let mut seen = BTreeSet::new();
    let parts: Vec<String> = ranges
        .into_iter()
        .filter(|r| seen.insert(r.clone()))
        .map(|(k, end)| match end {
            Some(e) => format!("[{k}, {e}): see response"),
            None => match store.get_at(&k, rev) {
                Some(kv) => format!(
                    "{k}={} (version {}, created {}, modified {})",
                    kv.value, kv.version, kv.create_revision, kv.mod_revision
                ),
                None => format!("{k} absent"),
            },
        })
        .collect();
    format!("revision {rev}: {}", parts.join("; "))
}

/// Model state before and after op `i`, as far as the replay got.
fn states(rp: &Partial, h: &History, i: usize) -> (Option<String>, Option<String>) {
    let o = &h.ops[i];
    let reached = rp.store.rev();
    let (rev, writes) = match &o.rec.outcome {
        Outcome::Ok(ok) => (ok.revision, claims_write(&ok.result)),
        Outcome::Unknown => match rp.resolved.get(i).copied().flatten() {
            Some(r) => (r, true),
            None if !may_write(&o.rec.op) => return (None, None),
            None if rp.stopped.is_none() => {
                return (Some("not applied (unknown outcome)".into()), None);
            }
            None => {
                let text = format!(
                    "not applied (unknown outcome) on the path replayed up to revision {reached}"
                );
                return (Some(text), None);
            }
        },
        Outcome::Fail(_) => return (None, None),
    };
    if !matches!(
        o.rec.op,
        Op::Range(_) | Op::Put(_) | Op::DeleteRange(_) | Op::Txn(_)
    ) {
        return (None, None);
    }
    let before = if writes { rev - 1 } else { rev };
    if before > reached {
        let text = format!("not replayed (the replay stopped at revision {reached})");
        return (Some(text), None);
    }
    (
        Some(keys_at(&rp.store, &o.rec.op, before)),
        (writes && rev <= reached).then(|| keys_at(&rp.store, &o.rec.op, rev)),
    )
}

/// What the failing op was checked against, and expected against observed.
fn failure_text(rp: &Partial, h: &History, i: usize) -> Option<String> {
    let s = rp.stopped.as_ref()?;
    let Some((op, at)) = s.op.filter(|(op, _)| *op == i) else {
        // A record the failure names (a read demanding writes, a neighbour of a gap).
        let Verdict::Illegal(x) = &s.verdict else {
            return None;
        };
        let o = h.ops.get(i)?;
        if !x.lines.contains(&o.line) {
            return None;
        }
        return Some(format!(
            "the replay stopped at revision {}: {}: {}\nthe model there: {}",
            s.rev,
            x.property,
            x.message,
            keys_at(&rp.store, &o.rec.op, rp.store.rev())
        ));
    };
    let mut text = format!(
        "checked against the model at {}",
        keys_at(&rp.store, &h.ops[op].rec.op, at)
    );
    // The model stopped right at this op, so its lease table is the one checked.
    for id in leases_of(&h.ops[op].rec.op) {
        let state = match rp.store.lease(id) {
            Some(l) if l.alive => "alive",
            Some(_) => "revoked or expired",
            None => "never granted",
        };
        text.push_str(&format!("; lease {id} {state}"));
    }
    if let Some((expected, observed)) = &s.expected_observed {
        text.push_str(&format!(
            "\nexpected (model): {expected}\nobserved (history): {observed}"
        ));
    }
    if let Verdict::Illegal(v) = &s.verdict {
        text.push_str(&format!("\n{}: {}", v.property, v.message));
    }
    Some(text)
}

/// The leases a request names (puts, txn branches, lease requests).
fn leases_of(op: &Op) -> Vec<i64> {
    match op {
        Op::Put(p) if p.lease != 0 => vec![p.lease],
        Op::Txn(t) => t
            .success
            .iter()
            .chain(&t.failure)
            .flat_map(leases_of)
            .collect(),
        Op::LeaseRevoke(l) | Op::LeaseKeepAlive(l) => vec![l.id],
        Op::LeaseTimeToLive(l) => vec![l.id],
        _ => Vec::new(),
    }
}

/// Where the states shown come from.
fn note(rp: &Result<Partial, String>, v: &Verdict) -> Option<String> {
    match rp {
        Err(why) => Some(format!(
            "No model states: the history cannot be replayed ({why})."
        )),
        Ok(Partial { stopped: None, .. }) if matches!(v, Verdict::Ok) => None,
        Ok(Partial { stopped: None, .. }) => Some(
            "Model states from a full replay of the revisions; the violation lies outside it \
             (real time, compaction or watches)."
                .to_owned(),
        ),
        Ok(Partial {
            stopped: Some(s), ..
        }) => {
            let why = match &s.verdict {
                Verdict::Illegal(x) => format!("{}: {}", x.property, x.message),
                other => format!("{other:?}"),
            };
            let path = if matches!(v, Verdict::Unknown { .. }) {
                "the deepest path the search reached"
            } else {
                "the deepest failing path of the search"
            };
            Some(format!(
                "Model states along {path}, replayed up to revision {} where it fails: {why}",
                s.rev
            ))
        }
    }
}

/// The timeline of `h` with the records of `v`'s violation highlighted, and model
/// states from a replay with `opts` (for a failed check, up to the point of failure).
/// When the history is larger than [`TIMELINE_OPS_MAX`], only the highlighted
/// operations and those around them in file order are drawn.
pub fn timeline(title: &str, h: &History, v: &Verdict, opts: &Options) -> Timeline {
    let rp = Prep::build(h, false)
        // A search confirmed chronologically only where a full replay is known to
        // exist; otherwise the backjumping pass's deepest failure is what is shown.
        .map(|p| replay_for_report(h, &p, opts, matches!(v, Verdict::Ok)))
        .map_err(|e| match e {
            Verdict::Illegal(x) => format!("{}: {}", x.property, x.message),
            other => format!("{other:?}"),
        });
    let (verdict, property, mut lines): (&str, Option<String>, BTreeSet<usize>) = match v {
        Verdict::Ok => ("OK", None, BTreeSet::new()),
        Verdict::Illegal(x) => (
            "Illegal",
            Some(format!("{}: {}", x.property, x.message)),
            x.lines.iter().copied().collect(),
        ),
        Verdict::Unknown { reason } => ("Unknown", Some(reason.clone()), BTreeSet::new()),
    };
    // The op the replay stopped at belongs to the story as well.
    let stop_op = rp
        .as_ref()
        .ok()
        .and_then(|p| p.stopped.as_ref())
        .and_then(|s| s.op)
        .map(|(i, _)| i);
    if !matches!(v, Verdict::Ok) {
        lines.extend(stop_op.and_then(|i| h.ops.get(i)).map(|o| o.line));
    }
    // An Unknown verdict names no records: those of the failure shown stand in.
    if let (
        Verdict::Unknown { .. },
        Ok(Partial {
            stopped: Some(s), ..
        }),
    ) = (v, &rp)
        && let Verdict::Illegal(x) = &s.verdict
    {
        lines.extend(x.lines.iter().copied());
    }
    let keep_all = h.ops.len() <= TIMELINE_OPS_MAX;
    let near = |line: usize| {
        lines
            .iter()
            .any(|&l| l.abs_diff(line) <= TIMELINE_OPS_MAX / (2 * lines.len().max(1)))
    };
    let ops = h
        .ops
        .iter()
        .enumerate()
        .filter(|(_, o)| keep_all || near(o.line))
        .map(|(i, o)| {
            let response = match &o.rec.outcome {
                Outcome::Ok(ok) => format!(
                    "revision {}: {}",
                    ok.revision,
                    serde_json::to_string(&ok.result).unwrap_or_default()
                ),
                Outcome::Fail(m) => format!("failed: {m}"),
                Outcome::Unknown => "unknown outcome".into(),
            };
            let (before, after) = rp.as_ref().map_or((None, None), |rp| states(rp, h, i));
            let highlighted = lines.contains(&o.line);
            let failure = highlighted
                .then(|| rp.as_ref().ok().and_then(|rp| failure_text(rp, h, i)))
                .flatten()
                .or_else(|| match v {
                    Verdict::Illegal(x) if highlighted => {
                        Some(format!("{}: {}", x.property, x.message))
                    }
                    _ => None,
                });
            TimelineOp {
                client: o.rec.client,
                call: o.rec.call,
                ret: o.rec.ret,
                label: format!("{} (line {})", label(&o.rec.op), o.line),
                highlighted,
                state_before: before,
                state_after: after,
                response: Some(response),
                failure,
            }
        })
        .collect();
    Timeline {
        title: title.to_owned(),
        verdict: verdict.to_owned(),
        property,
        note: note(&rp, v),
        ops,
    }
}

#[cfg(test)]
#[path = "timeline_tests.rs"]
mod tests;
