//! `detcd-bench`: load generator for any etcd-compatible endpoint, disk checks and the
//! detcd-against-etcd comparison. See benches/README.md.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use detcd_bench::compare::{self, BoundPlan, Case, ETCD_COMMAND, ServerSpec};
use detcd_bench::disk;
use detcd_bench::load::{self, KeyOrder, LoadOpts, Stop, Workload};
use detcd_bench::mixed;
use detcd_bench::stats::Summary;
use std::path::PathBuf;
use std::time::Duration;

/// Tokio worker threads of the generator when TOKIO_WORKER_THREADS is unset.
const RUNTIME_WORKERS_DEFAULT: usize = 1;

/// mimalloc instead of the system allocator: the load generator shares the CPU with the
/// server under test, so its per-request allocations count against both servers alike.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "detcd-bench",
    about = "Benchmarks for detcd and any etcd-compatible endpoint"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// Comma-separated endpoints (host:port or http://host:port).
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// gRPC connections.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Concurrent clients (each with one request in flight).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Total requests (default 10000 unless --duration is given).
    #[arg(long, conflicts_with = "duration")]
    total: Option<u64>,
    /// Run for this many seconds instead of a total.
    #[arg(long)]
    duration: Option<f64>,
    /// Send every request to the leader (found with Maintenance.Status).
    #[arg(long)]
    target_leader: bool,
    /// Write every operation to FILE in detcd-check's history format.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Seed of random keys.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl Common {
    fn opts(&self) -> Result<LoadOpts> {
        let stop = match (self.total, self.duration) {
            (_, Some(s)) if s.is_finite() && s > 0.0 => Stop::Duration(Duration::from_secs_f64(s)),
            (_, Some(s)) => bail!("--duration must be a positive number of seconds, got {s}"),
            (Some(t), None) => Stop::Total(t),
            (None, None) => Stop::Total(10_000),
        };
        Ok(LoadOpts {
            endpoints: self.endpoints.clone(),
            conns: self.conns,
            clients: self.clients,
            stop,
            target_leader: self.target_leader,
            record: self.record.clone(),
            seed: self.seed,
        })
    }
}

#[derive(Args, Clone)]
struct PutArgs {
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 1)]
    key_space_size: u64,
    /// Write keys 0,1,2,... instead of random keys.
    #[arg(long)]
    sequential_keys: bool,
}

