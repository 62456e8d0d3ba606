//! `detcd-check`: checks a recorded history and prints the verdict.
//! Exit codes: 0 OK, 1 Illegal, 2 Unknown, 3 bad input or usage.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use detcd_checker::etcd::{self, Options, STEP_BUDGET_DEFAULT};
use detcd_checker::generate::{GenConfig, Mutation, generate, generate_mutated};
use detcd_checker::history::{History, Record};
use detcd_checker::jepsen::{JepsenModel, check_jepsen};
use detcd_checker::shrink::{Shrunk, shrink};
use detcd_checker::verdict::{Property, Verdict};
use detcd_checker::wgl::Outcome as WglOutcome;

const FORMATS_HELP: &str = r#"FORMATS
  detcd (default)  JSON lines, one record per line; blank lines and lines starting
                   with '#' are skipped. Full reference: checker/README.md.
    {"type":"op","client":1,"call":10,"ret":20,
     "op":{"put":{"key":"a","value":"1","lease":0,"prev_kv":false}},
     "outcome":{"ok":{"revision":5,"result":{"put":{}}}}}
    outcome: {"ok":{"revision":R,"result":{...}}} | {"fail":"server error text"}
             (definitely no effect) | "unknown" (may or may not have happened;
             "ret" may then be omitted)
    op kinds: range {key, range_end, revision, limit, count_only, keys_only,
              serializable}, put {key, value, lease, prev_kv}, delete_range {key,
              range_end, prev_kv}, txn {compare:[{key, range_end, target:{version|
              create|mod|value|lease: X}, result: equal|greater|less|not_equal}],
              success:[ops], failure:[ops]}, compact {revision}, lease_grant {id, ttl},
              lease_revoke {id}, lease_keep_alive {id}, lease_time_to_live {id, keys}
    results: range {kvs:[{key,value,create_revision,mod_revision,version,lease}],
             count, more}, put {prev_kv}, delete_range {deleted, prev_kvs},
             txn {succeeded, responses:[results]}, compact {}, lease_grant {id, ttl},
             lease_revoke {}, lease_keep_alive {ttl}, lease_time_to_live {ttl,
             granted_ttl, keys}
    watch records: {"type":"watch","client":C,"watch":W,"call":T,"created_revision":R,
                    "request":{key, range_end, start_revision, prev_kv,
                    progress_notify, filters:["no_put"|"no_delete"]}}
                   {"type":"watch_events","client":C,"watch":W,"time":T,"revision":R,
                    "events":[{"type":"put"|"delete","kv":{...},"prev_kv":{...}}]}
                   {"type":"watch_progress","client":C,"watch":W,"time":T,"revision":R}
                   {"type":"watch_cancel","client":C,"watch":W,"time":T,"reason":"...",
                    "compact_revision":R}
  etcd-robustness  A report directory of etcd's robustness tests (FILE is the
                   directory): one client-<id> folder per client holding
                   operations.json (request, Call, Output, Return per line) and/or
                   watch.json (request and responses per line). Checked with the etcd
                   model. Errors, persisted-without-answer and revision -1 responses
                   become unknown outcomes; reads showing a leased key, or a key of
                   version > 1 whose creation no watch of the report delivered,
                   become unknown (no create revision or lease is reported); watch
                   events are compared on key, value, mod revision and is-create
                   only; hashed values compare by hash. An Illegal
                   verdict also names the report file and line of each record.
  jepsen           Jepsen EDN history, one map per line, e.g.
                   {:process 0, :type :invoke, :f :read, :value nil}
                   (:type :invoke/:ok/:fail/:info; :key where present).

MODELS
  etcd (default)   etcd KV: revisions, versions, create/mod revisions, Txn with
                   compares and nested ops, DeleteRange, leases (grant/revoke/expiry),
                   Compact and compacted errors, watches. Checked by replaying in
                   revision order; unknown-outcome writes fill revision gaps.
  register         Jepsen read/write register (format jepsen).
  cas-register     Jepsen read/write/cas register (format jepsen).
  kv               Jepsen per-key get/put/append (format jepsen).

PROPERTIES reported for Illegal histories
  duplicate_revision, unexplained_revision, result, real_time, compaction, lease,
  watch_order, watch_duplicate, watch_atomic, watch_reliable, watch_filter,
  watch_event, watch_prev_kv, watch_progress, watch_compaction, linearizability

EXIT CODES
  0 OK, 1 Illegal, 2 Unknown (step budget hit), 3 bad input (line number and reason
  on stderr) or bad usage.

