//! The serde shape of the report files as etcd's robustness tests write them: Go's JSON
//! encoding of their structs, so field names are in PascalCase, absent pointers are
//! `null` and zero values may be left out. Every field is optional here; the converter
//! decides what is required. Nothing is judged or converted in this module.

use serde::Deserialize;

/// One line of `operations.json`: a client request with its times and response.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportOperation {
    /// Client id (written `ClientId`; `ClientID` is accepted too).
    #[serde(alias = "ClientID")]
    pub client_id: i64,
    /// The request.
    pub input: Option<ReportRequest>,
    /// Invocation time in nanoseconds since the test start.
    pub call: i64,
    /// What came back.
    pub output: Option<ReportResponse>,
    /// Return time in nanoseconds since the test start.
    #[serde(rename = "Return")]
    pub ret: i64,
}

/// A request: `Type` names which of the other fields is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportRequest {
    /// `range`, `txn`, `leaseGrant`, `leaseRevoke`, `defragment` or `compact`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// Set for `range`.
    pub range: Option<ReportRange>,
    /// Set for `txn`.
    pub txn: Option<ReportTxn>,
    /// Set for `leaseGrant`.
    pub lease_grant: Option<ReportLease>,
    /// Set for `leaseRevoke`.
    pub lease_revoke: Option<ReportLease>,
    /// Set for `compact`.
    pub compact: Option<ReportCompact>,
}

/// Range options: `End` empty means the single key `Start`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportRange {
    /// First key.
    pub start: String,
    /// Exclusive end; empty for one key.
    pub end: String,
    /// Most keys returned (0: all).
    pub limit: i64,
    /// Revision to read at (0: latest); only in top-level ranges.
    pub revision: i64,
}

/// A lease request or response body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportLease {
    /// Lease id.
    #[serde(rename = "LeaseID")]
    pub lease_id: i64,
}

/// A compact request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportCompact {
    /// Compact below this revision.
    pub revision: i64,
}

/// A transaction: all conditions must hold for the success branch.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportTxn {
    /// Conditions (null for none).
    pub conditions: Option<Vec<ReportCondition>>,
    /// Operations run when every condition holds.
    pub operations_on_success: Option<Vec<ReportTxnOp>>,
    /// Operations run otherwise.
    pub operations_on_failure: Option<Vec<ReportTxnOp>>,
}

/// A condition on one key: its version when `ExpectedVersion` is set, else its mod
/// revision (0: the key is absent).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportCondition {
    /// Key.
    pub key: String,
    /// Expected mod revision.
    pub expected_revision: i64,
    /// Expected version (0: not a version condition).
    pub expected_version: i64,
}

/// One operation inside a transaction; `Type` names the options that apply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportTxnOp {
    /// `range-operation`, `put-operation` or `delete-operation`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// Range options.
    pub range: Option<ReportRange>,
    /// Put options.
    pub put: Option<ReportPut>,
    /// Delete options.
    pub delete: Option<ReportDelete>,
}

/// Put options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportPut {
    /// Key.
    pub key: String,
    /// Value, plain or hashed.
    pub value: Option<ValueOrHash>,
    /// Lease (0: none).
    #[serde(rename = "LeaseID")]
    pub lease_id: i64,
}

/// Delete options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportDelete {
    /// Key.
    pub key: String,
}

/// A value as the reports store it: short values in clear, long ones as a 32-bit
/// FNV-1a hash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ValueOrHash {
    /// Plain value.
    pub value: String,
    /// Hash of a long value (0: not hashed).
    pub hash: u32,
}

/// A response, or what is known of it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportResponse {
    /// Txn body.
    pub txn: Option<ReportTxnResponse>,
    /// Range body.
    pub range: Option<ReportRangeResponse>,
    /// LeaseGrant body.
    pub lease_grant: Option<ReportLease>,
    /// LeaseRevoke body.
    pub lease_revoke: Option<serde_json::Value>,
    /// Defragment body.
    pub defragment: Option<serde_json::Value>,
    /// Compact body.
    pub compact: Option<serde_json::Value>,
    /// An error the server answered with: the request had no effect.
    pub client_error: String,
    /// Header revision; -1 marks a response that is not linearizable.
    pub revision: i64,
    /// The client saw no answer but the write was found persisted.
    pub persisted: bool,
    /// The revision it was persisted at, when known.
    pub persisted_revision: i64,
    /// The client saw an error: the request may or may not have taken effect.
    pub error: String,
}

/// Txn response body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportTxnResponse {
    /// The failure branch ran.
    pub failure: bool,
    /// One result per operation of the branch that ran.
    pub results: Option<Vec<ReportOpResult>>,
}

/// Range response body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportRangeResponse {
    /// Key-values returned.
    #[serde(rename = "KVs")]
    pub kvs: Option<Vec<ReportKv>>,
    /// Keys in the range.
    pub count: i64,
}

/// Result of one txn operation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportOpResult {
    /// Key-values read.
    #[serde(rename = "KVs")]
    pub kvs: Option<Vec<ReportKv>>,
    /// Keys in the range read.
    pub count: i64,
    /// Keys deleted.
    pub deleted: i64,
}

/// A key-value as reported: no create revision, version only in newer reports.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportKv {
    /// Key.
    pub key: String,
    /// Value.
    pub value: Option<ValueOrHash>,
    /// Mod revision.
    pub mod_revision: i64,
    /// Version (0: not reported).
    pub version: i64,
}

/// One line of `watch.json`: a watch request and everything it received.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportWatch {
    /// The request.
    pub request: ReportWatchRequest,
    /// Responses in the order received.
    pub responses: Option<Vec<ReportWatchResponse>>,
}

/// A watch request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportWatchRequest {
    /// Key or prefix.
    pub key: String,
    /// Start revision (0: now).
    pub revision: i64,
    /// Watch every key with `Key` as prefix.
    pub with_prefix: bool,
    /// Progress notifications asked for.
    pub with_progress_notify: bool,
    /// Previous key-values asked for.
    #[serde(rename = "WithPrevKV")]
    pub with_prev_kv: bool,
}

/// A watch response.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportWatchResponse {
    /// Events (null for none).
    pub events: Option<Vec<ReportEvent>>,
    /// A progress notification.
    pub is_progress_notify: bool,
    /// Header revision.
    pub revision: i64,
    /// Receive time in nanoseconds since the test start.
    pub time: i64,
}

/// A watch event.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportEvent {
    /// `put-operation` or `delete-operation`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// Key.
    pub key: String,
    /// Value (puts).
    pub value: Option<ValueOrHash>,
    /// Revision of the event.
    pub revision: i64,
    /// The put created the key.
    pub is_create: bool,
    /// The key before the event, when asked for.
    pub prev_value: Option<ReportPrevValue>,
}

/// The previous key-value of a watch event (the key is the event's).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReportPrevValue {
    /// Value.
    pub value: Option<ValueOrHash>,
    /// Mod revision.
    pub mod_revision: i64,
    /// Version (0: not reported).
    pub version: i64,
}
