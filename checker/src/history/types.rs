//! The serde types of one history line: etcd requests, results, outcomes and watch
//! records. They mirror etcd's v3 API closely enough that a recorder can fill them from
//! any client; they deliberately leave out what the checker cannot judge (sorting,
//! auth, cluster membership).

use serde::{Deserialize, Serialize};

/// Keys and values are UTF-8 strings; byte order of their encodings is etcd's key order.
pub type Bytes = String;

/// One line of a history file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// Optional first line describing the file.
    Meta(Meta),
    /// A client request with its call/return times and outcome.
    Op(OpRecord),
    /// A watch was opened.
    Watch(WatchRecord),
    /// A watch response carrying events.
    WatchEvents(WatchEventsRecord),
    /// A progress notification (a response with no events).
    WatchProgress(WatchProgressRecord),
    /// The server cancelled the watch.
    WatchCancel(WatchCancelRecord),
}

/// Free-form description of the history's origin.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Meta {
    /// Format version; 1 today.
    #[serde(default)]
    pub version: u32,
    /// Where the history came from (a seed, a test name).
    #[serde(default)]
    pub source: String,
}

/// A client operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpRecord {
    /// The client (one outstanding request at a time per client).
    pub client: u64,
    /// Invocation time (any monotonic unit shared by all clients, e.g. ns).
    pub call: u64,
    /// Return time; absent when the outcome is unknown and the client gave up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<u64>,
    /// The request.
    pub op: Op,
    /// What the client saw.
    pub outcome: Outcome,
}

/// What a client saw for one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The request succeeded.
    Ok(OkOutcome),
    /// The request definitely had no effect (the message is the server's error text).
    Fail(String),
    /// The request may or may not have taken effect (timeout, lost connection).
    Unknown,
}

/// A successful response: the header revision and the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OkOutcome {
    /// The response header's revision.
    pub revision: i64,
    /// The response body.
    pub result: OpResult,
}

/// A request. Txn branches hold only `range`, `put`, `delete_range` and `txn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Read a key or a range.
    Range(RangeRequest),
    /// Write one key.
    Put(PutRequest),
    /// Delete a key or a range.
    DeleteRange(DeleteRangeRequest),
    /// Compare-and-branch transaction.
    Txn(TxnRequest),
    /// Compact the history up to a revision.
    Compact(CompactRequest),
    /// Grant a lease.
    LeaseGrant(LeaseGrantRequest),
    /// Revoke a lease (deletes its keys).
    LeaseRevoke(LeaseIdRequest),
    /// Refresh a lease.
    LeaseKeepAlive(LeaseIdRequest),
    /// Ask a lease's remaining time and keys.
    LeaseTimeToLive(LeaseTimeToLiveRequest),
}

/// Range request. `range_end` absent: the single key; `"\u0000"`: every key >= `key`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RangeRequest {
    /// First key.
    pub key: Bytes,
    /// Exclusive end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<Bytes>,
    /// Historical revision to read (0 = latest).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: i64,
    /// Maximum keys returned (0 = no limit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: i64,
    /// Return only the count.
    #[serde(default, skip_serializing_if = "is_false")]
    pub count_only: bool,
    /// Return keys without values.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keys_only: bool,
    /// Served by any member without consensus: may be stale.
    #[serde(default, skip_serializing_if = "is_false")]
    pub serializable: bool,
}

/// Put request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PutRequest {
    /// Key.
    pub key: Bytes,
    /// Value.
    pub value: Bytes,
    /// Lease to attach (0 = none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lease: i64,
    /// Ask for the previous key-value.
    #[serde(default, skip_serializing_if = "is_false")]
    pub prev_kv: bool,
}

/// DeleteRange request (same range conventions as [`RangeRequest`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeleteRangeRequest {
    /// First key.
    pub key: Bytes,
    /// Exclusive end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<Bytes>,
    /// Ask for the deleted key-values.
    #[serde(default, skip_serializing_if = "is_false")]
    pub prev_kv: bool,
}

/// Txn request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TxnRequest {
    /// All must hold for the success branch.
    #[serde(default)]
    pub compare: Vec<Compare>,
    /// Ops run when every compare holds.
    #[serde(default)]
    pub success: Vec<Op>,
    /// Ops run otherwise.
    #[serde(default)]
    pub failure: Vec<Op>,
}

/// One Txn compare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compare {
    /// Key (or first key of a range).
    pub key: Bytes,
    /// Exclusive range end, as for Range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<Bytes>,
    /// What to compare and against which value.
    pub target: CompareTarget,
    /// The relation that must hold (`key_field RESULT value`).
    pub result: CompareResult,
}

/// The field compared and the value compared against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareTarget {
    /// The key's version (0 when absent).
    Version(i64),
    /// The key's create revision (0 when absent).
    Create(i64),
    /// The key's mod revision (0 when absent).
    Mod(i64),
    /// The key's value (an absent key fails every value compare).
    Value(Bytes),
    /// The key's lease (0 when absent or none).
    Lease(i64),
}

/// Compare relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareResult {
    /// `==`
    Equal,
    /// `>`
    Greater,
    /// `<`
    Less,
    /// `!=`
    NotEqual,
}

/// Compact request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CompactRequest {
    /// Compact everything below this revision.
    pub revision: i64,
}

