//! The `detcd` command line: etcd's flag names, defaults and meanings, each also readable
//! from an `ETCD_*` environment variable, and the validated server configuration derived
//! from them (member list, IDs, tick counts).
//!
//! As in etcd, a flag and its environment variable both set is an error rather than a
//! silent override, and Go-style single-dash long flags (`-name x`) are accepted.
//! This module only parses and validates; it opens no files and binds no ports.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

use super::ids;

/// Default backend quota when `--quota-backend-bytes` is 0: 2 GiB, as in etcd.
pub const QUOTA_BACKEND_BYTES_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;
/// Largest accepted `--election-timeout`, as in etcd.
pub const ELECTION_TIMEOUT_MS_MAX: u64 = 50_000;
/// The election timeout must be at least this many heartbeats.
pub const ELECTION_TIMEOUT_HEARTBEATS_MIN: u64 = 5;

/// Whether this member starts a new cluster or joins an existing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClusterState {
    /// Bootstrap a new cluster from `--initial-cluster`.
    New,
    /// Join a cluster that already runs (after `member add`).
    Existing,
}

/// How automatic compaction chooses the revision to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompactionMode {
    /// Keep the history of the last retention period (hours, or a duration like `30m`).
    Periodic,
    /// Keep the last N revisions.
    Revision,
}

/// Log verbosity, as etcd names the levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything.
    Debug,
    /// Normal operation.
    Info,
    /// Problems that the server survives.
    Warn,
    /// Failures.
    Error,
    /// Like error (etcd's panic level).
    Panic,
    /// Like error (etcd's fatal level).
    Fatal,
}

/// The flags of `detcd`, named and defaulted as etcd's.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "detcd",
    about = "An etcd v3-compatible key-value store whose engine also runs in a deterministic simulator",
    disable_version_flag = true,
    after_help = "Every flag can also be set through an environment variable named ETCD_ and the flag in upper case with underscores (--data-dir: ETCD_DATA_DIR). Setting both a flag and its variable is an error."
)]
pub struct Flags {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: "<name>.etcd").
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Comma-separated URLs to listen on for client traffic.
    #[arg(long, default_value = "http://localhost:2379")]
    pub listen_client_urls: String,
    /// Comma-separated client URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,
    /// Comma-separated URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// Comma-separated peer URLs of this member to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping: name=url,name=url,...
    /// (default: "<name>=<initial-advertise-peer-urls>").
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Initial cluster state: new or existing.
    #[arg(long, value_enum, default_value = "new")]
    pub initial_cluster_state: ClusterState,
    /// Initial cluster token, which makes IDs unique across clusters.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to time out.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// Run a PreVote round before an election (etcd's flag; on by default as in etcd
    /// 3.5, off by default in 3.4). `--pre-vote` alone means true.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub pre_vote: bool,
    /// Reject reconfiguration requests that would cause quorum loss (etcd's flag, on by
    /// default). `--strict-reconfig-check` alone means true.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub strict_reconfig_check: bool,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Raise an alarm when the backend size exceeds this quota (0 = the default, 2 GiB).
    #[arg(long, default_value_t = 0)]
    pub quota_backend_bytes: u64,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, default_value_t = 128)]
    pub max_txn_ops: u32,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, default_value_t = 1_572_864)]
    pub max_request_bytes: u32,
    /// Interpret the auto compaction retention as "periodic" or "revision".
    #[arg(long, value_enum, default_value = "periodic")]
    pub auto_compaction_mode: CompactionMode,
    /// Auto compaction retention (0 = off): hours or a duration for periodic, a count for
    /// revision.
    #[arg(long, default_value = "0")]
    pub auto_compaction_retention: String,
    /// Log level: debug, info, warn, error, panic or fatal.
    #[arg(long, value_enum, default_value = "info")]
    pub log_level: LogLevel,
    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,
}

/// A reason the command line or environment cannot start a server.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// clap rejected the arguments (the message is clap's, with usage).
    #[error("{0}")]
    Usage(String),
    /// `--help` was asked for: print this and exit successfully.
    #[error("{0}")]
    Help(String),
    /// A flag and its environment variable were both given.
    #[error(
        "conflicting environment variable {env} is shadowed by the command-line flag --{flag} (unset the variable or drop the flag)"
    )]
    ConflictingEnv {
        /// The environment variable.
        env: String,
        /// The flag, without dashes.
        flag: String,
    },
    /// A URL list contained something that is not an http(s) URL with host and port.
    #[error("--{flag}: invalid URL {url:?}: {reason}")]
    BadUrl {
        /// The flag, without dashes.
        flag: &'static str,
        /// The offending text.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `--initial-cluster` is malformed or does not name this member.
    #[error("--initial-cluster: {0}")]
    BadInitialCluster(String),
    /// Timing flags that cannot work together.
    #[error("{0}")]
    BadTiming(String),
    /// Auto-compaction retention that cannot be parsed.
    #[error("--auto-compaction-retention: invalid value {0:?}")]
    BadRetention(String),
}

