//! Import of etcd's robustness-test reports (`--format etcd-robustness`).
//!
//! A report directory holds one folder per client, `client-<id>`, with up to two
//! files: `operations.json` (one JSON object per KV request: the request, its call and
//! return times in nanoseconds and the response or error) and `watch.json` (one JSON
//! object per watch: the request and every response received). The importer turns them
//! into a [`History`] for the etcd checker; `checker/README.md` lists the mapping.
//!
//! It does not judge anything, and it deliberately does not guess what the reports
//! leave out: a response without a revision or with an error becomes an unknown
//! outcome; a read showing a key whose create revision (known for version 1 or from a
//! watch that delivered the key's creation) or lease the report cannot tell becomes an
//! unknown outcome too; watch events are compared only on what they carry.

mod convert;
pub mod format;
mod known;

use std::path::{Path, PathBuf};

use crate::history::{History, HistoryError, Record, WatchResponse};
use format::{ReportOperation, ReportWatch};

/// Name of a client's KV operations file.
pub const OPERATIONS_FILE: &str = "operations.json";
/// Name of a client's watch file.
pub const WATCH_FILE: &str = "watch.json";
/// Largest report file read, so a corrupt report cannot exhaust memory.
pub const FILE_BYTES_MAX: u64 = 1 << 30;

/// Why a report could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum RobustnessError {
    /// A file holds something that is not a valid record.
    #[error("{}:{line}: {reason}", file.display())]
    Record {
        /// The file.
        file: PathBuf,
        /// 1-based line where the record starts (or where JSON broke).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The directory or a file could not be read.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The converted records do not form a valid history.
    #[error("converted history: {0}")]
    History(#[from] HistoryError),
}

/// An imported report: the history, and for each of its line numbers (1-based) the
/// report file and line it came from.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    /// The history to check.
    pub history: History,
    /// `sources[line - 1]` is `client-N/operations.json:K` or similar.
    pub sources: Vec<String>,
}

impl Imported {
    /// Where history line `line` came from.
    pub fn source(&self, line: usize) -> Option<&str> {
        line.checked_sub(1)
            .and_then(|i| self.sources.get(i))
            .map(String::as_str)
    }
}

/// The text of one client's files; `None` when the file is absent.
#[derive(Debug, Clone, Default)]
pub struct ClientFiles {
    /// Client id (from the folder name).
    pub client: u64,
    /// Folder name, for messages.
    pub dir: PathBuf,
    /// `operations.json`.
    pub operations: Option<String>,
    /// `watch.json`.
    pub watch: Option<String>,
}

/// Reads and imports the report directory `dir`.
pub fn import_dir(dir: &Path) -> Result<Imported, RobustnessError> {
    let io = |path: &Path, e: std::io::Error| RobustnessError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut clients = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix("client-") else {
            continue;
        };
        if !entry.path().is_dir() {
            continue;
        }
        let client = id.parse::<u64>().map_err(|_| RobustnessError::Io {
            path: entry.path(),
            reason: "folder name is not client-<number>".into(),
        })?;
        let read = |file: &str| -> Result<Option<String>, RobustnessError> {
            let path = entry.path().join(file);
            match std::fs::metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io(&path, e)),
                Ok(m) if m.len() > FILE_BYTES_MAX => {
                    return Err(RobustnessError::Io {
                        path,
                        reason: "file larger than 1 GiB".into(),
                    });
                }
                Ok(_) => {}
            }
            std::fs::read_to_string(&path)
                .map(Some)
                .map_err(|e| io(&path, e))
        };
        clients.push(ClientFiles {
            client,
            dir: PathBuf::from(&name),
            operations: read(OPERATIONS_FILE)?,
            watch: read(WATCH_FILE)?,
        });
    }
    if clients.is_empty() {
        return Err(RobustnessError::Io {
            path: dir.to_path_buf(),
            reason: "no client-<id> folders in the report".into(),
        });
    }
    clients.sort_by_key(|c| c.client);
    import(&clients).map_err(|e| match e {
        RobustnessError::Record { file, line, reason } => RobustnessError::Record {
            file: dir.join(file),
            line,
            reason,
        },
        other => other,
    })
}

/// Reads the concatenated JSON values of `text` with the line each starts on.
fn values<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
) -> Result<Vec<(usize, T)>, RobustnessError> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<T>();
    loop {
        let start = stream.byte_offset();
        let start = start + (text[start..].len() - text[start..].trim_start().len());
        match stream.next() {
            None => return Ok(out),
            Some(Ok(v)) => out.push((line_of(start), v)),
            Some(Err(e)) => {
                return Err(RobustnessError::Record {
                    file: file.to_path_buf(),
                    line: e.line(),
                    reason: format!("bad JSON: {e}"),
                });
            }
        }
    }
}

/// Imports the files of every client (already read).
pub fn import(clients: &[ClientFiles]) -> Result<Imported, RobustnessError> {
    let mut parsed = Vec::new();
    let mut known = known::Known::default();
    for c in clients {
        let ops_file = c.dir.join(OPERATIONS_FILE);
        let watch_file = c.dir.join(WATCH_FILE);
        let ops: Vec<(usize, ReportOperation)> = match &c.operations {
            Some(t) => values(&ops_file, t)?,
            None => Vec::new(),
        };
        let watches: Vec<(usize, ReportWatch)> = match &c.watch {
            Some(t) => values(&watch_file, t)?,
            None => Vec::new(),
        };
        for (_, op) in &ops {
            known.add_operation(op);
        }
        for (_, w) in &watches {
            known.add_watch(w);
        }
        parsed.push((c.client, ops_file, ops, watch_file, watches));
    }
    let mut records: Vec<(usize, Record)> = Vec::new();
    let mut sources = Vec::new();
    let mut push = |rec: Record, source: String, records: &mut Vec<(usize, Record)>| {
        sources.push(source);
        records.push((sources.len(), rec));
    };
    for (client, ops_file, ops, watch_file, watches) in &parsed {
        for (line, op) in ops {
            let rec = convert::operation(*client, op, &known).map_err(|reason| {
                RobustnessError::Record {
                    file: ops_file.clone(),
                    line: *line,
                    reason,
                }
            })?;
            if let Some(rec) = rec {
                push(
                    Record::Op(rec),
                    format!("{}:{line}", ops_file.display()),
                    &mut records,
                );
            }
        }
        for (i, (line, w)) in watches.iter().enumerate() {
            let (create, responses) =
                convert::watch(*client, i as u64 + 1, w).map_err(|reason| {
                    RobustnessError::Record {
                        file: watch_file.clone(),
                        line: *line,
                        reason,
                    }
                })?;
            let source = format!("{}:{line}", watch_file.display());
            push(Record::Watch(create), source.clone(), &mut records);
            for (k, r) in responses.into_iter().enumerate() {
                let rec = match r {
                    WatchResponse::Events(e) => Record::WatchEvents(e),
                    WatchResponse::Progress(p) => Record::WatchProgress(p),
                    WatchResponse::Cancel(c) => Record::WatchCancel(c),
                };
                push(rec, format!("{source} response {}", k + 1), &mut records);
            }
        }
    }
    let history = History::from_records(records)?;
    Ok(Imported { history, sources })
}

#[cfg(test)]
mod tests;
