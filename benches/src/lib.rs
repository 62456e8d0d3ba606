//! detcd-bench: the benchmark bodies behind the criterion benches, and the load
//! generator `detcd-bench`, which speaks etcd's v3 gRPC API and so measures detcd and
//! etcd alike.
//!
//! This crate runs on real tokio only; it never builds under the simulator, so it may
//! read clocks and touch real files. It deliberately holds no server code: end-to-end
//! numbers come from a running endpoint given on the command line, or from the
//! engine's own server started in-process ([`e2e`]).

#![warn(missing_docs)]

pub mod bodies;
pub mod compare;
pub mod disk;
pub mod e2e;
pub mod fsync_bound;
pub mod h2lite;
pub mod h2wire;
pub mod ideal_server;
pub mod kvconn;
pub mod load;
pub mod mixed;
pub mod ports;
pub mod record;
pub mod stats;
pub mod svg;
