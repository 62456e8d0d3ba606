//! The checker's own history format: JSON lines, one record per line (see
//! `checker/README.md`). This module parses and validates a file into a [`History`];
//! it does not judge anything.

mod types;

pub use types::*;

use std::io::BufRead;

/// Longest line accepted, so a corrupt file cannot exhaust memory.
pub const LINE_BYTES_MAX: usize = 16 << 20;

/// A history that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A line is not a valid record.
    #[error("line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Reading failed.
    #[error("reading history: {0}")]
    Io(#[from] std::io::Error),
}

impl HistoryError {
    fn at(line: usize, reason: impl Into<String>) -> Self {
        HistoryError::Line {
            line,
            reason: reason.into(),
        }
    }
}

/// A client operation with its source line.
#[derive(Debug, Clone, PartialEq)]
pub struct OpEntry {
    /// 1-based line in the source (0 if generated in memory).
    pub line: usize,
    /// The record.
    pub rec: OpRecord,
}

/// A watch stream: the create request and everything received on it, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchStream {
    /// Line of the create record.
    pub line: usize,
    /// The create record.
    pub create: WatchRecord,
    /// Responses in the order received, each with its line.
    pub responses: Vec<(usize, WatchResponse)>,
}

/// One message received on a watch stream.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchResponse {
    /// Events.
    Events(WatchEventsRecord),
    /// Progress notification.
    Progress(WatchProgressRecord),
    /// Cancellation.
    Cancel(WatchCancelRecord),
}

/// A parsed history.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    /// Optional metadata line.
    pub meta: Option<Meta>,
    /// Client operations in file order.
    pub ops: Vec<OpEntry>,
    /// Watch streams in order of creation.
    pub watches: Vec<WatchStream>,
}

impl History {
    /// Parses JSON lines; blank lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<History, HistoryError> {
        Self::parse_bytes(text.as_bytes())
    }

    /// Parses JSON lines held in memory, without copying each line.
    pub fn parse_bytes(text: &[u8]) -> Result<History, HistoryError> {
        // A trailing newline ends the last line rather than starting an empty one.
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        let mut b = Builder::default();
        // Records are built in place: no list of records to grow and move.
        b.h.ops.reserve(text.len() / OP_LINE_BYTES_TYPICAL);
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            if let Some((line, rec)) = parse_line(i + 1, line)? {
                b.push(line, rec)?;
            }
        }
        Ok(b.h)
    }

    /// Parses JSON lines from a reader.
    pub fn read(reader: impl BufRead) -> Result<History, HistoryError> {
        let mut b = Builder::default();
        for (i, line) in reader.split(b'\n').enumerate() {
            if let Some((line, rec)) = parse_line(i + 1, &line?)? {
                b.push(line, rec)?;
            }
        }
        Ok(b.h)
    }

    /// Builds and validates a history from records with their line numbers.
    pub fn from_records(
        records: impl IntoIterator<Item = (usize, Record)>,
    ) -> Result<History, HistoryError> {
        let records = records.into_iter();
        let mut b = Builder::default();
        // Most records are ops: room for them at once, since an op entry is large and
        // growing the vector by doubling copied it and touched fresh memory twice over.
        b.h.ops.reserve(records.size_hint().0);
        for (line, rec) in records {
            b.push(line, rec)?;
        }
        Ok(b.h)
    }

    /// Writes the history back as JSON lines (ops first, then watch streams).
    pub fn to_records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        if let Some(m) = &self.meta {
            out.push(Record::Meta(m.clone()));
        }
        out.extend(self.ops.iter().map(|o| Record::Op(o.rec.clone())));
        for w in &self.watches {
            out.push(Record::Watch(w.create.clone()));
            for (_, r) in &w.responses {
                out.push(match r {
                    WatchResponse::Events(e) => Record::WatchEvents(e.clone()),
                    WatchResponse::Progress(p) => Record::WatchProgress(p.clone()),
                    WatchResponse::Cancel(c) => Record::WatchCancel(c.clone()),
                });
            }
        }
        out
    }

    /// Serializes to JSON lines.
    pub fn to_jsonl(&self) -> String {
        let mut s = String::new();
        for r in self.to_records() {
            // Serializing these plain types cannot fail.
            s.push_str(&serde_json::to_string(&r).unwrap_or_default());
            s.push('\n');
        }
        s
    }
}

/// Parses line `line_no`; None for a blank or comment line.
fn parse_line(line_no: usize, line: &[u8]) -> Result<Option<(usize, Record)>, HistoryError> {
    if line.len() > LINE_BYTES_MAX {
        return Err(HistoryError::at(line_no, "line longer than 16 MiB"));
    }
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() || trimmed.starts_with(b"#") {
        return Ok(None);
    }
    let rec = parse_record(trimmed).map_err(|e| HistoryError::at(line_no, e.to_string()))?;
    Ok(Some((line_no, rec)))
}

