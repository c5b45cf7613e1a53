//! The dashboard's reads (migration 0015): issuances, failed validations and revocations
//! per day as index range counts, failed validations by problem type, each issuer's last
//! CRL, and the last periodic verification of the audit chain, which this file also
//! records (with the one `audit.verification_failed` event per break).
//!
//! Each count is one range of one index: `certificates_by_created`, `challenges_failed`
//! (partial, covering the problem type) and `certificates_revoked` (partial). None reads
//! a row of the table itself, so a day costs what it holds, never the table's size.

use serde::Serialize;
use serde_json::json;

use super::audit::AuditVerdict;
use super::engine::columns::Columns;
use super::engine::tx::params;
use super::webhooks;
use super::{Result, Store};

/// Seconds in a day (the charts' buckets are UTC days).
pub const DAY: i64 = 86_400;

/// Candidates `Store::renewal_at_risk` examines at most: an at-risk count from it is a
/// lower bound when more certificates than this expire in its window.
pub const AT_RISK_EXAMINED: usize = super::console::MAX_EXAMINED;

/// What happened on one UTC day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DayCounts {
    /// The day's first second (Unix seconds, UTC midnight).
    pub day: i64,
    /// Certificates stored that day.
    pub issued: i64,
    /// Challenges that failed that day.
    pub failed: i64,
    /// Certificates revoked that day.
    pub revoked: i64,
}

/// Failed validations of one problem type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureCount {
    /// The problem's `type` URI (`urn:ietf:params:acme:error:…`), or empty if none.
    pub problem_type: String,
    /// How many.
    pub count: i64,
}

/// An issuer's last published CRL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrlFreshness {
    /// The issuer's name.
    pub issuer: String,
    /// Its CRL number.
    pub number: i64,
    /// thisUpdate (Unix seconds).
    pub this_update: i64,
    /// nextUpdate (Unix seconds).
    pub next_update: i64,
}

/// The last periodic verification of the audit chain (`crate::audit_check`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditCheck {
    /// When it finished (Unix seconds).
    pub checked_at: i64,
    /// Whether the chain was intact.
    pub intact: bool,
    /// Entries verified (all of them when intact; those before the break otherwise).
    pub entries: i64,
    /// Where the chain breaks.
    pub broken_seq: Option<i64>,
    /// What is wrong there.
    pub reason: Option<String>,
}

/// The first second of the UTC day holding `t`.
pub fn day_start(t: i64) -> i64 {
    t.div_euclid(DAY) * DAY
}

impl Store {
    /// Issuances, failed validations and revocations on each of the `days` UTC days
    /// ending with the day of `now` (oldest first): three index range counts per day.
    pub async fn daily_counts(&self, now: i64, days: i64) -> Result<Vec<DayCounts>> {
        let first = day_start(now) - (days.max(1) - 1) * DAY;
        let count = |row: Option<super::engine::tx::Row>| row.map_or(Ok(0), |r| r.int("n"));
        let mut out = Vec::new();
        for i in 0..days.max(1) {
            let (from, to) = (first + i * DAY, first + (i + 1) * DAY);
            let range = params![from, to];
            out.push(DayCounts {
                day: from,
                issued: count(
                    self.read_optional(
                        "SELECT COUNT(*) AS n FROM certificates WHERE created_at >= $1 AND created_at < $2",
                        &range,
                    )
                    .await?,
                )?,
                failed: count(
                    self.read_optional(
                        "SELECT COUNT(*) AS n FROM challenges WHERE failed_at >= $1 AND failed_at < $2",
                        &range,
                    )
                    .await?,
                )?,
                revoked: count(
                    self.read_optional(
                        "SELECT COUNT(*) AS n FROM certificates WHERE revoked_at >= $1 AND revoked_at < $2",
                        &range,
                    )
                    .await?,
                )?,
            });
        }
        Ok(out)
    }

