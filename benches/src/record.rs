//! Writes what a load run did as a history in the checker's JSON-lines format (see
//! checker/README.md, "History format"), so `detcd-check` can judge a live run.
//!
//! TODO(bench-history-types): build these records from `detcd_checker::history` types
//! once that module is on main; until then they are assembled here with `serde_json`
//! following the documented format. Only the requests the load generator sends are
//! covered (put, range, txn with one put); keys and values are ASCII, as the format
//! wants UTF-8 strings.

use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;

/// What one operation returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Success, with the response header revision and the result object.
    Ok {
        /// Header revision.
        revision: i64,
        /// The `result` object (`{"put":{}}`, `{"range":{...}}`, ...).
        result: Value,
    },
    /// Anything else: the request may or may not have taken effect.
    Unknown,
}

/// One recorded operation.
#[derive(Clone, Debug, PartialEq)]
pub struct OpRecord {
    /// Client id (a client issues one request at a time).
    pub client: u64,
    /// Nanoseconds since the run started when the request was sent.
    pub call_ns: u64,
    /// Nanoseconds since the run started when the answer came (None: unknown outcome).
    pub ret_ns: Option<u64>,
    /// The `op` object.
    pub op: Value,
    /// The outcome.
    pub outcome: Outcome,
}

/// The `op` object of a put.
pub fn put_op(key: &str, value: &str) -> Value {
    json!({"put": {"key": key, "value": value}})
}

/// The `op` object of a one-key range.
pub fn range_op(key: &str, serializable: bool) -> Value {
    json!({"range": {"key": key, "serializable": serializable}})
}

/// The `op` object of a txn with no compares whose success branch is one put.
pub fn txn_put_op(key: &str, value: &str) -> Value {
    json!({"txn": {"compare": [], "success": [put_op(key, value)], "failure": []}})
}

/// The result of a put.
pub fn put_result() -> Value {
    json!({"put": {}})
}

/// The result of a txn that ran its success branch of one put.
pub fn txn_put_result(succeeded: bool) -> Value {
    json!({"txn": {"succeeded": succeeded, "responses": if succeeded { vec![put_result()] } else { vec![] }}})
}

/// One key-value as a range result lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedKv {
    /// Key (lossy UTF-8).
    pub key: String,
    /// Value (lossy UTF-8).
    pub value: String,
    /// Create revision.
    pub create_revision: i64,
    /// Mod revision.
    pub mod_revision: i64,
    /// Version.
    pub version: i64,
    /// Lease id.
    pub lease: i64,
}

/// The result of a range.
pub fn range_result(kvs: &[RecordedKv], count: i64, more: bool) -> Value {
    let kvs: Vec<Value> = kvs
        .iter()
        .map(|kv| {
            json!({"key": kv.key, "value": kv.value, "create_revision": kv.create_revision,
                   "mod_revision": kv.mod_revision, "version": kv.version, "lease": kv.lease})
        })
        .collect();
    json!({"range": {"kvs": kvs, "count": count, "more": more}})
}

impl OpRecord {
    /// The record as one JSON line (no newline).
    pub fn to_line(&self) -> String {
        let mut v =
            json!({"type": "op", "client": self.client, "call": self.call_ns, "op": self.op});
        if let Some(ret) = self.ret_ns {
            v["ret"] = json!(ret);
        }
        v["outcome"] = match &self.outcome {
            Outcome::Ok { revision, result } => {
                json!({"ok": {"revision": revision, "result": result}})
            }
            Outcome::Unknown => json!("unknown"),
        };
        v.to_string()
    }
}

/// Writes a `meta` line and then `records` sorted by call time to `path`.
pub fn write_history(path: &Path, source: &str, records: &mut [OpRecord]) -> std::io::Result<()> {
    records.sort_by_key(|r| (r.call_ns, r.client));
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        out,
        "{}",
        json!({"type": "meta", "version": 1, "source": source})
    )?;
    for r in records.iter() {
        writeln!(out, "{}", r.to_line())?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_documented_shape() {
        let ok = OpRecord {
            client: 1,
            call_ns: 10,
            ret_ns: Some(20),
            op: put_op("a", "1"),
            outcome: Outcome::Ok {
                revision: 5,
                result: put_result(),
            },
        };
        let v: Value = serde_json::from_str(&ok.to_line()).expect("json");
        assert_eq!(v["type"], "op");
        assert_eq!(v["ret"], 20);
        assert_eq!(v["op"]["put"]["key"], "a");
        assert_eq!(v["outcome"]["ok"]["revision"], 5);
        let unknown = OpRecord {
            ret_ns: None,
            outcome: Outcome::Unknown,
            ..ok
        };
        let v: Value = serde_json::from_str(&unknown.to_line()).expect("json");
        assert!(v.get("ret").is_none());
        assert_eq!(v["outcome"], "unknown");
        let r = range_result(
            &[RecordedKv {
                key: "a".into(),
                value: "1".into(),
                create_revision: 2,
                mod_revision: 5,
                version: 3,
                lease: 0,
            }],
            1,
            false,
        );
        assert_eq!(r["range"]["kvs"][0]["mod_revision"], 5);
        assert_eq!(txn_put_result(true)["txn"]["responses"][0], put_result());
    }

    #[test]
    fn history_file_is_sorted_by_call() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.jsonl");
        let mk = |client, call_ns| OpRecord {
            client,
            call_ns,
            ret_ns: Some(call_ns + 1),
            op: put_op("k", "v"),
            outcome: Outcome::Ok {
                revision: 2,
                result: put_result(),
            },
        };
        write_history(&path, "test", &mut [mk(2, 30), mk(1, 10)]).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("\"meta\""));
        assert!(lines[1].contains("\"call\":10") && lines[2].contains("\"call\":30"));
    }
}
