//! Webhook delivery (`docs/console.md`, "Webhooks"): the signature, the backoff, and the
//! worker that sends the store's outbox (`store::webhooks`) to each endpoint.
//!
//! Each endpoint has one worker task per instance. It claims the head of the endpoint's
//! queue with a lease (so two instances on one PostgreSQL database never send the same
//! delivery at once, and never an event before the one ahead of it), POSTs it, and records
//! the outcome: a 2xx answer is delivered; anything else is retried with exponential
//! backoff until `max_attempts`, then the delivery is marked failed and the queue moves
//! on. Delivery is at least once: an instance that dies after the receiver accepted a
//! POST but before recording it sends it again after the lease, so receivers deduplicate
//! by `Webhook-Id`.
//!
//! Signature: `Webhook-Signature: v1=<hex HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>`
//! with `Webhook-Id: <id>` and `Webhook-Timestamp: <unix seconds>` (the time of this
//! attempt, so a receiver can refuse stale ones).

use std::time::Duration;

use aws_lc_rs::hmac;

use crate::clock::Clock;
use crate::store::Store;

/// How long an idle worker waits before looking at its queue again.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// `v1=<hex HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>`: the `Webhook-Signature`
/// header of an attempt.
pub fn signature(secret: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body.as_bytes());
    format!("v1={}", crate::encoding::hex(ctx.sign().as_ref()))
}

/// Exponential backoff: the wait after the `attempts`-th failed attempt is `initial`
/// doubled `attempts - 1` times, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait after `attempts` failed attempts (1 for the first).
    pub fn after(&self, attempts: i64) -> Duration {
        let doublings = (attempts.max(1) - 1).min(31) as u32;
        let factor = 2u32.pow(doublings);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// A configured endpoint, ready to send to.
pub struct Endpoint {
    /// The `NAME` of `[webhooks.NAME]` (the store's `endpoint` column).
    pub name: String,
    /// Where events are POSTed.
    pub url: String,
    /// The HMAC key.
    pub secret: secrecy::SecretBox<[u8]>,
    /// The HTTP client: bounded time, no redirects, the endpoint's roots.
    pub client: reqwest::Client,
    /// Seconds one POST may take (the lease is longer).
    pub timeout: Duration,
    /// Attempts before the delivery is marked failed.
    pub max_attempts: u32,
    /// The waits between attempts.
    pub backoff: Backoff,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    /// A 2xx answer, with its status line.
    Delivered(String),
    /// Anything else: a short status for the console (never the response body).
    Failed(String),
}

impl Endpoint {
    /// POSTs `body` as event `id`, signed at `timestamp`.
    async fn post(&self, id: &str, timestamp: i64, body: &str) -> Attempt {
        use secrecy::ExposeSecret;
        let sig = signature(self.secret.expose_secret(), id, timestamp, body);
        let sent = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sig)
            .body(body.to_owned())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                Attempt::Delivered(format!("HTTP {}", r.status().as_u16()))
            }
            Ok(r) => Attempt::Failed(format!("HTTP {}", r.status().as_u16())),
            Err(e) if e.is_timeout() => Attempt::Failed("timed out".into()),
            Err(e) if e.is_connect() => Attempt::Failed("connection failed".into()),
            Err(_) => Attempt::Failed("request failed".into()),
        }
    }

    /// Sends the head of this endpoint's queue if it is due and free; whether it sent
    /// one (so the caller goes on at once).
    pub async fn send_next(&self, store: &Store, clock: &Clock) -> crate::store::Result<bool> {
        let now = clock.now();
        let lease = now + self.timeout.as_secs() as i64 + 30;
        let Some(d) = store.claim_webhook_delivery(&self.name, now, lease).await? else {
            return Ok(false);
        };
        let outcome = self.post(&d.event_id, clock.now(), &d.body).await;
        let now = clock.now();
        match outcome {
            Attempt::Delivered(status) => {
                tracing::debug!(endpoint = %self.name, event = %d.event_id, %status, "webhook delivered");
                store.webhook_delivered(d.seq, now, &status).await?;
            }
            Attempt::Failed(status) => {
                let retry_at = (d.attempts < i64::from(self.max_attempts))
                    .then(|| now + self.backoff.after(d.attempts).as_secs() as i64);
                if retry_at.is_none() {
                    tracing::warn!(endpoint = %self.name, event = %d.event_id, %status, attempts = d.attempts, "webhook delivery failed; giving up (retry it from the console)");
                } else {
                    tracing::info!(endpoint = %self.name, event = %d.event_id, %status, attempts = d.attempts, "webhook delivery failed; will retry");
                }
                store
                    .webhook_attempt_failed(d.seq, now, &status, retry_at)
                    .await?;
            }
        }
        Ok(true)
    }
}

/// Starts one worker per endpoint: each sends its queue in order, for as long as the
/// process runs.
pub fn spawn(endpoints: Vec<Endpoint>, store: Store, clock: Clock) {
    for endpoint in endpoints {
        let (store, clock) = (store.clone(), clock.clone());
        tokio::spawn(async move {
            loop {
                match endpoint.send_next(&store, &clock).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(endpoint = %endpoint.name, error = %e, "webhook queue: store error")
                    }
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        });
    }
}

