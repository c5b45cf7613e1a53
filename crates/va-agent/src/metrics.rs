//! The agent's Prometheus metrics, served as text on `--metrics-listen`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds (seconds) of the job duration histogram's buckets.
pub const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// How a job ended, as the `outcome` label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// The challenge (and CAA) passed; the result was posted.
    Valid,
    /// The agent saw a problem; the result was posted.
    Invalid,
    /// The result could not be posted (the CA will retry the job elsewhere).
    Unreported,
}

impl JobOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Unreported => "unreported",
        }
    }
}

/// Job counters and the duration histogram. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    outcomes: [AtomicU64; 3],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Metrics {
    /// Counts one job.
    pub fn record(&self, outcome: JobOutcome, took: Duration) {
        let i = match outcome {
            JobOutcome::Valid => 0,
            JobOutcome::Invalid => 1,
            JobOutcome::Unreported => 2,
        };
        self.0.outcomes[i].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.0.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.0.count.fetch_add(1, Ordering::Relaxed);
        self.0
            .sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        out.push_str(
            "# HELP certwright_va_agent_jobs_total Validation jobs this agent ran, by outcome.\n",
        );
        out.push_str("# TYPE certwright_va_agent_jobs_total counter\n");
        for (o, n) in [
            JobOutcome::Valid,
            JobOutcome::Invalid,
            JobOutcome::Unreported,
        ]
        .iter()
        .zip(&self.0.outcomes)
        {
            let _ = writeln!(
                out,
                "certwright_va_agent_jobs_total{{outcome=\"{}\"}} {}",
                o.as_str(),
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP certwright_va_agent_job_duration_seconds Time from taking a job to posting its result.\n");
        out.push_str("# TYPE certwright_va_agent_job_duration_seconds histogram\n");
        for (bound, bucket) in BUCKETS.iter().zip(&self.0.buckets) {
            let _ = writeln!(
                out,
                "certwright_va_agent_job_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.0.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "certwright_va_agent_job_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "certwright_va_agent_job_duration_seconds_sum {}",
            self.0.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "certwright_va_agent_job_duration_seconds_count {count}"
        );
        out
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (mut conn, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = crate::run::stopped(&mut shutdown) => return,
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                let mut buf = vec![0u8; 4096];
                let mut len = 0;
                while len < buf.len() {
                    let n = conn.read(&mut buf[len..]).await?;
                    if n == 0 {
                        break;
                    }
                    len += n;
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf[..len]);
                let target = head.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = if head.starts_with("GET ") && (target == "/metrics" || target == "/") {
                    ("200 OK", metrics.render())
                } else {
                    ("404 Not Found", "not found\n".to_owned())
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(reply.as_bytes()).await?;
                conn.shutdown().await
            })
            .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets_render() {
        let m = Metrics::default();
        m.record(JobOutcome::Valid, Duration::from_millis(200));
        m.record(JobOutcome::Invalid, Duration::from_secs(3));
        let text = m.render();
        for line in [
            "certwright_va_agent_jobs_total{outcome=\"valid\"} 1",
            "certwright_va_agent_jobs_total{outcome=\"invalid\"} 1",
            "certwright_va_agent_jobs_total{outcome=\"unreported\"} 0",
            "certwright_va_agent_job_duration_seconds_bucket{le=\"0.25\"} 1",
            "certwright_va_agent_job_duration_seconds_bucket{le=\"5\"} 2",
            "certwright_va_agent_job_duration_seconds_bucket{le=\"+Inf\"} 2",
            "certwright_va_agent_job_duration_seconds_count 2",
            "certwright_va_agent_job_duration_seconds_sum 3.2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[tokio::test]
    async fn the_endpoint_serves_the_text() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let m = Metrics::default();
        m.record(JobOutcome::Valid, Duration::from_millis(1));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(serve(listener, m, rx));
        let text = tokio::time::timeout(Duration::from_secs(10), async {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).await.unwrap();
            out
        })
        .await
        .unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(text.contains("certwright_va_agent_jobs_total{outcome=\"valid\"} 1"));
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
    }
}
