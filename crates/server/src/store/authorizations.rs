//! Authorizations and their challenges (RFC 8555 §7.5): lookups, reuse, deactivation,
//! and validation: `start_validation` moves a challenge to `processing`,
//! `finish_validation` records the outcome on the challenge and its authorization at once.

use std::sync::LazyLock;

use certwright_proto::types::{AuthorizationStatus, Identifier};
use certwright_proto::Problem;
use serde_json::Value;

use super::audit::{self, Actor, AuditEvent};
use super::engine::columns::{Columns, Prefixed};
use super::engine::tx::{params, sqlx_fetch_all, Row};
use super::statuses::{guard, quoted, set, status_sql};
use super::webhooks;
use super::{
    identifier_type_name, AccountId, AuthzId, AuthzRecord, Backend, ChallengeId, ChallengeRecord,
    Result, Store, StoreError,
};
use crate::status::transitions::{
    AUTHORIZATION_DEACTIVATE, AUTHORIZATION_INVALIDATE, AUTHORIZATION_VALIDATE, CHALLENGE_FAIL,
    CHALLENGE_START, CHALLENGE_SUCCEED,
};

status_sql! {
    /// `find_reusable_authorization`.
    static REUSABLE = (
        "SELECT id FROM authorizations
         WHERE account_id = $1 AND identifier_type = $2 AND identifier_value = $3 AND wildcard = $4
           AND status = {valid} AND expires > $5
         ORDER BY expires DESC LIMIT 1",
        valid = quoted(AuthorizationStatus::Valid)
    );
    /// `has_valid_authorizations`, for one identifier.
    static VALID_FOR = (
        "SELECT 1 FROM authorizations
         WHERE account_id = $1 AND identifier_type = $2 AND identifier_value = $3 AND wildcard = $4
           AND status = {valid} AND expires > $5 LIMIT 1",
        valid = quoted(AuthorizationStatus::Valid)
    );
    /// `deactivate_authorization`.
    static DEACTIVATE = (
        "UPDATE authorizations SET {to} WHERE id = $1 AND {from}
         RETURNING account_id, identifier_type, identifier_value",
        to = set(&AUTHORIZATION_DEACTIVATE),
        from = guard("status", &AUTHORIZATION_DEACTIVATE)
    );
    /// `start_validation`: the challenge, while its authorization can take the outcome.
    static START = (
        "UPDATE challenges SET {to}, lease_expires = $1
         WHERE id = $2 AND {from}
           AND {authz_from}",
        to = set(&CHALLENGE_START),
        from = guard("status", &CHALLENGE_START),
        authz_from = guard(
            "(SELECT status FROM authorizations WHERE id = challenges.authorization_id)",
            &AUTHORIZATION_VALIDATE
        )
    );
    /// `finish_validation`: the challenge (its new status is `$1`, success or failure; a
    /// failure's time and problem type for the dashboard),
    static FINISH_CHALLENGE = (
        "UPDATE challenges SET status = $1, validated = $2, error = $3, record = $4,
                failed_at = $6, problem_type = $7
         WHERE id = $5 AND {from}
         RETURNING authorization_id, type",
        from = guard("status", &CHALLENGE_SUCCEED)
    );
    /// … and its authorization (`$1` likewise), which changes only if it still can; the
    /// row comes back either way, for the audit entry.
    static FINISH_AUTHORIZATION = (
        "UPDATE authorizations SET status = CASE WHEN {from} THEN $1 ELSE status END
         WHERE id = $2
         RETURNING account_id, identifier_type, identifier_value, wildcard",
        from = guard("status", &AUTHORIZATION_VALIDATE)
    );
    /// `finish_validation` on PostgreSQL: `FINISH_CHALLENGE`, `FINISH_AUTHORIZATION` (its
    /// status `$8`) and the audit entry (only when the challenge changed) in one
    /// statement. The entry's `at` is `$9`, its actor `$10`, and its details are
    /// `validation_details`' object, composed here in the same key order and compact form
    /// serde_json gives it: `$11` the diagnostic and `$12` the problem as JSON text, the
    /// rest from the rows and parameters the statement already has.
    static FINISH_IN_ONE = (
        "WITH ch AS (UPDATE challenges SET status = $1, validated = $2, error = $3, record = $4,
                            failed_at = $6, problem_type = $7
                     WHERE id = $5 AND {from}
                     RETURNING authorization_id, type),
              az AS (UPDATE authorizations SET status = CASE WHEN {authz_from} THEN $8 ELSE status END
                     WHERE id = (SELECT authorization_id FROM ch)
                     RETURNING account_id, identifier_type, identifier_value, wildcard),
              {audit}
         SELECT ch.authorization_id, ch.type, az.* FROM ch, az",
        from = guard("status", &CHALLENGE_SUCCEED),
        authz_from = guard("status", &AUTHORIZATION_VALIDATE),
        audit = audit::InlineEntry {
            changed: "ch, az",
            at: "$9",
            actor: "$10",
            action: "'validation'",
            account: "az.account_id",
            order: "NULL",
            authz: "ch.authorization_id",
            challenge: "$5",
            serial: "NULL",
            details: "'{\"diagnostic\":' || $11::TEXT
                      || ',\"identifier\":{\"type\":' || to_json(az.identifier_type)::TEXT
                      || ',\"value\":' || to_json(az.identifier_value)::TEXT
                      || '},\"method\":' || to_json(ch.type)::TEXT
                      || ',\"outcome\":' || to_json($8::TEXT)::TEXT
                      || ',\"problem\":' || $12::TEXT
                      || ',\"record\":' || $4::TEXT
                      || ',\"wildcard\":' || CASE WHEN az.wildcard <> 0 THEN 'true' ELSE 'false' END
                      || '}'",
        }
        .ctes()
    );
}

