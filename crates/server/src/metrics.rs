//! Metrics: every metric's name, the Prometheus recorder, and the functions that record
//! them — including the per-request tracing span (with its `X-Request-Id`) that records
//! the request metrics. The admin listener that serves them is `admin`.
//!
//! Every metric name is a constant here and listed in [`ALL_METRICS`]; the operators'
//! reference is `docs/observability.md` (a test checks that it lists them all). The
//! recorder is process-global: [`install`] sets it up once and later calls reuse it.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

use crate::store::Store;

/// ACME requests, by `endpoint` (route template), `method` and `status`.
pub const HTTP_REQUESTS: &str = "certwright_http_requests_total";
/// ACME request latency in seconds, by `endpoint` and `method`.
pub const HTTP_DURATION: &str = "certwright_http_request_duration_seconds";
/// Finished validations, by `method` (http-01, …) and `outcome` (valid, invalid).
pub const VALIDATIONS: &str = "certwright_validations_total";
/// Validation latency in seconds, by `method`.
pub const VALIDATION_DURATION: &str = "certwright_validation_duration_seconds";
/// Issued certificates, by `profile`.
pub const ISSUANCES: &str = "certwright_issuances_total";
/// Issuances that failed (the order became invalid).
pub const ISSUANCE_FAILURES: &str = "certwright_issuance_failures_total";
/// Revoked certificates, by `reason` (RFC 5280 name).
pub const REVOCATIONS: &str = "certwright_revocations_total";
/// Requests refused by a rate limit, by `limit`.
pub const RATE_LIMIT_REFUSALS: &str = "certwright_rate_limit_refusals_total";
/// Identifiers refused by the naming policy, by `rule`.
pub const POLICY_REFUSALS: &str = "certwright_policy_refusals_total";
/// Policy reloads (SIGHUP), by `outcome` (ok, failed).
pub const POLICY_RELOADS: &str = "certwright_policy_reloads_total";
/// Nonces issued and not yet redeemed or expired, in this instance's memory.
pub const NONCE_POOL_SIZE: &str = "certwright_nonce_pool_size";
/// Latency of a database round trip (`SELECT 1`), in seconds.
pub const DATABASE_PING: &str = "certwright_database_ping_duration_seconds";
/// 1 when the last database round trip succeeded, else 0.
pub const DATABASE_UP: &str = "certwright_database_up";

/// Attempts at backend CAs (`docs/upstream.md`), by `backend` and `outcome` (delivered,
/// transient, refused, mismatch, expired).
pub const BACKEND_ATTEMPTS: &str = "certwright_backend_attempts_total";
/// How long one backend attempt took, in seconds, by `backend`.
pub const BACKEND_DURATION: &str = "certwright_backend_attempt_duration_seconds";

/// Jobs run by remote validation agents, by `segment`, `agent` and `outcome`
/// (answered, timeout).
pub const AGENT_JOBS: &str = "certwright_agent_jobs_total";
/// How long an agent took to answer a job (from dispatch to answer), by `segment`.
pub const AGENT_JOB_DURATION: &str = "certwright_agent_job_duration_seconds";
/// Agents waiting in a long poll, by `segment`.
pub const AGENTS_POLLING: &str = "certwright_agents_polling";
/// Jobs no agent answered, by `segment` and `reason` (no_agent, unanswered).
pub const AGENT_DISPATCH_FAILURES: &str = "certwright_agent_dispatch_failures_total";

/// 1 when the last verification of the audit chain found it intact, 0 when broken.
pub const AUDIT_CHAIN_OK: &str = "certwright_audit_chain_ok";
/// When the audit chain was last verified (Unix seconds).
pub const AUDIT_VERIFIED_AT: &str = "certwright_audit_last_verified_timestamp_seconds";

/// Every metric this crate records.
pub const ALL_METRICS: &[&str] = &[
    HTTP_REQUESTS,
    HTTP_DURATION,
    VALIDATIONS,
    VALIDATION_DURATION,
    ISSUANCES,
    ISSUANCE_FAILURES,
    REVOCATIONS,
    RATE_LIMIT_REFUSALS,
    POLICY_REFUSALS,
    POLICY_RELOADS,
    NONCE_POOL_SIZE,
    DATABASE_PING,
    DATABASE_UP,
    BACKEND_ATTEMPTS,
    BACKEND_DURATION,
    AGENT_JOBS,
    AGENT_JOB_DURATION,
    AGENTS_POLLING,
    AGENT_DISPATCH_FAILURES,
    AUDIT_CHAIN_OK,
    AUDIT_VERIFIED_AT,
];

