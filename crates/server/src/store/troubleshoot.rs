//! The reads of the console's troubleshooting view: recent authorizations by name (across
//! accounts) or by account (through its orders), each challenge with the evidence the VA
//! recorded when it validated — the client-facing record on the challenge, and what the
//! VA saw (the audit entry's diagnostic: HTTP hops, DNS answers, the TLS certificate
//! seen, the CAA decision, the agent that validated). Indexes of migration 0013.

use serde_json::Value;

use super::engine::columns::Columns;
use super::engine::tx::params;
use super::{AccountId, AuthzRecord, ChallengeId, ChallengeRecord, Result, Store};

/// Authorizations shown per page, at most.
pub const MAX_TRACES: usize = 50;

/// Whose authorizations to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceQuery {
    /// Authorizations for this identifier value (a DNS name without `*.`, or an
    /// address), of every account.
    Name(String),
    /// The authorizations of this account's recent orders.
    Account(AccountId),
}

/// One validation attempt's evidence, from the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// When the outcome was recorded (Unix seconds).
    pub at: i64,
    /// The audit entry's details: outcome, problem, record and diagnostic.
    pub details: Value,
}

/// An authorization with its challenges and their evidence.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The authorization and its challenges.
    pub authz: AuthzRecord,
    /// The orders that hold it (newest first, at most a few).
    pub orders: Vec<i64>,
    /// Per challenge, the latest validation entry (none: never attempted).
    pub evidence: Vec<(ChallengeId, Option<Evidence>)>,
}