/// One member of the initial cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialMember {
    /// The member's name.
    pub name: String,
    /// Its peer URLs, as given.
    pub peer_urls: Vec<String>,
    /// Its ID, derived as etcd derives it.
    pub id: u64,
}

/// How much history automatic compaction keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    /// No automatic compaction.
    Off,
    /// Keep this many milliseconds of history.
    PeriodicMs(u64),
    /// Keep this many revisions.
    Revisions(u64),
}

/// A validated server configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// This member's name.
    pub name: String,
    /// Where the WAL and snapshots live.
    pub data_dir: PathBuf,
    /// Client listen URLs.
    pub listen_client_urls: Vec<String>,
    /// Advertised client URLs.
    pub advertise_client_urls: Vec<String>,
    /// Peer listen URLs.
    pub listen_peer_urls: Vec<String>,
    /// Advertised peer URLs of this member.
    pub advertise_peer_urls: Vec<String>,
    /// The initial cluster, sorted by name.
    pub initial_cluster: Vec<InitialMember>,
    /// New or existing cluster.
    pub initial_cluster_state: ClusterState,
    /// The cluster token.
    pub initial_cluster_token: String,
    /// This member's ID.
    pub member_id: u64,
    /// The cluster's ID (from the initial members).
    pub cluster_id: u64,
    /// Raft tick length, the heartbeat interval.
    pub heartbeat_interval_ms: u64,
    /// Election timeout, in ticks.
    pub election_ticks: u64,
    /// Whether Raft runs a PreVote round before bumping its term.
    pub pre_vote: bool,
    /// Whether member changes that would lose quorum are refused.
    pub strict_reconfig_check: bool,
    /// Applied entries between snapshots.
    pub snapshot_count: u64,
    /// Backend size above which the NOSPACE alarm is raised.
    pub quota_backend_bytes: u64,
    /// Most operations in one transaction.
    pub max_txn_ops: u32,
    /// Largest accepted request.
    pub max_request_bytes: u32,
    /// Automatic compaction policy.
    pub auto_compaction: AutoCompaction,
    /// Log verbosity.
    pub log_level: LogLevel,
    /// Deliberate bugs for the simulator's self-test; never set by the command line.
    #[cfg(madsim)]
    pub sim_bugs: super::node::sim_bugs::SimBugs,
    /// WAL segment size in the simulator, bytes (0: the real default); the record limit
    /// becomes at most half of it. The simulated disk holds every preallocated byte in
    /// memory, so smaller segments are cheaper.
    #[cfg(madsim)]
    pub sim_wal_segment_bytes: u64,
    /// Raft batching limits in the simulator (0: the defaults); never set by the
    /// command line.
    #[cfg(madsim)]
    pub sim_raft: super::node::sim_bugs::SimRaftLimits,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Print the version and exit.
    Version,
    /// Run a server with this configuration.
    Serve(Box<ServerConfig>),
}

/// Parses arguments (including the program name) and the environment into a command.
pub fn parse<I, S>(args: I, env: &BTreeMap<String, String>) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let args = normalize_go_flags(args);
    let command = Flags::command();
    let on_command_line = command
        .clone()
        .try_get_matches_from(args.iter().cloned())
        .map_err(clap_error)?;
    let mut from_env = Vec::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "version" {
            continue;
        }
        let env_name = env_name(long);
        let Some(value) = env.get(&env_name) else {
            continue;
        };
        if on_command_line.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            return Err(ConfigError::ConflictingEnv {
                env: env_name,
                flag: long.to_owned(),
            });
        }
        from_env.push(format!("--{long}={value}"));
    }
    let given = command
        .try_get_matches_from(args.iter().cloned().chain(from_env))
        .map_err(|e| ConfigError::Usage(e.to_string()))?;
    let flags = Flags::from_arg_matches(&given).map_err(|e| ConfigError::Usage(e.to_string()))?;
    if flags.version {
        return Ok(Command::Version);
    }
    Ok(Command::Serve(Box::new(validate(flags)?)))
}

