//! The results of a run: a text table or JSON, and a side-by-side comparison of two runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::run::Options;
use crate::stats::{Stats, Step, StepSummary};

/// One run's figures (the JSON output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Label of the run (`--label`), e.g. `pebble`; may be empty.
    pub label: String,
    /// The ACME directory URL.
    pub directory: String,
    /// Flows in flight at once.
    pub concurrency: usize,
    /// DNS names per order.
    pub names_per_order: usize,
    /// Account key type, by its CLI name (e.g. `ec256`).
    pub account_key: String,
    /// Certificate key type, by its CLI name.
    pub cert_key: String,
    /// Pooled accounts (0: one new account per flow).
    pub accounts: usize,
    /// Measured flows that ended with a certificate.
    pub flows_ok: u64,
    /// Measured flows that failed.
    pub flows_failed: u64,
    /// Length of the measured phase, in seconds.
    pub elapsed_secs: f64,
    /// Successful full issuances per second of the measured phase.
    pub issuances_per_sec: f64,
    /// badNonce answers that were retried (not errors).
    pub bad_nonce_retries: u64,
    /// Failed flows by cause.
    pub errors: BTreeMap<String, u64>,
    /// Latency per step (`newNonce` … `certificate`, `flow`, `request`).
    pub steps: BTreeMap<String, StepSummary>,
    /// Resident memory of the server at the end, KiB (`--server-pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_rss_kib: Option<u64>,
    /// Peak resident memory of the server, KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_peak_rss_kib: Option<u64>,
}

impl Report {
    /// The figures of `stats` over the measured `elapsed`; `rss`: the server's (current, peak) KiB.
    pub fn new(
        options: &Options,
        stats: &Stats,
        elapsed: Duration,
        rss: Option<(u64, u64)>,
    ) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        Self {
            label: options.label.clone(),
            directory: options.directory.clone(),
            concurrency: options.concurrency,
            names_per_order: options.names,
            account_key: options.account_key.name().into(),
            cert_key: options.cert_key.name().into(),
            accounts: options.accounts,
            flows_ok: stats.flows_ok,
            flows_failed: stats.flows_failed,
            elapsed_secs: secs,
            issuances_per_sec: stats.flows_ok as f64 / secs,
            bad_nonce_retries: stats.bad_nonce_retries,
            errors: stats.errors.clone(),
            steps: Step::ALL
                .iter()
                .filter_map(|s| stats.summary(*s).map(|x| (s.name().to_owned(), x)))
                .collect(),
            server_rss_kib: rss.map(|r| r.0),
            server_peak_rss_kib: rss.map(|r| r.1),
        }
    }

    /// A human-readable table.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let label = if self.label.is_empty() {
            self.directory.clone()
        } else {
            format!("{} ({})", self.label, self.directory)
        };
        let _ = writeln!(out, "target       {label}");
        let _ = writeln!(
            out,
            "load         {} concurrent flows, {} name(s)/order, account key {}, certificate key {}, {}",
            self.concurrency,
            self.names_per_order,
            self.account_key,
            self.cert_key,
            if self.accounts == 0 {
                "new account per flow".to_owned()
            } else {
                format!("{} pooled accounts", self.accounts)
            }
        );
        let _ = writeln!(
            out,
            "flows        {} ok, {} failed in {:.2} s; {} badNonce retries",
            self.flows_ok, self.flows_failed, self.elapsed_secs, self.bad_nonce_retries
        );
        let _ = writeln!(out, "issuances/s  {:.1}", self.issuances_per_sec);
        if let (Some(rss), Some(peak)) = (self.server_rss_kib, self.server_peak_rss_kib) {
            let _ = writeln!(
                out,
                "server RSS   {:.1} MiB (peak {:.1} MiB)",
                rss as f64 / 1024.0,
                peak as f64 / 1024.0
            );
        }
        let _ = writeln!(
            out,
            "\n{:<12} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "step (ms)", "count", "mean", "p50", "p90", "p99", "max"
        );
        for step in Step::ALL {
            if let Some(s) = self.steps.get(step.name()) {
                let _ = writeln!(
                    out,
                    "{:<12} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                    step.name(),
                    s.count,
                    s.mean_ms,
                    s.p50_ms,
                    s.p90_ms,
                    s.p99_ms,
                    s.max_ms
                );
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(out, "\nerrors (failed flows by cause)");
            for (cause, n) in &self.errors {
                let _ = writeln!(out, "  {cause:<40} {n}");
            }
        }
        out
    }
}

/// Side by side: `base` (e.g. Pebble) and `other` (e.g. certwright-ca), with other/base.
pub fn compare(base: &Report, other: &Report) -> String {
    let mut out = String::new();
    let name = |r: &Report| {
        if r.label.is_empty() {
            r.directory.clone()
        } else {
            r.label.clone()
        }
    };
    let (a, b) = (name(base), name(other));
    let _ = writeln!(
        out,
        "{:<26} {:>14} {:>14} {:>9}",
        "",
        truncate(&a, 14),
        truncate(&b, 14),
        "ratio"
    );
    let mut row = |what: &str, x: Option<f64>, y: Option<f64>, digits: usize| {
        let fmt = |v: Option<f64>| match v {
            Some(v) => format!("{v:.digits$}"),
            None => "-".into(),
        };
        let ratio = match (x, y) {
            (Some(x), Some(y)) if x > 0.0 => format!("{:.2}x", y / x),
            _ => "-".into(),
        };
        let _ = writeln!(out, "{what:<26} {:>14} {:>14} {ratio:>9}", fmt(x), fmt(y));
    };
    row(
        "issuances/s",
        Some(base.issuances_per_sec),
        Some(other.issuances_per_sec),
        1,
    );
    row(
        "flows ok",
        Some(base.flows_ok as f64),
        Some(other.flows_ok as f64),
        0,
    );
    row(
        "flows failed",
        Some(base.flows_failed as f64),
        Some(other.flows_failed as f64),
        0,
    );
    for step in Step::ALL {
        let get = |r: &Report, p50: bool| {
            r.steps
                .get(step.name())
                .map(|s| if p50 { s.p50_ms } else { s.p99_ms })
        };
        row(
            &format!("{} p50 ms", step.name()),
            get(base, true),
            get(other, true),
            2,
        );
        row(
            &format!("{} p99 ms", step.name()),
            get(base, false),
            get(other, false),
            2,
        );
    }
    let mib = |v: Option<u64>| v.map(|k| k as f64 / 1024.0);
    row(
        "server RSS MiB",
        mib(base.server_rss_kib),
        mib(other.server_rss_kib),
        1,
    );
    row(
        "server peak RSS MiB",
        mib(base.server_peak_rss_kib),
        mib(other.server_peak_rss_kib),
        1,
    );
    out
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
