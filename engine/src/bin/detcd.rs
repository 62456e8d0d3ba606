//! `detcd`: an etcd v3-compatible server. Flags and `ETCD_*` variables as etcd's; see
//! `detcd --help`.

/// mimalloc instead of the system allocator: a request allocates and frees dozens of
/// small buffers (HTTP/2 frames, protobuf messages, waiters), where glibc's malloc spent
/// about a tenth of the server's CPU.
#[cfg(not(madsim))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps freed memory before returning it to the OS. Its default (1 s)
/// made a loaded server fault fresh (transparent huge) pages back in all the time, about
/// one page fault per six puts and a tenth of the server's CPU zeroing pages; with 30 s
/// a steady load reuses its memory and an idle server still shrinks.
#[cfg(not(madsim))]
const ALLOCATOR_PURGE_DELAY_MS: std::ffi::c_long = 30_000;

/// mimalloc's option number of `mi_option_purge_delay` in the bundled mimalloc 3 header
/// (`mimalloc.h`, `mi_option_e`); the test below checks it against that option's default.
#[cfg(not(madsim))]
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

#[cfg(not(madsim))]
unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    #[cfg_attr(not(test), allow(dead_code))]
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    // SAFETY: setting a mimalloc option is a plain store; mimalloc reads it when it
    // next decides whether to purge.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, ALLOCATOR_PURGE_DELAY_MS) };
    real::main()
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_number_is_mimallocs() {
        // mimalloc 3's default purge delay is 1000 ms (unless the environment sets it).
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reading an option has no preconditions.
            assert_eq!(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }, 1000);
        }
        // SAFETY: as in `main`.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, ALLOCATOR_PURGE_DELAY_MS) };
        // SAFETY: reading an option has no preconditions.
        assert_eq!(
            unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) },
            ALLOCATOR_PURGE_DELAY_MS
        );
    }
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
