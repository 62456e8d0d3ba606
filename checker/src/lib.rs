//! detcd-checker: judges recorded client histories of detcd, etcd or Jepsen.
//!
//! - [`history`]: the JSON-lines history format and its parser;
//! - [`etcd`]: the etcd KV model and the revision-based checker, with lease, compaction
//!   and watch checks;
//! - [`shrink`]: cuts an Illegal history down to a small failing sub-history;
//! - [`generate`]: generates correct (and deliberately broken) etcd histories for tests and
//!   benchmarks;
//! - [`verdict`]: the answer (OK / Illegal / Unknown).
//!
//! It deliberately depends on nothing else in the workspace, so it can judge any
//! recorder's histories.

pub mod etcd;
pub mod generate;
pub mod history;
pub mod shrink;
pub mod verdict;

pub use verdict::{Property, Verdict, Violation};
