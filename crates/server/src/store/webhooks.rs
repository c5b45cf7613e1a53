//! The webhook outbox (migration 0012): events written in the transaction of the change
//! they describe, one delivery per subscribed endpoint, and what the delivery worker
//! (`crate::webhooks`) and the console need to send, retry and show them.
//!
//! An event is appended after the audit entry of its transaction. The audit append
//! serializes writers (the `audit_head` row), so on PostgreSQL as on SQLite the
//! deliveries' `seq` follows commit order: the worker never sees event N+1 committed
//! before event N.
//!
//! Nothing is written when no endpoint is subscribed to an event's type: without
//! `[webhooks.*]` the issuance path runs the statements it ran before.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use super::audit::{self, Actor, AuditEvent};
use super::engine::columns::Columns;
use super::engine::tx::{params, Tx};
use super::{Result, Store};

/// `certificate.issued`: a certificate was stored (the issuance's commit).
pub const CERTIFICATE_ISSUED: &str = "certificate.issued";
/// `certificate.revoked`: a certificate was revoked (the revocation's commit).
pub const CERTIFICATE_REVOKED: &str = "certificate.revoked";
/// `validation.failed`: a challenge failed and its authorization became invalid.
pub const VALIDATION_FAILED: &str = "validation.failed";
/// `certificate.at_risk`: a certificate expires within a threshold and has no successor.
pub const CERTIFICATE_AT_RISK: &str = "certificate.at_risk";
/// `audit.verification_failed`: the periodic verification found the audit chain broken
/// (once per break).
pub const AUDIT_VERIFICATION_FAILED: &str = "audit.verification_failed";
/// Every event type this CA sends.
pub const EVENT_TYPES: &[&str] = &[
    CERTIFICATE_ISSUED,
    CERTIFICATE_REVOKED,
    VALIDATION_FAILED,
    CERTIFICATE_AT_RISK,
    AUDIT_VERIFICATION_FAILED,
];

/// One configured endpoint, as the store fans events out to it and the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRoute {
    /// The `NAME` of `[webhooks.NAME]`.
    pub name: String,
    /// Where its events go (shown in the console).
    pub url: String,
    /// The event types it wants; empty means every type.
    pub events: Vec<String>,
}

/// Which endpoints want which events: what the store needs to fan an event out. Built
/// once from `[webhooks.*]` (`app`), attached with [`Store::with_webhooks`].
#[derive(Debug, Clone, Default)]
pub struct WebhookRoutes {
    endpoints: Vec<WebhookRoute>,
}

impl WebhookRoutes {
    /// Routes to `endpoints`.
    pub fn new(endpoints: Vec<WebhookRoute>) -> Self {
        Self { endpoints }
    }

    /// Every endpoint, by name.
    pub fn endpoints(&self) -> &[WebhookRoute] {
        &self.endpoints
    }

    /// The endpoints subscribed to `kind`.
    fn subscribers<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.endpoints
            .iter()
            .filter(move |r| r.events.is_empty() || r.events.iter().any(|e| e == kind))
            .map(|r| r.name.as_str())
    }

    /// Whether any endpoint wants `kind`.
    pub fn wants(&self, kind: &str) -> bool {
        self.subscribers(kind).next().is_some()
    }
}

/// A random event id: 32 lower-case hex digits.
fn new_event_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG works");
    crate::encoding::hex(&bytes)
}

/// The JSON body of an event, exactly as it is POSTed (and signed).
pub fn event_body(id: &str, kind: &str, created_at: i64, data: &Value) -> String {
    json!({
        "id": id,
        "type": kind,
        "created_at": crate::clock::rfc3339(created_at),
        "data": data,
    })
    .to_string()
}

