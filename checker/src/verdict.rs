//! The checker's answer: OK, Illegal (with the violated property, a message and the
//! source lines involved) or Unknown (with a reason). Serializable as JSON; it does not
//! render HTML (see `report`).

use serde::Serialize;

/// A property a history can violate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Property {
    /// Two acknowledged writes claim the same revision.
    DuplicateRevision,
    /// A revision that no possible write can have produced (lost or phantom write).
    UnexplainedRevision,
    /// A result differs from the model's state at its revision.
    Result,
    /// Real-time order broken (a stale read, a write ordered before a completed op).
    RealTime,
    /// Compaction: a compacted read succeeded or a compacted error came from nowhere.
    Compaction,
    /// Lease: a put with a missing lease succeeded, leased keys outlived their lease.
    Lease,
    /// Watch events out of revision order.
    WatchOrder,
    /// The same event delivered twice.
    WatchDuplicate,
    /// The events of one revision split across responses or partly missing.
    WatchAtomic,
    /// A revision's matching events never delivered (a gap).
    WatchReliable,
    /// Events outside the watched range or of a filtered kind delivered.
    WatchFilter,
    /// An event's key-value (value, versions, create/mod revision) is wrong.
    WatchEvent,
    /// prev_kv missing, unasked, or wrong.
    WatchPrevKv,
    /// A progress notification ahead of the delivered events.
    WatchProgress,
    /// A compaction cancel without a compaction, or a missing one.
    WatchCompaction,
    /// Jepsen/WGL model: no linearization exists.
    Linearizability,
}

impl std::fmt::Display for Property {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// What was violated, where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The property.
    pub property: Property,
    /// Human explanation with expected and actual values.
    pub message: String,
    /// Source lines of the records involved (the failing sub-history), ascending.
    pub lines: Vec<usize>,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Consistent.
    Ok,
    /// A property is violated.
    Illegal(Violation),
    /// Could not decide (budget hit).
    Unknown {
        /// Why.
        reason: String,
    },
}

impl Verdict {
    /// Process exit code: 0 OK, 1 Illegal, 2 Unknown.
    pub fn exit_code(&self) -> i32 {
        match self {
            Verdict::Ok => 0,
            Verdict::Illegal(_) => 1,
            Verdict::Unknown { .. } => 2,
        }
    }

    /// Shorthand for an Illegal verdict.
    pub fn illegal(property: Property, message: impl Into<String>, mut lines: Vec<usize>) -> Self {
        lines.sort_unstable();
        lines.dedup();
        Verdict::Illegal(Violation {
            property,
            message: message.into(),
            lines,
        })
    }

    /// The violated property, if Illegal.
    pub fn property(&self) -> Option<Property> {
        match self {
            Verdict::Illegal(v) => Some(v.property),
            _ => None,
        }
    }
}