/// Parses one record. Lines that start with the tag (as this crate writes them) are
/// parsed straight into their struct, which is several times faster than serde's
/// buffering of internally tagged enums; any other layout takes the general path.
fn parse_record(line: &[u8]) -> Result<Record, serde_json::Error> {
    if line.starts_with(br#"{"type":"op","#) {
        return serde_json::from_slice(line).map(Record::Op);
    }
    if line.starts_with(br#"{"type":"watch_events","#) {
        return serde_json::from_slice(line).map(Record::WatchEvents);
    }
    serde_json::from_slice(line)
}

/// Bytes of a typical op line, to size the op list before parsing.
const OP_LINE_BYTES_TYPICAL: usize = 400;

/// Validates records one by one into a history.
#[derive(Default)]
struct Builder {
    h: History,
    /// Index in `h.watches` of each open stream.
    streams: std::collections::BTreeMap<(u64, u64), usize>,
}

impl Builder {
    fn push(&mut self, line: usize, rec: Record) -> Result<(), HistoryError> {
        let h = &mut self.h;
        match rec {
            Record::Meta(m) => h.meta = Some(m),
            Record::Op(op) => {
                validate_op(&op).map_err(|r| HistoryError::at(line, r))?;
                h.ops.push(OpEntry { line, rec: op });
            }
            Record::Watch(w) => {
                if self.streams.contains_key(&(w.client, w.watch)) {
                    return Err(HistoryError::at(
                        line,
                        format!("watch {} of client {} opened twice", w.watch, w.client),
                    ));
                }
                self.streams.insert((w.client, w.watch), h.watches.len());
                h.watches.push(WatchStream {
                    line,
                    create: w,
                    responses: Vec::new(),
                });
            }
            Record::WatchEvents(r) => {
                self.respond(line, (r.client, r.watch), WatchResponse::Events(r))?
            }
            Record::WatchProgress(r) => {
                self.respond(line, (r.client, r.watch), WatchResponse::Progress(r))?
            }
            Record::WatchCancel(r) => {
                self.respond(line, (r.client, r.watch), WatchResponse::Cancel(r))?
            }
        }
        Ok(())
    }

    fn respond(
        &mut self,
        line: usize,
        id: (u64, u64),
        resp: WatchResponse,
    ) -> Result<(), HistoryError> {
        push_response(&mut self.h, &self.streams, line, id, resp)
    }
}

fn push_response(
    h: &mut History,
    streams: &std::collections::BTreeMap<(u64, u64), usize>,
    line: usize,
    id: (u64, u64),
    resp: WatchResponse,
) -> Result<(), HistoryError> {
    let idx = streams.get(&id).ok_or_else(|| {
        HistoryError::at(
            line,
            format!(
                "response on watch {} of client {} before it was opened",
                id.1, id.0
            ),
        )
    })?;
    h.watches[*idx].responses.push((line, resp));
    Ok(())
}

fn validate_op(op: &OpRecord) -> Result<(), String> {
    if let Some(ret) = op.ret
        && ret < op.call
    {
        return Err(format!("ret {ret} is before call {}", op.call));
    }
    validate_request(&op.op, 0)?;
    match &op.outcome {
        Outcome::Ok(ok) => {
            if op.ret.is_none() {
                return Err("an ok outcome needs a ret time".into());
            }
            if ok.revision < 0 {
                return Err(format!("negative revision {}", ok.revision));
            }
            validate_result(&op.op, &ok.result)
        }
        Outcome::Fail(_) => {
            if op.ret.is_none() {
                return Err("a fail outcome needs a ret time".into());
            }
            Ok(())
        }
        Outcome::Unknown => Ok(()),
    }
}

/// Nesting depth of txns accepted.
const TXN_DEPTH_MAX: usize = 16;

fn validate_request(op: &Op, depth: usize) -> Result<(), String> {
    if depth > TXN_DEPTH_MAX {
        return Err("txn nested too deeply".into());
    }
    if let Op::Txn(t) = op {
        for o in t.success.iter().chain(&t.failure) {
            match o {
                Op::Range(_) | Op::Put(_) | Op::DeleteRange(_) => {}
                Op::Txn(_) => validate_request(o, depth + 1)?,
                _ => return Err("txn branches may hold only range, put, delete_range, txn".into()),
            }
        }
    }
    Ok(())
}