impl Store {
    /// Up to `limit` (at most [`MAX_TRACES`]) authorizations for `query`, newest first,
    /// before authorization id `before` when given (keyset paging).
    pub async fn validation_traces(
        &self,
        query: &TraceQuery,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Trace>> {
        let limit = limit.clamp(1, MAX_TRACES) as i64;
        let before = before.unwrap_or(i64::MAX);
        let rows = match query {
            TraceQuery::Name(name) => {
                let name = name.trim().trim_start_matches("*.").to_ascii_lowercase();
                self.read_all(
                    "SELECT * FROM authorizations WHERE identifier_value = $1 AND id < $2
                     ORDER BY id DESC LIMIT $3",
                    &params![name, before, limit],
                )
                .await?
            }
            TraceQuery::Account(account) => {
                // The account's recent orders (orders_by_account), then their
                // authorizations; an authorization shared by two orders shows once.
                let orders = self
                    .read_all(
                        "SELECT id FROM orders WHERE account_id = $1 ORDER BY id DESC LIMIT $2",
                        &params![account.0, limit],
                    )
                    .await?;
                let mut rows = Vec::new();
                let mut seen = std::collections::BTreeSet::new();
                for order in &orders {
                    let order_id = order.int("id")?;
                    for link in self
                        .read_all(
                            "SELECT authorization_id FROM order_authorizations WHERE order_id = $1",
                            &params![order_id],
                        )
                        .await?
                    {
                        let id = link.int("authorization_id")?;
                        if id < before && seen.insert(id) {
                            if let Some(row) = self
                                .read_optional(
                                    "SELECT * FROM authorizations WHERE id = $1",
                                    &params![id],
                                )
                                .await?
                            {
                                rows.push(row);
                            }
                        }
                    }
                }
                rows.sort_by_key(|r| std::cmp::Reverse(r.int("id").unwrap_or(0)));
                rows.truncate(limit as usize);
                rows
            }
        };
        let mut traces = Vec::with_capacity(rows.len());
        for row in &rows {
            let id = row.int("id")?;
            let challenges = self
                .read_all(
                    "SELECT * FROM challenges WHERE authorization_id = $1 ORDER BY id",
                    &params![id],
                )
                .await?
                .iter()
                .map(ChallengeRecord::from_row)
                .collect::<Result<Vec<_>>>()?;
            let authz = AuthzRecord::from_row(row, challenges)?;
            let orders = self
                .read_all(
                    "SELECT order_id FROM order_authorizations WHERE authorization_id = $1
                     ORDER BY order_id DESC LIMIT 5",
                    &params![id],
                )
                .await?
                .iter()
                .map(|r| r.int("order_id"))
                .collect::<Result<Vec<_>>>()?;
            let mut evidence = Vec::with_capacity(authz.challenges.len());
            for challenge in &authz.challenges {
                let entry = self
                    .read_optional(
                        "SELECT at, details FROM audit_log
                         WHERE challenge_id = $1 AND action = 'validation'
                         ORDER BY seq DESC LIMIT 1",
                        &params![challenge.id.0],
                    )
                    .await?;
                let entry = match entry {
                    Some(e) => Some(Evidence {
                        at: e.int("at")?,
                        details: serde_json::from_str(&e.text("details")?).unwrap_or(Value::Null),
                    }),
                    None => None,
                };
                evidence.push((challenge.id, entry));
            }
            traces.push(Trace {
                authz,
                orders,
                evidence,
            });
        }
        Ok(traces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::console::tests::{account, issue, test_store};
    use certwright_proto::Problem;
    use serde_json::json;

    #[tokio::test]
    async fn traces_show_each_challenge_with_what_the_va_saw() {
        let s = test_store().await;
        let (a, b) = (account(&s, &[]).await, account(&s, &[]).await);
        issue(&s, a, &["web.example"], "01", 500, None).await;
        issue(&s, b, &["web.example"], "02", 500, None).await;
        issue(&s, b, &["other.example"], "03", 500, None).await;

        let by_name = s
            .validation_traces(&TraceQuery::Name("*.WEB.example".into()), None, 10)
            .await
            .unwrap();
        assert_eq!(by_name.len(), 2, "both accounts' authorizations");
        assert!(
            by_name[0].authz.id.0 > by_name[1].authz.id.0,
            "newest first"
        );
        assert_eq!(by_name[0].authz.account_id, b);
        assert_eq!(by_name[0].orders.len(), 1);
        assert_eq!(
            by_name[0].evidence,
            vec![(by_name[0].authz.challenges[0].id, None)]
        );

        // A failed validation: its record and what the VA saw come back.
        let challenge = by_name[0].authz.challenges[0].id;
        assert!(s.start_validation(challenge, 1_000).await.unwrap());
        let problem = Problem::connection("could not connect to 192.0.2.7:80");
        assert!(s
            .finish_validation(
                challenge,
                Some(&problem),
                &json!({"url": "http://web.example/.well-known/acme-challenge/x"}),
                &json!({"error": "tcp connect error: connection refused"}),
                60,
            )
            .await
            .unwrap());
        let traces = s
            .validation_traces(&TraceQuery::Name("web.example".into()), None, 10)
            .await
            .unwrap();
        let (id, evidence) = &traces[0].evidence[0];
        assert_eq!(*id, challenge);
        let evidence = evidence.as_ref().expect("recorded");
        assert_eq!(evidence.details["outcome"], "invalid");
        assert_eq!(
            evidence.details["diagnostic"]["error"],
            "tcp connect error: connection refused"
        );
        assert_eq!(
            evidence.details["record"]["url"],
            "http://web.example/.well-known/acme-challenge/x"
        );
        assert_eq!(traces[0].authz.challenges[0].error, Some(problem));

        // By account: through its orders; paging by authorization id.
        let mine = s
            .validation_traces(&TraceQuery::Account(b), None, 10)
            .await
            .unwrap();
        let names: Vec<&str> = mine
            .iter()
            .map(|t| t.authz.identifier.value.as_str())
            .collect();
        assert_eq!(names, ["other.example", "web.example"]);
        let older = s
            .validation_traces(&TraceQuery::Account(b), Some(mine[0].authz.id.0), 10)
            .await
            .unwrap();
        assert_eq!(older.len(), 1);
        assert_eq!(older[0].authz.identifier.value, "web.example");
        assert!(s
            .validation_traces(&TraceQuery::Name("nothing.example".into()), None, 10)
            .await
            .unwrap()
            .is_empty());
    }
}
