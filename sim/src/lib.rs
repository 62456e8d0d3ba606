//! detcd-sim: the deterministic simulation harness.
//!
//! - [`bugs`]: deliberate server bugs by name, for the harness self-test;
//! - [`cost`]: a run's work counts (allocations, tasks, messages, spans) and the
//!   counting allocator;
//! - [`fault`]: fault events and timed schedules, as JSON data;
//! - [`disk`]: the simulated disk (a `MemDisk` with latency profiles and faults);
//! - [`knobs`]: simulation-only knobs that make rare timings common (the self-test);
//! - [`trace`]: the event list and its hash, for determinism checks;
//! - [`run`]: the one entry point: a [`run::RunConfig`] in, a [`run::RunResult`] out;
//! - `isolate` (madsim only): each run in a forked child, killed if it hangs.
//!
//! Under `--cfg madsim` the crate also holds the cluster world (real detcd members on
//! simulated hosts) and the recording workloads, and [`run::run`] executes a whole
//! simulated run. Without it only the data types build, so tools can read and write
//! schedules and configs; the crate never runs members on real threads or sockets.

pub mod bugs;
pub mod cost;
pub mod disk;
pub mod fault;
#[cfg(madsim)]
pub mod isolate;
pub mod knobs;
#[cfg(madsim)]
mod logs;
#[cfg(madsim)]
mod membership;
#[cfg(madsim)]
mod observe;
pub mod run;
pub mod trace;
#[cfg(madsim)]
pub mod workload;
#[cfg(madsim)]
mod world;
