//! The load generator: opens gRPC connections to any etcd-compatible endpoint, runs one
//! workload from many concurrent clients, and measures every request.
//!
//! Each client issues one request at a time (so `--clients` is the concurrency); clients
//! share `--conns` HTTP/2 connections round-robin. It does not start servers (see
//! `compare`) and judges nothing (see `record` and `detcd-check`).

use crate::kvconn;
use crate::record;
use crate::stats::{Latencies, StatsError, Summary};
use detcd_checker::history::OpRecord;
use detcd_engine::pb::etcdserverpb::kv_client::KvClient;
use detcd_engine::pb::etcdserverpb::lease_client::LeaseClient;
use detcd_engine::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use detcd_engine::pb::etcdserverpb::watch_client::WatchClient;
use detcd_engine::pb::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, StatusRequest, WatchCreateRequest,
    WatchRequest, watch_request,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Time allowed to open one connection, in milliseconds.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Time allowed for one request before it counts as failed, in milliseconds.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// TTL of the leases the keep-alive workload grants, in seconds.
pub const LEASE_TTL_S: i64 = 60;
/// Key the watch-latency workload writes and watches.
pub const WATCH_KEY: &str = "detcd-bench-watch";

/// Errors of a load run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Bad options.
    #[error("bad options: {0}")]
    Options(String),
    /// An endpoint could not be reached.
    #[error("connect {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// A direct HTTP/2 connection (TCP) could not be opened.
    #[error("connect {endpoint}: {source}")]
    ConnectH2 {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: std::io::Error,
    },
    /// A setup request (status, lease grant, watch create) failed.
    #[error("{what}: {status}")]
    Setup {
        /// What was being set up.
        what: &'static str,
        /// The gRPC status.
        status: tonic::Status,
    },
    /// No endpoint reports itself leader.
    #[error("no endpoint reports itself leader")]
    NoLeader,
    /// Histogram trouble.
    #[error(transparent)]
    Stats(#[from] StatsError),
    /// Writing the history failed.
    #[error("record: {0}")]
    Record(#[from] std::io::Error),
}

/// When a run stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// After this many requests in total.
    Total(u64),
    /// After this much time.
    Duration(Duration),
}

/// Options shared by every workload.
#[derive(Clone, Debug)]
pub struct LoadOpts {
    /// Endpoints (`host:port` or `http://host:port`).
    pub endpoints: Vec<String>,
    /// gRPC connections to open.
    pub conns: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// When to stop.
    pub stop: Stop,
    /// Send everything to the leader (found with Maintenance.Status).
    pub target_leader: bool,
    /// Write every operation as a checker history to this file.
    pub record: Option<PathBuf>,
    /// Seed of the random keys.
    pub seed: u64,
}

/// Which keys a put workload writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOrder {
    /// 0, 1, 2, ... (wrapping at the key space).
    Sequential,
    /// Uniformly random within the key space.
    Random,
}

/// A workload.
#[derive(Clone, Debug)]
pub enum Workload {
    /// Puts (`txn: true`: each inside a Txn with no compares, like etcd's `txn-put`).
    Put {
        /// Key length in bytes.
        key_bytes: usize,
        /// Value length in bytes.
        value_bytes: usize,
        /// Number of distinct keys.
        key_space: u64,
        /// Key order.
        order: KeyOrder,
        /// Wrap each put in a Txn.
        txn: bool,
    },
    /// Reads of one key.
    Range {
        /// The key.
        key: String,
        /// Serializable (local) instead of linearizable.
        serializable: bool,
    },
    /// One writer puts to [`WATCH_KEY`] at `puts_per_s`; each client watches it; the
    /// latency is put sent to event received, per watcher.
    WatchLatency {
        /// Put rate.
        puts_per_s: u64,
    },
    /// Each client grants a lease and sends keep-alives on one stream.
    LeaseKeepalive,
}

