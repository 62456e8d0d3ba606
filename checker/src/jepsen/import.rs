//! Turns Jepsen operation maps into [`Operation`]s for the register, cas-register and
//! kv models.
//!
//! Pairing: an `:invoke` opens an operation for its `:process`; the next `:ok`,
//! `:fail` or `:info` of that process closes it. `:ok` gives the result, `:fail` means
//! it did not happen (both are dropped), `:info` means the outcome is unknown (a
//! crashed process; Jepsen continues under a new process id). An invocation still open
//! at the end is unknown too. Operations of non-integer processes (the nemesis) are
//! skipped. Times come from `:time` when every operation has one, else from the order
//! of the operations in the file.
//!
//! Keys: a `:key` entry wins; otherwise Jepsen's independent-key tuples `[k v]` are
//! recognised (a read invoked as `[k nil]`, a write `[k v]`, a cas `[k [old new]]`);
//! otherwise there is one unnamed key. A single-operation `:txn` of list-append
//! (`[[:append k v]]`, `[[:r k v]]`) is read as a kv operation. Multi-operation
//! transactions are rejected: they need a transactional checker.

use std::collections::BTreeMap;

use super::ImportError;
use super::edn::Edn;
use crate::models::{Keyed, KvOp, KvOutput, RegisterOp, RegisterOutput, Value};
use crate::wgl::Operation;

/// One Jepsen operation map, reduced to what pairing needs.
struct Event<'a> {
    line: usize,
    process: u64,
    kind: Kind,
    f: &'a str,
    value: &'a Edn,
    key: Option<&'a Edn>,
    time: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// An invocation and its completion (None: unknown outcome), with the times to use.
pub(super) struct Pair<'a> {
    invoke: Event<'a>,
    done: Option<Event<'a>>,
    call: u64,
    ret: Option<u64>,
}

fn fail(line: usize, reason: impl Into<String>) -> ImportError {
    ImportError {
        line,
        reason: reason.into(),
    }
}

/// Reads the operation maps (`forms`: each with its line) and pairs them.
pub(super) fn pair(forms: &[(usize, Edn)]) -> Result<Vec<Pair<'_>>, ImportError> {
    let mut events = Vec::new();
    for (line, form) in forms {
        if let Some(e) = event(*line, form)? {
            events.push(e);
        }
    }
    let all_timed = events.iter().all(|e| e.time.is_some());
    let mut open: BTreeMap<u64, (Event<'_>, u64)> = BTreeMap::new();
    let mut pairs = Vec::new();
    for (position, e) in events.into_iter().enumerate() {
        let at = if all_timed {
            e.time.unwrap_or(0)
        } else {
            position as u64
        };
        if e.kind == Kind::Invoke {
            if let Some((prev, _)) = open.get(&e.process) {
                return Err(fail(
                    e.line,
                    format!(
                        "process {} invokes again while its invocation on line {} is open",
                        e.process, prev.line
                    ),
                ));
            }
            open.insert(e.process, (e, at));
            continue;
        }
        let Some((invoke, call)) = open.remove(&e.process) else {
            return Err(fail(
                e.line,
                format!("completion of process {} without an invocation", e.process),
            ));
        };
        if invoke.f != e.f {
            return Err(fail(
                e.line,
                format!(
                    "completion :{} does not match invocation :{}",
                    e.f, invoke.f
                ),
            ));
        }
        match e.kind {
            Kind::Fail => {}
            Kind::Info => pairs.push(Pair {
                invoke,
                done: None,
                call,
                ret: None,
            }),
            _ => pairs.push(Pair {
                invoke,
                done: Some(e),
                call,
                ret: Some(at),
            }),
        }
    }
    for (invoke, call) in open.into_values() {
        pairs.push(Pair {
            invoke,
            done: None,
            call,
            ret: None,
        });
    }
    pairs.sort_by_key(|p| p.invoke.line);
    Ok(pairs)
}