    /// Failed validations in [since, until), by problem type, most frequent first (a
    /// range of the covering index `challenges_failed`).
    pub async fn failures_by_type(&self, since: i64, until: i64) -> Result<Vec<FailureCount>> {
        let rows = self
            .read_all(
                "SELECT COALESCE(problem_type, '') AS problem_type, COUNT(*) AS n FROM challenges
                 WHERE failed_at >= $1 AND failed_at < $2 GROUP BY problem_type",
                &params![since, until],
            )
            .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(FailureCount {
                    problem_type: r.text("problem_type")?,
                    count: r.int("n")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.problem_type.cmp(&b.problem_type))
        });
        Ok(out)
    }

    /// Each issuer's last published CRL (one row per issuer), by issuer name.
    pub async fn crl_freshness(&self) -> Result<Vec<CrlFreshness>> {
        let rows = self
            .read_all(
                "SELECT issuer, number, this_update, next_update FROM crl_state
                 WHERE this_update > 0 ORDER BY issuer",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CrlFreshness {
                    issuer: r.text("issuer")?,
                    number: r.int("number")?,
                    this_update: r.int("this_update")?,
                    next_update: r.int("next_update")?,
                })
            })
            .collect()
    }

    /// The last recorded verification of the audit chain, if any ran.
    pub async fn last_audit_check(&self) -> Result<Option<AuditCheck>> {
        let row = self
            .read_optional(
                "SELECT checked_at, intact, entries, broken_seq, reason FROM audit_verification WHERE id = 1",
                &[],
            )
            .await?;
        row.map(|r| {
            Ok(AuditCheck {
                checked_at: r.int("checked_at")?,
                intact: r.int("intact")? != 0,
                entries: r.int("entries")?,
                broken_seq: r.opt_int("broken_seq")?,
                reason: r.opt_text("reason")?,
            })
        })
        .transpose()
    }

    /// Records `verdict` as the last verification, at `now`. A broken chain enqueues one
    /// `audit.verification_failed` event, unless this break (same entry, same reason) was
    /// already reported, whichever instance reported it; an intact chain forgets the
    /// reported break, so that a later one is reported again. Whether an event was
    /// enqueued.
    pub async fn record_audit_check(&self, verdict: &AuditVerdict, now: i64) -> Result<bool> {
        let (intact, entries, seq, reason) = match verdict {
            AuditVerdict::Intact { entries, .. } => (1, *entries, None, None),
            AuditVerdict::Broken { seq, reason } => {
                (0, (seq - 1).max(0), Some(*seq), Some(reason.clone()))
            }
        };
        let hooks = self.webhooks.clone();
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO audit_verification (id, checked_at, intact, entries, broken_seq, reason)
                     VALUES (1, $1, $2, $3, $4, $5)
                     ON CONFLICT (id) DO UPDATE SET checked_at = $1, intact = $2, entries = $3,
                         broken_seq = $4, reason = $5",
                    &params![now, intact, entries, seq, &reason],
                )
                .await?;
                let (Some(seq), Some(reason)) = (seq, reason) else {
                    tx.execute(
                        "UPDATE audit_verification SET reported_seq = NULL, reported_reason = NULL WHERE id = 1",
                        &[],
                    )
                    .await?;
                    return Ok(false);
                };
                // Guarded: of several instances finding the same break, one reports it.
                let first = tx
                    .execute(
                        "UPDATE audit_verification SET reported_seq = $1, reported_reason = $2
                         WHERE id = 1 AND (reported_seq IS NULL OR reported_seq <> $1
                             OR reported_reason IS NULL OR reported_reason <> $2)",
                        &params![seq, &reason],
                    )
                    .await?
                    == 1;
                if first {
                    let data = json!({
                        "broken_seq": seq,
                        "reason": reason,
                        "entries_verified": entries,
                        "checked_at": crate::clock::rfc3339(now),
                    });
                    webhooks::enqueue(tx, &hooks, webhooks::AUDIT_VERIFICATION_FAILED, data, now)
                        .await?;
                }
                Ok(first)
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::console::tests::{account, issue, started_challenge, test_store};
    use crate::store::webhooks::tests::route;
    use crate::store::WebhookRoutes;
    use certwright_proto::{Problem, ProblemType};

    /// A challenge of a new order for `name` by `account`, started (processing).
    #[tokio::test]
    async fn per_day_counts_and_failures_by_type() {
        let s = test_store().await;
        let acct = account(&s, &[]).await;
        // `issue` stores certificates created at 2: "now" is in that first day.
        let now = 3600;
        issue(&s, acct, &["a.test"], "0a", now + 90 * DAY, None).await;
        issue(&s, acct, &["b.test"], "0b", now + 90 * DAY, None).await;
        assert!(s
            .revoke_certificate("0b", 1, now, &crate::store::Actor::System)
            .await
            .unwrap());
        let fail = |kind: ProblemType| Problem::new(kind, "no");
        let none = serde_json::json!({});
        for (name, kind, at) in [
            ("c.test", ProblemType::Unauthorized, now),
            ("d.test", ProblemType::Unauthorized, now - DAY),
            ("e.test", ProblemType::Dns, now - 2 * DAY),
            ("f.test", ProblemType::Connection, now - 40 * DAY),
        ] {
            let c = started_challenge(&s, acct, name, &format!("tok-{name}")).await;
            assert!(s
                .finish_validation(c, Some(&fail(kind)), &none, &none, at)
                .await
                .unwrap());
        }
        // A success is no failure.
        let ok = started_challenge(&s, acct, "g.test", "tok-g.test").await;
        assert!(s
            .finish_validation(ok, None, &none, &none, now)
            .await
            .unwrap());

        let days = s.daily_counts(now, 30).await.unwrap();
        assert_eq!(days.len(), 30);
        assert_eq!(days[29].day, day_start(now));
        assert_eq!(days[0].day, day_start(now) - 29 * DAY);
        let today = days[29];
        assert_eq!((today.issued, today.failed, today.revoked), (2, 1, 1));
        assert_eq!((days[28].issued, days[28].failed), (0, 1));
        assert_eq!(days[27].failed, 1);
        let total: i64 = days.iter().map(|d| d.failed).sum();
        assert_eq!(total, 3, "the failure 40 days ago is outside the window");

        let week = s.failures_by_type(now - 7 * DAY, now + 1).await.unwrap();
        let as_pairs = |v: &[FailureCount]| -> Vec<(String, i64)> {
            v.iter()
                .map(|f| {
                    (
                        ProblemType::from_uri(&f.problem_type).name().to_owned(),
                        f.count,
                    )
                })
                .collect()
        };
        assert_eq!(
            as_pairs(&week),
            [("dns".to_owned(), 1), ("unauthorized".to_owned(), 2)]
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
        );
        let month = s.failures_by_type(now - 60 * DAY, now + 1).await.unwrap();
        assert_eq!(month.iter().map(|f| f.count).sum::<i64>(), 4);
        assert_eq!(month[0].problem_type, ProblemType::Unauthorized.uri());
    }

    #[tokio::test]
    async fn a_break_is_reported_once_and_again_after_a_repair() {
        use crate::store::webhooks::AUDIT_VERIFICATION_FAILED;
        let s = test_store()
            .await
            .with_webhooks(WebhookRoutes::new(vec![route(
                "ops",
                &[AUDIT_VERIFICATION_FAILED],
            )]));
        assert_eq!(s.last_audit_check().await.unwrap(), None);
        let intact = AuditVerdict::Intact {
            entries: 5,
            head: "h".into(),
        };
        assert!(!s.record_audit_check(&intact, 10).await.unwrap());
        let check = s.last_audit_check().await.unwrap().unwrap();
        assert!(check.intact && check.entries == 5 && check.checked_at == 10);
        let broken = AuditVerdict::Broken {
            seq: 3,
            reason: "altered".into(),
        };
        assert!(s.record_audit_check(&broken, 20).await.unwrap());
        assert!(
            !s.record_audit_check(&broken, 30).await.unwrap(),
            "the same break"
        );
        let check = s.last_audit_check().await.unwrap().unwrap();
        assert_eq!(
            (
                check.intact,
                check.broken_seq,
                check.reason.as_deref(),
                check.checked_at,
                check.entries
            ),
            (false, Some(3), Some("altered"), 30, 2)
        );
        let elsewhere = AuditVerdict::Broken {
            seq: 2,
            reason: "altered".into(),
        };
        assert!(
            s.record_audit_check(&elsewhere, 40).await.unwrap(),
            "another break"
        );
        assert!(!s.record_audit_check(&intact, 50).await.unwrap());
        assert!(
            s.record_audit_check(&elsewhere, 60).await.unwrap(),
            "broken again"
        );
        let mut bodies = Vec::new();
        while let Some(d) = s.claim_webhook_delivery("ops", 100, 200).await.unwrap() {
            bodies.push(serde_json::from_str::<serde_json::Value>(&d.body).unwrap());
            s.webhook_delivered(d.seq, 100, "HTTP 200").await.unwrap();
        }
        let seqs: Vec<i64> = bodies
            .iter()
            .map(|b| b["data"]["broken_seq"].as_i64().unwrap())
            .collect();
        assert_eq!(seqs, [3, 2, 2]);
        assert!(bodies
            .iter()
            .all(|b| b["type"] == AUDIT_VERIFICATION_FAILED));
        assert_eq!(bodies[0]["data"]["reason"], "altered");
        assert_eq!(bodies[0]["data"]["entries_verified"], 2);
    }

    #[test]
    fn days_start_at_utc_midnight() {
        assert_eq!(day_start(0), 0);
        assert_eq!(day_start(DAY - 1), 0);
        assert_eq!(day_start(DAY), DAY);
        assert_eq!(day_start(-1), -DAY);
    }
}