impl PutArgs {
    fn workload(&self, txn: bool) -> Workload {
        Workload::Put {
            key_bytes: self.key_size,
            value_bytes: self.val_size,
            key_space: self.key_space_size,
            order: if self.sequential_keys {
                KeyOrder::Sequential
            } else {
                KeyOrder::Random
            },
            txn,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Puts.
    Put {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        put: PutArgs,
    },
    /// Puts, each inside a Txn with no compares.
    TxnPut {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        put: PutArgs,
    },
    /// Reads of one key.
    Range {
        #[command(flatten)]
        common: Common,
        /// Key to read.
        #[arg(default_value = "00000000")]
        key: String,
        /// `l` (linearizable) or `s` (serializable).
        #[arg(long, default_value = "l")]
        consistency: String,
    },
    /// Time from a put to each watcher receiving its event (--clients watchers).
    WatchLatency {
        #[command(flatten)]
        common: Common,
        /// Puts per second.
        #[arg(long, default_value_t = 100)]
        put_rate: u64,
    },
    /// Lease keep-alive round trips, one lease and stream per client.
    LeaseKeepalive {
        #[command(flatten)]
        common: Common,
    },
    /// Gets, unique-value puts, compare-and-set txns and deletes on a small key space
    /// from clients that survive faults (errors and timeouts are unknown outcomes), then
    /// a read of every key through each endpoint; for `--record` and `detcd-check`.
    Mixed {
        /// Comma-separated endpoints (host:port or http://host:port).
        #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
        endpoints: Vec<String>,
        /// Concurrent clients (each with one request in flight).
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Seconds the clients run.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Distinct keys (rf/000, rf/001, ...).
        #[arg(long, default_value_t = 16)]
        keys: u64,
        /// Time allowed for one request, in milliseconds (then: unknown outcome).
        #[arg(long, default_value_t = 3000)]
        op_timeout_ms: u64,
        /// Pause of each client between requests, in milliseconds.
        #[arg(long, default_value_t = 0)]
        think_ms: u64,
        /// How long the final reads may retry in all, in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        final_read_timeout_ms: u64,
        /// Seed of the clients' choices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write every operation to FILE in detcd-check's history format.
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Raw fdatasync, WAL append and detcd's end-to-end put latency per disk in
    /// DETCD_BENCH_DISKS (or a temp dir), with a JSON report and an SVG plot.
    DiskReport {
        /// Samples per measurement.
        #[arg(long, default_value_t = 1000)]
        samples: usize,
        /// Output directory.
        #[arg(long, default_value = "bench-report")]
        out: PathBuf,
    },
    /// Pass/fail against etcd's guidance (WAL fsync p99 < 10 ms) per disk.
    DiskCheck {
        /// Samples per measurement.
        #[arg(long, default_value_t = 1000)]
        samples: usize,
    },
    /// Start two servers in turn on the same disk, run the same workloads, print both
    /// rows and the ratio.
    Compare {
        /// First server's command template ({dir}, {client}, {peer}); default etcd.
        #[arg(long, default_value = ETCD_COMMAND)]
        a: String,
        /// Its name.
        #[arg(long, default_value = "a")]
        a_name: String,
        /// Second server's command template; default etcd.
        #[arg(long, default_value = ETCD_COMMAND)]
        b: String,
        /// Its name.
        #[arg(long, default_value = "etcd")]
        b_name: String,
        /// Directory for the data directories (the disk under test); default temp.
        #[arg(long)]
        data_root: Option<PathBuf>,
        /// Requests per case.
        #[arg(long, default_value_t = 2000)]
        total: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Rounds of the raw fdatasync probe on the data disk.
        #[arg(long, default_value_t = 2000)]
        raw_samples: usize,
        /// Rounds of the interleaved single-stream bound (raw rewrite, raw append,
        /// put 1x1 on each server, one window each); 0 skips it.
        #[arg(long, default_value_t = 10)]
        bound_rounds: usize,
        /// Length of one window of the bound, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        bound_window_ms: u64,
    },
}

fn print(summary: &Summary, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(summary)?);
    } else {
        print!("{}", summary.to_text());
    }
    Ok(())
}

async fn run_load(common: &Common, workload: Workload) -> Result<()> {
    let s = load::run(&common.opts()?, &workload).await?;
    print(&s, common.json)?;
    if s.ops == 0 {
        bail!("no request succeeded ({} errors)", s.errors);
    }
    Ok(())
}

fn compare_cases(total: u64) -> Vec<Case> {
    let opts = |conns, clients| LoadOpts {
        endpoints: vec![],
        conns,
        clients,
        stop: Stop::Total(total),
        target_leader: false,
        record: None,
        seed: 1,
    };
    let put = Workload::Put {
        key_bytes: 8,
        value_bytes: 256,
        key_space: 100_000,
        order: KeyOrder::Random,
        txn: false,
    };
    vec![
        Case {
            workload: put.clone(),
            opts: opts(1, 1),
        },
        Case {
            workload: put,
            opts: opts(100, 1000),
        },
        Case {
            workload: Workload::Range {
                key: "00000001".into(),
                serializable: false,
            },
            opts: opts(10, 100),
        },
        Case {
            workload: Workload::Range {
                key: "00000001".into(),
                serializable: true,
            },
            opts: opts(10, 100),
        },
    ]
}

fn main() -> Result<()> {
    disable_huge_pages();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    // The disk commands drive their own runtime for the WAL; everything else runs here.
    match Cli::parse().cmd {
        Cmd::DiskReport { samples, out } => disk_report(samples, &out),
        Cmd::DiskCheck { samples } => disk_check(samples),
        cmd => {
            let mut rt = tokio::runtime::Builder::new_multi_thread();
            // One worker unless TOKIO_WORKER_THREADS says otherwise: the generator's
            // connection tasks need a fraction of a core, and a second worker only adds
            // cross-thread wake-ups (context switches) on a CPU shared with the server.
            if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
                rt.worker_threads(RUNTIME_WORKERS_DEFAULT);
            }
            rt.enable_all().build()?.block_on(run(cmd))
        }
    }
}

/// Opts the process out of transparent huge pages: the allocator's fresh arenas were
/// otherwise faulted in as 2 MiB pages, each cleared whole by the kernel, a visible
/// share of the generator's CPU on a host whose THP mode honours madvise.
fn disable_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory of
    // this process; a failure (old kernel) just leaves the default in place.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        tracing::debug!("PR_SET_THP_DISABLE refused");
    }
}