/// The details of a validation's audit entry (`FINISH_IN_ONE` composes the same text in
/// SQL on PostgreSQL).
fn validation_details(
    subject: &Row,
    method: &str,
    outcome: &str,
    error: Option<&Problem>,
    record: &Value,
    diagnostic: &Value,
) -> Result<Value> {
    Ok(serde_json::json!({
        "identifier": {"type": subject.text("identifier_type")?, "value": subject.text("identifier_value")?},
        "wildcard": subject.flag("wildcard")?,
        "method": method,
        "outcome": outcome,
        "problem": error,
        "record": record,
        "diagnostic": diagnostic,
    }))
}

impl Store {
    /// A still-valid authorization of `account` for `identifier` that outlives `min_expires`.
    pub async fn find_reusable_authorization(
        &self,
        account: AccountId,
        identifier: &Identifier,
        wildcard: bool,
        min_expires: i64,
    ) -> Result<Option<AuthzId>> {
        let row = self
            .read_optional(
                &REUSABLE,
                &params![
                    account.0,
                    identifier_type_name(identifier.kind),
                    &identifier.value,
                    wildcard,
                    min_expires,
                ],
            )
            .await?;
        row.map(|r| Ok(AuthzId(r.int("id")?))).transpose()
    }

    /// Whether `account` holds valid, unexpired authorizations for every identifier.
    pub async fn has_valid_authorizations(
        &self,
        account: AccountId,
        identifiers: &[Identifier],
        now: i64,
    ) -> Result<bool> {
        for id in identifiers {
            let (value, wildcard) = match id.value.strip_prefix("*.") {
                Some(base) => (base, true),
                None => (id.value.as_str(), false),
            };
            let found = self
                .read_optional(
                    &VALID_FOR,
                    &params![
                        account.0,
                        identifier_type_name(id.kind),
                        value,
                        wildcard,
                        now
                    ],
                )
                .await?;
            if found.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The authorization with `id` and its challenges.
    pub async fn authorization(&self, id: AuthzId) -> Result<AuthzRecord> {
        // One read: a row per challenge, the authorization's columns repeated in each.
        let rows = self.read_all(&READ_ORDERED, &params![id.0]).await?;
        authorization_from_rows(&rows)?.ok_or(StoreError::NotFound)
    }

    /// The profile of the latest order holding authorization `id` (what validation
    /// routing by profile looks at); `None` for the default profile.
    pub async fn authorization_profile(&self, id: AuthzId) -> Result<Option<String>> {
        let row = self
            .read_optional(
                "SELECT o.profile FROM order_authorizations oa JOIN orders o ON o.id = oa.order_id
                 WHERE oa.authorization_id = $1 ORDER BY oa.order_id DESC LIMIT 1",
                &params![id.0],
            )
            .await?;
        match row {
            Some(row) => row.opt_text("profile"),
            None => Ok(None),
        }
    }

    /// Deactivates an authorization that is pending or valid (§7.5.2); false if it was not.
    pub async fn deactivate_authorization(&self, id: AuthzId) -> Result<bool> {
        self.write(move |tx| {
            Box::pin(async move {
                let done = tx
                    .fetch_optional(
                        &DEACTIVATE,
                        &params![id.0],
                    )
                    .await?;
                let Some(row) = done else {
                    return Ok(false);
                };
                let event = AuditEvent::by_account(AccountId(row.int("account_id")?), "authorization.deactivate")
                    .authz(id)
                    .details(serde_json::json!({
                        "identifier": {"type": row.text("identifier_type")?, "value": row.text("identifier_value")?},
                    }));
                audit::append(tx, &event).await?;
                Ok(true)
            })
        })
        .await
    }

    /// Moves a pending challenge of a pending authorization to `processing`. Returns false
    /// when it was not pending (someone else started it, or it already finished).
    pub async fn start_validation(&self, challenge: ChallengeId, lease_until: i64) -> Result<bool> {
        let done = self
            .write_one(START.as_str(), params![lease_until, challenge.0].into())
            .await?;
        Ok(done == 1)
    }

    /// Records a validation outcome on the challenge and its authorization, atomically.
    /// `error` is `None` for success; `record` is stored on the challenge (clients see it),
    /// `diagnostic` (what the VA read) goes only into the audit entry. Returns false if
    /// the challenge was not processing.
    pub async fn finish_validation(
        &self,
        challenge: ChallengeId,
        error: Option<&Problem>,
        record: &Value,
        diagnostic: &Value,
        now: i64,
    ) -> Result<bool> {
        let (challenge_to, authz_to, validated) = match error {
            None => (CHALLENGE_SUCCEED.to, AUTHORIZATION_VALIDATE.to, Some(now)),
            Some(_) => (CHALLENGE_FAIL.to, AUTHORIZATION_INVALIDATE.to, None),
        };
        let authz_status = authz_to.as_str();
        let mut values = params![
            challenge_to.as_str(),
            validated,
            error.map(|p| serde_json::to_string(p).expect("problems serialize")),
            record.to_string(),
            challenge.0,
            error.map(|_| now),
            error.map(|p| p.kind.uri()),
        ]
        .to_vec();
        // On PostgreSQL one statement (the challenge, its authorization, the audit entry),
        // alone in autocommit unless a failure's webhook event joins its transaction; on
        // SQLite, where a statement costs no round trip, two and `audit::append`.
        let in_one = self.backend == Backend::Postgres;
        if in_one {
            let problem = serde_json::to_value(error).expect("problems serialize");
            values.extend(params![
                authz_status,
                audit::unix_now(),
                Actor::System.to_string(),
                diagnostic.to_string(),
                problem.to_string(),
            ]);
            if error.is_none() || !self.webhooks.wants(webhooks::VALIDATION_FAILED) {
                self.counters.statement();
                let rows = sqlx_fetch_all(&self.writer, &FINISH_IN_ONE, &values).await?;
                return Ok(!rows.is_empty());
            }
        }
        let (error, record, diagnostic) = (error.cloned(), record.clone(), diagnostic.clone());
        let hooks = self.webhooks.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let (error, record) = (error.as_ref(), &record);
                let statement: &str = if in_one {
                    &FINISH_IN_ONE
                } else {
                    &FINISH_CHALLENGE
                };
                let Some(done) = tx.fetch_optional(statement, &values).await? else {
                    return Ok(false);
                };
                let (authz_id, method) =
                    (AuthzId(done.int("authorization_id")?), done.text("type")?);
                // Only a pending authorization changes; the row comes back either way (for
                // the audit entry), which saves a separate lookup.
                let subject = match in_one {
                    true => done,
                    false => {
                        tx.fetch_one(&FINISH_AUTHORIZATION, &params![authz_status, authz_id.0])
                            .await?
                    }
                };
                let details = validation_details(
                    &subject,
                    &method,
                    authz_status,
                    error,
                    record,
                    &diagnostic,
                )?;
                if !in_one {
                    let event = AuditEvent::new(&Actor::System, "validation")
                        .account(AccountId(subject.int("account_id")?))
                        .challenge(challenge)
                        .authz(authz_id)
                        .details(details.clone());
                    audit::append(tx, &event).await?;
                }
                if let Some(problem) = error {
                    // The client-facing problem only: never the record or what the VA read.
                    let data = serde_json::json!({
                        "account_id": subject.int("account_id")?,
                        "authorization_id": authz_id.0,
                        "challenge_id": challenge.0,
                        "identifier": details["identifier"],
                        "wildcard": details["wildcard"],
                        "method": details["method"],
                        "problem": problem,
                    });
                    webhooks::enqueue(tx, &hooks, webhooks::VALIDATION_FAILED, data, now).await?;
                }
                Ok(true)
            })
        })
        .await
    }

    /// The challenge with `id`.
    pub async fn challenge(&self, id: ChallengeId) -> Result<ChallengeRecord> {
        let row = self
            .read_optional("SELECT * FROM challenges WHERE id = $1", &params![id.0])
            .await?
            .ok_or(StoreError::NotFound)?;
        ChallengeRecord::from_row(&row)
    }
}

