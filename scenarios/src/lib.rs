//! detcd-scenarios: what to run in detcd's deterministic simulation, and the `detcd-sim`
//! CLI that runs it.
//!
//! - [`catalog`]: the named scenarios, each a function from a seed to a
//!   [`RunConfig`](detcd_sim::run::RunConfig) (cluster shape, disk, workload, fault
//!   schedule);
//! - [`swarm`]: a random fault mix and rates drawn per seed;
//! - [`plan`]: the small builder both use to lay out a timed fault schedule;
//! - [`sweep`]: seeds × scenarios, sharding, the determinism check, the summary table;
//! - [`pool`]: running a sweep's jobs several at a time, results in job order;
//! - [`probes`]: the self-test's own scenarios, aimed at one Raft rule each;
//! - [`selftest`]: the harness self-test: every deliberate bug caught within N seeds;
//! - [`artifact`]: the folder a failing run leaves behind, and reading it back for replay.
//!
//! It deliberately holds no simulation machinery: booting members, injecting faults,
//! recording histories and judging them all live in `detcd-sim`; this crate only decides
//! *what* to run and reports on it.

pub mod artifact;
pub mod catalog;
pub mod plan;
pub mod pool;
pub mod probes;
pub mod selftest;
pub mod swarm;
pub mod sweep;

/// Errors of this crate: bad command-line input or an unreadable artifact.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// No scenario has this name.
    #[error("unknown scenario {0:?} (see `detcd-sim list`)")]
    UnknownScenario(String),
    /// A `--shard K/N` argument that is not of that form with 1 <= K <= N.
    #[error("bad shard {0:?}: expected K/N with 1 <= K <= N")]
    BadShard(String),
    /// A `--seeds` argument that is neither `N` nor `A..B`.
    #[error("bad seed range {0:?}: expected N (seeds 0..N) or A..B")]
    BadSeeds(String),
    /// Reading or writing an artifact file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// An artifact or schedule file is not valid JSON of the expected shape.
    #[error("{path}: {source}")]
    Json {
        /// The file concerned.
        path: String,
        /// What went wrong.
        source: serde_json::Error,
    },
}
