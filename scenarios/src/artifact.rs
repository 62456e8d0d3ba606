//! The artifact folder a failing run leaves behind, and reading it back for `replay`.
//!
//! Layout of `<out>/<scenario>-seed<N>/`:
//! - `config.json`: the whole run configuration (seed, shape, workload, schedule): what
//!   `detcd-sim replay DIR` runs;
//! - `schedule.json`: the fault schedule alone, for `replay --schedule`;
//! - `seed`, `trace_hash`: one number each;
//! - `failures.txt`, `verdict.txt`, `trace.txt`: what went wrong, the checker's verdict,
//!   the event trace (one event a line);
//! - `history.jsonl` and `report.html`: the history in the checker's format and the
//!   checker's HTML timeline of it;
//! - `logs/n<i>.log`: each member's log;
//! - `REPLAY`: the one command that replays the run.
//!
//! It does not decide what is a failure (the sweep does) and does not run anything.

use std::fs;
use std::path::{Path, PathBuf};

use detcd_checker::etcd;
use detcd_checker::history::History;
use detcd_sim::fault::Schedule;
use detcd_sim::run::RunConfig;

use crate::ScenarioError;
use crate::sweep::Outcome;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ScenarioError + '_ {
    move |source| ScenarioError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn json(path: &Path) -> impl FnOnce(serde_json::Error) -> ScenarioError + '_ {
    move |source| ScenarioError::Json {
        path: path.display().to_string(),
        source,
    }
}

fn write(path: &Path, text: &str) -> Result<(), ScenarioError> {
    fs::write(path, text).map_err(io(path))
}

/// The checker's HTML timeline of `history` (JSON lines), or a page saying why there is
/// none (an unparsable history is itself worth seeing).
pub fn report_html(title: &str, history: &[String]) -> String {
    match History::parse(&history.join("\n")) {
        Ok(h) => {
            let opts = etcd::Options::default();
            let verdict = etcd::check(&h, &opts);
            let t = etcd::timeline::timeline(title, &h, &verdict, &opts);
            detcd_checker::report::html(&t)
        }
        Err(e) => format!(
            "<!doctype html><title>{0}</title><p>history does not parse: {1}</p>",
            detcd_checker::report::escape(title),
            detcd_checker::report::escape(&e.to_string())
        ),
    }
}

/// Writes the artifact folder of `outcome` under `out` and returns its path.
pub fn write_failure(
    out: &Path,
    outcome: &Outcome,
    program: &str,
) -> Result<PathBuf, ScenarioError> {
    let dir = out.join(format!("{}-seed{}", outcome.job.scenario, outcome.job.seed));
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).map_err(io(&logs))?;
    let r = &outcome.result;
    let config = serde_json::to_string_pretty(&outcome.config).map_err(json(&dir))?;
    write(&dir.join("config.json"), &config)?;
    let schedule = serde_json::to_string_pretty(&outcome.config.schedule).map_err(json(&dir))?;
    write(&dir.join("schedule.json"), &schedule)?;
    write(&dir.join("seed"), &format!("{}\n", outcome.job.seed))?;
    write(&dir.join("trace_hash"), &format!("{:016x}\n", r.trace_hash))?;
    write(
        &dir.join("failures.txt"),
        &(outcome.failures().join("\n") + "\n"),
    )?;
    write(&dir.join("verdict.txt"), &format!("{}\n", r.verdict))?;
    write(&dir.join("trace.txt"), &(r.trace.join("\n") + "\n"))?;
    write(&dir.join("history.jsonl"), &(r.history.join("\n") + "\n"))?;
    let title = format!("{} seed {}", outcome.job.scenario, outcome.job.seed);
    write(&dir.join("report.html"), &report_html(&title, &r.history))?;
    for (member, lines) in &r.logs {
        write(
            &logs.join(format!("n{member}.log")),
            &(lines.join("\n") + "\n"),
        )?;
    }
    let dir = fs::canonicalize(&dir).map_err(io(&dir))?;
    write(
        &dir.join("REPLAY"),
        &format!(
            "{bugs}{program} replay {}\n",
            dir.display(),
            bugs = if outcome.config.bugs.is_empty() {
                String::new()
            } else {
                let names: Vec<&str> = outcome.config.bugs.iter().map(|b| b.name()).collect();
                format!(
                    "# deliberate bugs on (kept in config.json): {}\n",
                    names.join(", ")
                )
            }
        ),
    )?;
    Ok(dir)
}

/// A run read back from an artifact folder: its configuration and recorded trace hash.
pub struct Saved {
    /// The configuration to replay.
    pub config: RunConfig,
    /// The hash the failing run had, if recorded.
    pub trace_hash: Option<u64>,
}

/// Reads an artifact folder written by [`write_failure`].
pub fn load(dir: &Path) -> Result<Saved, ScenarioError> {
    let path = dir.join("config.json");
    let text = fs::read_to_string(&path).map_err(io(&path))?;
    let config = serde_json::from_str(&text).map_err(json(&path))?;
    let hash_path = dir.join("trace_hash");
    let trace_hash = fs::read_to_string(&hash_path)
        .ok()
        .and_then(|t| u64::from_str_radix(t.trim(), 16).ok());
    Ok(Saved { config, trace_hash })
}

/// Reads a schedule file: a JSON `Schedule` (`{"events": [...]}`).
pub fn load_schedule(path: &Path) -> Result<Schedule, ScenarioError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(json(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_schedule_file_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("detcd-scenarios-art-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("s.json");
        fs::write(&f, "{\"events\": 3}").expect("write");
        assert!(matches!(load_schedule(&f), Err(ScenarioError::Json { .. })));
        assert!(matches!(
            load(&dir.join("missing")),
            Err(ScenarioError::Io { .. })
        ));
        let good = crate::catalog::all()[1].build;
        fs::write(&f, serde_json::to_string(&good(4).schedule).expect("json")).expect("write");
        assert_eq!(load_schedule(&f).expect("loads"), good(4).schedule);
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn an_unparsable_history_still_gives_a_page() {
        let page = report_html("t<1>", &["not json".to_owned()]);
        assert!(
            page.contains("does not parse") && page.contains("t&lt;1&gt;"),
            "{page}"
        );
    }
}
