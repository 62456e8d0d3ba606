//! `detcd-sim`: runs detcd's named fault scenarios and swarm mode in the deterministic
//! simulator. `list`, `run`, `sweep`, `replay`; see `detcd-sim help`.
//!
//! Exit status: 0 when every run passed, 1 when one failed (artifacts are written), 2 on
//! bad usage or an unreadable file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use detcd_scenarios::sweep::{self, Job, Outcome, Shard, Summary};
use detcd_scenarios::{artifact, catalog, pool, swarm};
use detcd_sim::bugs::Bug;
use detcd_sim::run::RunConfig;
use indicatif::{ProgressBar, ProgressStyle};

/// mimalloc (cheaper than glibc's malloc for a run's many small allocations), counting
/// allocations on the simulation thread (for `bench`'s allocs per op). Nothing in a run
/// depends on addresses, so the allocator cannot change a trace.
#[cfg(madsim)]
#[global_allocator]
static ALLOCATOR: detcd_sim::cost::CountingAlloc<mimalloc::MiMalloc> =
    detcd_sim::cost::CountingAlloc(mimalloc::MiMalloc);

/// What to tell the user to run to replay an artifact.
const REPLAY_PROGRAM: &str = "ci/sim";

#[derive(Parser)]
#[command(
    name = "detcd-sim",
    about = "detcd's deterministic fault scenarios",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the named scenarios.
    List,
    /// Run one scenario with one seed.
    Run {
        /// Scenario name (see `list`), or `swarm`.
        #[arg(long)]
        scenario: String,
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Print the fault schedule (JSON) before running.
        #[arg(long)]
        print_schedule: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Run many seeds across scenarios and swarm mode; print a summary table.
    Sweep {
        /// Comma-separated scenario names, `all` (every named scenario and swarm), or
        /// `swarm`.
        #[arg(long, default_value = "all")]
        scenarios: String,
        /// Seeds: `N` for 0..N or `A..B`.
        #[arg(long, default_value = "10")]
        seeds: String,
        /// Run only shard K of N (`K/N`, 1-based).
        #[arg(long, default_value = "1/1")]
        shard: String,
        /// Hide the progress bar.
        #[arg(long)]
        no_progress: bool,
        /// Stop at the first failing run.
        #[arg(long)]
        fail_fast: bool,
        /// Runs at a time, each in a process of its own (results are reported in the
        /// same order as with 1).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Internal: run the RunConfig (JSON) on standard input like one job of a sweep and
    /// write what it produced (postcard) to standard output; `sweep --jobs N` runs its
    /// jobs this way.
    #[command(hide = true)]
    Job {
        /// Run it twice and compare, as `sweep --check-determinism` does.
        #[arg(long)]
        check_determinism: bool,
    },
    /// The harness self-test: every deliberate bug must make a small sweep fail, and the
    /// catching run must pass without the bug.
    Selftest {
        /// Only these bugs (comma-separated names); default every bug.
        #[arg(long, value_delimiter = ',')]
        only: Vec<Bug>,
    },
    /// Simulated time per wall time of a fault-free 3- and 5-member cluster under load.
    Bench {
        /// Seeds per cluster size.
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = catalog::BENCH_CLIENTS)]
        clients: u64,
        /// Workload time per run, simulated ms.
        #[arg(long, default_value_t = catalog::BENCH_DURATION_MS)]
        duration_ms: u64,
    },
    /// Internal: run a saved RunConfig (JSON) and print its trace hash and trace; the
    /// determinism check runs the second run this way.
    #[command(hide = true)]
    Trace {
        /// The configuration file.
        config: PathBuf,
    },
    /// Replay an artifact folder, or a schedule file on a scenario's configuration.
    Replay {
        /// An artifact folder written by a failing run.
        dir: Option<PathBuf>,
        /// A schedule JSON file to run instead of the scenario's own.
        #[arg(long, conflicts_with = "dir")]
        schedule: Option<PathBuf>,
        /// With --schedule: the scenario whose shape and workload to use.
        #[arg(long, default_value = "calm")]
        scenario: String,
        /// With --schedule: the seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args)]
struct Common {
    /// Run each seed a second time, in a fresh process, and report the first diverging
    /// trace event.
    #[arg(long)]
    check_determinism: bool,
    /// Where failing runs write their artifact folders.
    #[arg(long, default_value = "sim-artifacts")]
    out: PathBuf,
    /// Run every member with this deliberate bug (repeatable; the harness self-test's
    /// switches, e.g. `ack-write-before-sync`; see `detcd-sim selftest`).
    #[arg(long = "bug", value_name = "NAME")]
    bugs: Vec<Bug>,
}

impl Common {
    /// `config` with this command line's bugs added.
    fn apply(&self, mut config: RunConfig) -> RunConfig {
        for bug in &self.bugs {
            if !config.bugs.contains(bug) {
                config.bugs.push(*bug);
            }
        }
        config
    }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("detcd-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Ok(true): every run passed.
fn real_main() -> Result<bool> {
    let cli = Cli::parse();
    match cli.command {
        Command::List => {
            for s in catalog::all() {
                println!("{:<22} {}", s.name, s.about);
            }
            println!("{:<22} a random fault mix and rates per seed", swarm::NAME);
            for (name, about) in detcd_scenarios::probes::ALL {
                println!("{name:<22} (self-test only) {about}");
            }
            for (name, members) in catalog::BENCH_SCENARIOS {
                println!(
                    "{name:<22} (bench only) no faults: {members} members under `bench`'s load \
                     (sweep them with --jobs for a machine's throughput)"
                );
            }
            Ok(true)
        }
        Command::Run {
            scenario,
            seed,
            print_schedule,
            common,
        } => {
            let config = common.apply(sweep::config_for(&scenario, seed)?);
            if print_schedule {
                println!("{}", serde_json::to_string_pretty(&config.schedule)?);
            }
            let outcome = execute(Job { scenario, seed }, config, common.check_determinism)?;
            report_one(&outcome, &common)
        }
        Command::Sweep {
            scenarios,
            seeds,
            shard,
            no_progress,
            fail_fast,
            jobs: workers,
            common,
        } => {
            let names: Vec<String> = if scenarios == "all" {
                catalog::all()
                    .iter()
                    .map(|s| s.name.to_owned())
                    .chain([swarm::NAME.to_owned()])
                    .collect()
            } else {
                scenarios
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            };
            let jobs = sweep::jobs(&names, sweep::parse_seeds(&seeds)?, Shard::parse(&shard)?)?;
            sweep_jobs(jobs, workers, no_progress, fail_fast, &common)
        }
        Command::Job { check_determinism } => job(check_determinism),
        Command::Trace { config } => trace(&config),
        Command::Selftest { only } => selftest(&only),
        Command::Bench {
            seeds,
            clients,
            duration_ms,
        } => bench(seeds, clients, duration_ms),
        Command::Replay {
            dir,
            schedule,
            scenario,
            seed,
            common,
        } => {
            let (job, config, expected) = match (dir, schedule) {
                (Some(dir), _) => {
                    let saved = artifact::load(&dir)?;
                    let name = dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let scenario = name
                        .rsplit_once("-seed")
                        .map(|(s, _)| s.to_owned())
                        .unwrap_or(name);
                    (
                        Job {
                            scenario,
                            seed: saved.config.seed,
                        },
                        saved.config,
                        saved.trace_hash,
                    )
                }
                (None, Some(file)) => {
                    let mut config = sweep::config_for(&scenario, seed)?;
                    config.schedule = artifact::load_schedule(&file)?;
                    config.schedule.validate(config.members)?;
                    (Job { scenario, seed }, config, None)
                }
                (None, None) => anyhow::bail!("replay needs an artifact folder or --schedule FILE"),
            };
            let outcome = execute(job, common.apply(config), common.check_determinism)?;
            let mut ok = report_one(&outcome, &common)?;
            if let Some(expected) = expected {
                let same = expected == outcome.result.trace_hash;
                println!(
                    "recorded trace hash {expected:016x}: {}",
                    if same { "reproduced" } else { "NOT reproduced" }
                );
                ok &= same;
            }
            Ok(ok)
        }
    }
}

/// Runs one job in the simulator (twice with the determinism check).
#[cfg(madsim)]
fn execute(job: Job, config: RunConfig, check_determinism: bool) -> Result<Outcome> {
    let rerun: sweep::RerunFn<'_> = &rerun_in_child;
    Ok(sweep::run_one(
        job,
        config,
        check_determinism.then_some(rerun),
    ))
}

/// Runs `config` again in a fresh `detcd-sim trace` process, so the check covers what a
/// replay on another machine does: nothing carried over from this process.
#[cfg(madsim)]
fn rerun_in_child(config: &RunConfig) -> Result<sweep::Rerun, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let file = std::env::temp_dir().join(format!(
        "detcd-sim-{}-seed{}.json",
        std::process::id(),
        config.seed
    ));
    let text = serde_json::to_string(config).map_err(|e| e.to_string())?;
    std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    let output = std::process::Command::new(exe)
        .arg("trace")
        .arg(&file)
        .output()
        .map_err(|e| format!("spawning the second run: {e}"));
    let _ = std::fs::remove_file(&file);
    let output = output?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let hash = lines
        .next()
        .and_then(|l| u64::from_str_radix(l.trim(), 16).ok())
        .ok_or("the second run printed no hash")?;
    Ok((hash, lines.map(str::to_owned).collect()))
}

/// `detcd-sim trace FILE`: runs a saved configuration, prints the trace hash (hex) and
/// then the trace, one event a line.
#[cfg(madsim)]
fn trace(file: &std::path::Path) -> Result<bool> {
    let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
    let config: RunConfig =
        serde_json::from_str(&text).with_context(|| file.display().to_string())?;
    let r = detcd_sim::run::run(&config);
    println!("{:016x}", r.trace_hash);
    for line in &r.trace {
        println!("{}", line.replace('\n', "\\n"));
    }
    Ok(true)
}

/// `detcd-sim selftest`: runs every probe and prints, per bug, what caught it.
#[cfg(madsim)]
fn selftest(only: &[Bug]) -> Result<bool> {
    use detcd_scenarios::selftest::{Finding, PROBES, probe};
    let start = Instant::now();
    let mut ok = true;
    let mut total_runs = 0;
    let run = |c: &RunConfig| detcd_sim::run::run(c);
    for p in PROBES
        .iter()
        .filter(|p| only.is_empty() || only.contains(&p.bug))
    {
        let began = Instant::now();
        let finding = probe(p, &run)?;
        let secs = began.elapsed().as_secs_f64();
        ok &= finding.passed(p.required);
        match &finding {
            Finding::Caught {
                scenario,
                seed,
                runs,
                reason,
            } => {
                total_runs += runs + 1;
                println!(
                    "CAUGHT {:<34} by {scenario} seed {seed} after {runs} run(s) (budget {} per scenario), {secs:.1} s: {}",
                    p.bug,
                    p.seeds_max,
                    shorten(reason)
                );
                println!("       {:<34} same run without the bug: PASS", "");
            }
            Finding::FailsWithoutBug {
                scenario,
                seed,
                reason,
            } => println!(
                "BROKEN {:<34} {scenario} seed {seed} fails without the bug too: {}",
                p.bug,
                shorten(reason)
            ),
            Finding::Missed { runs } => {
                total_runs += runs;
                println!(
                    "MISSED {:<34} no failure in {runs} run(s) over {:?}, {secs:.1} s{}",
                    p.bug,
                    p.scenarios,
                    if p.required {
                        String::new()
                    } else {
                        format!(" (not required: {})", p.why)
                    }
                );
            }
            Finding::NotObservable => println!(
                "SKIP   {:<34} none of {:?} exists in this build: {}",
                p.bug, p.scenarios, p.why
            ),
        }
    }
    println!(
        "selftest: {} in {:.1} s, {total_runs} runs",
        if ok { "ok" } else { "FAILED" },
        start.elapsed().as_secs_f64()
    );
    Ok(ok)
}

/// The first line of `text`, at most a couple hundred characters.
#[cfg(madsim)]
fn shorten(text: &str) -> String {
    const SHOWN_CHARS_MAX: usize = 200;
    let line = text.lines().next().unwrap_or_default();
    let mut out: String = line.chars().take(SHOWN_CHARS_MAX).collect();
    if out.len() < line.len() {
        out.push('…');
    }
    out
}

/// `detcd-sim bench`: fault-free 3- and 5-member clusters under a KV load; prints
/// simulated time per wall time, and where the wall time went.
#[cfg(madsim)]
fn bench(seeds: u64, clients: u64, duration_ms: u64) -> Result<bool> {
    println!(
        "{:<8} {:>5} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>10} {:>9} {:>7}   per op: {:>7} {:>6} {:>6} {:>6} {:>6} {:>6}",
        "members",
        "seed",
        "ops",
        "sim ms",
        "wall ms",
        "cpu ms",
        "sim/wall",
        "sim/cpu",
        "ops/s sim",
        "fork+io ms",
        "check ms",
        "faults",
        "allocs",
        "tasks",
        "msgs",
        "spans",
        "events",
        "cpu µs"
    );
    let mut ok = true;
    for members in [3, 5] {
        let (mut sim_ms, mut wall_ms, mut cpu_ms, mut faults) = (0, 0, 0, 0);
        let (mut total_ops, mut cost) = (0u64, detcd_sim::cost::RunCost::default());
        for seed in 0..seeds {
            let config = catalog::bench_config(seed, members, clients, duration_ms);
            let outer = Instant::now();
            let r = detcd_sim::run::run(&config);
            let outer_ms = u64::try_from(outer.elapsed().as_millis()).unwrap_or(u64::MAX);
            let check = Instant::now();
            let _ = check_history(&r.history);
            let check_ms = check.elapsed().as_millis();
            ok &= r.passed();
            sim_ms += r.sim_ms;
            wall_ms += r.wall_ms;
            cpu_ms += r.cpu_ms;
            faults += r.minor_faults;
            let ops = r.history.len().saturating_sub(1);
            let [allocs, tasks, msgs, spans, events] = r.cost.per_op(ops as u64);
            total_ops += ops as u64;
            cost.allocs += r.cost.allocs;
            cost.tasks += r.cost.tasks;
            cost.net_msgs += r.cost.net_msgs;
            cost.spans += r.cost.spans;
            cost.events += r.cost.events;
            for (total, n) in cost.raft_messages.iter_mut().zip(r.cost.raft_messages) {
                *total += n;
            }
            cost.raft_batches += r.cost.raft_batches;
            cost.empty_appends += r.cost.empty_appends;
            println!(
                "{:<8} {:>5} {:>7} {:>8} {:>8} {:>8} {:>8.1}x {:>8.1}x {:>9.0} {:>10} {:>9} {:>7}   per op: {allocs:>7.0} {tasks:>6.1} {msgs:>6.1} {spans:>6.1} {events:>6.1} {:>6.0}",
                members,
                seed,
                ops,
                r.sim_ms,
                r.wall_ms,
                r.cpu_ms,
                r.sim_ms as f64 / r.wall_ms.max(1) as f64,
                r.sim_ms as f64 / r.cpu_ms.max(1) as f64,
                ops as f64 * 1000.0 / r.sim_ms.max(1) as f64,
                outer_ms.saturating_sub(r.wall_ms),
                check_ms,
                r.minor_faults,
                r.cpu_ms as f64 * 1000.0 / ops.max(1) as f64
            );
        }
        let [allocs, tasks, msgs, spans, events] = cost.per_op(total_ops);
        println!(
            "{members}-member cluster, {clients} clients: sim/wall {:.1}x, sim/cpu {:.1}x over {seeds} runs; \
             per op: {allocs:.0} allocs, {tasks:.1} tasks, {msgs:.1} msgs, {spans:.1} spans, {events:.1} events, {:.0} µs cpu; \
             {:.0} page faults per run",
            sim_ms as f64 / wall_ms.max(1) as f64,
            sim_ms as f64 / cpu_ms.max(1) as f64,
            cpu_ms as f64 * 1000.0 / total_ops.max(1) as f64,
            faults as f64 / seeds.max(1) as f64
        );
        let per_op = |n: u64| n as f64 / total_ops.max(1) as f64;
        let kinds: Vec<String> = detcd_sim::cost::RAFT_MESSAGE_KINDS
            .iter()
            .zip(cost.raft_messages)
            .filter(|(_, n)| *n > 0)
            .map(|(kind, n)| format!("{kind:?} {:.2}", per_op(n)))
            .collect();
        println!(
            "  raft per op: {:.2} batches; messages {}; appends without entries {:.2}",
            per_op(cost.raft_batches),
            kinds.join(", "),
            per_op(cost.empty_appends)
        );
    }
    Ok(ok)
}

/// Runs the checker on a recorded history again (to time it); the verdict as text.
#[cfg(madsim)]
fn check_history(lines: &[String]) -> String {
    use detcd_checker::history::{History, Record};
    let records = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Record>(l).ok())
        .enumerate()
        .map(|(i, r)| (i + 1, r));
    match History::from_records(records) {
        Ok(h) => format!(
            "{:?}",
            detcd_checker::etcd::check(&h, &detcd_checker::etcd::Options::default())
        ),
        Err(e) => e.to_string(),
    }
}

#[cfg(not(madsim))]
fn selftest(_: &[Bug]) -> Result<bool> {
    anyhow::bail!("this build has no simulator")
}

#[cfg(not(madsim))]
fn bench(_: u64, _: u64, _: u64) -> Result<bool> {
    anyhow::bail!("this build has no simulator")
}

#[cfg(not(madsim))]
fn trace(_: &std::path::Path) -> Result<bool> {
    anyhow::bail!("this build has no simulator")
}

/// Without the simulator compiled in, only `list` works.
#[cfg(not(madsim))]
fn execute(_: Job, _: RunConfig, _: bool) -> Result<Outcome> {
    anyhow::bail!(
        "this build has no simulator: build with RUSTFLAGS=\"--cfg madsim\" (ci/sim does)"
    )
}

/// Prints one run's result; on failure prints its schedule and writes its artifacts.
fn report_one(outcome: &Outcome, common: &Common) -> Result<bool> {
    let r = &outcome.result;
    println!(
        "{} seed {}: trace hash {:016x}, verdict {}, {} ops, sim {} ms, wall {} ms, commit p50 {} us p99 {} us",
        outcome.job.scenario,
        outcome.job.seed,
        r.trace_hash,
        r.verdict,
        r.history.len(),
        r.sim_ms,
        r.wall_ms,
        r.commit_latency_us.0,
        r.commit_latency_us.1
    );
    let [ok, fail, unknown] = outcome_counts(&r.history);
    println!("client ops: {ok} ok, {fail} failed, {unknown} unknown outcome");
    let failures = outcome.failures();
    if failures.is_empty() {
        println!("PASS");
        return Ok(true);
    }
    print_failure(outcome, common)?;
    Ok(false)
}

/// How many recorded client ops succeeded, failed, and have an unknown outcome.
fn outcome_counts(history: &[String]) -> [u64; 3] {
    let mut counts = [0u64; 3];
    for line in history {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match value.get("outcome") {
            Some(serde_json::Value::String(s)) if s == "unknown" => counts[2] += 1,
            Some(serde_json::Value::Object(o)) if o.contains_key("ok") => counts[0] += 1,
            Some(serde_json::Value::Object(o)) if o.contains_key("fail") => counts[1] += 1,
            _ => {}
        }
    }
    counts
}

fn print_failure(outcome: &Outcome, common: &Common) -> Result<()> {
    for f in outcome.failures() {
        println!(
            "FAIL {} seed {}: {f}",
            outcome.job.scenario, outcome.job.seed
        );
    }
    println!(
        "schedule: {}",
        serde_json::to_string(&outcome.config.schedule)?
    );
    let dir = artifact::write_failure(&common.out, outcome, REPLAY_PROGRAM)
        .with_context(|| format!("writing artifacts under {}", common.out.display()))?;
    println!("artifacts: {}", dir.display());
    println!("replay: {REPLAY_PROGRAM} replay {}", dir.display());
    Ok(())
}

/// Runs `jobs`, `workers` at a time (each in a process of its own when more than one),
/// reporting each failure and then the summary table in job order.
fn sweep_jobs(
    jobs: Vec<Job>,
    workers: usize,
    no_progress: bool,
    fail_fast: bool,
    common: &Common,
) -> Result<bool> {
    let start = Instant::now();
    let bar = if no_progress {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(jobs.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds, {elapsed}, eta {eta} {msg}")
            .context("progress template")?,
    );
    let work = jobs
        .into_iter()
        .map(|job| {
            let config = common.apply(sweep::config_for(&job.scenario, job.seed)?);
            Ok((job, config))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut summary = Summary::default();
    let mut failed = Vec::new();
    let mut error = None;
    // Takes one outcome in job order; false stops the sweep.
    let mut take = |outcome: Result<Outcome>| -> bool {
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                error = Some(e);
                return false;
            }
        };
        summary.add(&outcome);
        bar.inc(1);
        bar.set_message(format!(
            "{} seed {}",
            outcome.job.scenario, outcome.job.seed
        ));
        if outcome.failures().is_empty() {
            return true;
        }
        if let Err(e) = bar.suspend(|| print_failure(&outcome, common)) {
            error = Some(e);
            return false;
        }
        failed.push(format!(
            "{} seed {}",
            outcome.job.scenario, outcome.job.seed
        ));
        !fail_fast
    };
    if workers <= 1 {
        // In this process: each run forks, which only a single-threaded process may do.
        for (job, config) in work {
            if !take(execute(job, config, common.check_determinism)) {
                break;
            }
        }
    } else {
        let exe = std::env::current_exe().context("own executable")?;
        pool::in_order(
            work.len(),
            workers,
            |i| {
                let (job, config) = &work[i];
                execute_in_child(&exe, job, config, common.check_determinism)
            },
            |_, outcome| take(outcome),
        );
    }
    if let Some(e) = error {
        return Err(e);
    }
    bar.finish_and_clear();
    let elapsed_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    print!("{}", summary.table(elapsed_ms));
    if !failed.is_empty() {
        println!("failed: {}", failed.join(", "));
    }
    Ok(failed.is_empty())
}

/// Runs one job in a fresh `detcd-sim job` process (see [`job`]). A process that dies
/// or answers nonsense makes the run a failure, as a forked run that dies does.
fn execute_in_child(
    exe: &std::path::Path,
    job: &Job,
    config: &RunConfig,
    check_determinism: bool,
) -> Result<Outcome> {
    use std::io::Write;
    use std::process::Stdio;
    let mut command = std::process::Command::new(exe);
    command.arg("job");
    if check_determinism {
        command.arg("--check-determinism");
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting a job process")?;
    let input = serde_json::to_vec(config)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A child that died early closed its end; its exit status tells why.
        let _ = stdin.write_all(&input);
    }
    let output = child
        .wait_with_output()
        .context("waiting for a job process")?;
    let report = if output.status.success() {
        postcard::from_bytes::<sweep::Report>(&output.stdout)
            .map_err(|e| format!("the job process's answer is not readable: {e}"))
    } else {
        Err(format!(
            "the job process failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    };
    let report = report.unwrap_or_else(|failure| sweep::Report {
        result: detcd_sim::run::RunResult {
            seed: config.seed,
            verdict: "Unknown: the run did not finish".to_owned(),
            failures: vec![failure],
            ..Default::default()
        },
        divergence: None,
        wall_ms: 0,
    });
    Ok(Outcome::from_report(job.clone(), config.clone(), report))
}

/// `detcd-sim job`: runs the configuration on standard input as one sweep job and
/// writes its report (postcard) to standard output.
fn job(check_determinism: bool) -> Result<bool> {
    use std::io::Write;
    let config: RunConfig =
        serde_json::from_reader(std::io::stdin().lock()).context("reading a RunConfig")?;
    let job = Job {
        scenario: String::new(),
        seed: config.seed,
    };
    let report = execute(job, config, check_determinism)?.into_report();
    let bytes = postcard::to_allocvec(&report).context("encoding the report")?;
    std::io::stdout().lock().write_all(&bytes)?;
    Ok(true)
}