EXAMPLE
  detcd-check checker/examples/etcd-ok.jsonl
  detcd-check --json checker/examples/etcd-stale-read.jsonl
  detcd-check --format etcd-robustness checker/examples/robustness-ok"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// detcd's JSON-lines history.
    Detcd,
    /// Jepsen EDN history.
    Jepsen,
    /// etcd robustness-test report directory.
    EtcdRobustness,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModelName {
    /// etcd KV with revisions, leases, compaction and watches.
    Etcd,
    /// Read/write register.
    Register,
    /// Read/write/compare-and-set register.
    CasRegister,
    /// Per-key get/put/append store.
    Kv,
}

/// Checks a client history of detcd, etcd or Jepsen for linearizability, watch and
/// lease properties.
#[derive(Debug, Parser)]
#[command(name = "detcd-check", version, after_long_help = FORMATS_HELP,
          args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// History file ('-' for standard input), or report directory.
    file: Option<PathBuf>,
    /// Input format.
    #[arg(long, value_enum, default_value = "detcd")]
    format: Format,
    /// Model to check against.
    #[arg(long, value_enum, default_value = "etcd")]
    model: ModelName,
    /// Print the verdict as JSON.
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report to this path.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Search steps allowed before answering Unknown (deterministic, not wall time).
    #[arg(long, default_value_t = STEP_BUDGET_DEFAULT)]
    step_budget: u64,
    /// Report the violation without shrinking it to a small sub-history.
    #[arg(long)]
    no_shrink: bool,
    /// Print parse and check times to stderr.
    #[arg(long, hide = true)]
    timing: bool,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Writes a generated etcd history (for benchmarks and tests).
    #[command(hide = true)]
    Gen {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        ops: usize,
        #[arg(long, default_value_t = 50)]
        clients: usize,
        #[arg(long, default_value_t = 1000)]
        keys: usize,
        #[arg(long, default_value_t = 10)]
        unknown_permille: u32,
        #[arg(long, default_value_t = 4)]
        watches: usize,
        /// Cut off a minority of clients in some periods (many unknown writes).
        #[arg(long)]
        partitions: bool,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Break the history: stale-read, lost-write, reorder-watch, duplicate-revision.
        #[arg(long)]
        mutate: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("detcd-check: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    if let Some(Cmd::Gen {
        out,
        ops,
        clients,
        keys,
        unknown_permille,
        watches,
        partitions,
        seed,
        mutate,
    }) = cli.cmd
    {
        let cfg = GenConfig {
            seed,
            ops,
            clients,
            keys,
            unknown_write_permille: unknown_permille,
            watches,
            leases: true,
            compactions: true,
            partitions,
        };
        let h = match mutate.as_deref() {
            None => generate(&cfg),
            Some(m) => {
                let m = match m {
                    "stale-read" => Mutation::StaleRead,
                    "lost-write" => Mutation::LostWrite,
                    "reorder-watch" => Mutation::ReorderWatch,
                    "duplicate-revision" => Mutation::DuplicateRevision,
                    other => anyhow::bail!("unknown mutation {other}"),
                };
                generate_mutated(&cfg, m)
                    .ok_or_else(|| anyhow::anyhow!("nothing to mutate in this history"))?
            }
        };
        std::fs::write(&out, h.to_jsonl())?;
        return Ok(0);
    }
    let Some(file) = cli.file.clone() else {
        anyhow::bail!("no history file given (see --help)");
    };
    let title = file.display().to_string();
    match (cli.format, cli.model) {
        (Format::Detcd | Format::EtcdRobustness, ModelName::Etcd) => {}
        (Format::Jepsen, ModelName::Etcd) | (Format::Detcd | Format::EtcdRobustness, _) => {
            anyhow::bail!(
                "--format detcd and etcd-robustness go with --model etcd; --format jepsen \
                 with register, cas-register or kv"
            );
        }
        (Format::Jepsen, m) => return run_jepsen(&file, &title, m, &cli),
    }
    let t0 = std::time::Instant::now();
    let mut sources = None;
    let h = if cli.format == Format::EtcdRobustness {
        let imported = detcd_checker::robustness::import_dir(&file)?;
        sources = Some(imported.sources);
        imported.history
    } else if file.as_os_str() == "-" {
        History::read(std::io::stdin().lock())?
    } else {
        // One read and no copy per line: faster than a buffered reader.
        let bytes = std::fs::read(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        History::parse_bytes(&bytes)?
    };
    let opts = Options {
        step_budget: cli.step_budget,
        allow_gaps: false,
    };
    let t1 = std::time::Instant::now();
    let verdict = etcd::check(&h, &opts);
    if cli.timing {
        eprintln!(
            "parse {} ms, check {} ms, {} ops, {} watches",
            (t1 - t0).as_millis(),
            t1.elapsed().as_millis(),
            h.ops.len(),
            h.watches.len()
        );
    }
    let sub = match (&verdict, cli.no_shrink) {
        (Verdict::Illegal(v), false) => Some(shrink(&h, v, &opts)),
        _ => None,
    };
    print_verdict(&verdict, sub.as_ref(), cli.json)?;
    if let (Verdict::Illegal(v), Some(sources), false) = (&verdict, &sources, cli.json) {
        let mut out = std::io::stdout().lock();
        writeln!(out, "report records:")?;
        for line in &v.lines {
            let src = line.checked_sub(1).and_then(|i| sources.get(i));
            writeln!(out, "  {line:>6}: {}", src.map_or("?", String::as_str))?;
        }
    }
    if let Some(path) = &cli.html {
        let t = detcd_checker::etcd::timeline::timeline(&title, &h, &verdict, &opts);
        std::fs::write(path, detcd_checker::report::html(&t))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    // The process ends here: freeing a large history piece by piece only costs time.
    std::mem::forget(h);
    Ok(verdict.exit_code() as u8)
}

fn read_text(file: &PathBuf) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
    }
}