fn clap_error(e: clap::Error) -> ConfigError {
    match e.kind() {
        clap::error::ErrorKind::DisplayHelp => ConfigError::Help(e.to_string()),
        _ => ConfigError::Usage(e.to_string()),
    }
}

/// Go's flag package accepts `-name value`; clap wants `--name value`.
fn normalize_go_flags(args: Vec<String>) -> Vec<String> {
    args.into_iter()
        .enumerate()
        .map(|(i, arg)| {
            let single_dash_long = i > 0
                && arg.starts_with('-')
                && !arg.starts_with("--")
                && arg.len() > 2
                && arg.as_bytes()[1].is_ascii_alphabetic();
            if single_dash_long {
                format!("-{arg}")
            } else {
                arg
            }
        })
        .collect()
}

/// The environment variable etcd reads for a flag: `data-dir` -> `ETCD_DATA_DIR`.
pub fn env_name(long_flag: &str) -> String {
    format!("ETCD_{}", long_flag.to_ascii_uppercase().replace('-', "_"))
}

fn split_urls(flag: &'static str, list: &str) -> Result<Vec<String>, ConfigError> {
    let urls: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.is_empty() {
        return Err(ConfigError::BadUrl {
            flag,
            url: list.to_owned(),
            reason: "no URL given".to_owned(),
        });
    }
    for url in &urls {
        check_url(flag, url)?;
    }
    Ok(urls)
}

fn check_url(flag: &'static str, url: &str) -> Result<(), ConfigError> {
    let bad = |reason: &str| ConfigError::BadUrl {
        flag,
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") | Some("unix") | Some("unixs") => {}
        _ => return Err(bad("scheme must be http or https")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("missing host"));
    }
    if uri.port_u16().is_none() {
        return Err(bad("missing port"));
    }
    Ok(())
}

fn parse_initial_cluster(text: &str, token: &str) -> Result<Vec<InitialMember>, ConfigError> {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, url)) = part.split_once('=') else {
            return Err(ConfigError::BadInitialCluster(format!(
                "{part:?} is not name=url"
            )));
        };
        check_url("initial-cluster", url)?;
        by_name
            .entry(name.to_owned())
            .or_default()
            .push(url.to_owned());
    }
    if by_name.is_empty() {
        return Err(ConfigError::BadInitialCluster("no members".to_owned()));
    }
    let members: Vec<InitialMember> = by_name
        .into_iter()
        .map(|(name, peer_urls)| {
            let id = ids::member_id(&peer_urls, token, None);
            InitialMember {
                name,
                peer_urls,
                id,
            }
        })
        .collect();
    let mut seen = BTreeMap::new();
    for m in &members {
        if let Some(other) = seen.insert(m.id, &m.name) {
            return Err(ConfigError::BadInitialCluster(format!(
                "members {other} and {} have the same peer URLs",
                m.name
            )));
        }
    }
    Ok(members)
}

fn parse_retention(mode: CompactionMode, text: &str) -> Result<AutoCompaction, ConfigError> {
    let bad = || ConfigError::BadRetention(text.to_owned());
    let text = text.trim();
    if text.is_empty() || text == "0" {
        return Ok(AutoCompaction::Off);
    }
    match mode {
        CompactionMode::Revision => text
            .parse::<u64>()
            .map(AutoCompaction::Revisions)
            .map_err(|_| bad()),
        CompactionMode::Periodic => {
            // A bare number is hours; otherwise a Go-style duration such as 30m, 1h, 90s.
            if let Ok(hours) = text.parse::<u64>() {
                return Ok(AutoCompaction::PeriodicMs(hours * 3_600_000));
            }
            let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            let (number, unit) = text.split_at(split);
            let number: u64 = number.parse().map_err(|_| bad())?;
            let unit_ms = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                _ => return Err(bad()),
            };
            Ok(AutoCompaction::PeriodicMs(number * unit_ms))
        }
    }
}