/// One operation map, or None for an operation of the nemesis (or another non-client).
fn event(line: usize, form: &Edn) -> Result<Option<Event<'_>>, ImportError> {
    if !matches!(form, Edn::Map(_) | Edn::Tagged(_, _)) {
        return Err(fail(
            line,
            format!("expected an operation map, found {form}"),
        ));
    }
    let process = match form.get("process") {
        Some(Edn::Int(p)) if *p >= 0 => *p as u64,
        Some(Edn::Int(p)) => return Err(fail(line, format!("negative :process {p}"))),
        Some(_) => return Ok(None),
        None => return Err(fail(line, "operation without :process")),
    };
    let kind = match form.get("type") {
        Some(Edn::Keyword(k)) => match k.as_str() {
            "invoke" => Kind::Invoke,
            "ok" => Kind::Ok,
            "fail" => Kind::Fail,
            "info" => Kind::Info,
            other => return Err(fail(line, format!("unknown :type :{other}"))),
        },
        _ => return Err(fail(line, "operation without a keyword :type")),
    };
    let f = match form.get("f") {
        Some(Edn::Keyword(f)) => f.as_str(),
        _ => return Err(fail(line, "operation without a keyword :f")),
    };
    let time = match form.get("time") {
        Some(Edn::Int(t)) if *t >= 0 => Some(*t as u64),
        Some(other) => return Err(fail(line, format!("bad :time {other}"))),
        None => None,
    };
    Ok(Some(Event {
        line,
        process,
        kind,
        f,
        value: form.get("value").unwrap_or(&Edn::Nil),
        key: form.get("key"),
        time,
    }))
}

fn int(line: usize, v: &Edn, what: &str) -> Result<Value, ImportError> {
    match v {
        Edn::Int(i) => Ok(*i),
        other => Err(fail(
            line,
            format!("{what} must be an integer, found {other}"),
        )),
    }
}

fn key_bytes(k: &Edn) -> Vec<u8> {
    k.to_string().into_bytes()
}

/// Whether the history uses independent-key tuples: some read or write invocation
/// carries a two-element vector.
fn independent(pairs: &[Pair<'_>]) -> bool {
    pairs.iter().any(|p| {
        p.invoke.key.is_none()
            && matches!(p.invoke.f, "read" | "write" | "get" | "put" | "append")
            && p.invoke.value.as_seq().is_some_and(|s| s.len() == 2)
    })
}

/// Splits an operation's key and value: `:key`, or a `[k v]` tuple, or no key.
fn split<'a>(
    e: &Event<'a>,
    value: &'a Edn,
    tuples: bool,
) -> Result<(Vec<u8>, &'a Edn), ImportError> {
    if let Some(k) = e.key {
        return Ok((key_bytes(k), value));
    }
    if !tuples {
        return Ok((Vec::new(), value));
    }
    match value.as_seq() {
        Some([k, v]) => Ok((key_bytes(k), v)),
        _ => Err(fail(
            e.line,
            format!("expected an independent [key value] tuple, found {value}"),
        )),
    }
}

