//! The run's summary: requests/s over the time the run really took, latency percentiles and
//! status counts, as JSON for `bench/run.sh` (which reads oha's JSON the same way).
//!
//! Latencies are kept exactly (microseconds, one `u32` per request) and sorted once at the end:
//! a 10 s run at tens of thousands of requests per second is a few MB, so no histogram's
//! rounding is needed.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct Summary {
    /// Requests that got a response (any status).
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Responses by status code.
    pub status: BTreeMap<String, u64>,
    /// Requests that got no response (connection refused or reset).
    pub errors: u64,
    /// Whether every line was used before the deadline (then the run was shorter).
    pub lines_exhausted: bool,
    pub lines: usize,
}

impl Summary {
    /// Merges the connections' tallies: (latencies in µs, statuses, errors).
    pub fn new(
        tallies: impl Iterator<Item = (Vec<u32>, BTreeMap<u16, u64>, u64)>,
        elapsed: Duration,
        lines_exhausted: bool,
        lines: usize,
    ) -> Self {
        let mut latencies = Vec::new();
        let mut status = BTreeMap::new();
        let mut errors = 0;
        for (l, s, e) in tallies {
            latencies.extend(l);
            for (code, n) in s {
                *status.entry(code.to_string()).or_insert(0) += n;
            }
            errors += e;
        }
        latencies.sort_unstable();
        let seconds = elapsed.as_secs_f64();
        let requests = latencies.len() as u64;
        Self {
            requests,
            seconds,
            requests_per_sec: if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            },
            p50_ms: percentile(&latencies, 50.0),
            p99_ms: percentile(&latencies, 99.0),
            max_ms: latencies.last().map_or(0.0, |&us| f64::from(us) / 1000.0),
            status,
            errors,
            lines_exhausted,
            lines,
        }
    }
}

/// The nearest-rank percentile of sorted microseconds, in milliseconds.
fn percentile(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_us.len()) - 1;
    sorted_us.get(i).map_or(0.0, |&us| f64::from(us) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
        assert_eq!(percentile(&[7000], 50.0), 7.0);
    }

    #[test]
    fn tallies_merge_and_rate_uses_elapsed_time() {
        let a = (vec![1000, 3000], BTreeMap::from([(200, 2)]), 1);
        let b = (vec![2000], BTreeMap::from([(200, 1), (400, 0)]), 0);
        let s = Summary::new([a, b].into_iter(), Duration::from_millis(1500), true, 3);
        assert_eq!(s.requests, 3);
        assert_eq!(s.requests_per_sec, 2.0);
        assert_eq!(s.p50_ms, 2.0);
        assert_eq!(s.status.get("200"), Some(&3));
        assert_eq!(s.errors, 1);
        assert!(s.lines_exhausted);
    }
}