fn run_jepsen(file: &PathBuf, title: &str, m: ModelName, cli: &Cli) -> anyhow::Result<u8> {
    let model = match m {
        ModelName::Register => JepsenModel::Register,
        ModelName::CasRegister => JepsenModel::CasRegister,
        ModelName::Kv => JepsenModel::Kv,
        ModelName::Etcd => anyhow::bail!("the etcd model needs --format detcd"),
    };
    let text = read_text(file)?;
    let jv = check_jepsen(title, &text, model, cli.step_budget)
        .map_err(|e| anyhow::anyhow!("line {}: {}", e.line, e.reason))?;
    let verdict = match &jv.outcome {
        WglOutcome::Ok => Verdict::Ok,
        WglOutcome::Illegal { failing, .. } => Verdict::illegal(
            Property::Linearizability,
            format!(
                "no linearization of the {} operations exists; {} operation(s) could not be \
                 placed",
                jv.operations,
                failing.len()
            ),
            jv.failing_lines.clone(),
        ),
        WglOutcome::Unknown { reason } => Verdict::Unknown {
            reason: reason.clone(),
        },
    };
    print_verdict(&verdict, None, cli.json)?;
    if let Some(path) = &cli.html {
        std::fs::write(path, detcd_checker::report::html(&jv.timeline))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok(verdict.exit_code() as u8)
}

fn print_verdict(v: &Verdict, sub: Option<&Shrunk>, json: bool) -> anyhow::Result<()> {
    let records: Vec<(usize, Record)> = sub.map(|s| lined_records(&s.history)).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    if json {
        let mut val = serde_json::to_value(v)?;
        if let Some(obj) = val.as_object_mut() {
            let records_json: Vec<serde_json::Value> = records
                .iter()
                .map(|(line, r)| serde_json::json!({"line": line, "record": r}))
                .collect();
            if let Some(s) = sub {
                obj.insert("sub_history".into(), serde_json::Value::Array(records_json));
                obj.insert("sub_history_needs_gaps".into(), s.needs_gaps.into());
                obj.insert("sub_history_reproduces".into(), s.reproduces.into());
            }
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&val)?)?;
        return Ok(());
    }
    match v {
        Verdict::Ok => writeln!(out, "OK")?,
        Verdict::Unknown { reason } => writeln!(out, "UNKNOWN: {reason}")?,
        Verdict::Illegal(x) => {
            writeln!(out, "ILLEGAL: {}", x.property)?;
            writeln!(out, "{}", x.message)?;
            writeln!(out, "lines: {:?}", x.lines)?;
            if let Some(s) = sub {
                let how = match (s.reproduces, s.needs_gaps) {
                    (false, _) => "the records named; not a self-contained failing history",
                    (true, true) => "fails alone when revision gaps are taken as outside writes",
                    (true, false) => "fails alone",
                };
                writeln!(
                    out,
                    "failing sub-history ({} records; {how}):",
                    records.len()
                )?;
                for (line, r) in &records {
                    writeln!(out, "  {line:>6}: {}", serde_json::to_string(r)?)?;
                }
            }
        }
    }
    Ok(())
}

/// The records of a history with their source lines, in line order.
fn lined_records(h: &History) -> Vec<(usize, Record)> {
    let lines = h.ops.iter().map(|o| o.line).chain(
        h.watches
            .iter()
            .flat_map(|w| std::iter::once(w.line).chain(w.responses.iter().map(|r| r.0))),
    );
    let mut v: Vec<(usize, Record)> = lines
        .zip(
            h.to_records()
                .into_iter()
                .filter(|r| !matches!(r, Record::Meta(_))),
        )
        .collect();
    v.sort_by_key(|(l, _)| *l);
    v
}
