//! `detcd`: an etcd v3-compatible server. Flags and `ETCD_*` variables as etcd's; see
//! `detcd --help`.

/// mimalloc instead of the system allocator: a request allocates and frees dozens of
/// small buffers (HTTP/2 frames, protobuf messages, waiters), where glibc's malloc spent
/// about a tenth of the server's CPU.
#[cfg(not(madsim))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    real::main()
}

/// Under the simulator members are started by the harness, not by this binary.
#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
mod real {
    use std::collections::BTreeMap;
    use std::process::ExitCode;

    use anyhow::Context as _;
    use detcd_engine::server::config::{self, Command, ConfigError, LogLevel, ServerConfig};
    use detcd_engine::server::run;
    use detcd_engine::storage::FsDisk;

    /// The etcd API version detcd implements.
    const API_VERSION: &str = "3.4";

    pub fn main() -> ExitCode {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("ETCD_"))
            .collect();
        let command = match config::parse(std::env::args(), &env) {
            Ok(command) => command,
            Err(ConfigError::Help(text)) => {
                print!("{text}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("detcd: {e}");
                return ExitCode::from(2);
            }
        };
        let config = match command {
            Command::Version => {
                println!("detcd Version: {}", env!("CARGO_PKG_VERSION"));
                println!("API Version: {API_VERSION}");
                return ExitCode::SUCCESS;
            }
            Command::Serve(config) => *config,
        };
        init_logging(config.log_level);
        warn_unknown_variables(&env);
        // One worker more than cores: the raft loop's WAL fdatasync blocks the worker
        // it runs on, and the client connections should keep every core meanwhile (as
        // Go's scheduler hands a blocked thread's processor to another).
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores + 1)
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                eprintln!("detcd: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        match runtime.block_on(serve(config)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                eprintln!("detcd: {e:#}");
                ExitCode::FAILURE
            }
        }
    }

    async fn serve(config: ServerConfig) -> anyhow::Result<()> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create --data-dir {}", config.data_dir.display()))?;
        let disk = FsDisk::new(&config.data_dir)
            .with_context(|| format!("cannot open --data-dir {}", config.data_dir.display()))?;
        let seed = seed();
        tracing::info!(
            name = %config.name,
            member_id = %format!("{:x}", config.member_id),
            cluster_id = %format!("{:x}", config.cluster_id),
            data_dir = %config.data_dir.display(),
            "starting detcd"
        );
        let server = run::start(&config, disk, seed).await?;
        tokio::signal::ctrl_c()
            .await
            .context("waiting for a signal")?;
        tracing::info!("shutting down");
        server.shutdown();
        Ok(())
    }

    /// A fresh seed per run in real mode (the simulator passes its own).
    fn seed() -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ u64::from(std::process::id()).rotate_left(32)
    }

    fn init_logging(level: LogLevel) {
        let level = match level {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error | LogLevel::Panic | LogLevel::Fatal => "error",
        };
        let filter = tracing_subscriber::EnvFilter::try_from_env("DETCD_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init();
    }

    fn warn_unknown_variables(env: &BTreeMap<String, String>) {
        let known: Vec<String> = <config::Flags as clap::CommandFactory>::command()
            .get_arguments()
            .filter_map(|a| a.get_long().map(config::env_name))
            .collect();
        for name in env.keys() {
            if !known.contains(name) {
                tracing::warn!(variable = %name, "unrecognized environment variable");
            }
        }
    }
}