impl Workload {
    /// Short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Put { txn: false, .. } => "put",
            Workload::Put { txn: true, .. } => "txn-put",
            Workload::Range {
                serializable: false,
                ..
            } => "range (linearizable)",
            Workload::Range {
                serializable: true, ..
            } => "range (serializable)",
            Workload::WatchLatency { .. } => "watch-latency",
            Workload::LeaseKeepalive => "lease-keepalive",
        }
    }
}

/// `endpoint` with an `http://` scheme when it has none.
pub(crate) fn url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

async fn connect(endpoint: &str) -> Result<Channel, LoadError> {
    let err = |source| LoadError::Connect {
        endpoint: endpoint.to_string(),
        source,
    };
    Endpoint::from_shared(url(endpoint))
        .map_err(err)?
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
        .connect()
        .await
        .map_err(err)
}

/// The endpoint whose Maintenance.Status says it is the leader.
pub async fn find_leader(endpoints: &[String]) -> Result<String, LoadError> {
    for ep in endpoints {
        let Ok(ch) = connect(ep).await else { continue };
        let Ok(resp) = MaintenanceClient::new(ch).status(StatusRequest {}).await else {
            continue;
        };
        let s = resp.into_inner();
        let member = s.header.map_or(0, |h| h.member_id);
        if member != 0 && member == s.leader {
            return Ok(ep.clone());
        }
    }
    Err(LoadError::NoLeader)
}

/// Shared progress of a run: the stop rule and how many requests were claimed.
pub(crate) struct Budget {
    stop: Stop,
    /// When the run started (recorded call and return times count from here).
    pub(crate) started: Instant,
    claimed: AtomicU64,
}

impl Budget {
    /// Claims the next request; None when the run is over.
    fn claim(&self) -> Option<u64> {
        self.claim_at(Instant::now())
    }

    /// Claims the next request as of `now`; None when the run is over.
    pub(crate) fn claim_at(&self, now: Instant) -> Option<u64> {
        let n = self.claimed.fetch_add(1, Ordering::Relaxed);
        match self.stop {
            Stop::Total(total) => (n < total).then_some(n),
            Stop::Duration(d) => (now.saturating_duration_since(self.started) < d).then_some(n),
        }
    }
}

/// What one client task (or one connection's clients) measured.
pub(crate) struct ClientResult {
    pub(crate) lat: Latencies,
    pub(crate) errors: u64,
    pub(crate) records: Vec<OpRecord>,
}

/// One client of the lease keep-alive workload.
async fn lease_client(ch: Channel, budget: Arc<Budget>) -> Result<ClientResult, LoadError> {
    let mut lease = LeaseClient::new(ch);
    let grant = lease
        .lease_grant(LeaseGrantRequest {
            ttl: LEASE_TTL_S,
            id: 0,
        })
        .await
        .map_err(|status| LoadError::Setup {
            what: "lease grant",
            status,
        })?
        .into_inner();
    let mut out = ClientResult {
        lat: Latencies::new()?,
        errors: 0,
        records: Vec::new(),
    };
    if budget.claim().is_none() {
        return Ok(out);
    }
    // The first request goes into the stream before the call: a server may hold the
    // response headers until it has something to answer.
    let (tx, rx) = mpsc::channel(1);
    let keep_alive = LeaseKeepAliveRequest { id: grant.id };
    let mut t = Instant::now();
    tx.send(keep_alive)
        .await
        .map_err(|_| LoadError::Options("keep-alive stream closed".into()))?;
    let mut responses = lease
        .lease_keep_alive(ReceiverStream::new(rx))
        .await
        .map_err(|status| LoadError::Setup {
            what: "lease keep-alive stream",
            status,
        })?
        .into_inner();
    loop {
        match responses.message().await {
            Ok(Some(r)) if r.ttl > 0 => out.lat.record(t.elapsed()),
            _ => {
                out.errors += 1;
                break;
            }
        }
        if budget.claim().is_none() {
            break;
        }
        t = Instant::now();
        if tx.send(keep_alive).await.is_err() {
            out.errors += 1;
            break;
        }
    }
    Ok(out)
}

