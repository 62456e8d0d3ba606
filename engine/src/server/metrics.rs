//! A member's metrics: atomic counters, gauges and fixed-bucket histograms under etcd's
//! metric names, rendered in the Prometheus text exposition format.
//!
//! The raft loop and the services update a shared [`Metrics`] (behind an `Arc`); the
//! HTTP `/metrics` handler renders it. Names, label names and histogram buckets are
//! etcd's, so dashboards and alerts written for etcd read detcd unchanged.
//!
//! This module does no I/O and reads no clock: callers measure durations and pass them
//! in. It is deliberately not a general metrics library: no registry, no dynamic metric
//! creation, only what a member reports. Every map is a `BTreeMap`, so the rendered text
//! is the same for the same updates.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// The etcd version this server claims to be (its API compatibility), reported by
/// `/version` and the `etcd_server_version` metric.
pub const SERVER_VERSION: &str = "3.4.23";
/// The cluster version reported by `/version`.
pub const CLUSTER_VERSION: &str = "3.4.0";

/// Upper bounds (seconds) of the disk duration histograms: etcd's exponential buckets,
/// 1 ms doubling 14 times (to 8.192 s).
pub const DISK_BUCKETS_S: [f64; 14] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

/// A histogram with fixed upper bounds (seconds); observations above the last bound
/// count only in `+Inf`.
#[derive(Debug)]
pub struct Histogram {
    bounds_s: &'static [f64],
    /// The same bounds in nanoseconds, so bucketing compares integers.
    bounds_ns: Vec<u64>,
    /// Per-bucket counts (not cumulative); one more than bounds, the last is `+Inf`.
    buckets: Vec<AtomicU64>,
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `bounds_s` (ascending).
    pub fn new(bounds_s: &'static [f64]) -> Self {
        debug_assert!(bounds_s.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
        Histogram {
            bounds_s,
            bounds_ns: bounds_s.iter().map(|b| (b * 1e9).round() as u64).collect(),
            buckets: (0..=bounds_s.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, duration: Duration) {
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let index = self.bounds_ns.partition_point(|&b| b < ns);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, help, "histogram");
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds_s.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[self.bounds_s.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum_s = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum_s}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// The labels of `grpc_server_handled_total`, in the order etcd's exporter sorts them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GrpcHandled {
    /// The status code's name, e.g. `OK`, `Unavailable`.
    pub code: &'static str,
    /// The method, e.g. `Range` (borrowed for etcd's own methods, so counting a call
    /// allocates nothing).
    pub method: Cow<'static, str>,
    /// The fully qualified service, e.g. `etcdserverpb.KV`.
    pub service: Cow<'static, str>,
    /// `unary`, `client_stream`, `server_stream` or `bidi_stream`.
    pub kind: &'static str,
}

/// One member's metrics. Shared via `Arc`; every update is a relaxed atomic (or, for the
/// gRPC counter map, a short lock).
#[derive(Debug)]
pub struct Metrics {
    has_leader: AtomicU64,
    is_leader: AtomicU64,
    leader_changes: AtomicU64,
    proposals_committed: AtomicU64,
    proposals_applied: AtomicU64,
    proposals_pending: AtomicI64,
    proposals_failed: AtomicU64,
    db_total_size_bytes: AtomicU64,
    keys_total: AtomicU64,
    health_success: AtomicU64,
    health_failures: AtomicU64,
    /// Time from the start of a WAL persist to its end (one sync per `Ready`).
    pub wal_fsync: Histogram,
    /// Time to save a snapshot (detcd's backend commit).
    pub backend_commit: Histogram,
    grpc_handled: Mutex<BTreeMap<GrpcHandled, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            has_leader: AtomicU64::new(0),
            is_leader: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
            proposals_committed: AtomicU64::new(0),
            proposals_applied: AtomicU64::new(0),
            proposals_pending: AtomicI64::new(0),
            proposals_failed: AtomicU64::new(0),
            db_total_size_bytes: AtomicU64::new(0),
            keys_total: AtomicU64::new(0),
            health_success: AtomicU64::new(0),
            health_failures: AtomicU64::new(0),
            wal_fsync: Histogram::new(&DISK_BUCKETS_S),
            backend_commit: Histogram::new(&DISK_BUCKETS_S),
            grpc_handled: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// Records who leads, as this member sees it.
    pub fn set_leader(&self, has_leader: bool, is_leader: bool) {
        self.has_leader
            .store(u64::from(has_leader), Ordering::Relaxed);
        self.is_leader
            .store(u64::from(is_leader), Ordering::Relaxed);
    }

    /// Counts a change of leader.
    pub fn leader_changed(&self) {
        self.leader_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the committed and applied indexes.
    pub fn set_indexes(&self, committed: u64, applied: u64) {
        self.proposals_committed.store(committed, Ordering::Relaxed);
        self.proposals_applied.store(applied, Ordering::Relaxed);
    }

    /// A proposal started (`+1`) or finished (`-1`).
    pub fn proposals_pending_add(&self, delta: i64) {
        self.proposals_pending.fetch_add(delta, Ordering::Relaxed);
    }

    /// Counts a proposal that failed (refused, timed out, lost to a leader change).
    pub fn proposal_failed(&self) {
        self.proposals_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the key space's size and live key count.
    pub fn set_db(&self, size_bytes: u64, keys: u64) {
        self.db_total_size_bytes
            .store(size_bytes, Ordering::Relaxed);
        self.keys_total.store(keys, Ordering::Relaxed);
    }

    /// Sets the key space's size alone (when only that is known, e.g. after a snapshot).
    pub fn set_db_size(&self, size_bytes: u64) {
        self.db_total_size_bytes
            .store(size_bytes, Ordering::Relaxed);
    }

    /// Sets the live key count alone.
    pub fn set_keys(&self, keys: u64) {
        self.keys_total.store(keys, Ordering::Relaxed);
    }

    /// Counts a `/health` check by its verdict.
    pub fn health_checked(&self, healthy: bool) {
        let counter = if healthy {
            &self.health_success
        } else {
            &self.health_failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a handled gRPC call.
    pub fn grpc_handled(&self, call: GrpcHandled) {
        *crate::server::node::lock(&self.grpc_handled)
            .entry(call)
            .or_insert(0) += 1;
    }

    /// Leader changes seen so far.
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge(
            &mut out,
            "etcd_server_has_leader",
            "Whether a leader exists: 1 yes, 0 no.",
            load(&self.has_leader),
        );
        gauge(
            &mut out,
            "etcd_server_is_leader",
            "Whether this member leads: 1 yes, 0 no.",
            load(&self.is_leader),
        );
        counter(
            &mut out,
            "etcd_server_leader_changes_seen_total",
            "Leader changes seen.",
            load(&self.leader_changes),
        );
        gauge(
            &mut out,
            "etcd_server_proposals_committed_total",
            "Consensus proposals committed (the commit index).",
            load(&self.proposals_committed),
        );
        gauge(
            &mut out,
            "etcd_server_proposals_applied_total",
            "Consensus proposals applied (the applied index).",
            load(&self.proposals_applied),
        );
        header(
            &mut out,
            "etcd_server_proposals_pending",
            "Proposals waiting to commit.",
            "gauge",
        );
        let pending = self.proposals_pending.load(Ordering::Relaxed).max(0);
        let _ = writeln!(out, "etcd_server_proposals_pending {pending}");
        counter(
            &mut out,
            "etcd_server_proposals_failed_total",
            "Failed proposals.",
            load(&self.proposals_failed),
        );
        self.wal_fsync.render(
            &mut out,
            "etcd_disk_wal_fsync_duration_seconds",
            "Latency of WAL syncs.",
        );
        self.backend_commit.render(
            &mut out,
            "etcd_disk_backend_commit_duration_seconds",
            "Latency of backend commits (detcd: snapshot saves).",
        );
        gauge(
            &mut out,
            "etcd_mvcc_db_total_size_in_bytes",
            "Size of the key space's encoding, in bytes.",
            load(&self.db_total_size_bytes),
        );
        gauge(
            &mut out,
            "etcd_debugging_mvcc_keys_total",
            "Live keys.",
            load(&self.keys_total),
        );
        counter(
            &mut out,
            "etcd_server_health_success",
            "Successful health checks.",
            load(&self.health_success),
        );
        counter(
            &mut out,
            "etcd_server_health_failures",
            "Failed health checks.",
            load(&self.health_failures),
        );
        header(
            &mut out,
            "etcd_server_version",
            "Which version is running: 1 for the label with the current version.",
            "gauge",
        );
        let _ = writeln!(
            out,
            "etcd_server_version{{server_version=\"{SERVER_VERSION}\"}} 1"
        );
        header(
            &mut out,
            "grpc_server_handled_total",
            "RPCs completed on the server, whatever their outcome.",
            "counter",
        );
        for (call, n) in crate::server::node::lock(&self.grpc_handled).iter() {
            let _ = writeln!(
                out,
                "grpc_server_handled_total{{grpc_code=\"{}\",grpc_method=\"{}\",grpc_service=\"{}\",grpc_type=\"{}\"}} {n}",
                call.code, call.method, call.service, call.kind
            );
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, help, "gauge");
    let _ = writeln!(out, "{name} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, help, "counter");
    let _ = writeln!(out, "{name} {value}");
}

/// Reads one sample's value from Prometheus text: the line that starts with `series`
/// (a name, with labels if any) followed by a space. For tests and tools.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn renders_etcds_names_and_counts_updates() {
        let m = Metrics::default();
        let before = m.render();
        assert_eq!(sample(&before, "etcd_server_has_leader"), Some(0.0));
        m.set_leader(true, true);
        m.leader_changed();
        m.set_indexes(7, 6);
        m.proposals_pending_add(2);
        m.proposals_pending_add(-1);
        m.proposal_failed();
        m.set_db(4096, 3);
        m.health_checked(true);
        m.health_checked(false);
        m.health_checked(false);
        let text = m.render();
        assert_eq!(sample(&text, "etcd_server_has_leader"), Some(1.0));
        assert_eq!(sample(&text, "etcd_server_is_leader"), Some(1.0));
        assert_eq!(
            sample(&text, "etcd_server_leader_changes_seen_total"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "etcd_server_proposals_committed_total"),
            Some(7.0)
        );
        assert_eq!(
            sample(&text, "etcd_server_proposals_applied_total"),
            Some(6.0)
        );
        assert_eq!(sample(&text, "etcd_server_proposals_pending"), Some(1.0));
        assert_eq!(
            sample(&text, "etcd_server_proposals_failed_total"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "etcd_mvcc_db_total_size_in_bytes"),
            Some(4096.0)
        );
        assert_eq!(sample(&text, "etcd_debugging_mvcc_keys_total"), Some(3.0));
        assert_eq!(sample(&text, "etcd_server_health_success"), Some(1.0));
        assert_eq!(sample(&text, "etcd_server_health_failures"), Some(2.0));
        assert_eq!(
            sample(&text, "etcd_server_version{server_version=\"3.4.23\"}"),
            Some(1.0)
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_inf() {
        let m = Metrics::default();
        m.wal_fsync.observe(Duration::from_micros(500));
        m.wal_fsync.observe(Duration::from_millis(3));
        m.wal_fsync.observe(Duration::from_secs(20));
        let text = m.render();
        let name = "etcd_disk_wal_fsync_duration_seconds";
        assert_eq!(
            sample(&text, &format!("{name}_bucket{{le=\"0.001\"}}")),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, &format!("{name}_bucket{{le=\"0.002\"}}")),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, &format!("{name}_bucket{{le=\"0.004\"}}")),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, &format!("{name}_bucket{{le=\"8.192\"}}")),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, &format!("{name}_bucket{{le=\"+Inf\"}}")),
            Some(3.0)
        );
        assert_eq!(sample(&text, &format!("{name}_count")), Some(3.0));
        let sum = sample(&text, &format!("{name}_sum")).expect("a sum line");
        assert!((sum - 20.0035).abs() < 1e-6, "sum {sum}");
    }

    #[test]
    fn grpc_counters_render_in_label_order() {
        let m = Metrics::default();
        let call = |code: &'static str, method: &str| GrpcHandled {
            code,
            method: Cow::Owned(method.to_owned()),
            service: Cow::Borrowed("etcdserverpb.KV"),
            kind: "unary",
        };
        m.grpc_handled(call("OK", "Range"));
        m.grpc_handled(call("OK", "Range"));
        m.grpc_handled(call("Unavailable", "Put"));
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}"
            ),
            Some(2.0)
        );
        let ok = text.find("grpc_code=\"OK\"").expect("OK line");
        let unavailable = text
            .find("grpc_code=\"Unavailable\"")
            .expect("Unavailable line");
        assert!(ok < unavailable, "lines sorted by labels");
    }

