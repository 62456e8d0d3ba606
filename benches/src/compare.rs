//! `detcd-bench compare`: starts two servers side by side with the same settings on
//! the same disk, runs each workload against one and right after against the other,
//! and prints one table with both rows and their ratio.
//!
//! Servers are given as command templates, so the same code compares detcd with etcd,
//! or etcd with itself. Placeholders: `{dir}` (a fresh data directory on the chosen
//! disk), `{client}` and `{peer}` (free loopback ports). It runs single-node servers
//! only and does not tune them.
//!
//! Before and after the servers, `detcd-bench compare` times the raw `fdatasync` rate
//! of the same disk ([`raw_fdatasync`]), the bound a single-stream durable write can
//! reach, and the table relates each server's 1-connection put rate to the faster probe.
//! Those two probes are minutes apart, so [`compare`] can also interleave short raw
//! probe and 1×1 put windows on both servers ([`BoundPlan`], [`crate::fsync_bound`]),
//! which is what the "within 10% of raw fdatasync" verdict uses.

use crate::bodies::{BodyError, SYNC_PROBE_BLOCK_BYTES, SyncProbe};
use crate::fsync_bound::{self, BoundError, BoundReport, RawProbes, Round, Window};
use crate::load::{self, LoadError, LoadOpts, Workload};
use crate::ports::free_port;
use crate::stats::{Latencies, StatsError, Summary};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Time a started server gets to answer Maintenance.Status, in milliseconds.
pub const SERVER_READY_TIMEOUT_MS: u64 = 20_000;

/// The command that starts Debian's etcd 3.4 as a single node.
pub const ETCD_COMMAND: &str = "/usr/bin/etcd --name default --data-dir {dir} \
--listen-client-urls http://127.0.0.1:{client} --advertise-client-urls http://127.0.0.1:{client} \
--listen-peer-urls http://127.0.0.1:{peer} --initial-advertise-peer-urls http://127.0.0.1:{peer} \
--initial-cluster default=http://127.0.0.1:{peer}";

