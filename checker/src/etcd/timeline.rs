//! Builds the HTML report's [`Timeline`] for an etcd history: one bar per operation,
//! the records of a violation highlighted, the response on hover. It does not render
//! anything (see `report`) and does not replay the model: "state after" shows what
//! the server answered.

use std::collections::BTreeSet;

use crate::history::{History, Op, Outcome};
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
    let ops = h
        .ops
        .iter()
        .filter(|o| keep_all || near(o.line))
        .map(|o| TimelineOp {
            client: o.rec.client,
            call: o.rec.call,
            ret: o.rec.ret,
            label: format!("{} (line {})", label(&o.rec.op), o.line),
            highlighted: lines.contains(&o.line),
            state_before: None,
            state_after: Some(match &o.rec.outcome {
                Outcome::Ok(ok) => format!(
                    "revision {}: {}",
                    ok.revision,
                    serde_json::to_string(&ok.result).unwrap_or_default()
                ),
                Outcome::Fail(m) => format!("failed: {m}"),
                Outcome::Unknown => "unknown outcome".into(),
            }),
        })
        .collect();
    Timeline {
        title: title.to_owned(),
        verdict: verdict.to_owned(),
        property,
        ops,
    }
}