    /// Every line of the exposition is a comment or `series value` with a number.
    fn well_formed(text: &str) -> bool {
        text.lines().all(|l| {
            l.starts_with("# HELP ")
                || l.starts_with("# TYPE ")
                || l.rsplit_once(' ')
                    .is_some_and(|(_, v)| v.parse::<f64>().is_ok())
        })
    }

    proptest! {
        #[test]
        fn histogram_count_is_inf_bucket_and_buckets_never_decrease(
            micros in proptest::collection::vec(0u64..20_000_000, 0..50)
        ) {
            let h = Histogram::new(&DISK_BUCKETS_S);
            for us in &micros {
                h.observe(Duration::from_micros(*us));
            }
            let mut text = String::new();
            h.render(&mut text, "h", "test");
            prop_assert!(well_formed(&text));
            let values: Vec<f64> = text
                .lines()
                .filter(|l| l.starts_with("h_bucket"))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse().ok())
                .collect();
            prop_assert_eq!(values.len(), DISK_BUCKETS_S.len() + 1);
            prop_assert!(values.windows(2).all(|w| w[0] <= w[1]));
            prop_assert_eq!(values.last().copied(), Some(micros.len() as f64));
            prop_assert_eq!(h.count(), micros.len() as u64);
            let within_1s = micros.iter().filter(|&&us| us <= 1_024_000).count() as f64;
            prop_assert_eq!(sample(&text, "h_bucket{le=\"1.024\"}"), Some(within_1s));
        }
    }
}
