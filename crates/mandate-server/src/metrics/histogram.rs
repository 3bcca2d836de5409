//! A histogram of durations that records without a lock.
//!
//! `prometheus-client`'s own `Histogram` takes a mutex on every observation; on the token
//! endpoint that would be one more contended lock per request. This one keeps a counter per
//! bucket and the sum in whole nanoseconds, all plain atomic additions, and renders through the
//! same encoder as every other metric.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds in seconds for request latency and audit lag: from half a millisecond (a
/// cached client-credentials grant) to ten seconds.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone)]
pub struct DurationHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds in nanoseconds, ascending (compared on every observation).
    bounds_ns: Vec<u64>,
    /// The same bounds in seconds, as rendered.
    bounds: Vec<f64>,
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: Vec<AtomicU64>,
    sum_ns: AtomicU64,
}

impl Default for DurationHistogram {
    fn default() -> Self {
        Self::new(&DURATION_BUCKETS)
    }
}

impl DurationHistogram {
    pub fn new(bounds: &[f64]) -> Self {
        let bounds: Vec<f64> = bounds.to_vec();
        let bounds_ns = bounds.iter().map(|s| (s * 1e9) as u64).collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(Inner {
                bounds_ns,
                bounds,
                counts,
                sum_ns: AtomicU64::new(0),
            }),
        }
    }

    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let inner = &self.inner;
        let bucket = inner.bounds_ns.partition_point(|&b| b < ns);
        if let Some(c) = inner.counts.get(bucket) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        inner.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &self.inner;
        let mut count = 0;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(&inner.counts)
            .map(|(bound, c)| {
                let n = c.load(Ordering::Relaxed);
                count += n;
                (bound, n)
            })
            .collect();
        // The count is the buckets' total, so `+Inf` always equals `_count` even while
        // observations land during the scrape.
        let sum = inner.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = DurationHistogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(3));
        let counts: Vec<u64> = h
            .inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts, [2, 1, 1]);
        assert_eq!(h.inner.sum_ns.load(Ordering::Relaxed), 3_006_500_000);
    }
}
