//! Latency histograms per step and error counts, kept per worker and merged at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The steps of an issuance flow whose latency is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// `HEAD newNonce` (once at the start of each flow, as a fresh client does).
    NewNonce,
    /// `POST newAccount` (per flow, or once per pooled account before the run).
    NewAccount,
    /// `POST newOrder`.
    NewOrder,
    /// Per authorization: fetch it, answer its http-01 challenge, poll until it is valid.
    Challenge,
    /// `POST finalize`, then poll the order until it is `valid`.
    Finalize,
    /// `POST-as-GET` the certificate chain.
    Certificate,
    /// The whole flow, newNonce to certificate.
    Flow,
    /// Every single HTTP request to the CA, whatever its kind.
    Request,
}

impl Step {
    /// Every step, in report order.
    pub const ALL: [Step; 8] = [
        Step::NewNonce,
        Step::NewAccount,
        Step::NewOrder,
        Step::Challenge,
        Step::Finalize,
        Step::Certificate,
        Step::Flow,
        Step::Request,
    ];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Step::NewNonce => "newNonce",
            Step::NewAccount => "newAccount",
            Step::NewOrder => "newOrder",
            Step::Challenge => "challenge",
            Step::Finalize => "finalize",
            Step::Certificate => "certificate",
            Step::Flow => "flow",
            Step::Request => "request",
        }
    }
}

/// Histograms (microseconds) and counters of one worker, or of a whole run once merged.
#[derive(Clone)]
pub struct Stats {
    histograms: Vec<Histogram<u64>>,
    /// Failed flows by cause (a problem type name, `http-STATUS`, `transport`, `timeout`…).
    pub errors: BTreeMap<String, u64>,
    /// badNonce answers that were retried (not errors).
    pub bad_nonce_retries: u64,
    /// Flows that ended with a certificate.
    pub flows_ok: u64,
    /// Flows that failed.
    pub flows_failed: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty histograms and zero counters.
    pub fn new() -> Self {
        let histograms = Step::ALL
            .iter()
            // 1 µs .. 10 min, 3 significant digits.
            .map(|_| Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"))
            .collect();
        Self {
            histograms,
            errors: BTreeMap::new(),
            bad_nonce_retries: 0,
            flows_ok: 0,
            flows_failed: 0,
        }
    }

    /// Records one latency sample.
    pub fn record(&mut self, step: Step, elapsed: Duration) {
        let micros = (elapsed.as_micros() as u64).clamp(1, 600_000_000);
        self.histograms[step as usize].saturating_record(micros);
    }

    /// Counts a failed flow.
    pub fn error(&mut self, cause: impl Into<String>) {
        *self.errors.entry(cause.into()).or_default() += 1;
        self.flows_failed += 1;
    }

    /// Adds `other` into this one.
    pub fn merge(&mut self, other: &Stats) {
        for (mine, theirs) in self.histograms.iter_mut().zip(&other.histograms) {
            mine.add(theirs).expect("histograms share bounds");
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.bad_nonce_retries += other.bad_nonce_retries;
        self.flows_ok += other.flows_ok;
        self.flows_failed += other.flows_failed;
    }

    /// Adds only `step`'s samples from `other` (pool setup contributes newAccount).
    pub fn merge_step(&mut self, step: Step, other: &Stats) {
        self.histograms[step as usize]
            .add(&other.histograms[step as usize])
            .expect("histograms share bounds");
    }

    /// Summary of one step; `None` when it has no samples.
    pub fn summary(&self, step: Step) -> Option<StepSummary> {
        let h = &self.histograms[step as usize];
        if h.is_empty() {
            return None;
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Some(StepSummary {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        })
    }
}

/// Latency figures of one step, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    /// Number of samples.
    pub count: u64,
    /// Average.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest sample.
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_samples_and_errors() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        a.record(Step::Flow, Duration::from_millis(10));
        b.record(Step::Flow, Duration::from_millis(30));
        b.error("badNonce");
        a.merge(&b);
        let s = a.summary(Step::Flow).unwrap();
        assert_eq!(s.count, 2);
        assert!(s.max_ms >= 29.9 && s.max_ms <= 30.1, "{s:?}");
        assert_eq!(a.errors["badNonce"], 1);
        assert!(a.summary(Step::NewOrder).is_none());
    }
}