/// Histogram buckets (seconds) for every `*_seconds` metric.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How long a readiness or background database ping may take.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Seconds between background database pings (for the latency histogram).
pub const PING_INTERVAL: Duration = Duration::from_secs(15);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics stays empty");
            }
            describe();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .expect("a thread starts");
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        HTTP_REQUESTS,
        "ACME requests by endpoint, method and status"
    );
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "ACME request latency");
    describe_counter!(VALIDATIONS, "validations by method and outcome");
    describe_histogram!(VALIDATION_DURATION, Unit::Seconds, "validation latency");
    describe_counter!(ISSUANCES, "certificates issued by profile");
    describe_counter!(ISSUANCE_FAILURES, "issuances that failed");
    describe_counter!(REVOCATIONS, "certificates revoked by reason");
    describe_counter!(RATE_LIMIT_REFUSALS, "requests refused by a rate limit");
    describe_counter!(
        POLICY_REFUSALS,
        "identifiers refused by the policy, by rule"
    );
    describe_counter!(POLICY_RELOADS, "policy reloads by outcome");
    describe_gauge!(
        NONCE_POOL_SIZE,
        "outstanding nonces in this instance's memory"
    );
    describe_histogram!(DATABASE_PING, Unit::Seconds, "database round-trip latency");
    describe_gauge!(DATABASE_UP, "1 if the last database round trip succeeded");
    describe_counter!(
        AGENT_JOBS,
        "remote validation jobs by segment, agent and outcome"
    );
    describe_histogram!(
        AGENT_JOB_DURATION,
        Unit::Seconds,
        "time from dispatch to an agent's answer"
    );
    describe_gauge!(AGENTS_POLLING, "agents waiting for a job, by segment");
    describe_gauge!(
        AUDIT_CHAIN_OK,
        "1 if the last verification found the audit chain intact, 0 if broken"
    );
    describe_gauge!(
        AUDIT_VERIFIED_AT,
        "when the audit chain was last verified (Unix seconds)"
    );
    describe_counter!(
        AGENT_DISPATCH_FAILURES,
        "remote validation jobs no agent answered, by segment and reason"
    );
}

// ------------------------------------------------------------ recording points

/// A validation finished.
pub fn validation(method: &str, valid: bool, elapsed: Duration) {
    let outcome = if valid { "valid" } else { "invalid" };
    metrics::counter!(VALIDATIONS, "method" => method.to_owned(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(VALIDATION_DURATION, "method" => method.to_owned())
        .record(elapsed.as_secs_f64());
}

/// A certificate was issued.
pub fn issuance(profile: &str) {
    metrics::counter!(ISSUANCES, "profile" => profile.to_owned()).increment(1);
}

/// An issuance failed.
pub fn issuance_failure() {
    metrics::counter!(ISSUANCE_FAILURES).increment(1);
}

/// An attempt at backend `backend` ended with `outcome` after `elapsed`.
pub fn backend_attempt(backend: &str, outcome: &'static str, elapsed: Duration) {
    metrics::counter!(BACKEND_ATTEMPTS, "backend" => backend.to_owned(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(BACKEND_DURATION, "backend" => backend.to_owned())
        .record(elapsed.as_secs_f64());
}

/// Agent `agent` of `segment` ended a job with `outcome` (answered, timeout); `elapsed`
/// is recorded for answered jobs.
pub fn agent_job(segment: &str, agent: &str, outcome: &'static str, elapsed: Option<Duration>) {
    metrics::counter!(AGENT_JOBS, "segment" => segment.to_owned(), "agent" => agent.to_owned(), "outcome" => outcome)
        .increment(1);
    if let Some(elapsed) = elapsed {
        metrics::histogram!(AGENT_JOB_DURATION, "segment" => segment.to_owned())
            .record(elapsed.as_secs_f64());
    }
}

/// `polling` agents of `segment` wait for a job.
pub fn agents_polling(segment: &str, polling: usize) {
    metrics::gauge!(AGENTS_POLLING, "segment" => segment.to_owned()).set(polling as f64);
}

/// A job of `segment` failed for want of an agent (`reason`: no_agent, unanswered).
pub fn agent_dispatch_failure(segment: &str, reason: &'static str) {
    metrics::counter!(AGENT_DISPATCH_FAILURES, "segment" => segment.to_owned(), "reason" => reason)
        .increment(1);
}

/// A certificate was revoked.
pub fn revocation(reason: &str) {
    metrics::counter!(REVOCATIONS, "reason" => reason.to_owned()).increment(1);
}

/// A request was refused by the rate limit `limit`.
pub fn rate_limit_refusal(limit: &'static str) {
    metrics::counter!(RATE_LIMIT_REFUSALS, "limit" => limit).increment(1);
}

/// An identifier was refused by the policy rule `rule`.
pub fn policy_refusal(rule: &'static str) {
    metrics::counter!(POLICY_REFUSALS, "rule" => rule).increment(1);
}

/// The policy was reloaded (or the reload failed).
pub fn policy_reload(ok: bool) {
    let outcome = if ok { "ok" } else { "failed" };
    metrics::counter!(POLICY_RELOADS, "outcome" => outcome).increment(1);
}

/// The nonces outstanding in this instance's memory (set when `/metrics` is scraped).
pub fn nonce_pool_size(outstanding: usize) {
    metrics::gauge!(NONCE_POOL_SIZE).set(outstanding as f64);
}

/// One database round trip, timed; records the latency and `certwright_database_up`.
pub async fn ping_database(store: &Store) -> Result<(), String> {
    let start = Instant::now();
    let result = match tokio::time::timeout(PING_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {PING_TIMEOUT:?}")),
    };
    metrics::histogram!(DATABASE_PING).record(start.elapsed().as_secs_f64());
    metrics::gauge!(DATABASE_UP).set(if result.is_ok() { 1.0 } else { 0.0 });
    result
}

/// Pings the database every [`PING_INTERVAL`] so its latency is known between scrapes.
pub fn spawn_database_pinger(store: Store) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PING_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = ping_database(&store).await {
                tracing::warn!(error = %e, "database ping failed");
            }
        }
    });
}