/// Runs `workload` with `opts` and returns what it measured.
pub async fn run(opts: &LoadOpts, workload: &Workload) -> Result<Summary, LoadError> {
    if opts.endpoints.is_empty() || opts.conns == 0 || opts.clients == 0 {
        return Err(LoadError::Options(
            "need at least one endpoint, connection and client".into(),
        ));
    }
    if opts.record.is_some()
        && matches!(
            workload,
            Workload::WatchLatency { .. } | Workload::LeaseKeepalive
        )
    {
        return Err(LoadError::Options(format!(
            "--record is supported for put, txn-put and range, not {}",
            workload.name()
        )));
    }
    let endpoints = if opts.target_leader {
        vec![find_leader(&opts.endpoints).await?]
    } else {
        opts.endpoints.clone()
    };
    let streaming = matches!(
        workload,
        Workload::WatchLatency { .. } | Workload::LeaseKeepalive
    );
    let mut channels = Vec::new();
    let mut conns = Vec::new();
    for i in 0..opts.conns {
        let endpoint = &endpoints[i % endpoints.len()];
        if streaming {
            channels.push(connect(endpoint).await?);
        } else {
            let host_port = endpoint.strip_prefix("http://").unwrap_or(endpoint);
            let tcp = tokio::time::timeout(
                Duration::from_millis(CONNECT_TIMEOUT_MS),
                tokio::net::TcpStream::connect(host_port),
            )
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
            .and_then(|tcp| tcp.set_nodelay(true).map(|()| tcp))
            .map_err(|source| LoadError::ConnectH2 {
                endpoint: endpoint.clone(),
                source,
            })?;
            conns.push((host_port.to_string(), tcp));
        }
    }
    if let Workload::WatchLatency { puts_per_s } = workload {
        return watch_latency(opts, &channels, *puts_per_s).await;
    }
    let budget = Arc::new(Budget {
        stop: opts.stop,
        started: Instant::now(),
        claimed: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    if let Workload::LeaseKeepalive = workload {
        for c in 0..opts.clients {
            let ch = channels[c % channels.len()].clone();
            let client = lease_client(ch, budget.clone());
            tasks.push(tokio::spawn(async move { vec![client.await] }));
        }
    } else {
        // One task per connection runs that connection's clients together: the
        // requests they send after one batch of responses leave in one write.
        let n_conns = conns.len();
        for (i, (host_port, tcp)) in conns.into_iter().enumerate() {
            let ids: Vec<u64> = (i..opts.clients)
                .step_by(n_conns)
                .map(|c| c as u64 + 1)
                .collect();
            if ids.is_empty() {
                continue;
            }
            let (workload, budget) = (workload.clone(), budget.clone());
            let (seed, record) = (opts.seed, opts.record.is_some());
            tasks.push(tokio::spawn(async move {
                vec![kvconn::run(&host_port, tcp, ids, &workload, budget, seed, record).await]
            }));
        }
    }
    let mut lat = Latencies::new()?;
    let mut errors = 0;
    let mut records = Vec::new();
    for t in tasks {
        let results = t
            .await
            .map_err(|e| LoadError::Options(format!("client task failed: {e}")))?;
        for r in results {
            let r = r?;
            lat.merge(&r.lat)?;
            errors += r.errors;
            records.extend(r.records);
        }
    }
    let elapsed = budget.started.elapsed();
    if let Some(path) = &opts.record {
        record::write_history(
            path,
            &format!("detcd-bench {}", workload.name()),
            &mut records,
        )?;
    }
    Ok(lat.summary(workload.name(), elapsed, errors))
}

/// The watch-latency workload: `opts.clients` watchers, one writer.
async fn watch_latency(
    opts: &LoadOpts,
    channels: &[Channel],
    puts_per_s: u64,
) -> Result<Summary, LoadError> {
    let total = match opts.stop {
        Stop::Total(t) => t,
        Stop::Duration(d) => (d.as_secs_f64() * puts_per_s as f64).ceil() as u64,
    };
    // Send times of each put, indexed by the sequence number carried in its value.
    let sent: Arc<std::sync::Mutex<Vec<Option<Instant>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; total as usize]));
    let mut watchers = Vec::new();
    for c in 0..opts.clients {
        let mut client = WatchClient::new(channels[c % channels.len()].clone());
        let (tx, rx) = mpsc::channel(1);
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: WATCH_KEY.as_bytes().to_vec(),
                    ..Default::default()
                },
            )),
        };
        tx.send(create)
            .await
            .map_err(|_| LoadError::Options("watch stream closed".into()))?;
        let mut stream = client
            .watch(ReceiverStream::new(rx))
            .await
            .map_err(|status| LoadError::Setup {
                what: "watch",
                status,
            })?
            .into_inner();
        // Wait for the created response so no put is sent before every watcher is ready.
        match stream.message().await {
            Ok(Some(r)) if r.created => {}
            Ok(_) => return Err(LoadError::Options("watch not created".into())),
            Err(status) => {
                return Err(LoadError::Setup {
                    what: "watch create",
                    status,
                });
            }
        }
        let sent = sent.clone();
        watchers.push(tokio::spawn(async move {
            let _keep_open = tx;
            let mut lat = Latencies::new()?;
            let mut seen = 0u64;
            while seen < total {
                let msg = tokio::time::timeout(
                    Duration::from_millis(REQUEST_TIMEOUT_MS),
                    stream.message(),
                )
                .await;
                let Ok(Ok(Some(resp))) = msg else { break };
                for ev in resp.events {
                    let Some(kv) = ev.kv else { continue };
                    let seq = std::str::from_utf8(&kv.value)
                        .ok()
                        .and_then(|v| v.parse::<usize>().ok());
                    let at = seq
                        .and_then(|s| sent.lock().ok().and_then(|g| g.get(s).copied().flatten()));
                    if let Some(at) = at {
                        lat.record(at.elapsed());
                        seen += 1;
                    }
                }
            }
            Ok::<_, LoadError>((lat, total - seen))
        }));
    }
    let mut kv = KvClient::new(channels[0].clone());
    let started = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / puts_per_s.max(1) as f64);
    let mut put_errors = 0;
    for seq in 0..total {
        if let Ok(mut g) = sent.lock() {
            g[seq as usize] = Some(Instant::now());
        }
        let req = PutRequest {
            key: WATCH_KEY.as_bytes().to_vec(),
            value: seq.to_string().into_bytes(),
            ..Default::default()
        };
        if kv.put(req).await.is_err() {
            put_errors += 1;
        }
        let next = started + gap * (seq as u32 + 1);
        tokio::time::sleep_until(next.into()).await;
    }
    let mut lat = Latencies::new()?;
    let mut missed = put_errors;
    for w in watchers {
        let (l, m) = w
            .await
            .map_err(|e| LoadError::Options(format!("watcher failed: {e}")))??;
        lat.merge(&l)?;
        missed += m;
    }
    Ok(lat.summary("watch-latency", started.elapsed(), missed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_stops_at_the_total() {
        let b = Budget {
            stop: Stop::Total(3),
            started: Instant::now(),
            claimed: AtomicU64::new(0),
        };
        let claimed: Vec<u64> = std::iter::from_fn(|| b.claim()).collect();
        assert_eq!(claimed, vec![0, 1, 2]);
        assert_eq!(b.claim(), None);
    }

    #[test]
    fn urls_get_a_scheme() {
        assert_eq!(url("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(url("https://h:1"), "https://h:1");
    }

    #[test]
    fn run_rejects_empty_options_and_unreachable_endpoints() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let mut opts = LoadOpts {
            endpoints: vec![],
            conns: 1,
            clients: 1,
            stop: Stop::Total(1),
            target_leader: false,
            record: None,
            seed: 1,
        };
        let w = Workload::Range {
            key: "a".into(),
            serializable: true,
        };
        assert!(matches!(
            rt.block_on(run(&opts, &w)),
            Err(LoadError::Options(_))
        ));
        // Port 1 on loopback is closed: connecting must fail, not hang or succeed.
        opts.endpoints = vec!["127.0.0.1:1".into()];
        assert!(matches!(
            rt.block_on(run(&opts, &w)),
            Err(LoadError::ConnectH2 { .. })
        ));
    }
}
