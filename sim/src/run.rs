//! The one entry point of a simulated run: [`RunConfig`] (seed, cluster shape, disk,
//! schedule, workload, time bounds) in, [`RunResult`] (trace and hash, history,
//! checker verdict, failures, latencies, logs) out. The types build everywhere; [`run`]
//! exists only under `--cfg madsim`. It writes no files: saving artifacts is the
//! caller's job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bugs::Bug;
use crate::disk::DiskProfile;
use crate::fault::Schedule;
use crate::knobs::Knobs;

/// WAL segment size of simulated members, bytes (records up to half of it, which
/// still holds the largest request). The simulated disk keeps each
/// preallocated segment twice in memory (page cache and durable image), and zeroing the
/// real default (64 MiB) per member was most of a run's wall time; a run writes far
/// less than this, so the WAL behaves the same apart from when it would rotate.
pub const SIM_WAL_SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

/// Which workload the clients run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WorkloadSpec {
    /// Mixed KV (puts with unique values, gets, deletes) over a small key set.
    Kv {
        /// Concurrent clients, each on its own simulated host.
        clients: u64,
        /// Distinct keys.
        keys: u64,
    },
    /// Several profiles at once: client `c` runs `profiles[(c - 1) % len]`.
    Mix {
        /// Concurrent clients, each on its own simulated host.
        clients: u64,
        /// Distinct keys per profile.
        keys: u64,
        /// The profiles, assigned to clients round-robin.
        profiles: Vec<Profile>,
    },
}

impl WorkloadSpec {
    /// The number of clients.
    pub fn clients(&self) -> u64 {
        match self {
            WorkloadSpec::Kv { clients, .. } | WorkloadSpec::Mix { clients, .. } => *clients,
        }
    }
}

/// One client's workload profile (see `workload`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Profile {
    /// Mixed puts with unique values, linearizable gets, deletes.
    Kv,
    /// Compare-and-set registers via Txn.
    Cas,
    /// Kubernetes-like: guarded updates, paginated lists, compaction.
    Kube,
    /// Leases: grant, attach keys, keep alive, expire or revoke.
    Lease,
    /// Config watchers: watch streams over every key, resumed from a revision.
    Watch,
    /// Locks and leader election via the Lock and Election services.
    Lock,
}

/// Everything that defines a run; the same config gives the same run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunConfig {
    /// The seed of the simulator and of every RNG in the run.
    pub seed: u64,
    /// Cluster size.
    pub members: u64,
    /// Every member's disk profile at boot.
    pub disk: DiskProfile,
    /// The faults.
    pub schedule: Schedule,
    /// The clients' workload.
    pub workload: WorkloadSpec,
    /// Workload time before the final heal, simulated ms.
    pub duration_ms: u64,
    /// Bound after the heal for a leader and every member caught up, simulated ms.
    pub liveness_ms: u64,
    /// Deliberate server bugs every member runs with (the self-test); empty normally.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bugs: Vec<Bug>,
    /// Simulation-only knobs that make rare timings common (the self-test); off normally.
    #[serde(default, skip_serializing_if = "Knobs::is_off")]
    pub knobs: Knobs,
}

/// What a run produced.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// The seed.
    pub seed: u64,
    /// Hash over `trace`.
    pub trace_hash: u64,
    /// The events, in order, for first-divergence reports.
    pub trace: Vec<String>,
    /// The history, JSON lines in the checker's format.
    pub history: Vec<String>,
    /// The checker's verdict: "OK", "Illegal: ..." or "Unknown: ...".
    pub verdict: String,
    /// Liveness, convergence, lost-write and checker failures; empty means pass.
    pub failures: Vec<String>,
    /// Simulated time of the whole run, ms.
    pub sim_ms: u64,
    /// Wall-clock time of the whole run, ms.
    pub wall_ms: u64,
    /// CPU time (user + system) of the process that ran it, ms: unlike `wall_ms`, not
    /// inflated when other work shares the machine. 0 when not measured.
    #[serde(default)]
    pub cpu_ms: u64,
    /// Minor page faults of the process that ran it (memory first touched). 0 when not
    /// measured.
    #[serde(default)]
    pub minor_faults: u64,
    /// p50 and p99 of acknowledged writes' latency, µs.
    pub commit_latency_us: (u64, u64),
    /// Work counts of the run (allocations, tasks, messages, spans).
    #[serde(default)]
    pub cost: crate::cost::RunCost,
    /// Per-member log lines (world events concerning the member).
    pub logs: BTreeMap<u64, Vec<String>>,
}

impl RunResult {
    /// Whether the run passed every check.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

#[cfg(madsim)]
pub use crate::world::run_in_process;

/// Wall-clock time a run may take before it counts as hung, beyond one second per
/// simulated second: runs go tens to hundreds of times faster than real time, so only
/// a run that stopped making progress gets near it.
#[cfg(madsim)]
const RUN_WALL_LIMIT_BASE_S: u64 = 120;

/// How long `config`'s run may take in wall-clock time before it is killed as hung.
#[cfg(madsim)]
fn run_wall_limit(config: &RunConfig) -> std::time::Duration {
    let simulated_s = (config.duration_ms + config.liveness_ms) / 1000;
    std::time::Duration::from_secs(RUN_WALL_LIMIT_BASE_S + simulated_s)
}

/// Runs one simulated run in a forked child process (see `isolate` for why), so that
/// every run of a seed replays exactly, whatever ran before it in this process. A
/// child that dies, or hangs past [`run_wall_limit`], is reported as a failure of the
/// run.
#[cfg(madsim)]
pub fn run(config: &RunConfig) -> RunResult {
    crate::world::prepare_member_configs(config.members);
    let child_config = config.clone();
    crate::isolate::in_child(run_wall_limit(config), move || {
        let mut result = run_in_process(&child_config);
        result.cpu_ms = crate::isolate::own_cpu_ms();
        result.minor_faults = crate::isolate::own_minor_faults();
        result
    })
    .unwrap_or_else(|e| RunResult {
        seed: config.seed,
        verdict: "Unknown: the run did not finish".to_owned(),
        failures: vec![e],
        ..RunResult::default()
    })
}