/// Register or cas-register operations.
pub(super) fn register(
    pairs: &[Pair<'_>],
    cas_allowed: bool,
) -> Result<Vec<Operation<Keyed<RegisterOp>, RegisterOutput>>, ImportError> {
    let tuples = independent(pairs);
    let mut ops = Vec::with_capacity(pairs.len());
    for p in pairs {
        let e = &p.invoke;
        let (key, v) = split(e, e.value, tuples)?;
        let op = match e.f {
            "read" => RegisterOp::Read,
            "write" => RegisterOp::Write(int(e.line, v, "a written value")?),
            "cas" if cas_allowed => match v.as_seq() {
                Some([from, to]) => RegisterOp::Cas {
                    from: int(e.line, from, "a cas value")?,
                    to: int(e.line, to, "a cas value")?,
                },
                _ => {
                    return Err(fail(
                        e.line,
                        format!("cas value must be [old new], found {v}"),
                    ));
                }
            },
            "cas" => return Err(fail(e.line, "cas in a register history (use cas-register)")),
            other => return Err(fail(e.line, format!("unknown :f :{other} for a register"))),
        };
        let output = match &p.done {
            None => None,
            Some(done) => Some(match op {
                RegisterOp::Read => {
                    let (_, seen) = split(done, done.value, tuples)?;
                    match seen {
                        Edn::Nil => RegisterOutput::Read(None),
                        v => RegisterOutput::Read(Some(int(done.line, v, "a read value")?)),
                    }
                }
                RegisterOp::Write(_) => RegisterOutput::Write,
                RegisterOp::Cas { .. } => RegisterOutput::Cas(true),
            }),
        };
        ops.push(operation(p, Keyed { key, op }, output));
    }
    Ok(ops)
}

/// Kv (get/put/append) operations.
pub(super) fn kv(pairs: &[Pair<'_>]) -> Result<Vec<Operation<Keyed<KvOp>, KvOutput>>, ImportError> {
    let tuples = independent(pairs);
    let mut ops = Vec::with_capacity(pairs.len());
    for p in pairs {
        let e = &p.invoke;
        let (key, f, v, done_value) = if e.f == "txn" {
            let (k, f, v) = micro_op(e.line, e.value)?;
            let done = match &p.done {
                Some(d) => Some(micro_op(d.line, d.value)?.2),
                None => None,
            };
            (key_bytes(k), f, v, done)
        } else {
            let (key, v) = split(e, e.value, tuples)?;
            let done = match &p.done {
                Some(d) => Some(split(d, d.value, tuples)?.1),
                None => None,
            };
            (key, e.f, v, done)
        };
        let op = match f {
            "read" | "get" | "r" => KvOp::Get,
            "write" | "put" | "w" => KvOp::Put(int(e.line, v, "a put value")?),
            "append" => KvOp::Append(int(e.line, v, "an appended value")?),
            other => return Err(fail(e.line, format!("unknown :f :{other} for kv"))),
        };
        let output = match (done_value, &op) {
            (None, _) => None,
            (Some(seen), KvOp::Get) => {
                let line = p.done.as_ref().map_or(e.line, |d| d.line);
                Some(KvOutput::Get(list(line, seen)?))
            }
            (Some(_), _) => Some(KvOutput::Done),
        };
        ops.push(operation(p, Keyed { key, op }, output));
    }
    Ok(ops)
}

/// The only micro-operation `[f k v]` of a list-append transaction.
fn micro_op(line: usize, value: &Edn) -> Result<(&Edn, &str, &Edn), ImportError> {
    let Some(mops) = value.as_seq() else {
        return Err(fail(
            line,
            format!("a :txn value must be a vector, found {value}"),
        ));
    };
    match mops {
        [mop] => match mop.as_seq() {
            Some([Edn::Keyword(f), k, v]) => Ok((k, f.as_str(), v)),
            _ => Err(fail(line, format!("bad micro-operation {mop}"))),
        },
        _ => Err(fail(
            line,
            format!(
                "transaction of {} micro-operations; only single-operation :txn is supported",
                mops.len()
            ),
        )),
    }
}

/// A read list: nil, a vector of integers, or one integer (a plain kv read).
fn list(line: usize, v: &Edn) -> Result<Vec<Value>, ImportError> {
    match v {
        Edn::Nil => Ok(Vec::new()),
        Edn::Int(i) => Ok(vec![*i]),
        Edn::Vector(items) | Edn::List(items) => items
            .iter()
            .map(|x| int(line, x, "a list element"))
            .collect(),
        other => Err(fail(
            line,
            format!("a read value must be a list, found {other}"),
        )),
    }
}

fn operation<I, O>(p: &Pair<'_>, input: I, output: Option<O>) -> Operation<I, O> {
    let known = output.is_some();
    Operation {
        client: p.invoke.process,
        call: p.call,
        ret: if known { p.ret } else { None },
        input,
        output,
        line: Some(p.invoke.line),
    }
}
