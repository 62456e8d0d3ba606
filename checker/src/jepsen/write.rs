//! Writes register and cas-register histories as Jepsen EDN, one operation map a line.
//!
//! Used to produce example and benchmark inputs for the importer. An operation of
//! unknown outcome gets an `:info` completion after every other event (its process is
//! never used again). Keys other than the empty one are written as independent
//! `[k v]` tuples, with the key bytes taken as EDN text. This does not write kv
//! histories.

use std::fmt::Write as _;

use crate::models::{Keyed, RegisterOp, RegisterOutput};
use crate::wgl::Operation;

fn with_key(key: &[u8], value: &str) -> String {
    if key.is_empty() {
        value.to_string()
    } else {
        format!("[{} {value}]", String::from_utf8_lossy(key))
    }
}

/// The EDN text of a register or cas-register history.
pub fn write_register(ops: &[Operation<Keyed<RegisterOp>, RegisterOutput>]) -> String {
    // (time, completion after invocation, operation index, text)
    let mut events: Vec<(u64, bool, usize, String)> = Vec::with_capacity(ops.len() * 2);
    let last = ops
        .iter()
        .map(|o| o.ret.unwrap_or(o.call))
        .max()
        .unwrap_or(0);
    for (i, op) in ops.iter().enumerate() {
        let key = &op.input.key;
        let (f, invoke_value) = match op.input.op {
            RegisterOp::Read => ("read", with_key(key, "nil")),
            RegisterOp::Write(v) => ("write", with_key(key, &v.to_string())),
            RegisterOp::Cas { from, to } => ("cas", with_key(key, &format!("[{from} {to}]"))),
        };
        let line = |kind: &str, value: &str, time: u64| {
            format!(
                "{{:process {}, :type :{kind}, :f :{f}, :value {value}, :time {time}}}",
                op.client
            )
        };
        events.push((op.call, false, i, line("invoke", &invoke_value, op.call)));
        match (&op.output, op.ret) {
            (Some(out), Some(ret)) => {
                let value = match out {
                    RegisterOutput::Read(None) => with_key(key, "nil"),
                    RegisterOutput::Read(Some(v)) => with_key(key, &v.to_string()),
                    _ => invoke_value.clone(),
                };
                let kind = if matches!(out, RegisterOutput::Cas(false)) {
                    "fail"
                } else {
                    "ok"
                };
                events.push((ret, true, i, line(kind, &value, ret)));
            }
            _ => events.push((last + 1, true, i, line("info", &invoke_value, last + 1))),
        }
    }
    events.sort_by_key(|a| (a.0, a.1, a.2));
    let mut out = String::new();
    for (_, _, _, text) in events {
        let _ = writeln!(out, "{text}");
    }
    out
}
