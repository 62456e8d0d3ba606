//! detcd-checker: judges recorded client histories of detcd, etcd or Jepsen.
//!
//! - [`history`]: the JSON-lines history format and its parser;
//! - [`etcd`]: the etcd KV model and the revision-based checker, with lease, compaction
//!   and watch checks;
//! - [`shrink`]: cuts an Illegal history down to a small failing sub-history;
//! - [`generate`]: generates correct (and deliberately broken) etcd histories for tests and
//!   benchmarks;
//! - [`verdict`]: the answer (OK / Illegal / Unknown);
//! - [`wgl`]: the generic Wing-Gong-Lowe search for histories without revisions, with
//!   the register, cas-register and kv [`models`];
//! - [`jepsen`]: the Jepsen EDN importer;
//! - [`robustness`]: the importer of etcd's robustness-test reports;
//! - [`report`]: the self-contained HTML timeline.
//!
//! It deliberately depends on nothing else in the workspace, so it can judge any
//! recorder's histories.

pub mod etcd;
pub mod generate;
pub mod history;
pub mod jepsen;
pub mod models;
pub mod report;
pub mod robustness;
pub mod shrink;
pub mod verdict;
pub mod wgl;

pub use verdict::{Property, Verdict, Violation};
