//! Builds the HTML report's [`Timeline`] for an etcd history: one bar per operation,
//! the records of a violation highlighted, and on hover the model state of the keys
//! the operation touches before and after it (from a replay of the history; when the
//! replay fails, as for an Illegal history, only the server's response is shown). It
//! does not render anything (see `report`).

use std::collections::BTreeSet;

use crate::history::{History, Op, Outcome};
use crate::verdict::Verdict as V;

use super::Options;
use super::conflict::op_ranges;
use super::prep::Prep;
use super::replay::{Replayed, replay};
use super::store::{Store, claims_write};
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

fn replayed(h: &History) -> Option<Replayed> {
    let p = Prep::build(h, false).ok()?;
    replay(h, &p, &Options::default()).ok()
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

/// Model state before and after op `i`, if the replay placed it.
fn states(rp: &Replayed, h: &History, i: usize) -> (Option<String>, Option<String>) {
    let o = &h.ops[i];
    let (rev, writes) = match &o.rec.outcome {
        Outcome::Ok(ok) => (ok.revision, claims_write(&ok.result)),
        Outcome::Unknown => match rp.resolved.get(i).copied().flatten() {
            Some(r) => (r, true),
            None => return (Some("not applied (unknown outcome)".into()), None),
        },
        Outcome::Fail(_) => return (None, None),
    };
    if matches!(
        o.rec.op,
        Op::Range(_) | Op::Put(_) | Op::DeleteRange(_) | Op::Txn(_)
    ) {
        let before = if writes { rev - 1 } else { rev };
        (
            Some(keys_at(&rp.store, &o.rec.op, before)),
            writes.then(|| keys_at(&rp.store, &o.rec.op, rev)),
        )
    } else {
        (None, None)
    }
}

/// The timeline of `h` with the records of `v`'s violation highlighted. When the
/// history is larger than [`TIMELINE_OPS_MAX`], only the highlighted operations and
/// those around them in file order are drawn.
pub fn timeline(title: &str, h: &History, v: &Verdict) -> Timeline {
    let (verdict, property, lines): (&str, Option<String>, BTreeSet<usize>) = match v {
        Verdict::Ok => ("OK", None, BTreeSet::new()),
        Verdict::Illegal(x) => (
            "Illegal",
            Some(format!("{}: {}", x.property, x.message)),
            x.lines.iter().copied().collect(),
        ),
        Verdict::Unknown { reason } => ("Unknown", Some(reason.clone()), BTreeSet::new()),
    };
    let keep_all = h.ops.len() <= TIMELINE_OPS_MAX;
    let near = |line: usize| {
        lines
            .iter()
            .any(|&l| l.abs_diff(line) <= TIMELINE_OPS_MAX / (2 * lines.len().max(1)))
    };
    let rp = match v {
        V::Ok => replayed(h),
        _ => None,
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
            TimelineOp {
                client: o.rec.client,
                call: o.rec.call,
                ret: o.rec.ret,
                label: format!("{} (line {})", label(&o.rec.op), o.line),
                highlighted: lines.contains(&o.line),
                state_before: before,
                state_after: Some(match after {
                    Some(a) => format!("{a}\nresponse: {response}"),
                    None => format!("response: {response}"),
                }),
            }
        })
        .collect();
    Timeline {
        title: title.to_owned(),
        verdict: verdict.to_owned(),
        property,
        ops,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_history_shows_model_state_before_and_after_a_put() {
        let text = concat!(
            r#"{"type":"op","client":1,"call":1,"ret":2,"op":{"put":{"key":"a","value":"1"}},"outcome":{"ok":{"revision":2,"result":{"put":{}}}}}"#,
            "\n",
            r#"{"type":"op","client":1,"call":3,"ret":4,"op":{"put":{"key":"a","value":"2"}},"outcome":{"ok":{"revision":3,"result":{"put":{}}}}}"#,
            "\n",
        );
        let h = History::parse(text).expect("parses");
        let t = timeline("t", &h, &V::Ok);
        let second = &t.ops[1];
        assert_eq!(
            second.state_before.as_deref(),
            Some("revision 2: a=1 (version 1, created 2, modified 2)")
        );
        let after = second.state_after.as_deref().unwrap_or_default();
        assert!(
            after.starts_with("revision 3: a=2 (version 2, created 2, modified 3)"),
            "{after}"
        );
    }
}