fn validate_result(op: &Op, res: &OpResult) -> Result<(), String> {
    let ok = match (op, res) {
        (Op::Range(_), OpResult::Range(_))
        | (Op::Put(_), OpResult::Put(_))
        | (Op::DeleteRange(_), OpResult::DeleteRange(_))
        | (Op::Compact(_), OpResult::Compact {})
        | (Op::LeaseGrant(_), OpResult::LeaseGrant(_))
        | (Op::LeaseRevoke(_), OpResult::LeaseRevoke {})
        | (Op::LeaseKeepAlive(_), OpResult::LeaseKeepAlive(_))
        | (Op::LeaseTimeToLive(_), OpResult::LeaseTimeToLive(_)) => true,
        (Op::Txn(t), OpResult::Txn(r)) => {
            let branch = if r.succeeded { &t.success } else { &t.failure };
            if branch.len() != r.responses.len() {
                return Err(format!(
                    "txn {} branch has {} ops but {} responses",
                    if r.succeeded { "success" } else { "failure" },
                    branch.len(),
                    r.responses.len()
                ));
            }
            for (o, r) in branch.iter().zip(&r.responses) {
                validate_result(o, r)?;
            }
            true
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err("result kind does not match the request kind".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ops_and_watches() {
        let text = r#"
# a comment
{"type":"meta","version":1,"source":"test"}
{"type":"op","client":1,"call":1,"ret":2,"op":{"put":{"key":"a","value":"1"}},"outcome":{"ok":{"revision":2,"result":{"put":{}}}}}
{"type":"op","client":2,"call":3,"op":{"range":{"key":"a"}},"outcome":"unknown"}
{"type":"op","client":2,"call":5,"ret":6,"op":{"put":{"key":"a","value":"2","lease":7}},"outcome":{"fail":"etcdserver: requested lease not found"}}
{"type":"watch","client":3,"watch":1,"call":0,"request":{"key":"a","start_revision":1,"filters":["no_delete"]}}
{"type":"watch_events","client":3,"watch":1,"time":3,"revision":2,"events":[{"type":"put","kv":{"key":"a","value":"1","create_revision":2,"mod_revision":2,"version":1}}]}
{"type":"watch_progress","client":3,"watch":1,"time":4,"revision":2}
{"type":"watch_cancel","client":3,"watch":1,"time":5,"reason":"x","compact_revision":2}
"#;
        let h = History::parse(text).expect("valid");
        assert_eq!(h.ops.len(), 3);
        assert_eq!(h.ops[0].line, 4);
        assert_eq!(h.watches.len(), 1);
        assert_eq!(h.watches[0].responses.len(), 3);
        let again = History::parse(&h.to_jsonl()).expect("round trip");
        assert_eq!(
            again.ops.iter().map(|o| &o.rec).collect::<Vec<_>>(),
            h.ops.iter().map(|o| &o.rec).collect::<Vec<_>>()
        );
    }

    #[test]
    fn in_memory_and_reader_parsing_agree_on_records_and_line_numbers() {
        let op = r#"{"type":"op","client":1,"call":1,"ret":2,"op":{"range":{"key":"a"}},"outcome":{"ok":{"revision":1,"result":{"range":{}}}}}"#;
        let texts = [
            format!("{op}\n\n# c\r\n{op}\r\n"),
            format!("\n{op}"),
            format!("{op}\n\n\n"),
            String::new(),
            format!("{op}\n{{bad\n{op}\n"),
        ];
        for text in &texts {
            let a = History::parse(text).map(|h| h.ops.iter().map(|o| o.line).collect::<Vec<_>>());
            let b = History::read(text.as_bytes())
                .map(|h| h.ops.iter().map(|o| o.line).collect::<Vec<_>>());
            match (a, b) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text:?}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text:?}"),
                (a, b) => panic!("{text:?}: {a:?} vs {b:?}"),
            }
        }
        let h = History::parse(&texts[0]).expect("parses");
        assert_eq!(h.ops.iter().map(|o| o.line).collect::<Vec<_>>(), vec![1, 4]);
    }

    #[test]
    fn errors_carry_line_numbers() {
        let cases = [
            ("{\"type\":\"op\"}", 1, "missing field"),
            ("\n\n{not json", 3, "key must be a string"),
            (
                r#"{"type":"op","client":1,"call":5,"ret":4,"op":{"range":{"key":"a"}},"outcome":"unknown"}"#,
                1,
                "before call",
            ),
            (
                r#"{"type":"op","client":1,"call":5,"ret":6,"op":{"range":{"key":"a"}},"outcome":{"ok":{"revision":1,"result":{"put":{}}}}}"#,
                1,
                "does not match",
            ),
            (
                r#"{"type":"watch_progress","client":1,"watch":1,"time":1,"revision":1}"#,
                1,
                "before it was opened",
            ),
        ];
        for (text, line, needle) in cases {
            match History::parse(text) {
                Err(HistoryError::Line { line: l, reason }) => {
                    assert_eq!(l, line, "{text}");
                    assert!(reason.contains(needle), "{reason} lacks {needle}");
                }
                other => panic!("{text}: expected a line error, got {other:?}"),
            }
        }
    }
}