/// Errors of a comparison.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The server could not be started.
    #[error("start {name} ({command}): {source}")]
    Spawn {
        /// Server name.
        name: String,
        /// Expanded command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server did not answer in time.
    #[error("{name} did not become ready within {SERVER_READY_TIMEOUT_MS} ms; its log is {log}")]
    NotReady {
        /// Server name.
        name: String,
        /// Its log file.
        log: PathBuf,
    },
    /// The server exited before it became ready.
    #[error("{name} exited with {status} before it became ready; its log is {log}")]
    Exited {
        /// Server name.
        name: String,
        /// Exit status.
        status: std::process::ExitStatus,
        /// Its log file.
        log: PathBuf,
    },
    /// A workload failed.
    #[error("{name}: {source}")]
    Load {
        /// Server name.
        name: String,
        /// Why.
        source: LoadError,
    },
    /// A file or port operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The raw fdatasync probe failed.
    #[error("raw fdatasync probe: {0}")]
    Probe(#[from] BodyError),
    /// The latency histogram failed.
    #[error("{0}")]
    Stats(#[from] StatsError),
    /// The interleaved bound measurement failed.
    #[error("{0}")]
    Bound(#[from] BoundError),
}

/// Name of the raw fdatasync row.
pub const RAW_FDATASYNC_NAME: &str = "raw fdatasync";

/// Times `samples` rounds of rewriting one block and `fdatasync`ing it in a fresh
/// directory under `data_root`: the rate one writer that waits for every sync can reach
/// on that disk.
pub fn raw_fdatasync(data_root: &Path, samples: usize) -> Result<Summary, CompareError> {
    let dir = tempfile::Builder::new()
        .prefix("raw-fdatasync-")
        .tempdir_in(data_root)?;
    let mut probe = SyncProbe::create(dir.path())?;
    let mut lat = Latencies::new()?;
    let started = Instant::now();
    for _ in 0..samples {
        let t = Instant::now();
        probe.write_sync()?;
        lat.record(t.elapsed());
    }
    Ok(lat.summary(RAW_FDATASYNC_NAME, started.elapsed(), 0))
}

/// One server to compare.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// Name for the table.
    pub name: String,
    /// Command template (run with `sh -c`).
    pub command: String,
}

/// A started server; killed when dropped.
pub struct RunningServer {
    child: Child,
    /// Client endpoint (`127.0.0.1:port`).
    pub endpoint: String,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Expands a command template.
pub fn expand(template: &str, dir: &Path, client: u16, peer: u16) -> String {
    template
        .replace("{dir}", &dir.display().to_string())
        .replace("{client}", &client.to_string())
        .replace("{peer}", &peer.to_string())
}

/// Starts `spec` with a data directory under `data_root` and waits until it reports a
/// leader. The server's output goes to `<data dir>.log`.
pub async fn start(spec: &ServerSpec, data_root: &Path) -> Result<RunningServer, CompareError> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("{}-", spec.name))
        .tempdir_in(data_root)?
        .keep();
    let (client, peer) = (free_port()?, free_port()?);
    let command = expand(&spec.command, &dir, client, peer);
    let log_path = dir.with_extension("log");
    let log = std::fs::File::create(&log_path)?;
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {command}"))
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|source| CompareError::Spawn {
            name: spec.name.clone(),
            command: command.clone(),
            source,
        })?;
    let mut server = RunningServer {
        child,
        endpoint: format!("127.0.0.1:{client}"),
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(SERVER_READY_TIMEOUT_MS) {
        if let Some(status) = server.child.try_wait()? {
            return Err(CompareError::Exited {
                name: spec.name.clone(),
                status,
                log: log_path,
            });
        }
        if load::find_leader(std::slice::from_ref(&server.endpoint))
            .await
            .is_ok()
        {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(CompareError::NotReady {
        name: spec.name.clone(),
        log: log_path,
    })
}

/// One workload of a comparison with its load shape.
#[derive(Clone, Debug)]
pub struct Case {
    /// Workload.
    pub workload: Workload,
    /// Load options (endpoints are filled in per server).
    pub opts: LoadOpts,
}

/// A row of the comparison table: one case on both servers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    /// Case label.
    pub case: String,
    /// First server's numbers.
    pub a: Summary,
    /// Second server's numbers.
    pub b: Summary,
}

async fn run_case(
    spec: &ServerSpec,
    server: &RunningServer,
    case: &Case,
) -> Result<Summary, CompareError> {
    let opts = LoadOpts {
        endpoints: vec![server.endpoint.clone()],
        ..case.opts.clone()
    };
    load::run(&opts, &case.workload)
        .await
        .map_err(|source| CompareError::Load {
            name: spec.name.clone(),
            source,
        })
}

/// The interleaved single-stream bound measurement: `rounds` rounds, each a raw
/// rewrite window, a raw append window, and a `put` and a request-floor window on each
/// server, every window `window_ms` long (see [`fsync_bound::schedule`]).
#[derive(Clone, Debug)]
pub struct BoundPlan {
    /// Rounds (each yields one ratio per server).
    pub rounds: usize,
    /// Length of one window, in milliseconds.
    pub window_ms: u64,
    /// The put case (its connections and clients are used; its stop is replaced by the
    /// window length, its seed by the round number).
    pub put: Case,
    /// The request-floor workload (a serializable range), run with the put case's
    /// connections and clients.
    pub floor: Workload,
}

/// What [`compare`] measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Comparison {
    /// One row per case.
    pub rows: Vec<Row>,
    /// The interleaved bound measurement, when asked for.
    pub fsync_bound: Option<BoundReport>,
}

/// Starts both servers (each fresh, side by side on the same disk), then runs each case
/// on `a` and right after on `b`, so a disk or CPU whose load drifts during the run
/// affects both rows of a case alike. Then, with `bound`, runs the interleaved bound
/// measurement against the same warm servers.
pub async fn compare(
    a: &ServerSpec,
    b: &ServerSpec,
    data_root: &Path,
    cases: &[Case],
    bound: Option<&BoundPlan>,
) -> Result<Comparison, CompareError> {
    let server_a = start(a, data_root).await?;
    let server_b = start(b, data_root).await?;
    let mut pairs = Vec::new();
    for case in cases {
        let a_sum = run_case(a, &server_a, case).await?;
        let b_sum = run_case(b, &server_b, case).await?;
        pairs.push((a_sum, b_sum));
    }
    let rows = cases
        .iter()
        .zip(pairs)
        .map(|(case, (a, b))| Row {
            case: format!(
                "{} conns={} clients={}",
                case.workload.name(),
                case.opts.conns,
                case.opts.clients
            ),
            a,
            b,
        })
        .collect();
    let fsync_bound = match bound {
        Some(plan) => Some(run_bound(&[(a, &server_a), (b, &server_b)], data_root, plan).await?),
        None => None,
    };
    Ok(Comparison { rows, fsync_bound })
}

/// Runs the windows of [`fsync_bound::schedule`] against `servers` and the raw probes
/// on `data_root`.
async fn run_bound(
    servers: &[(&ServerSpec, &RunningServer)],
    data_root: &Path,
    plan: &BoundPlan,
) -> Result<BoundReport, CompareError> {
    let window = Duration::from_millis(plan.window_ms);
    let mut probes = RawProbes::create(data_root)?;
    let mut rounds = Vec::new();
    for (k, windows) in fsync_bound::schedule(plan.rounds, servers.len())
        .into_iter()
        .enumerate()
    {
        let mut round = Round {
            raw_rewrite_qps: f64::NAN,
            raw_append_qps: f64::NAN,
            ideal_qps: f64::NAN,
            server_qps: vec![f64::NAN; servers.len()],
            floor_qps: vec![f64::NAN; servers.len()],
        };
        for w in windows {
            match w {
                Window::RawRewrite => {
                    if let Some(s) = probes.run(w, window) {
                        round.raw_rewrite_qps = s?.qps;
                    }
                }
                Window::RawAppend => {
                    if let Some(s) = probes.run(w, window) {
                        round.raw_append_qps = s?.qps;
                    }
                }
                Window::Ideal => {
                    if let Some(s) = probes.run(w, window) {
                        round.ideal_qps = s?.qps;
                    }
                }
                Window::Server(i) => {
                    let Some((spec, server)) = servers.get(i) else {
                        continue;
                    };
                    let case = Case {
                        workload: plan.put.workload.clone(),
                        opts: LoadOpts {
                            stop: load::Stop::Duration(window),
                            seed: k as u64,
                            ..plan.put.opts.clone()
                        },
                    };
                    round.server_qps[i] = run_case(spec, server, &case).await?.qps;
                }
                Window::Floor(i) => {
                    let Some((spec, server)) = servers.get(i) else {
                        continue;
                    };
                    let case = Case {
                        workload: plan.floor.clone(),
                        opts: LoadOpts {
                            stop: load::Stop::Duration(window),
                            seed: k as u64,
                            ..plan.put.opts.clone()
                        },
                    };
                    round.floor_qps[i] = run_case(spec, server, &case).await?.qps;
                }
            }
        }
        tracing::debug!(round = k, ?round, "fsync bound round");
        rounds.push(round);
    }
    let names: Vec<String> = servers.iter().map(|(s, _)| s.name.clone()).collect();
    Ok(BoundReport::from_rounds(&names, plan.window_ms, rounds))
}

/// The comparison as a text table: per case, one row per server and the ratio a/b;
/// then the raw fdatasync rows (one per probe, e.g. before and after the servers) and
/// each server's 1-connection, 1-client put rate as a fraction of the fastest probe.
pub fn table(a_name: &str, b_name: &str, rows: &[Row], raws: &[Summary]) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    let mut out = format!(
        "{:<44} {:<8} {:>10} {:>9} {:>9} {:>9}\n",
        "case", "server", "QPS", "p50 ms", "p99 ms", "errors"
    );
    for r in rows {
        for (name, s) in [(a_name, &r.a), (b_name, &r.b)] {
            out.push_str(&format!(
                "{:<44} {:<8} {:>10.1} {:>9.3} {:>9.3} {:>9}\n",
                r.case,
                name,
                s.qps,
                ms(s.latency_us_p50),
                ms(s.latency_us_p99),
                s.errors
            ));
        }
        let ratio = |x: f64, y: f64| if y > 0.0 { x / y } else { f64::NAN };
        out.push_str(&format!(
            "{:<44} {:<8} {:>10.2} {:>9.2} {:>9.2}\n",
            r.case,
            format!("{a_name}/{b_name}"),
            ratio(r.a.qps, r.b.qps),
            ratio(r.a.latency_us_p50 as f64, r.b.latency_us_p50 as f64),
            ratio(r.a.latency_us_p99 as f64, r.b.latency_us_p99 as f64),
        ));
    }
    for raw in raws {
        out.push_str(&format!(
            "{:<44} {:<8} {:>10.1} {:>9.3} {:>9.3} {:>9}\n",
            format!("{RAW_FDATASYNC_NAME} ({SYNC_PROBE_BLOCK_BYTES} B rewrite + sync)"),
            "disk",
            raw.qps,
            ms(raw.latency_us_p50),
            ms(raw.latency_us_p99),
            raw.errors
        ));
    }
    let Some(raw) = raws.iter().max_by(|x, y| x.qps.total_cmp(&y.qps)) else {
        return out;
    };
    if let Some(single) = rows.iter().find(|r| r.case.ends_with("conns=1 clients=1")) {
        for (name, s) in [(a_name, &single.a), (b_name, &single.b)] {
            out.push_str(&format!(
                "{:<44} {:<8} {:>10.2}\n",
                format!("{} / {RAW_FDATASYNC_NAME}", single.case),
                name,
                if raw.qps > 0.0 {
                    s.qps / raw.qps
                } else {
                    f64::NAN
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Latencies;

    #[test]
    fn expands_placeholders() {
        let c = expand(
            "srv --d {dir} --c {client} --p {peer} {client}",
            Path::new("/x"),
            1,
            2,
        );
        assert_eq!(c, "srv --d /x --c 1 --p 2 1");
    }

    #[test]
    fn table_shows_both_rows_and_the_ratio() {
        let mut l = Latencies::new().expect("hist");
        l.record(Duration::from_millis(2));
        let a = l.summary("put", Duration::from_secs(1), 0);
        let b = l.summary("put", Duration::from_millis(500), 0);
        let t = table(
            "detcd",
            "etcd",
            &[Row {
                case: "put".into(),
                a,
                b,
            }],
            &[],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[1].contains("detcd") && lines[2].contains("etcd"));
        assert!(
            lines[3].contains("detcd/etcd") && lines[3].contains("0.50"),
            "{t}"
        );
    }

    #[test]
    fn raw_fdatasync_row_relates_the_single_stream_put_rate() {
        let root = tempfile::tempdir().expect("tempdir");
        let raw = raw_fdatasync(root.path(), 5).expect("probe");
        assert_eq!(raw.ops, 5);
        assert!(raw.qps > 0.0);
        let mut l = Latencies::new().expect("hist");
        l.record(Duration::from_millis(1));
        let fixed = Summary {
            qps: 100.0,
            ..raw.clone()
        };
        let a = Summary {
            qps: 50.0,
            ..l.summary("put", Duration::from_secs(1), 0)
        };
        let row = Row {
            case: "put conns=1 clients=1".into(),
            a: a.clone(),
            b: a,
        };
        let slower = Summary {
            qps: 10.0,
            ..raw.clone()
        };
        let t = table("detcd", "etcd", &[row], &[slower, fixed]);
        let last: Vec<&str> = t.lines().rev().take(2).collect();
        assert!(
            last.iter()
                .all(|l| l.contains("/ raw fdatasync") && l.contains("0.50")),
            "{t}"
        );
    }

    #[test]
    fn a_server_that_exits_is_reported() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let root = tempfile::tempdir().expect("tempdir");
        let spec = ServerSpec {
            name: "false".into(),
            command: "false".into(),
        };
        // `false` exits at once: start reports it instead of waiting for the timeout.
        let r = rt.block_on(start(&spec, root.path()));
        assert!(
            matches!(r, Err(CompareError::Exited { .. })),
            "{:?}",
            r.err()
        );
    }
}
