//! The results of a run: a text table or JSON, and a side-by-side comparison of two runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cpu::CpuPerIssuance;
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
    /// CPU (user + system) of the server process per issuance over the measured phase,
    /// ms (`--server-pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu_ms: Option<f64>,
    /// CPU of the database processes per issuance, ms (`--db-pid`, `--db-user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_cpu_ms: Option<f64>,
    /// CPU of the load generator itself per issuance, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bench_cpu_ms: Option<f64>,
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
            server_cpu_ms: None,
            db_cpu_ms: None,
            bench_cpu_ms: None,
        }
    }

    /// Records the CPU per issuance measured over the run.
    pub fn set_cpu(&mut self, cpu: CpuPerIssuance) {
        self.server_cpu_ms = cpu.server_ms;
        self.db_cpu_ms = cpu.db_ms;
        self.bench_cpu_ms = cpu.bench_ms;
    }

    /// The server's CPU per issuance plus its database's, ms (the server's alone when no
    /// database process was sampled).
    pub fn total_cpu_ms(&self) -> Option<f64> {
        self.server_cpu_ms
            .map(|s| s + self.db_cpu_ms.unwrap_or(0.0))
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
        if let Some(server) = self.server_cpu_ms {
            let mut line = format!("CPU/issuance server {server:.3} ms");
            if let (Some(db), Some(total)) = (self.db_cpu_ms, self.total_cpu_ms()) {
                let _ = write!(line, " + database {db:.3} ms = {total:.3} ms");
            }
            if let Some(bench) = self.bench_cpu_ms {
                let _ = write!(line, " (load generator {bench:.3} ms)");
            }
            let _ = writeln!(out, "{line}");
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
    compare_many(&[base.clone(), other.clone()])
}

/// Several reports side by side (the first is the baseline), with the ratio of each other
/// report to the first, and with three or more, also of the last to the second (e.g.
/// Pebble, certwright-ca on SQLite, certwright-ca on PostgreSQL: PostgreSQL / SQLite).
pub fn compare_many(reports: &[Report]) -> String {
    let mut out = String::new();
    if reports.is_empty() {
        return out;
    }
    let name = |r: &Report| {
        if r.label.is_empty() {
            r.directory.clone()
        } else {
            r.label.clone()
        }
    };
    // Ratio columns: (numerator, denominator) indexes.
    let mut ratios: Vec<(usize, usize)> = (1..reports.len()).map(|i| (i, 0)).collect();
    if reports.len() >= 3 {
        ratios.push((reports.len() - 1, 1));
    }
    // Columns are numbered (#1 …) and the ratios named by those numbers.
    let mut header = format!("{:<26}", "");
    for (i, r) in reports.iter().enumerate() {
        let _ = write!(
            header,
            " {:>14}",
            format!("#{} {}", i + 1, truncate(&name(r), 11))
        );
    }
    for (a, b) in &ratios {
        let _ = write!(header, " {:>14}", format!("#{}/#{}", a + 1, b + 1));
    }
    let _ = writeln!(out, "{}", header.trim_end());
    let mut row = |what: &str, get: &dyn Fn(&Report) -> Option<f64>, digits: usize| {
        let values: Vec<Option<f64>> = reports.iter().map(get).collect();
        if values.iter().all(Option::is_none) {
            return;
        }
        let mut line = format!("{what:<26}");
        for v in &values {
            let cell = match v {
                Some(v) => format!("{v:.digits$}"),
                None => "-".into(),
            };
            let _ = write!(line, " {cell:>14}");
        }
        for (a, b) in &ratios {
            let cell = match (values[*a], values[*b]) {
                (Some(x), Some(y)) if y > 0.0 => format!("{:.2}x", x / y),
                _ => "-".into(),
            };
            let _ = write!(line, " {cell:>14}");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    };
    row("issuances/s", &|r| Some(r.issuances_per_sec), 1);
    row("flows ok", &|r| Some(r.flows_ok as f64), 0);
    row("flows failed", &|r| Some(r.flows_failed as f64), 0);
    row("CPU/issuance server ms", &|r| r.server_cpu_ms, 3);
    row("CPU/issuance database ms", &|r| r.db_cpu_ms, 3);
    row("CPU/issuance total ms", &|r| r.total_cpu_ms(), 3);
    row("CPU/issuance bench ms", &|r| r.bench_cpu_ms, 3);
    for step in Step::ALL {
        row(
            &format!("{} p50 ms", step.name()),
            &|r| r.steps.get(step.name()).map(|s| s.p50_ms),
            2,
        );
        row(
            &format!("{} p99 ms", step.name()),
            &|r| r.steps.get(step.name()).map(|s| s.p99_ms),
            2,
        );
    }
    let mib = |v: Option<u64>| v.map(|k| k as f64 / 1024.0);
    row("server RSS MiB", &|r| mib(r.server_rss_kib), 1);
    row("server peak RSS MiB", &|r| mib(r.server_peak_rss_kib), 1);
    out
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
