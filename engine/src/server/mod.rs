//! The node runtime and everything around it that makes the engine a server people run:
//! the command line, IDs, and (as they land) the raft loop, gRPC services and HTTP.
//!
//! Nothing here decides what the store does; that is the engine modules' job.

pub mod config;
pub mod error;
pub mod grpc;
#[cfg(not(madsim))]
pub mod http;
pub mod identity;
pub mod ids;
pub mod listen;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod run;
pub mod transport;
