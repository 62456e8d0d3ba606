//! Builds a [`Timeline`] from a history checked by the generic search.
//!
//! For an Illegal verdict, the longest linearized prefix is replayed through the model
//! so each of its operations shows the state before and after it, and the operations
//! that could not be placed are highlighted with the state they met. An OK verdict
//! carries no linearization, so no states are shown. Labels and state texts come from
//! the caller.

use super::{Timeline, TimelineOp};
use crate::wgl::{Model, Operation, Outcome};

/// The timeline of `ops` checked against `model` with verdict `outcome`.
pub fn wgl_timeline<M: Model>(
    title: &str,
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    outcome: &Outcome,
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
            highlighted: false,
            state_before: None,
            state_after: None,
        })
        .collect();
    let property = match outcome {
        Outcome::Ok => None,
        Outcome::Unknown { reason } => Some(reason.clone()),
        Outcome::Illegal {
            longest_prefix,
            failing,
        } => {
            let mut state = model.init();
            for &i in longest_prefix {
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
            for &i in failing {
                if let Some(t) = timeline_ops.get_mut(i) {
                    t.highlighted = true;
                    t.state_before = Some(state_text(&state));
                }
            }
            Some(format!(
                "linearizability: {} operations linearized, then none of {} could be placed",
                longest_prefix.len(),
                failing.len()
            ))
        }
    };
    Timeline {
        title: title.to_string(),
        verdict: outcome.verdict().to_string(),
        property,
        ops: timeline_ops,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Keyed, Register, RegisterOp, RegisterOutput};
    use crate::wgl::check;

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
        let t = wgl_timeline("t", &Register, &ops, &outcome, crate::models::label, |s| {
            format!("{:?}", s.get(&Vec::new()))
        });
        assert_eq!(t.verdict, "Illegal");
        let flags: Vec<bool> = t.ops.iter().map(|o| o.highlighted).collect();
        assert_eq!(flags, vec![false, false, true]);
        assert_eq!(t.ops[1].state_after.as_deref(), Some("Some(2)"));
        assert_eq!(t.ops[2].state_before.as_deref(), Some("Some(2)"));
        assert_eq!(t.ops[2].label, "read -> 1");
        assert!(super::super::html(&t).contains("op bad"));
    }
}
