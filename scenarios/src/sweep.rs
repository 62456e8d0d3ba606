//! Sweeps: which (scenario, seed) jobs to run, running one with the optional determinism
//! check, and the summary table.
//!
//! Jobs are listed in a fixed order and sharded by index, so `--shard K/N` on N machines
//! covers every job exactly once. This module does not print or write files; the CLI does.

use std::collections::BTreeMap;

use detcd_sim::disk::DiskProfile;
use detcd_sim::run::{RunConfig, RunResult};

use crate::{ScenarioError, catalog, swarm};

/// One run to do: a scenario (or `swarm`) and a seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// Scenario name, or [`swarm::NAME`].
    pub scenario: String,
    /// The seed.
    pub seed: u64,
}

/// The configuration of `scenario` (a catalog name, `swarm`, a self-test scenario
/// from [`crate::probes`], or a bench scenario, [`catalog::BENCH_SCENARIOS`]) for `seed`.
pub fn config_for(scenario: &str, seed: u64) -> Result<RunConfig, ScenarioError> {
    if scenario == swarm::NAME {
        Ok(swarm::build(seed))
    } else if let Some(config) = crate::probes::config_for(scenario, seed) {
        Ok(config)
    } else if let Some(config) = catalog::bench_scenario(scenario, seed) {
        Ok(config)
    } else {
        Ok((catalog::find(scenario)?.build)(seed))
    }
}

/// Parses `N` (seeds `0..N`) or `A..B`.
pub fn parse_seeds(text: &str) -> Result<std::ops::Range<u64>, ScenarioError> {
    let bad = || ScenarioError::BadSeeds(text.to_owned());
    match text.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if a > b { Err(bad()) } else { Ok(a..b) }
        }
        None => Ok(0..text.trim().parse().map_err(|_| bad())?),
    }
}

/// A shard `K/N`: this machine runs job indices `i` with `i % N == K - 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 1-based shard number.
    pub index: u64,
    /// Number of shards.
    pub count: u64,
}

impl Shard {
    /// The whole sweep.
    pub const ALL: Shard = Shard { index: 1, count: 1 };

    /// Parses `K/N`.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let bad = || ScenarioError::BadShard(text.to_owned());
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (u64, u64) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether job number `i` (in sweep order) belongs to this shard.
    pub fn owns(&self, i: usize) -> bool {
        i as u64 % self.count == self.index - 1
    }
}

/// The jobs of a sweep over `scenarios` × `seeds`, seed-major (so a short sweep touches
/// every scenario), restricted to `shard`. Unknown scenario names are an error.
pub fn jobs(
    scenarios: &[String],
    seeds: std::ops::Range<u64>,
    shard: Shard,
) -> Result<Vec<Job>, ScenarioError> {
    for s in scenarios {
        config_for(s, 0)?;
    }
    let all = seeds.flat_map(|seed| {
        scenarios.iter().map(move |s| Job {
            scenario: s.clone(),
            seed,
        })
    });
    Ok(all
        .enumerate()
        .filter(|(i, _)| shard.owns(*i))
        .map(|(_, j)| j)
        .collect())
}

/// Where two runs of one seed first differ.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Divergence {
    /// Index of the first differing trace event.
    pub index: usize,
    /// The event in the first run (`None`: the trace had ended).
    pub first: Option<String>,
    /// The event in the second run.
    pub second: Option<String>,
}

/// The first event at which `a` and `b` differ, or `None` if they are equal.
pub fn first_divergence(a: &[String], b: &[String]) -> Option<Divergence> {
    let index = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    if index == a.len() && index == b.len() {
        return None;
    }
    Some(Divergence {
        index,
        first: a.get(index).cloned(),
        second: b.get(index).cloned(),
    })
}

/// What one job produced.
pub struct Outcome {
    /// The job.
    pub job: Job,
    /// Its configuration.
    pub config: RunConfig,
    /// The (first) run's result.
    pub result: RunResult,
    /// With the determinism check: where the second run diverged, if it did.
    pub divergence: Option<Divergence>,
    /// Wall time including the second run, in milliseconds.
    pub wall_ms: u64,
}

/// What a job run in another process sends back: an [`Outcome`] without what the caller
/// already knows (the job and its configuration).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// The (first) run's result.
    pub result: RunResult,
    /// With the determinism check: where the second run diverged, if it did.
    pub divergence: Option<Divergence>,
    /// Wall time including the second run, in milliseconds.
    pub wall_ms: u64,
}

