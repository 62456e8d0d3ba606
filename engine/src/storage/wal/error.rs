//! The WAL's error type.

use std::io;

use thiserror::Error;

/// Errors of the WAL.
#[derive(Debug, Error)]
pub enum WalError {
    /// A disk operation failed.
    #[error("wal: {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The log on disk is damaged before its tail.
    #[error("wal: corrupt {path} at byte {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        path: String,
        /// Byte offset in it.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A payload is larger than [`super::WalOptions::record_bytes_max`].
    #[error("wal: record of {payload_bytes} bytes exceeds the limit of {record_bytes_max}")]
    RecordTooLarge {
        /// The payload's size.
        payload_bytes: u64,
        /// The limit.
        record_bytes_max: u32,
    },
    /// An earlier write or sync failed; the log must be reopened.
    #[error("wal: poisoned by an earlier I/O error; reopen it")]
    Poisoned,
    /// The options are inconsistent.
    #[error("wal: bad options: {0}")]
    BadOptions(String),
}

pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a str,
) -> impl FnOnce(io::Error) -> WalError + 'a {
    move |source| WalError::Io {
        op,
        path: path.to_string(),
        source,
    }
}
