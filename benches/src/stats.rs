//! Latency histograms and the summary a run prints (QPS, p50/p90/p99/p99.9/max), as
//! text or JSON.
//!
//! It does not time anything itself: callers record durations they measured.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Highest latency a histogram tracks, in microseconds (one minute); larger values are
/// clamped to it.
pub const LATENCY_US_MAX: u64 = 60_000_000;

/// Significant decimal digits kept by every histogram.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Errors building or merging histograms.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The histogram library refused the bounds.
    #[error("histogram: {0}")]
    Create(#[from] hdrhistogram::CreationError),
    /// Two histograms could not be merged.
    #[error("histogram merge: {0}")]
    Merge(#[from] hdrhistogram::AdditionError),
}

/// A latency histogram in microseconds.
#[derive(Clone, Debug)]
pub struct Latencies {
    hist: Histogram<u64>,
}

impl Latencies {
    /// An empty histogram covering 1 µs ..= [`LATENCY_US_MAX`].
    pub fn new() -> Result<Self, StatsError> {
        Ok(Latencies {
            hist: Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGNIFICANT_DIGITS)?,
        })
    }

    /// Records one latency (clamped to the tracked range).
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(LATENCY_US_MAX);
        self.hist.saturating_record(us.clamp(1, LATENCY_US_MAX));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latencies) -> Result<(), StatsError> {
        self.hist.add(&other.hist)?;
        Ok(())
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The latency at quantile `q` (0.0..=1.0), in microseconds; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.hist.is_empty() {
            0
        } else {
            self.hist.value_at_quantile(q)
        }
    }

    /// Summary of this histogram for a run of `elapsed` with `errors` failed requests.
    pub fn summary(&self, name: &str, elapsed: Duration, errors: u64) -> Summary {
        let secs = elapsed.as_secs_f64();
        Summary {
            name: name.to_string(),
            ops: self.count(),
            errors,
            elapsed_s: secs,
            qps: if secs > 0.0 {
                self.count() as f64 / secs
            } else {
                0.0
            },
            latency_us_p50: self.quantile_us(0.50),
            latency_us_p90: self.quantile_us(0.90),
            latency_us_p99: self.quantile_us(0.99),
            latency_us_p999: self.quantile_us(0.999),
            latency_us_max: if self.hist.is_empty() {
                0
            } else {
                self.hist.max()
            },
            latency_us_mean: if self.hist.is_empty() {
                0.0
            } else {
                self.hist.mean()
            },
        }
    }

    /// `(latency_us, cumulative fraction)` points of the distribution, for plots.
    pub fn cdf_points(&self) -> Vec<(u64, f64)> {
        let total = self.count();
        if total == 0 {
            return Vec::new();
        }
        let mut seen = 0u64;
        self.hist
            .iter_recorded()
            .map(|v| {
                seen += v.count_at_value();
                (v.value_iterated_to(), seen as f64 / total as f64)
            })
            .collect()
    }
}

/// What one workload run measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Workload name.
    pub name: String,
    /// Successful operations.
    pub ops: u64,
    /// Failed operations (not in the histogram).
    pub errors: u64,
    /// Wall time of the run in seconds.
    pub elapsed_s: f64,
    /// Successful operations per second.
    pub qps: f64,
    /// Median latency.
    pub latency_us_p50: u64,
    /// 90th percentile latency.
    pub latency_us_p90: u64,
    /// 99th percentile latency.
    pub latency_us_p99: u64,
    /// 99.9th percentile latency.
    pub latency_us_p999: u64,
    /// Largest latency.
    pub latency_us_max: u64,
    /// Mean latency.
    pub latency_us_mean: f64,
}

impl Summary {
    /// Human-readable multi-line rendering.
    pub fn to_text(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "{}: {} ops ({} errors) in {:.2} s = {:.1} QPS\n  latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}\n",
            self.name,
            self.ops,
            self.errors,
            self.elapsed_s,
            self.qps,
            ms(self.latency_us_p50),
            ms(self.latency_us_p90),
            ms(self.latency_us_p99),
            ms(self.latency_us_p999),
            ms(self.latency_us_max),
            self.latency_us_mean / 1000.0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_follow_the_samples() {
        let mut l = Latencies::new().expect("bounds");
        for us in 1..=1000u64 {
            l.record(Duration::from_micros(us));
        }
        let s = l.summary("t", Duration::from_secs(2), 3);
        assert_eq!(s.ops, 1000);
        assert_eq!(s.errors, 3);
        assert!((s.qps - 500.0).abs() < 1e-9);
        assert!((495..=505).contains(&s.latency_us_p50), "{s:?}");
        assert!((985..=995).contains(&s.latency_us_p99), "{s:?}");
        assert!((999..=1001).contains(&s.latency_us_max), "{s:?}");
        let cdf = l.cdf_points();
        assert!((cdf.last().expect("points").1 - 1.0).abs() < 1e-9);
        assert!(cdf.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn merge_adds_counts_and_empty_is_zero() {
        let mut a = Latencies::new().expect("bounds");
        assert_eq!(a.summary("e", Duration::ZERO, 0).latency_us_p99, 0);
        let mut b = Latencies::new().expect("bounds");
        a.record(Duration::from_millis(1));
        b.record(Duration::from_millis(3));
        a.merge(&b).expect("merge");
        assert_eq!(a.count(), 2);
        assert!(a.quantile_us(1.0) >= 2990);
    }
}