/// LeaseGrant request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LeaseGrantRequest {
    /// Requested id (0 = server picks).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub id: i64,
    /// Time to live in seconds.
    pub ttl: i64,
}

/// A request naming one lease.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LeaseIdRequest {
    /// Lease id.
    pub id: i64,
}

/// LeaseTimeToLive request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LeaseTimeToLiveRequest {
    /// Lease id.
    pub id: i64,
    /// Also list the attached keys.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keys: bool,
}

/// A response body, of the same kind as its request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpResult {
    /// Range result.
    Range(RangeResult),
    /// Put result.
    Put(PutResult),
    /// DeleteRange result.
    DeleteRange(DeleteRangeResult),
    /// Txn result.
    Txn(TxnResult),
    /// Compact result (no body).
    Compact {},
    /// LeaseGrant result.
    LeaseGrant(LeaseGrantResult),
    /// LeaseRevoke result (no body).
    LeaseRevoke {},
    /// LeaseKeepAlive result.
    LeaseKeepAlive(LeaseKeepAliveResult),
    /// LeaseTimeToLive result.
    LeaseTimeToLive(LeaseTimeToLiveResult),
}

/// A stored key-value, as etcd returns it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct KeyValue {
    /// Key.
    pub key: Bytes,
    /// Value (empty for keys_only reads and delete events).
    #[serde(default)]
    pub value: Bytes,
    /// Revision of the key's creation.
    #[serde(default)]
    pub create_revision: i64,
    /// Revision of the key's last modification.
    #[serde(default)]
    pub mod_revision: i64,
    /// Number of puts since creation.
    #[serde(default)]
    pub version: i64,
    /// Attached lease (0 = none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lease: i64,
}

/// Range result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RangeResult {
    /// Returned key-values in key order.
    #[serde(default)]
    pub kvs: Vec<KeyValue>,
    /// Keys in the range (before the limit).
    #[serde(default)]
    pub count: i64,
    /// More keys than returned.
    #[serde(default, skip_serializing_if = "is_false")]
    pub more: bool,
}

/// Put result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PutResult {
    /// Previous key-value if asked for and present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_kv: Option<KeyValue>,
}

/// DeleteRange result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeleteRangeResult {
    /// Number of keys deleted.
    pub deleted: i64,
    /// Deleted key-values if asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prev_kvs: Vec<KeyValue>,
}

/// Txn result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TxnResult {
    /// Whether the success branch ran.
    pub succeeded: bool,
    /// One result per op of the branch that ran.
    #[serde(default)]
    pub responses: Vec<OpResult>,
}

/// LeaseGrant result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LeaseGrantResult {
    /// Granted id.
    pub id: i64,
    /// Granted TTL in seconds.
    pub ttl: i64,
}

/// LeaseKeepAlive result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LeaseKeepAliveResult {
    /// New TTL in seconds (0 or less: the lease is gone).
    pub ttl: i64,
}

/// LeaseTimeToLive result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LeaseTimeToLiveResult {
    /// Remaining seconds (-1: not found).
    pub ttl: i64,
    /// TTL at grant time.
    #[serde(default)]
    pub granted_ttl: i64,
    /// Attached keys if asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<Bytes>,
}

/// A watch opened by a client. `watch` names the stream within its client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchRecord {
    /// Client.
    pub client: u64,
    /// Client-chosen stream id, unique per client.
    pub watch: u64,
    /// Time the create request was sent.
    pub call: u64,
    /// Header revision of the created response, if seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_revision: Option<i64>,
    /// The request.
    pub request: WatchRequest,
}

/// Watch create request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WatchRequest {
    /// First key.
    pub key: Bytes,
    /// Exclusive end, as for Range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<Bytes>,
    /// First revision to deliver (0 = from now).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_revision: i64,
    /// Attach the previous key-value to events.
    #[serde(default, skip_serializing_if = "is_false")]
    pub prev_kv: bool,
    /// Ask for periodic progress notifications.
    #[serde(default, skip_serializing_if = "is_false")]
    pub progress_notify: bool,
    /// Event kinds the server must drop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<WatchFilter>,
}

/// Watch filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchFilter {
    /// Drop put events.
    NoPut,
    /// Drop delete events.
    NoDelete,
}

/// A watch response with events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchEventsRecord {
    /// Client.
    pub client: u64,
    /// Stream id.
    pub watch: u64,
    /// Receive time.
    pub time: u64,
    /// Header revision.
    pub revision: i64,
    /// Events in order.
    pub events: Vec<Event>,
}

/// One watch event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Put or delete.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The key-value after the event (for deletes: key and mod_revision only).
    pub kv: KeyValue,
    /// The key-value before the event, if asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_kv: Option<KeyValue>,
}

/// Event kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A put.
    Put,
    /// A delete.
    Delete,
}

/// A progress notification: every event up to `revision` has been delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchProgressRecord {
    /// Client.
    pub client: u64,
    /// Stream id.
    pub watch: u64,
    /// Receive time.
    pub time: u64,
    /// Header revision.
    pub revision: i64,
}

/// The server cancelled a watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchCancelRecord {
    /// Client.
    pub client: u64,
    /// Stream id.
    pub watch: u64,
    /// Receive time.
    pub time: u64,
    /// Cancel reason text.
    #[serde(default)]
    pub reason: String,
    /// Set when cancelled because the start revision was compacted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compact_revision: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}