/// Appends an event of `kind` with `data` and a delivery for every endpoint subscribed to
/// it, in `tx`. Call it after the transaction's audit entry (see the module doc). No
/// statement runs when no endpoint wants `kind`.
pub(super) async fn enqueue(
    tx: &mut dyn Tx,
    routes: &WebhookRoutes,
    kind: &'static str,
    data: Value,
    now: i64,
) -> Result<()> {
    if !routes.wants(kind) {
        return Ok(());
    }
    let id = new_event_id();
    let body = event_body(&id, kind, now, &data);
    tx.execute(
        "INSERT INTO webhook_events (id, type, body, created_at) VALUES ($1, $2, $3, $4)",
        &params![&id, kind, body, now],
    )
    .await?;
    for endpoint in routes.subscribers(kind) {
        tx.execute(
            "INSERT INTO webhook_deliveries (event_id, endpoint, state, next_attempt_at)
             VALUES ($1, $2, 'queued', $3)",
            &params![&id, endpoint, now],
        )
        .await?;
    }
    Ok(())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// `enqueue` at the current time (the store's write paths have no clock of their own;
/// `created_at` is informative, the order comes from `seq`).
pub(super) async fn enqueue_now(
    tx: &mut dyn Tx,
    routes: &WebhookRoutes,
    kind: &'static str,
    data: Value,
) -> Result<()> {
    if !routes.wants(kind) {
        return Ok(());
    }
    enqueue(tx, routes, kind, data, unix_now()).await
}

/// A delivery the worker claimed: it holds the lease and POSTs `body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    /// The delivery (its place in the endpoint's queue).
    pub seq: i64,
    /// The event's id (`Webhook-Id`).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The body to POST.
    pub body: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

/// A delivery as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryView {
    /// The delivery's number.
    pub seq: i64,
    /// The event's id.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// `queued`, `delivered` or `failed`.
    pub state: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the event was written (Unix seconds).
    pub created_at: i64,
    /// When the next attempt is due (queued deliveries).
    pub next_attempt_at: i64,
    /// The last attempt's time.
    pub last_attempt_at: Option<i64>,
    /// The last attempt's outcome: `HTTP 503`, `timed out`, … (never a response body).
    pub last_status: Option<String>,
    /// When it was delivered.
    pub delivered_at: Option<i64>,
    /// When it was given up.
    pub failed_at: Option<i64>,
}

/// One endpoint's deliveries for the console.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EndpointDeliveries {
    /// Queued deliveries, oldest first (the first is the head of the queue).
    pub queued: Vec<DeliveryView>,
    /// Failed deliveries (given up), latest first.
    pub failed: Vec<DeliveryView>,
    /// The last deliveries made, latest first.
    pub delivered: Vec<DeliveryView>,
}

fn view_from_row(row: &super::engine::tx::Row) -> Result<DeliveryView> {
    Ok(DeliveryView {
        seq: row.int("seq")?,
        event_id: row.text("event_id")?,
        event_type: row.text("type")?,
        state: row.text("state")?,
        attempts: row.int("attempts")?,
        created_at: row.int("created_at")?,
        next_attempt_at: row.int("next_attempt_at")?,
        last_attempt_at: row.opt_int("last_attempt_at")?,
        last_status: row.opt_text("last_status")?,
        delivered_at: row.opt_int("delivered_at")?,
        failed_at: row.opt_int("failed_at")?,
    })
}

impl Store {
    /// This store with the endpoints events fan out to.
    pub fn with_webhooks(self, routes: WebhookRoutes) -> Self {
        Self {
            webhooks: Arc::new(routes),
            ..self
        }
    }

    /// The endpoints events fan out to.
    pub fn webhook_routes(&self) -> &WebhookRoutes {
        &self.webhooks
    }