/// `disk-report`: measures every disk and writes the JSON report and SVG plot.
fn disk_report(samples: usize, out: &std::path::Path) -> Result<()> {
    let mut results = Vec::new();
    for d in disk::disks_from_env()? {
        let mut r = disk::measure_disk(&d, samples).with_context(|| format!("disk {}", d.name))?;
        disk::measure_put(&mut r, samples).with_context(|| format!("detcd put on {}", d.name))?;
        println!("== {} ({})", r.disk, r.path.display());
        print!("{}{}", r.fdatasync.to_text(), r.wal_append_sync.to_text());
        if let Some(put) = &r.detcd_put_1x1 {
            print!("{}", put.to_text());
            println!(
                "  detcd put 1x1 p50 = raw fdatasync p50 + {:.3} ms (the request round trip, Raft, the WAL record and apply)",
                (put.latency_us_p50 as f64 - r.fdatasync.latency_us_p50 as f64) / 1000.0
            );
        }
        results.push(r);
    }
    let svg = disk::write_report(&results, out)?;
    println!(
        "report: {} and {}",
        out.join("report.json").display(),
        svg.display()
    );
    Ok(())
}

/// `disk-check`: pass/fail per disk against etcd's WAL fsync guidance.
fn disk_check(samples: usize) -> Result<()> {
    let mut all_pass = true;
    for d in disk::disks_from_env()? {
        let r = disk::measure_disk(&d, samples).with_context(|| format!("disk {}", d.name))?;
        println!("{}", disk::verdict_line(&r));
        all_pass &= r.pass;
    }
    if !all_pass {
        bail!("a disk is too slow for etcd's WAL guidance");
    }
    Ok(())
}

/// Runs a network command (load, compare).
async fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Put { common, put } => run_load(&common, put.workload(false)).await,
        Cmd::TxnPut { common, put } => run_load(&common, put.workload(true)).await,
        Cmd::Range {
            common,
            key,
            consistency,
        } => {
            let serializable = match consistency.as_str() {
                "l" => false,
                "s" => true,
                other => bail!("--consistency must be l or s, got {other}"),
            };
            run_load(&common, Workload::Range { key, serializable }).await
        }
        Cmd::WatchLatency { common, put_rate } => {
            run_load(
                &common,
                Workload::WatchLatency {
                    puts_per_s: put_rate,
                },
            )
            .await
        }
        Cmd::LeaseKeepalive { common } => run_load(&common, Workload::LeaseKeepalive).await,
        Cmd::Mixed {
            endpoints,
            clients,
            duration,
            keys,
            op_timeout_ms,
            think_ms,
            final_read_timeout_ms,
            seed,
            record,
            json,
        } => {
            if !(duration.is_finite() && duration > 0.0) {
                bail!("--duration must be a positive number of seconds, got {duration}");
            }
            let opts = mixed::MixedOpts {
                endpoints,
                clients,
                duration: Duration::from_secs_f64(duration),
                keys,
                op_timeout_ms,
                think_ms,
                final_read_timeout_ms,
                seed,
                record,
            };
            let s = mixed::run(&opts).await?;
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                print!("{}", s.to_text());
            }
            if !s.final_reads_missing.is_empty() {
                bail!(
                    "the final read got no answer from {}",
                    s.final_reads_missing.join(", ")
                );
            }
            Ok(())
        }
        Cmd::DiskReport { .. } | Cmd::DiskCheck { .. } => {
            bail!("disk commands run outside the async runtime")
        }
        Cmd::Compare {
            a,
            a_name,
            b,
            b_name,
            data_root,
            total,
            json,
            raw_samples,
            bound_rounds,
            bound_window_ms,
        } => {
            let root = data_root.unwrap_or_else(std::env::temp_dir);
            std::fs::create_dir_all(&root)
                .with_context(|| format!("create --data-root {}", root.display()))?;
            let sa = ServerSpec {
                name: a_name.clone(),
                command: a,
            };
            let sb = ServerSpec {
                name: b_name.clone(),
                command: b,
            };
            // The disk's load drifts: probe it before and after the servers.
            let before = compare::raw_fdatasync(&root, raw_samples)?;
            let cases = compare_cases(total);
            // The first case is put 1x1: the bound interleaves it with raw probes.
            let plan = (bound_rounds > 0).then(|| BoundPlan {
                rounds: bound_rounds,
                window_ms: bound_window_ms,
                put: cases[0].clone(),
                floor: Workload::Range {
                    key: "00000001".into(),
                    serializable: true,
                },
            });
            let cmp = compare::compare(&sa, &sb, &root, &cases, plan.as_ref()).await?;
            let raws = [before, compare::raw_fdatasync(&root, raw_samples)?];
            if json {
                let out = serde_json::json!({
                    "rows": cmp.rows,
                    "raw_fdatasync": raws,
                    "fsync_bound": cmp.fsync_bound,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print!("{}", compare::table(&a_name, &b_name, &cmp.rows, &raws));
                if let Some(b) = &cmp.fsync_bound {
                    print!("{}", b.to_text());
                }
            }
            Ok(())
        }
    }
}
