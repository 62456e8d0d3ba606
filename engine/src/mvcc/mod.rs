//! The revisioned key space with etcd v3.4's semantics, and the applied state built on
//! it.
//!
//! - [`KeySpace`] (keyspace.rs): every version of every key, by key and by revision.
//! - [`Store`] (store.rs): Range/Put/DeleteRange/Compact/HashKV and event replay;
//!   txn.rs and range.rs hold the Txn and Range rules.
//! - [`KvState`] (state.rs): store + lease table + applied index, the server's entry
//!   point; snapshot.rs encodes and decodes it, record_code.rs the records' part (each
//!   snapshot encodes only the records written since the last one).
//! - [`MvccError`] (error.rs): etcd's error texts and gRPC codes.
//!
//! Requests and responses are etcd's protobuf types ([`crate::pb`]), so the server
//! applies client requests with no conversion. Nothing here does I/O, reads a clock or
//! uses randomness; persistence is the caller's (snapshot + Raft log replay).

mod error;
mod keyspace;
mod range;
mod record_code;
mod snapshot;
mod state;
mod store;
mod txn;

pub use error::{GrpcCode, MvccError};
pub use keyspace::{KeyRange, KeySpace, Revision};
pub use range::effective_sort;
pub use snapshot::{KvSnapshot, SNAPSHOT_VERSION, SnapshotError};
pub use state::{KvConfig, KvState};
pub use store::{
    Lessor, NoLeases, Store, TXN_OPS_MAX_DEFAULT, Written, validate_delete, validate_put,
    validate_range,
};
pub use txn::{TxnPath, is_read_only, validate_txn};