impl Outcome {
    /// The outcome `report` tells of `job` run with `config`.
    pub fn from_report(job: Job, config: RunConfig, report: Report) -> Outcome {
        Outcome {
            job,
            config,
            result: report.result,
            divergence: report.divergence,
            wall_ms: report.wall_ms,
        }
    }

    /// What another process hands back of this outcome.
    pub fn into_report(self) -> Report {
        Report {
            result: self.result,
            divergence: self.divergence,
            wall_ms: self.wall_ms,
        }
    }

    /// Everything that makes this run a failure, in words; empty means it passed.
    pub fn failures(&self) -> Vec<String> {
        let mut all = self.result.failures.clone();
        if let Some(d) = &self.divergence {
            all.push(format!(
                "nondeterminism: trace event {} differs: {:?} vs {:?}",
                d.index, d.first, d.second
            ));
        }
        all
    }
}

/// A second run's trace hash and trace, for the determinism check.
pub type Rerun = (u64, Vec<String>);

/// How the determinism check does its second run.
pub type RerunFn<'a> = &'a dyn Fn(&RunConfig) -> Result<Rerun, String>;

/// Runs one configuration; with `rerun`, runs it again through `rerun` (in this process
/// or another) and compares the traces. Only under `--cfg madsim`, where the simulator
/// exists.
#[cfg(madsim)]
pub fn run_one(job: Job, config: RunConfig, rerun: Option<RerunFn<'_>>) -> Outcome {
    let start = std::time::Instant::now();
    let result = detcd_sim::run::run(&config);
    let divergence = rerun.and_then(|rerun| match rerun(&config) {
        Err(e) => Some(Divergence {
            index: 0,
            first: None,
            second: Some(format!("the second run failed: {e}")),
        }),
        Ok((hash, _)) if hash == result.trace_hash => None,
        Ok((hash, trace)) => Some(
            first_divergence(&result.trace, &trace).unwrap_or(Divergence {
                index: result.trace.len(),
                first: Some(format!("hash {:016x}", result.trace_hash)),
                second: Some(format!("hash {hash:016x}")),
            }),
        ),
    });
    let wall_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    Outcome {
        job,
        config,
        result,
        divergence,
        wall_ms,
    }
}

/// One row of the summary table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    /// Runs (seeds) done.
    pub runs: u64,
    /// Runs that failed.
    pub failed: u64,
    /// Simulated time, summed, in milliseconds.
    pub sim_ms: u64,
    /// Wall time of the simulations, summed, in milliseconds.
    pub wall_ms: u64,
    /// CPU time of the simulations, summed, in milliseconds.
    pub cpu_ms: u64,
    /// Per-run commit latency p50s, in microseconds.
    pub p50s_us: Vec<u64>,
    /// Per-run commit latency p99s, in microseconds.
    pub p99s_us: Vec<u64>,
}

impl Row {
    fn add(&mut self, o: &Outcome) {
        self.runs += 1;
        self.failed += u64::from(!o.failures().is_empty());
        self.sim_ms += o.result.sim_ms;
        self.wall_ms += o.result.wall_ms;
        self.cpu_ms += o.result.cpu_ms;
        let (p50, p99) = o.result.commit_latency_us;
        if p99 > 0 {
            self.p50s_us.push(p50);
            self.p99s_us.push(p99);
        }
    }

    /// Simulated time per wall time.
    pub fn sim_per_wall(&self) -> f64 {
        self.sim_ms as f64 / self.wall_ms.max(1) as f64
    }

    /// Simulated time per CPU time (not inflated by other work on the machine).
    pub fn sim_per_cpu(&self) -> f64 {
        self.sim_ms as f64 / self.cpu_ms.max(1) as f64
    }

    /// The median over runs of each run's p50 and p99 commit latency, in microseconds.
    pub fn latency_us(&self) -> (u64, u64) {
        (median(&self.p50s_us), median(&self.p99s_us))
    }
}

fn median(values: &[u64]) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Summary of a sweep: one row per scenario, one per disk profile, and the total.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// By scenario name.
    pub by_scenario: BTreeMap<String, Row>,
    /// By disk profile (`ssd`, `hdd`), for the latency comparison.
    pub by_disk: BTreeMap<&'static str, Row>,
    /// All runs.
    pub total: Row,
}

impl Summary {
    /// Adds one outcome.
    pub fn add(&mut self, o: &Outcome) {
        self.by_scenario
            .entry(o.job.scenario.clone())
            .or_default()
            .add(o);
        let disk = match o.config.disk {
            DiskProfile::Ssd => "ssd",
            DiskProfile::Hdd => "hdd",
        };
        self.by_disk.entry(disk).or_default().add(o);
        self.total.add(o);
    }

