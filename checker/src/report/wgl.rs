//! Builds a [`Timeline`] from a history checked by the generic search.
//!
//! For an Illegal verdict, and for an Unknown one whose search placed anything, the
//! longest linearized prefix found is replayed through the model so each of its
//! operations shows the state before and after it; the operations that could not be
//! placed after it are highlighted with the state they were checked against and the
//! output they reported. An OK verdict carries no linearization, so no states are
//! shown. Labels and state texts come from the caller.

use super::{Timeline, TimelineOp};
use crate::wgl::{Model, Operation, Outcome, Progress};

/// The timeline of `ops` checked against `model` with verdict `outcome`; `progress`
/// is how far the search got when it gave up (Unknown only).
pub fn wgl_timeline<M: Model>(
    title: &str,
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    outcome: &Outcome,
    progress: Option<&Progress>,
    label: impl Fn(&Operation<M::Input, M::Output>) -> String,
    state_text: impl Fn(&M::State) -> String,
) -> Timeline {
    let mut timeline_ops: Vec<TimelineOp> = ops
        .iter()
        .map(|op| TimelineOp {
            client: op.client,
            call: op.call,
            ret: op.ret,
            label: label(op),
            ..TimelineOp::default()
        })
        .collect();
    let (property, shown) = match outcome {
        Outcome::Ok => (None, None),
        Outcome::Unknown { reason } => (Some(reason.clone()), progress.cloned()),
        Outcome::Illegal {
            longest_prefix,
            failing,
        } => (
            Some(format!(
                "linearizability: {} operations linearized, then none of {} could be placed",
                longest_prefix.len(),
                failing.len()
            )),
            Some(Progress {
                longest_prefix: longest_prefix.clone(),
                failing: failing.clone(),
            }),
        ),
    };
    let note = shown.as_ref().map(|p| {
        let how = if matches!(outcome, Outcome::Illegal { .. }) {
            "the longest linearized prefix"
        } else {
            "the longest linearized prefix found before the search gave up"
        };
        format!(
            "States shown along {how}: {} operations, then {} that could not be placed.",
            p.longest_prefix.len(),
            p.failing.len()
        )
    });
    if let Some(p) = &shown {
        let mut state = model.init();
        for &i in &p.longest_prefix {
            let (Some(op), Some(t)) = (ops.get(i), timeline_ops.get_mut(i)) else {
                continue;
            };
            t.state_before = Some(state_text(&state));
            // The prefix was accepted by the model, so the step succeeds.
            if let Some(next) = model.step(&state, &op.input, op.output.as_ref()) {
                state = next;
            }
            t.state_after = Some(state_text(&state));
        }
        let state = state_text(&state);
        for &i in &p.failing {
            let (Some(op), Some(t)) = (ops.get(i), timeline_ops.get_mut(i)) else {
                continue;
            };
            let observed = op
                .output
                .as_ref()
                .map_or_else(|| "none (unknown outcome)".to_owned(), |o| format!("{o:?}"));
            t.highlighted = true;
            t.state_before = Some(state.clone());
            t.failure = Some(format!(
                "could not be placed after the {} operations linearized: checked against \
                 state {state}, the model allows no '{}' there (observed output: {observed})",
                p.longest_prefix.len(),
                t.label
            ));
        }
    }
    Timeline {
        title: title.to_string(),
        verdict: outcome.verdict().to_string(),
        property,
        note,
        ops: timeline_ops,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Keyed, Register, RegisterOp, RegisterOutput};
    use crate::wgl::{Limits, check, check_with};

    #[test]
    fn illegal_history_highlights_the_stale_read_with_states() {
        let op = |client, call, ret, op, out| Operation {
            client,
            call,
            ret: Some(ret),
            input: Keyed::single(op),
            output: Some(out),
            line: None,
        };
        let ops = vec![
            op(0, 0, 10, RegisterOp::Write(1), RegisterOutput::Write),
            op(0, 20, 30, RegisterOp::Write(2), RegisterOutput::Write),
            op(1, 40, 50, RegisterOp::Read, RegisterOutput::Read(Some(1))),
        ];
        let outcome = check(&Register, &ops, 1000);
        let t = wgl_timeline(
            "t",
            &Register,
            &ops,
            &outcome,
            None,
            crate::models::label,
            |s| format!("{:?}", s.get(&Vec::new())),
        );
        assert_eq!(t.verdict, "Illegal");
        let flags: Vec<bool> = t.ops.iter().map(|o| o.highlighted).collect();
        assert_eq!(flags, vec![false, false, true]);
        assert_eq!(t.ops[1].state_after.as_deref(), Some("Some(2)"));
        assert_eq!(t.ops[2].state_before.as_deref(), Some("Some(2)"));
        assert_eq!(t.ops[2].label, "read -> 1");
        let page = super::super::html(&t);
        assert!(page.contains("op bad"));
        // The page's data says what the failing read was checked against.
        let d = super::super::embedded_data(&page).expect("embedded data");
        let failing = &d["ops"][2];
        let checked = failing["state_before"].as_str().expect("state");
        let failure = failing["failure"].as_str().expect("failure text");
        assert!(failure.contains(&format!("state {checked}")), "{failure}");
        assert!(failure.contains(&t.ops[2].label), "{failure}");
    }

    #[test]
    fn unknown_history_shows_states_along_the_prefix_reached() {
        let op = |call, ret, op, out| Operation {
            client: 0,
            call,
            ret: Some(ret),
            input: Keyed::single(op),
            output: Some(out),
            line: None,
        };
        let ops: Vec<_> = (1..=6)
            .map(|v| {
                op(
                    v * 10,
                    v * 10 + 5,
                    RegisterOp::Write(v as i64),
                    RegisterOutput::Write,
                )
            })
            .collect();
        let report = check_with(&Register, &ops, &Limits::with_step_budget(3));
        assert_eq!(report.outcome.verdict(), "Unknown");
        let progress = report.progress.expect("progress");
        assert_eq!(progress.longest_prefix.len(), 3);
        let text = |s: &crate::models::RegisterState| format!("{:?}", s.get(&Vec::new()));
        let t = wgl_timeline(
            "t",
            &Register,
            &ops,
            &report.outcome,
            Some(&progress),
            crate::models::label,
            text,
        );
        let d = super::super::embedded_data(&super::super::html(&t)).expect("embedded data");
        assert!(d["note"].as_str().is_some_and(|n| n.contains("gave up")));
        for (pos, &i) in progress.longest_prefix.iter().enumerate() {
            let RegisterOp::Write(v) = ops[i].input.op else {
                panic!("writes only");
            };
            assert_eq!(d["ops"][i]["state_after"], format!("Some({v})"), "op {pos}");
        }
        // Operations the search never reached carry no state.
        assert!(d["ops"][5]["state_before"].is_null());
    }
}