/// The read of an authorization (`$1`) and its challenges: a row per challenge, the
/// authorization's columns repeated in each, the challenge's prefixed `c_`; without its
/// order (`READ_ORDERED`), so that a larger statement can join it (`nonces`).
pub(super) const READ: &str = "SELECT a.*, c.id AS c_id, c.authorization_id AS c_authorization_id,
        c.type AS c_type, c.token AS c_token, c.status AS c_status,
        c.validated AS c_validated, c.error AS c_error, c.record AS c_record
 FROM authorizations a LEFT JOIN challenges c ON c.authorization_id = a.id
 WHERE a.id = $1";

/// `Store::authorization`: `READ`, its challenges in order.
static READ_ORDERED: LazyLock<String> = LazyLock::new(|| format!("{READ} ORDER BY c.id"));

/// An authorization from the rows of its read (`Store::authorization`): its columns on
/// every row, and one row per challenge with the challenge's columns prefixed `c_`, in
/// order; `None` when the rows hold no authorization (no row, or its `id` NULL).
pub(super) fn authorization_from_rows(rows: &[Row]) -> Result<Option<AuthzRecord>> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    if first.opt_int("id")?.is_none() {
        return Ok(None);
    }
    let mut challenges = Vec::with_capacity(rows.len());
    for row in rows {
        if row.opt_int("c_id")?.is_some() {
            challenges.push(ChallengeRecord::from_row(&Prefixed { prefix: "c_", row })?);
        }
    }
    AuthzRecord::from_row(first, challenges).map(Some)
}