    /// The table as text, with seeds/min over `elapsed_ms` of wall time.
    pub fn table(&self, elapsed_ms: u64) -> String {
        // The name column fits the longest scenario name.
        let width = self
            .by_scenario
            .keys()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .max("scenario".len());
        let mut out = format!(
            "{:<width$} {:>6} {:>6} {:>10} {:>12} {:>12}\n",
            "scenario", "runs", "failed", "sim/wall", "p50 commit", "p99 commit"
        );
        let line = |name: &str, r: &Row| {
            let (p50, p99) = r.latency_us();
            format!(
                "{:<width$} {:>6} {:>6} {:>9.1}x {:>10}us {:>10}us\n",
                name,
                r.runs,
                r.failed,
                r.sim_per_wall(),
                p50,
                p99
            )
        };
        for (name, r) in &self.by_scenario {
            out.push_str(&line(name, r));
        }
        for (disk, r) in &self.by_disk {
            out.push_str(&line(&format!("[disk {disk}]"), r));
        }
        out.push_str(&line("TOTAL", &self.total));
        let minutes = elapsed_ms.max(1) as f64 / 60_000.0;
        // Per run (what one simulation costs) and for the sweep as a whole (what the
        // machine delivered, runs side by side with `--jobs`).
        out.push_str(&format!(
            "{} seeds in {:.1} s: {:.1} seeds/min, sim/wall {:.1}x, sim/cpu {:.1}x per run, \
             sim/elapsed {:.1}x for the sweep, {} failed\n",
            self.total.runs,
            elapsed_ms as f64 / 1000.0,
            self.total.runs as f64 / minutes,
            self.total.sim_per_wall(),
            self.total.sim_per_cpu(),
            self.total.sim_ms as f64 / elapsed_ms.max(1) as f64,
            self.total.failed
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_jobs() {
        let scenarios = vec![
            "calm".to_owned(),
            "swarm".to_owned(),
            "leader-partition".to_owned(),
        ];
        let all = jobs(&scenarios, 0..7, Shard::ALL).expect("jobs");
        assert_eq!(all.len(), 21);
        let mut union = Vec::new();
        for k in 1..=4 {
            union.extend(jobs(&scenarios, 0..7, Shard { index: k, count: 4 }).expect("jobs"));
        }
        assert_eq!(union.len(), all.len());
        for j in &all {
            assert_eq!(union.iter().filter(|u| *u == j).count(), 1, "{j:?}");
        }
        assert!(jobs(&["nope".to_owned()], 0..1, Shard::ALL).is_err());
    }

    #[test]
    fn the_bench_runs_are_scenarios_a_sweep_knows() {
        for (name, members) in catalog::BENCH_SCENARIOS {
            let config = config_for(name, 7).expect("bench scenario");
            let bench = catalog::bench_config(
                7,
                members,
                catalog::BENCH_CLIENTS,
                catalog::BENCH_DURATION_MS,
            );
            let json = |c: &RunConfig| serde_json::to_string(c).expect("json");
            assert_eq!(json(&config), json(&bench));
            assert_eq!(config.members, members);
            assert!(config.schedule.events.is_empty(), "{name} has faults");
        }
        assert!(jobs(&["bench-5".to_owned()], 0..2, Shard::ALL).is_ok());
        assert!(!catalog::all().iter().any(|s| s.name.starts_with("bench")));
    }

    #[test]
    fn parsing_seeds_and_shards() {
        assert_eq!(parse_seeds("5").expect("n"), 0..5);
        assert_eq!(parse_seeds("10..20").expect("range"), 10..20);
        assert!(parse_seeds("x").is_err() && parse_seeds("9..3").is_err());
        assert_eq!(
            Shard::parse("2/3").expect("shard"),
            Shard { index: 2, count: 3 }
        );
        for bad in ["0/3", "4/3", "1/0", "1", "a/b"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn first_divergence_finds_the_first_difference() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(first_divergence(&s(&["a", "b"]), &s(&["a", "b"])), None);
        let d = first_divergence(&s(&["a", "b", "c"]), &s(&["a", "x", "c"])).expect("differs");
        assert_eq!(
            (d.index, d.first.as_deref(), d.second.as_deref()),
            (1, Some("b"), Some("x"))
        );
        let d = first_divergence(&s(&["a"]), &s(&["a", "b"])).expect("longer");
        assert_eq!(
            (d.index, d.first, d.second.as_deref()),
            (1, None, Some("b"))
        );
    }

    #[test]
    fn median_of_runs() {
        assert_eq!(median(&[]), 0);
        assert_eq!(median(&[5, 1, 9]), 5);
    }
}
