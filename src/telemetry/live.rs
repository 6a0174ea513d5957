//! Windowed figures for the built-in dashboard (`/dashboard`, fed by `GET /api/live`).
//!
//! Prometheus histograms cannot be read back from the exporter, and the dashboard wants the last
//! second, not the whole run. [`LiveHistogram`] is a fixed set of atomic log-scale buckets:
//! recording is one bucket search and one relaxed `fetch_add` (no lock, no allocation), and the
//! dashboard task turns the difference between two snapshots into quantiles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use serde::Serialize;

/// Bucket upper bounds: 4 per octave from 10 µs to about 35 s (relative error below 19 %).
const BUCKETS: usize = 88;
const FIRST_BOUND_S: f64 = 10e-6;

/// The bounds, computed once: recording is then a binary search, with no `powf` per sample.
static BOUNDS: LazyLock<[f64; BUCKETS]> =
    LazyLock::new(|| std::array::from_fn(|i| FIRST_BOUND_S * 2f64.powf(i as f64 / 4.0)));

/// A lock-free histogram of durations in seconds.
#[derive(Debug)]
pub struct LiveHistogram {
    counts: [AtomicU64; BUCKETS + 1],
    /// Largest value seen since the last snapshot, as `f64` bits (values are non-negative, so the
    /// bit patterns order like the values).
    max_bits: AtomicU64,
}

impl Default for LiveHistogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            max_bits: AtomicU64::new(0),
        }
    }
}

/// Counts per bucket at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    counts: [u64; BUCKETS + 1],
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS + 1],
        }
    }
}

/// Quantiles of one interval, in seconds (`None` without samples).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Quantiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    pub count: u64,
}

impl LiveHistogram {
    /// Records one duration in seconds. Lock-free; never allocates.
    pub fn record(&self, seconds: f64) {
        if !seconds.is_finite() || seconds < 0.0 {
            return;
        }
        // First bucket whose bound is at least the value; past the last bound: the overflow one.
        let index = BOUNDS.partition_point(|&bound| bound < seconds);
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        self.max_bits
            .fetch_max(seconds.to_bits(), Ordering::Relaxed);
    }

    /// Records many durations at once, sorted ascending: one update per bucket they fall in.
    pub fn record_sorted(&self, sorted: &[f64]) {
        let valid = sorted.iter().filter(|s| s.is_finite() && **s >= 0.0);
        let mut run: Option<(usize, u64)> = None;
        let mut max = None;
        for &seconds in valid {
            let index = BOUNDS.partition_point(|&bound| bound < seconds);
            run = match run {
                Some((current, n)) if current == index => Some((current, n + 1)),
                Some((current, n)) => {
                    self.counts[current].fetch_add(n, Ordering::Relaxed);
                    Some((index, 1))
                }
                None => Some((index, 1)),
            };
            max = Some(seconds);
        }
        if let Some((current, n)) = run {
            self.counts[current].fetch_add(n, Ordering::Relaxed);
        }
        if let Some(max) = max {
            self.max_bits.fetch_max(max.to_bits(), Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
        }
    }

    /// Quantiles of what was recorded since `previous`; resets the running maximum. `previous`
    /// becomes the current snapshot.
    pub fn interval(&self, previous: &mut Snapshot) -> Quantiles {
        let now = self.snapshot();
        let delta: [u64; BUCKETS + 1] =
            std::array::from_fn(|i| now.counts[i].saturating_sub(previous.counts[i]));
        *previous = now;
        let max = f64::from_bits(self.max_bits.swap(0, Ordering::Relaxed));
        let count: u64 = delta.iter().sum();
        if count == 0 {
            return Quantiles::default();
        }
        let quantile = |q: f64| {
            let rank = (q * count as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in delta.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    // The bucket's upper bound, but never above the largest value seen.
                    return Some(BOUNDS[i.min(BUCKETS - 1)].min(max));
                }
            }
            Some(max)
        };
        Quantiles {
            p50: quantile(0.5),
            p95: quantile(0.95),
            p99: quantile(0.99),
            max: Some(max),
            count,
        }
    }
}

/// One station's windowed histograms, recorded next to the matching Prometheus series.
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Render time per chunk (pacer).
    pub synthesis: LiveHistogram,
    /// Ring pop to socket write done (per listener and chunk).
    pub delivery: LiveHistogram,
    /// |send interval - chunk period| (per listener and chunk).
    pub jitter: LiveHistogram,
    /// Client-reported render-to-playout latency.
    pub client_latency: LiveHistogram,
    /// Encode time per chunk, per codec (indexed by `Codec::index`).
    pub encode: [LiveHistogram; crate::codec::Codec::COUNT],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_an_interval_are_within_a_bucket() {
        let histogram = LiveHistogram::default();
        let mut previous = histogram.snapshot();
        for i in 1..=1000 {
            histogram.record(i as f64 * 1e-5); // 10 µs .. 10 ms, uniform
        }
        let q = histogram.interval(&mut previous);
        assert_eq!(q.count, 1000);
        let close = |got: Option<f64>, want: f64| {
            let got = got.unwrap();
            assert!(got >= want && got <= want * 1.19 + 1e-9, "{got} vs {want}");
        };
        close(q.p50, 0.005);
        close(q.p99, 0.0099);
        assert_eq!(q.max, Some(0.01));
        // The next interval sees only what came after.
        histogram.record(0.2);
        let q = histogram.interval(&mut previous);
        assert_eq!((q.count, q.max), (1, Some(0.2)));
        assert_eq!(histogram.interval(&mut previous), Quantiles::default());
    }

    #[test]
    fn ignores_nonsense_and_keeps_huge_values_in_the_last_bucket() {
        let histogram = LiveHistogram::default();
        let mut previous = histogram.snapshot();
        histogram.record(f64::NAN);
        histogram.record(-1.0);
        histogram.record(1e9);
        let q = histogram.interval(&mut previous);
        assert_eq!(q.count, 1);
        assert_eq!(q.max, Some(1e9));
    }
}