    /// Claims the head of `endpoint`'s queue if it is due and nobody holds it, until
    /// `lease_until`; counts the attempt. `None` when the queue is empty, its head is not
    /// due yet, or another instance is sending it: an endpoint's deliveries are sent one
    /// at a time, in order. An idle queue costs one read, no write.
    pub async fn claim_webhook_delivery(
        &self,
        endpoint: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<ClaimedDelivery>> {
        let head = self
            .read_optional(
                "SELECT d.seq, d.next_attempt_at, d.lease_until, e.id, e.type, e.body
                 FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
                 WHERE d.endpoint = $1 AND d.state = 'queued' ORDER BY d.seq LIMIT 1",
                &params![endpoint],
            )
            .await?;
        let Some(head) = head else {
            return Ok(None);
        };
        let leased = head.opt_int("lease_until")?.is_some_and(|t| t > now);
        if head.int("next_attempt_at")? > now || leased {
            return Ok(None);
        }
        let seq = head.int("seq")?;
        // Another instance may have claimed (or sent) it since the read: the guard decides.
        let claimed = self
            .write(move |tx| {
                Box::pin(async move {
                    tx.fetch_optional(
                        "UPDATE webhook_deliveries SET lease_until = $1, attempts = attempts + 1
                         WHERE seq = $2 AND state = 'queued' AND next_attempt_at <= $3
                         AND (lease_until IS NULL OR lease_until <= $3) RETURNING attempts",
                        &params![lease_until, seq, now],
                    )
                    .await
                })
            })
            .await?;
        let Some(claimed) = claimed else {
            return Ok(None);
        };
        Ok(Some(ClaimedDelivery {
            seq,
            event_id: head.text("id")?,
            event_type: head.text("type")?,
            body: head.text("body")?,
            attempts: claimed.int("attempts")?,
        }))
    }

    /// Records a successful attempt (`status` such as `HTTP 204`).
    pub async fn webhook_delivered(&self, seq: i64, now: i64, status: &str) -> Result<bool> {
        let done = self
            .write_one(
                "UPDATE webhook_deliveries SET state = 'delivered', delivered_at = $1,
                 last_attempt_at = $1, last_status = $2, lease_until = NULL
                 WHERE seq = $3 AND state = 'queued'",
                params![now, status, seq].into(),
            )
            .await?;
        Ok(done == 1)
    }

    /// Records a failed attempt: due again at `retry_at`, or given up (`failed`) when
    /// `retry_at` is `None`.
    pub async fn webhook_attempt_failed(
        &self,
        seq: i64,
        now: i64,
        status: &str,
        retry_at: Option<i64>,
    ) -> Result<bool> {
        let done = match retry_at {
            Some(at) => {
                self.write_one(
                    "UPDATE webhook_deliveries SET next_attempt_at = $1, last_attempt_at = $2,
                     last_status = $3, lease_until = NULL WHERE seq = $4 AND state = 'queued'",
                    params![at, now, status, seq].into(),
                )
                .await?
            }
            None => {
                self.write_one(
                    "UPDATE webhook_deliveries SET state = 'failed', failed_at = $1,
                     last_attempt_at = $1, last_status = $2, lease_until = NULL
                     WHERE seq = $3 AND state = 'queued'",
                    params![now, status, seq].into(),
                )
                .await?
            }
        };
        Ok(done == 1)
    }

    /// Queues a failed delivery again, due now, with its attempts reset; audited as the
    /// store's operator. False if it is not failed (unknown, queued or delivered).
    pub async fn retry_webhook_delivery(&self, seq: i64, now: i64) -> Result<bool> {
        self.change_one_audited(
            "UPDATE webhook_deliveries SET state = 'queued', failed_at = NULL, attempts = 0,
             next_attempt_at = $1, lease_until = NULL WHERE seq = $2 AND state = 'failed'",
            params![now, seq].into(),
            AuditEvent::new(&self.operator, "webhook.retry").details(json!({ "delivery": seq })),
        )
        .await
    }

    /// `endpoint`'s queued deliveries (oldest first), its failed ones and its last
    /// delivered ones (latest first), at most `limit` of each.
    pub async fn webhook_deliveries(
        &self,
        endpoint: &str,
        limit: i64,
    ) -> Result<EndpointDeliveries> {
        let mut out = EndpointDeliveries::default();
        let queued = self
            .read_all(
                "SELECT d.*, e.type, e.created_at FROM webhook_deliveries d
                 JOIN webhook_events e ON e.id = d.event_id
                 WHERE d.endpoint = $1 AND d.state = 'queued' ORDER BY d.seq LIMIT $2",
                &params![endpoint, limit],
            )
            .await?;
        out.queued = queued.iter().map(view_from_row).collect::<Result<_>>()?;
        for (state, list) in [
            ("failed", &mut out.failed),
            ("delivered", &mut out.delivered),
        ] {
            let rows = self
                .read_all(
                    "SELECT d.*, e.type, e.created_at FROM webhook_deliveries d
                     JOIN webhook_events e ON e.id = d.event_id
                     WHERE d.endpoint = $1 AND d.state = $2 ORDER BY d.seq DESC LIMIT $3",
                    &params![endpoint, state, limit],
                )
                .await?;
            *list = rows.iter().map(view_from_row).collect::<Result<_>>()?;
        }
        Ok(out)
    }

    /// Records that `serial` was reported at risk for `threshold_days` and, the first
    /// time only, appends a `certificate.at_risk` event (with an audit entry, which
    /// orders it among the other events). Whether this was the first time.
    pub async fn report_certificate_at_risk(
        &self,
        serial: &str,
        threshold_days: i64,
        data: Value,
        now: i64,
    ) -> Result<bool> {
        let routes = self.webhooks.clone();
        let serial = serial.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let fresh = tx
                    .execute(
                        "INSERT INTO webhook_at_risk (serial, threshold_days, at) VALUES ($1, $2, $3)
                         ON CONFLICT DO NOTHING",
                        &params![&serial, threshold_days, now],
                    )
                    .await?;
                if fresh != 1 {
                    return Ok(false);
                }
                let event = AuditEvent::new(&Actor::System, "certificate.at_risk")
                    .serial(&serial)
                    .details(json!({ "threshold_days": threshold_days }));
                audit::append(tx, &event).await?;
                enqueue(tx, &routes, CERTIFICATE_AT_RISK, data, now).await?;
                Ok(true)
            })
        })
        .await
    }

    /// The certificates at risk (as `renewal_at_risk` finds them) that expire within
    /// (now, until] and were not reported yet for `threshold_days`, soonest first, at most
    /// `limit`: reported ones do not crowd out the rest.
    pub async fn unreported_at_risk(
        &self,
        now: i64,
        until: i64,
        threshold_days: i64,
        limit: usize,
    ) -> Result<Vec<super::console::InventoryItem>> {
        let rows = self
            .read_all(
                "SELECT c.*, a.eab_label FROM certificates c JOIN accounts a ON a.id = c.account_id
                 WHERE c.not_after > $1 AND c.not_after <= $2 AND c.revoked_at IS NULL
                 AND c.replaced_by_order IS NULL
                 AND NOT EXISTS (SELECT 1 FROM webhook_at_risk r
                                 WHERE r.serial = c.serial AND r.threshold_days = $3)
                 ORDER BY c.not_after, c.serial LIMIT $4",
                &params![
                    now,
                    until,
                    threshold_days,
                    super::console::MAX_EXAMINED as i64
                ],
            )
            .await?;
        let mut out = Vec::new();
        for row in &rows {
            let item = super::console::item_from_row(row, now)?;
            let later = self
                .later_certificates_for_names(item.account_id, &item.names, item.not_after, now, 1)
                .await?;
            if later.is_empty() {
                out.push(item);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Every delivery of `endpoint` as (event id, state), in queue order (tests).
    #[cfg(any(test, feature = "test-support"))]
    pub async fn webhook_queue_states(&self, endpoint: &str) -> Result<Vec<(String, String)>> {
        let rows = self
            .read_all(
                "SELECT d.event_id, d.state FROM webhook_deliveries d
                 WHERE d.endpoint = $1 AND d.state IN ('queued', 'delivered', 'failed') ORDER BY d.seq",
                &params![endpoint],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.text("event_id")?, r.text("state")?)))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A route for tests.
    pub(crate) fn route(name: &str, events: &[&str]) -> WebhookRoute {
        WebhookRoute {
            name: name.into(),
            url: format!("http://127.0.0.1:9/{name}"),
            events: events.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn routes() -> WebhookRoutes {
        WebhookRoutes::new(vec![
            route("all", &[]),
            route("revocations", &[CERTIFICATE_REVOKED]),
        ])
    }

    #[test]
    fn routes_fan_out_by_subscription() {
        let r = routes();
        assert_eq!(
            r.subscribers(CERTIFICATE_ISSUED).collect::<Vec<_>>(),
            ["all"]
        );
        assert_eq!(
            r.subscribers(CERTIFICATE_REVOKED).collect::<Vec<_>>(),
            ["all", "revocations"]
        );
        assert!(!WebhookRoutes::default().wants(CERTIFICATE_ISSUED));
    }

    #[test]
    fn the_body_has_id_type_time_and_data() {
        let body = event_body("ab", CERTIFICATE_REVOKED, 0, &json!({"serial": "01"}));
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["id"], "ab");
        assert_eq!(v["type"], CERTIFICATE_REVOKED);
        assert_eq!(v["created_at"], "1970-01-01T00:00:00Z");
        assert_eq!(v["data"]["serial"], "01");
        assert_eq!(new_event_id().len(), 32);
        assert_ne!(new_event_id(), new_event_id());
    }

    /// SQLite in memory, or PostgreSQL with `CERTWRIGHT_TEST_BACKEND=postgres`.
    async fn store() -> Store {
        crate::store::console::tests::test_store()
            .await
            .with_webhooks(routes())
    }

    async fn event(s: &Store, kind: &'static str, n: i64) {
        let routes = s.webhooks.clone();
        s.write(move |tx| {
            Box::pin(async move { enqueue(tx, &routes, kind, json!({ "n": n }), n).await })
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn an_endpoint_gets_its_events_one_at_a_time_in_order() {
        let s = store().await;
        event(&s, CERTIFICATE_ISSUED, 1).await;
        event(&s, CERTIFICATE_REVOKED, 2).await;
        // `revocations` only has the revocation.
        let r = s
            .claim_webhook_delivery("revocations", 10, 20)
            .await
            .unwrap();
        assert_eq!(r.unwrap().event_type, CERTIFICATE_REVOKED);

        let first = s
            .claim_webhook_delivery("all", 10, 20)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (first.event_type.as_str(), first.attempts),
            (CERTIFICATE_ISSUED, 1)
        );
        // Leased: nobody else gets it, and nothing after it is sent meanwhile.
        assert_eq!(s.claim_webhook_delivery("all", 11, 21).await.unwrap(), None);
        // It fails: due again at 30; still the head.
        assert!(s
            .webhook_attempt_failed(first.seq, 12, "HTTP 503", Some(30))
            .await
            .unwrap());
        assert_eq!(s.claim_webhook_delivery("all", 29, 40).await.unwrap(), None);
        let again = s
            .claim_webhook_delivery("all", 30, 40)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.seq, again.attempts), (first.seq, 2));
        assert!(s
            .webhook_delivered(again.seq, 31, "HTTP 204")
            .await
            .unwrap());
        let second = s
            .claim_webhook_delivery("all", 31, 40)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second.event_type, CERTIFICATE_REVOKED);
        // Given up: the queue moves on; an operator queues it again.
        assert!(s
            .webhook_attempt_failed(second.seq, 32, "timed out", None)
            .await
            .unwrap());
        assert_eq!(s.claim_webhook_delivery("all", 33, 40).await.unwrap(), None);
        let listed = s.webhook_deliveries("all", 10).await.unwrap();
        assert_eq!(listed.failed.len(), 1);
        assert_eq!(listed.failed[0].last_status.as_deref(), Some("timed out"));
        assert_eq!(listed.delivered.len(), 1);
        assert!(listed.queued.is_empty());
        assert!(s.retry_webhook_delivery(second.seq, 40).await.unwrap());
        assert!(!s.retry_webhook_delivery(second.seq, 40).await.unwrap());
        let retried = s
            .claim_webhook_delivery("all", 40, 50)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((retried.seq, retried.attempts), (second.seq, 1));
    }

    #[tokio::test]
    async fn of_two_racing_claims_one_wins() {
        let s = store().await;
        event(&s, CERTIFICATE_ISSUED, 1).await;
        // Two "instances" (clones share nothing but the database) race for the head.
        let (a, b) = (s.clone(), s.clone());
        let (x, y) = tokio::join!(
            a.claim_webhook_delivery("all", 10, 100),
            b.claim_webhook_delivery("all", 10, 100)
        );
        let won: Vec<_> = [x.unwrap(), y.unwrap()].into_iter().flatten().collect();
        assert_eq!(won.len(), 1, "{won:?}");
        assert_eq!(won[0].attempts, 1);
    }

    #[tokio::test]
    async fn nothing_is_written_without_subscribers() {
        let s = crate::store::console::tests::test_store().await;
        let before = s.statement_counts();
        event(&s, CERTIFICATE_ISSUED, 1).await;
        assert_eq!((s.statement_counts() - before).statements, 0);
        assert_eq!(s.claim_webhook_delivery("all", 10, 20).await.unwrap(), None);
    }

    #[tokio::test]
    async fn events_carry_no_secret_and_not_what_the_validator_read() {
        use crate::store::console::tests::{account, issue, started_challenge};
        use certwright_proto::{Problem, ProblemType};
        let s = store().await;
        let a = account(&s, &[]).await;
        let challenge = started_challenge(&s, a, "v.example", "token-SECRET").await;
        let problem = Problem::new(
            ProblemType::Unauthorized,
            "The key authorization did not match",
        );
        assert!(s
            .finish_validation(
                challenge,
                Some(&problem),
                &json!({"url": "http://v.example/record-SECRET"}),
                &json!({"body": "diagnostic-SECRET"}),
                5,
            )
            .await
            .unwrap());
        issue(&s, a, &["i.example"], "0f", 1000, None).await;
        assert!(s
            .revoke_certificate("0f", 1, 6, &Actor::Operator(Some("alice".into())))
            .await
            .unwrap());
        // `complete_order` stamps its event with the system time: claim from far ahead.
        let later = 4_000_000_000;
        let mut bodies = Vec::new();
        while let Some(d) = s
            .claim_webhook_delivery("all", later, later + 1)
            .await
            .unwrap()
        {
            s.webhook_delivered(d.seq, later, "HTTP 200").await.unwrap();
            bodies.push(d.body);
        }
        let kinds: Vec<String> = bodies
            .iter()
            .map(|b| {
                serde_json::from_str::<Value>(b).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            kinds,
            [VALIDATION_FAILED, CERTIFICATE_ISSUED, CERTIFICATE_REVOKED]
        );
        for body in &bodies {
            for secret in [
                "SECRET",
                "\"der\"",
                "\"chain_pem\"",
                "\"diagnostic\"",
                "\"record\"",
                "BEGIN",
            ] {
                assert!(!body.contains(secret), "{secret} in {body}");
            }
        }
        let failed: Value = serde_json::from_str(&bodies[0]).unwrap();
        assert_eq!(
            failed["data"]["problem"]["detail"],
            "The key authorization did not match"
        );
        let revoked: Value = serde_json::from_str(&bodies[2]).unwrap();
        assert_eq!(revoked["data"]["by"], "operator:alice");
        assert_eq!(revoked["data"]["names"][0]["value"], "i.example");
    }

    #[tokio::test]
    async fn at_risk_is_reported_once_per_threshold() {
        let s = store().await;
        assert!(s
            .report_certificate_at_risk("0a", 30, json!({"serial": "0a"}), 5)
            .await
            .unwrap());
        assert!(!s
            .report_certificate_at_risk("0a", 30, json!({"serial": "0a"}), 6)
            .await
            .unwrap());
        assert!(s
            .report_certificate_at_risk("0a", 7, json!({"serial": "0a"}), 7)
            .await
            .unwrap());
        let states = s.webhook_queue_states("all").await.unwrap();
        assert_eq!(states.len(), 2);
    }
}