/// The thresholds of `certificate.at_risk`, in days before expiry.
pub const AT_RISK_THRESHOLDS: [i64; 2] = [30, 7];
/// How often the at-risk sweep runs.
pub const AT_RISK_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Most certificates reported per threshold and sweep (the rest wait for the next one).
const AT_RISK_BATCH: usize = 500;

/// Reports every unrevoked certificate that expires within a threshold of `now` and has
/// no successor (the console's renewal health), once per certificate and threshold; how
/// many it reported now.
pub async fn sweep_at_risk(store: &Store, now: i64) -> crate::store::Result<usize> {
    let mut reported = 0;
    for days in AT_RISK_THRESHOLDS {
        for item in store
            .unreported_at_risk(now, now + days * 86_400, days, AT_RISK_BATCH)
            .await?
        {
            let data = serde_json::json!({
                "serial": item.serial,
                "names": item.names,
                "account_id": item.account_id,
                "eab_label": item.eab_label,
                "profile": item.profile,
                "issuer": item.issuer,
                "not_after": crate::clock::rfc3339(item.not_after),
                "threshold_days": days,
            });
            if store
                .report_certificate_at_risk(&item.serial, days, data, now)
                .await?
            {
                reported += 1;
            }
        }
    }
    Ok(reported)
}

/// Runs `sweep_at_risk` now and every `AT_RISK_SWEEP_INTERVAL`.
pub fn spawn_at_risk_sweep(store: Store, clock: Clock) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(AT_RISK_SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match sweep_at_risk(&store, clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(certificates = n, "reported certificates at risk"),
                Err(e) => tracing::warn!(error = %e, "the at-risk sweep failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_id_timestamp_and_body() {
        // Computed independently: python3 -c 'import hmac, hashlib;
        // print(hmac.new(b"k", b"id.1700000000.{}", hashlib.sha256).hexdigest())'
        assert_eq!(
            signature(b"k", "id", 1700000000, "{}"),
            "v1=df96d86c0e8880d713bdb9b0eccbc71ad7c318c73a1e995d1b42a451b5dc04a6"
        );
        // Every part counts.
        let base = signature(b"k", "id", 1, "{}");
        assert_ne!(base, signature(b"j", "id", 1, "{}"));
        assert_ne!(base, signature(b"k", "ie", 1, "{}"));
        assert_ne!(base, signature(b"k", "id", 2, "{}"));
        assert_ne!(base, signature(b"k", "id", 1, "{ }"));
    }

    #[tokio::test]
    async fn the_at_risk_sweep_reports_each_certificate_once_per_threshold() {
        use crate::store::console::tests::issue;
        use crate::store::{webhooks::CERTIFICATE_AT_RISK, WebhookRoutes};
        let store = crate::store::console::tests::test_store()
            .await
            .with_webhooks(WebhookRoutes::new(vec![
                crate::store::webhooks::tests::route("risk", &[CERTIFICATE_AT_RISK]),
            ]));
        let account = crate::store::console::tests::account(&store, &[]).await;
        let day = 86_400;
        // 20 days left, 5 days left, 60 days left, and one with a successor.
        issue(&store, account, &["a.test"], "0a", 20 * day, None).await;
        issue(&store, account, &["b.test"], "0b", 5 * day, None).await;
        issue(&store, account, &["c.test"], "0c", 60 * day, None).await;
        issue(&store, account, &["d.test"], "0d", 6 * day, None).await;
        issue(&store, account, &["d.test"], "0e", 80 * day, None).await;
        // 0a and 0b within 30 days, 0b within 7.
        assert_eq!(sweep_at_risk(&store, 0).await.unwrap(), 3);
        assert_eq!(sweep_at_risk(&store, 60).await.unwrap(), 0);
        // Reported ones are no longer candidates (they cannot crowd out the rest).
        assert!(store
            .unreported_at_risk(60, 30 * day, 30, 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store.renewal_at_risk(60, 30 * day, 10).await.unwrap().len(),
            2
        );
        // 14 days later, 0a is within 7 days too.
        assert_eq!(sweep_at_risk(&store, 14 * day).await.unwrap(), 1);
        let mut sent = Vec::new();
        while let Some(d) = store
            .claim_webhook_delivery("risk", 14 * day, 14 * day + 1)
            .await
            .unwrap()
        {
            let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
            assert_eq!(body["type"], CERTIFICATE_AT_RISK);
            let data = &body["data"];
            sent.push((
                data["serial"].as_str().unwrap().to_owned(),
                data["threshold_days"].as_i64().unwrap(),
            ));
            store
                .webhook_delivered(d.seq, 14 * day, "HTTP 200")
                .await
                .unwrap();
        }
        assert_eq!(
            sent,
            // Soonest expiry first within a sweep.
            [
                ("0b".into(), 30),
                ("0a".into(), 30),
                ("0b".into(), 7),
                ("0a".into(), 7)
            ]
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let b = Backoff {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(600),
        };
        let waits: Vec<u64> = (1..=10).map(|n| b.after(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
        assert_eq!(b.after(i64::MAX).as_secs(), 600);
        assert_eq!(b.after(0).as_secs(), 5);
    }
}
