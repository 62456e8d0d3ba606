//! detcd's engine: everything that decides what the store does, independent of how it is
//! driven.
//!
//! - [`raft`]: the sans-IO Raft core. No clock, no I/O, no threads; a value you step.
//! - [`storage`]: the [`storage::Disk`] trait and what is built on it (WAL, snapshots).
//! - [`mvcc`]: the revisioned key space with etcd v3 semantics.
//! - [`lease`]: the lease table; time is passed in, never read.
//! - [`watch`]: the watch hub: which streams watch which keys, and what each must be sent.
//! - [`pb`]: etcd v3 wire types and gRPC services generated from `proto/`.
//! - [`persist`]: Raft's durable state (hard state, entries, snapshots) on the WAL and snapshot store.
//! - [`server`]: the node runtime around the engine: configuration, IDs, services.
//!
//! The node runtime (tokio tasks, gRPC) lives elsewhere and drives these pieces; nothing
//! here spawns tasks or reads the clock, so the same code runs in the real server, in
//! the deterministic simulator and in benchmarks.

pub mod lease;
pub mod mvcc;
pub mod pb;
pub mod persist;
pub mod raft;
pub mod server;
pub mod storage;
pub mod watch;