#[cfg(test)]
mod tests {
    use certwright_proto::types::{ChallengeStatus, ChallengeType};
    use certwright_proto::{AccountKey, KeyType, ProblemType};

    use super::super::console::tests::test_store;
    use super::super::{AuditVerdict, NewAuthorization, NewOrderRecord};
    use super::*;

    /// On either engine (one statement on PostgreSQL), a validation's outcome lands on the
    /// challenge, its authorization and the audit trail once; a second outcome for the
    /// same challenge changes nothing, the trail included.
    #[tokio::test]
    async fn a_validation_outcome_is_recorded_once() {
        let s = test_store().await;
        let jwk = AccountKey::generate(KeyType::EcP256).unwrap().jwk();
        let account = s.create_account(&jwk, &[], true, 1).await.unwrap().id;
        let mut authz_ids = Vec::new();
        for name in ["ok.example", "bad.example"] {
            let order = s
                .create_order(&NewOrderRecord {
                    account_id: account,
                    identifiers: vec![Identifier::dns(name)],
                    expires: 100,
                    not_before: None,
                    not_after: None,
                    authorizations: vec![NewAuthorization::Create {
                        identifier: Identifier::dns(name),
                        wildcard: false,
                        expires: 100,
                        challenges: vec![(ChallengeType::Http01, format!("{name}-token"))],
                    }],
                    now: 1,
                    profile: None,
                    replaces: None,
                })
                .await
                .unwrap();
            authz_ids.push(order.authorization_ids[0]);
        }
        let record = serde_json::json!({"url": "http://x/"});
        let problem = Problem::new(ProblemType::Unauthorized, "wrong answer");
        for (authz, error) in authz_ids.iter().zip([None, Some(&problem)]) {
            let challenge = s.authorization(*authz).await.unwrap().challenges[0].id;
            assert!(s.start_validation(challenge, 50).await.unwrap());
            assert!(s
                .finish_validation(challenge, error, &record, &record, 2)
                .await
                .unwrap());
            assert!(!s
                .finish_validation(challenge, None, &record, &record, 3)
                .await
                .unwrap());
        }
        let (ok, bad) = (
            s.authorization(authz_ids[0]).await.unwrap(),
            s.authorization(authz_ids[1]).await.unwrap(),
        );
        assert_eq!(ok.status, AuthorizationStatus::Valid);
        assert_eq!(ok.challenges[0].status, ChallengeStatus::Valid);
        assert_eq!(ok.challenges[0].validated, Some(2));
        assert_eq!(bad.status, AuthorizationStatus::Invalid);
        assert_eq!(bad.challenges[0].status, ChallengeStatus::Invalid);
        // The account, two orders, two outcomes.
        assert!(matches!(
            s.verify_audit().await.unwrap(),
            AuditVerdict::Intact { entries: 5, .. }
        ));
    }
}