fn validate(flags: Flags) -> Result<ServerConfig, ConfigError> {
    let listen_client_urls = split_urls("listen-client-urls", &flags.listen_client_urls)?;
    let advertise_client_urls = split_urls("advertise-client-urls", &flags.advertise_client_urls)?;
    let listen_peer_urls = split_urls("listen-peer-urls", &flags.listen_peer_urls)?;
    let advertise_peer_urls = split_urls(
        "initial-advertise-peer-urls",
        &flags.initial_advertise_peer_urls,
    )?;

    let initial_cluster_text = flags.initial_cluster.clone().unwrap_or_else(|| {
        advertise_peer_urls
            .iter()
            .map(|url| format!("{}={url}", flags.name))
            .collect::<Vec<_>>()
            .join(",")
    });
    let initial_cluster =
        parse_initial_cluster(&initial_cluster_text, &flags.initial_cluster_token)?;
    let Some(me) = initial_cluster.iter().find(|m| m.name == flags.name) else {
        return Err(ConfigError::BadInitialCluster(format!(
            "this member's name {:?} is not in the initial cluster",
            flags.name
        )));
    };
    let mut mine = me.peer_urls.clone();
    mine.sort();
    let mut advertised = advertise_peer_urls.clone();
    advertised.sort();
    if mine != advertised {
        return Err(ConfigError::BadInitialCluster(format!(
            "--initial-advertise-peer-urls {advertised:?} differ from this member's URLs {mine:?} in --initial-cluster"
        )));
    }
    let member_id = me.id;
    let cluster_id = ids::cluster_id(&initial_cluster.iter().map(|m| m.id).collect::<Vec<_>>());

    if flags.heartbeat_interval == 0 {
        return Err(ConfigError::BadTiming(
            "--heartbeat-interval must be positive".to_owned(),
        ));
    }
    if flags.election_timeout < ELECTION_TIMEOUT_HEARTBEATS_MIN * flags.heartbeat_interval {
        return Err(ConfigError::BadTiming(format!(
            "--election-timeout[{}ms] should be at least {ELECTION_TIMEOUT_HEARTBEATS_MIN} times --heartbeat-interval[{}ms]",
            flags.election_timeout, flags.heartbeat_interval
        )));
    }
    if flags.election_timeout > ELECTION_TIMEOUT_MS_MAX {
        return Err(ConfigError::BadTiming(format!(
            "--election-timeout[{}ms] is too long, and should be set less than {ELECTION_TIMEOUT_MS_MAX}ms",
            flags.election_timeout
        )));
    }
    let auto_compaction =
        parse_retention(flags.auto_compaction_mode, &flags.auto_compaction_retention)?;
    let data_dir = flags
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", flags.name)));

    Ok(ServerConfig {
        name: flags.name,
        data_dir,
        listen_client_urls,
        advertise_client_urls,
        listen_peer_urls,
        advertise_peer_urls,
        initial_cluster,
        initial_cluster_state: flags.initial_cluster_state,
        initial_cluster_token: flags.initial_cluster_token,
        member_id,
        cluster_id,
        heartbeat_interval_ms: flags.heartbeat_interval,
        election_ticks: flags.election_timeout / flags.heartbeat_interval,
        pre_vote: flags.pre_vote,
        strict_reconfig_check: flags.strict_reconfig_check,
        snapshot_count: flags.snapshot_count,
        quota_backend_bytes: if flags.quota_backend_bytes == 0 {
            QUOTA_BACKEND_BYTES_DEFAULT
        } else {
            flags.quota_backend_bytes
        },
        max_txn_ops: flags.max_txn_ops,
        max_request_bytes: flags.max_request_bytes,
        auto_compaction,
        log_level: flags.log_level,
        #[cfg(madsim)]
        sim_bugs: Default::default(),
        #[cfg(madsim)]
        sim_wal_segment_bytes: 0,
        #[cfg(madsim)]
        sim_raft: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn serve(args: &[&str], vars: &[(&str, &str)]) -> Result<ServerConfig, ConfigError> {
        let argv = std::iter::once("detcd").chain(args.iter().copied());
        match parse(argv, &env(vars))? {
            Command::Serve(config) => Ok(*config),
            Command::Version => panic!("unexpected version command"),
        }
    }

    #[test]
    fn pre_vote_is_on_unless_switched_off() {
        let on = serve(&["--pre-vote"], &[]).expect("valid");
        assert!(on.pre_vote);
        let off = serve(&["--pre-vote=false"], &[]).expect("valid");
        assert!(!off.pre_vote);
        let env_off = serve(&[], &[("ETCD_PRE_VOTE", "false")]).expect("valid");
        assert!(!env_off.pre_vote);
        assert!(serve(&["--pre-vote=maybe"], &[]).is_err());
    }

    #[test]
    fn strict_reconfig_check_is_on_unless_switched_off() {
        assert!(serve(&[], &[]).expect("valid").strict_reconfig_check);
        let off = serve(&["--strict-reconfig-check=false"], &[]).expect("valid");
        assert!(!off.strict_reconfig_check);
        let env_off = serve(&[], &[("ETCD_STRICT_RECONFIG_CHECK", "false")]).expect("valid");
        assert!(!env_off.strict_reconfig_check);
    }

    #[test]
    fn defaults_match_etcd() {
        let c = serve(&[], &[]).expect("defaults are valid");
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
        assert_eq!(c.listen_client_urls, vec!["http://localhost:2379"]);
        assert_eq!(c.member_id, 0x8e9e_05c5_2164_694d);
        assert_eq!(c.cluster_id, 0xcdf8_1819_4e3a_8c32);
        assert_eq!(c.election_ticks, 10);
        assert!(c.pre_vote);
        assert_eq!(c.snapshot_count, 100_000);
        assert_eq!(c.max_txn_ops, 128);
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.quota_backend_bytes, QUOTA_BACKEND_BYTES_DEFAULT);
        assert_eq!(c.auto_compaction, AutoCompaction::Off);
    }

    #[test]
    fn three_member_cluster_and_go_style_flags() {
        let cluster =
            "n1=http://127.0.0.1:12380,n2=http://127.0.0.1:22380,n3=http://127.0.0.1:32380";
        let c = serve(
            &[
                "-name",
                "n2",
                "--initial-advertise-peer-urls=http://127.0.0.1:22380",
                "--initial-cluster",
                cluster,
                "--data-dir",
                "/tmp/n2",
            ],
            &[],
        )
        .expect("valid cluster");
        assert_eq!(c.initial_cluster.len(), 3);
        assert_eq!(c.member_id, c.initial_cluster[1].id);
        let ids: Vec<u64> = c.initial_cluster.iter().map(|m| m.id).collect();
        assert_eq!(c.cluster_id, ids::cluster_id(&ids));
    }

    #[test]
    fn environment_sets_flags_and_conflicts_are_errors() {
        let c = serve(&[], &[("ETCD_SNAPSHOT_COUNT", "5")]).expect("env is read");
        assert_eq!(c.snapshot_count, 5);
        let err = serve(&["--snapshot-count", "7"], &[("ETCD_SNAPSHOT_COUNT", "5")])
            .expect_err("both set");
        assert_eq!(
            err,
            ConfigError::ConflictingEnv {
                env: "ETCD_SNAPSHOT_COUNT".to_owned(),
                flag: "snapshot-count".to_owned()
            }
        );
    }

    #[test]
    fn bad_values_are_clear_errors() {
        assert!(matches!(
            serve(&["--listen-client-urls", "localhost"], &[]),
            Err(ConfigError::BadUrl { .. })
        ));
        assert!(matches!(
            serve(&["--initial-cluster", "other=http://localhost:2380"], &[]),
            Err(ConfigError::BadInitialCluster(_))
        ));
        assert!(matches!(
            serve(&["--election-timeout", "200"], &[]),
            Err(ConfigError::BadTiming(_))
        ));
        assert!(matches!(
            serve(&["--snapshot-count", "many"], &[]),
            Err(ConfigError::Usage(_))
        ));
        assert!(matches!(
            serve(&["--auto-compaction-retention", "5y"], &[]),
            Err(ConfigError::BadRetention(_))
        ));
    }

    #[test]
    fn retention_units() {
        let c = serve(&["--auto-compaction-retention", "30m"], &[]).expect("valid");
        assert_eq!(c.auto_compaction, AutoCompaction::PeriodicMs(1_800_000));
        let c = serve(&["--auto-compaction-retention", "2"], &[]).expect("valid");
        assert_eq!(c.auto_compaction, AutoCompaction::PeriodicMs(7_200_000));
        let c = serve(
            &[
                "--auto-compaction-mode",
                "revision",
                "--auto-compaction-retention",
                "1000",
            ],
            &[],
        )
        .expect("valid");
        assert_eq!(c.auto_compaction, AutoCompaction::Revisions(1000));
    }

    #[test]
    fn help_is_not_an_error() {
        let Err(ConfigError::Help(text)) = parse(["detcd", "--help"], &BTreeMap::new()) else {
            panic!("--help asks for help");
        };
        assert!(text.contains("--initial-cluster-token"));
        assert!(text.contains("ETCD_DATA_DIR"));
    }

    #[test]
    fn version_flag() {
        assert_eq!(
            parse(["detcd", "--version"], &BTreeMap::new()),
            Ok(Command::Version)
        );
    }
}