// ------------------------------------------------------------ per-request span

/// A request id: the client's `X-Request-Id` when it is short and plain, else a new one.
fn request_id(request: &Request) -> String {
    if let Some(given) = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        if (1..=64).contains(&given.len())
            && given
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return given.to_owned();
        }
    }
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG works");
    crate::ca::hex(&bytes)
}

/// A bounded label for the method (clients may send any token).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Middleware for the ACME router: a `request` span (id, method, endpoint, and the account
/// and order once known), `X-Request-Id` on the response, and the request metrics. The
/// endpoint label is the matched route template (`/acme/order/{id}`), never the raw path.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(request.method());
    let id = request_id(&request);
    let span = tracing::info_span!(
        "request",
        id = %id,
        method,
        endpoint = %endpoint,
        account = tracing::field::Empty,
        order = tracing::field::Empty,
    );
    if endpoint.starts_with("/acme/order/{id}") {
        if let Some(order) = request.uri().path().split('/').nth(3) {
            span.record("order", order);
        }
    }
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    let elapsed = start.elapsed();
    span.in_scope(|| {
        tracing::debug!(
            status = status.as_u16(),
            elapsed_ms = elapsed.as_millis() as u64,
            "request finished"
        )
    });
    metrics::counter!(
        HTTP_REQUESTS,
        "endpoint" => endpoint.clone(),
        "method" => method,
        "status" => status.as_str().to_owned()
    )
    .increment(1);
    metrics::histogram!(HTTP_DURATION, "endpoint" => endpoint, "method" => method)
        .record(elapsed.as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// Records the outcome of a verification of the audit chain, finished at `at`.
pub fn audit_verification(intact: bool, at: i64) {
    metrics::gauge!(AUDIT_CHAIN_OK).set(if intact { 1.0 } else { 0.0 });
    metrics::gauge!(AUDIT_VERIFIED_AT).set(at as f64);
}

/// Records the authenticated account on the current request span.
pub fn record_account(id: impl std::fmt::Display) {
    tracing::Span::current().record("account", tracing::field::display(id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_list_every_metric() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/observability.md");
        let docs = std::fs::read_to_string(path).unwrap();
        for name in ALL_METRICS {
            assert!(
                docs.contains(&format!("`{name}`")),
                "{name} is not in docs/observability.md"
            );
        }
    }

    #[test]
    fn request_ids_are_kept_when_plain_and_replaced_otherwise() {
        let req = |v: &str| {
            Request::builder()
                .header("x-request-id", v)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert_eq!(request_id(&req("abc-123_x.y")), "abc-123_x.y");
        for bad in ["a b", "<script>", &"x".repeat(65)] {
            let id = request_id(&req(bad));
            assert_eq!(id.len(), 16, "{bad:?} -> {id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
}
