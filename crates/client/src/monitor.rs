//! What the agent shows to monitoring after every pass: a status file (`status.json` in
//! the state directory, written atomically) and, with `run --metrics ADDR`, Prometheus
//! gauges and counters at `http://ADDR/metrics`.
//!
//! | metric | kind | meaning |
//! | --- | --- | --- |
//! | `certwright_certificate_expiry_timestamp_seconds{name}` | gauge | `notAfter` of the current certificate |
//! | `certwright_certificate_next_action_timestamp_seconds{name}` | gauge | next renewal or retry |
//! | `certwright_certificate_last_success_timestamp_seconds{name}` | gauge | last issuance or renewal that worked |
//! | `certwright_certificate_consecutive_failures{name}` | gauge | failures in a row (issuance and deploy) |
//! | `certwright_certificate_ok{name}` | gauge | 1 when issued, not revoked, nothing failing |
//! | `certwright_events_total{event}` | counter | `issued`, `renewed`, `deployed`, `failed` since start |

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::agent::AgentEvent;
use crate::error::{Error, Result};
use crate::manager::Manager;
use crate::renewal::{parse_rfc3339, rfc3339};

/// One certificate in the status file.
#[derive(Debug, Clone, Serialize)]
pub struct CertStatus {
    /// The certificate's name.
    pub name: String,
    /// `valid`, `due`, `never issued`, `revoked`, `deploy failed`, … ([`Manager::status`]).
    pub status: String,
    /// `notAfter` (RFC 3339), if issued.
    pub not_after: Option<String>,
    /// The next renewal or retry (RFC 3339).
    pub next_action: String,
    /// When it was last issued or renewed (RFC 3339).
    pub last_success: Option<String>,
    /// Failures in a row (issuance/renewal plus deploy).
    pub consecutive_failures: u32,
    /// The error behind a failing status.
    pub error: Option<String>,
}

/// The status file and the metrics text, updated after every pass.
#[derive(Debug)]
pub struct Monitor {
    status_path: PathBuf,
    metrics: Arc<RwLock<String>>,
    counters: BTreeMap<&'static str, u64>,
}

impl Monitor {
    /// A monitor writing `status_path`.
    pub fn new(status_path: PathBuf) -> Self {
        let counters = ["issued", "renewed", "deployed", "failed"]
            .into_iter()
            .map(|k| (k, 0))
            .collect();
        Self {
            status_path,
            metrics: Arc::default(),
            counters,
        }
    }

    /// Serves `/metrics` on `addr` (until the process ends).
    pub async fn serve(&self, addr: SocketAddr) -> Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Config(format!("--metrics {addr}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::io("listener", e))?;
        let text = self.metrics.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let text = text.clone();
                async move {
                    (
                        [("content-type", "text/plain; version=0.0.4")],
                        text.read().expect("metrics").clone(),
                    )
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(bound)
    }

    /// Counts the events of a pass.
    pub fn count(&mut self, events: &[AgentEvent]) {
        for e in events {
            let key = match e {
                AgentEvent::Issued { .. } => "issued",
                AgentEvent::Renewed { .. } => "renewed",
                AgentEvent::Deployed { .. } => "deployed",
                AgentEvent::Failed { .. } => "failed",
            };
            *self.counters.entry(key).or_default() += 1;
        }
    }

    /// Writes the status file and renews the metrics text for `names`.
    pub fn update(&self, manager: &Manager, names: &[String]) -> Result<()> {
        let now = manager.now();
        let mut certs = Vec::new();
        for name in names {
            let Some(meta) = manager.store().load_meta(name)? else {
                continue;
            };
            let failures = meta.failures + meta.deploy_failure.as_ref().map_or(0, |d| d.failures);
            let error = meta
                .deploy_failure
                .as_ref()
                .map(|d| d.error.clone())
                .or_else(|| meta.last_error.clone().filter(|_| meta.failures > 0));
            certs.push(CertStatus {
                name: name.clone(),
                status: Manager::status(&meta, now).to_owned(),
                not_after: meta.is_issued().then(|| meta.not_after.clone()),
                next_action: rfc3339(Manager::next_action_at(&meta).max(now)),
                last_success: meta.last_success.clone(),
                consecutive_failures: failures,
                error,
            });
        }
        let doc = serde_json::json!({"updated": rfc3339(now), "certificates": certs});
        crate::store::write_atomic(
            &self.status_path,
            &serde_json::to_vec_pretty(&doc).expect("serializes"),
            0o644,
        )?;
        *self.metrics.write().expect("metrics") = self.render(&certs);
        Ok(())
    }

    fn render(&self, certs: &[CertStatus]) -> String {
        let ts = |t: &Option<String>| {
            t.as_deref()
                .and_then(parse_rfc3339)
                .map_or(0, |t| t.unix_timestamp())
        };
        let mut out = String::new();
        let mut gauge = |metric: &str, help: &str, value: &dyn Fn(&CertStatus) -> i64| {
            out.push_str(&format!("# HELP {metric} {help}\n# TYPE {metric} gauge\n"));
            for c in certs {
                out.push_str(&format!(
                    "{metric}{{name=\"{}\"}} {}\n",
                    escape(&c.name),
                    value(c)
                ));
            }
        };
        gauge(
            "certwright_certificate_expiry_timestamp_seconds",
            "notAfter of the current certificate (0: none).",
            &|c| ts(&c.not_after),
        );
        gauge(
            "certwright_certificate_next_action_timestamp_seconds",
            "Next renewal or retry.",
            &|c| ts(&Some(c.next_action.clone())),
        );
        gauge(
            "certwright_certificate_last_success_timestamp_seconds",
            "Last successful issuance or renewal (0: none).",
            &|c| ts(&c.last_success),
        );
        gauge(
            "certwright_certificate_consecutive_failures",
            "Failures in a row (issuance, renewal, deploy).",
            &|c| i64::from(c.consecutive_failures),
        );
        gauge(
            "certwright_certificate_ok",
            "1 when issued, not revoked or expired, and nothing failing.",
            &|c| i64::from(c.status == "valid" || c.status == "due"),
        );
        out.push_str(
            "# HELP certwright_events_total Agent events since start.\n\
             # TYPE certwright_events_total counter\n",
        );
        for (event, n) in &self.counters {
            out.push_str(&format!(
                "certwright_events_total{{event=\"{event}\"}} {n}\n"
            ));
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_has_gauges_per_certificate_and_counters() {
        let mut m = Monitor::new(PathBuf::from("/nonexistent"));
        m.count(&[AgentEvent::Issued {
            name: "a".into(),
            ca: "x".into(),
        }]);
        let text = m.render(&[CertStatus {
            name: "we\"ird".into(),
            status: "valid".into(),
            not_after: Some("2030-01-01T00:00:00Z".into()),
            next_action: "2029-11-01T00:00:00Z".into(),
            last_success: None,
            consecutive_failures: 2,
            error: None,
        }]);
        assert!(text.contains(
            "certwright_certificate_expiry_timestamp_seconds{name=\"we\\\"ird\"} 1893456000\n"
        ));
        assert!(
            text.contains("certwright_certificate_consecutive_failures{name=\"we\\\"ird\"} 2\n")
        );
        assert!(text.contains("certwright_events_total{event=\"issued\"} 1\n"));
        assert!(text.contains("certwright_events_total{event=\"failed\"} 0\n"));
    }
}
