//! Orders (RFC 8555 §7.4): creation with their authorizations in one transaction, the
//! reads that render them, and finalization: `begin_finalize`, then `complete_order` with
//! the certificate or `fail_order` with a problem.

use std::borrow::Cow;
use std::sync::LazyLock;

use certwright_proto::types::AuthorizationStatus;
use certwright_proto::Problem;

use super::audit::{self, Actor, AuditEvent};
use super::certificate_names;
use super::engine::columns::Columns;
use super::engine::tx::{params, Param, Tx};
use super::statuses::{guard, quoted, set, status_sql};
use super::webhooks::{self, WebhookRoutes};
use super::{
    identifier_type_name, parse_status, unique_is_conflict, AccountId, AuthzId, NewAuthorization,
    NewCertificate, NewOrderRecord, OrderId, OrderRecord, Result, Store, StoreError,
};
use crate::status::transitions::{
    AUTHORIZATION_CREATED, CHALLENGE_CREATED, ORDER_BEGIN_FINALIZE, ORDER_COMPLETE, ORDER_CREATED,
    ORDER_FAIL,
};

status_sql! {
    /// `create_order`: the order,
    static INSERT_ORDER = (
        "INSERT INTO orders (account_id, status, identifiers, expires, not_before, not_after, created_at, profile, replaces)
         VALUES ($1, {created}, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        created = quoted(ORDER_CREATED)
    );
    /// … each new authorization,
    static INSERT_AUTHORIZATION = (
        "INSERT INTO authorizations
           (account_id, identifier_type, identifier_value, wildcard, status, expires, created_at)
         VALUES ($1, $2, $3, $4, {created}, $5, $6) RETURNING id",
        created = quoted(AUTHORIZATION_CREATED)
    );
    /// `begin_finalize`.
    static BEGIN_FINALIZE = (
        "UPDATE orders SET {to}, csr = $1, lease_expires = $2 WHERE id = $3 AND {from}",
        to = set(&ORDER_BEGIN_FINALIZE),
        from = guard("status", &ORDER_BEGIN_FINALIZE)
    );
    /// `complete_order` (the account's EAB label comes back for the audit entry).
    static COMPLETE = (
        "UPDATE orders SET {to}, certificate_serial = $1, csr = NULL
         WHERE id = $2 AND {from}
         RETURNING (SELECT eab_label FROM accounts WHERE id = orders.account_id) AS eab_label",
        to = set(&ORDER_COMPLETE),
        from = guard("status", &ORDER_COMPLETE)
    );
    /// `fail_order`.
    static FAIL = (
        "UPDATE orders SET {to}, error = $1, csr = NULL WHERE id = $2 AND {from} RETURNING account_id",
        to = set(&ORDER_FAIL),
        from = guard("status", &ORDER_FAIL)
    );
}

/// Most challenges of one authorization whose `INSERT` is built once (one per type).
const CHALLENGE_ROWS: usize = 3;

/// `create_order`'s `INSERT` of the challenges of a new authorization, for 1 to
/// `CHALLENGE_ROWS` of them.
pub(super) static INSERT_CHALLENGES: LazyLock<Vec<String>> =
    LazyLock::new(|| (1..=CHALLENGE_ROWS).map(format_insert_challenges).collect());

/// The `INSERT` of `count` (at least one) challenges of an authorization, in one
/// statement: `$1` is the authorization, then type and token of each.
fn insert_challenges(count: usize) -> Cow<'static, str> {
    match INSERT_CHALLENGES.get(count - 1) {
        Some(sql) => Cow::Borrowed(sql),
        None => Cow::Owned(format_insert_challenges(count)),
    }
}

fn format_insert_challenges(count: usize) -> String {
    let created = quoted(CHALLENGE_CREATED);
    let rows: Vec<String> = (0..count)
        .map(|i| format!("($1, ${}, ${}, {created})", 2 * i + 2, 2 * i + 3))
        .collect();
    format!(
        "INSERT INTO challenges (authorization_id, type, token, status) VALUES {}",
        rows.join(", ")
    )
}

impl Store {
    /// Creates an order with its authorizations (new ones with their challenges, or reused
    /// ones) in one transaction.
    pub async fn create_order(&self, new: &NewOrderRecord) -> Result<OrderRecord> {
        let new = new.clone();
        // The order comes back from its INSERT (RETURNING *): no read after the write.
        self.write(move |tx| {
            Box::pin(async move {
                let new = &new;
                let order_row = tx
                    .fetch_one(
                        &INSERT_ORDER,
                        &params![
                            new.account_id.0,
                            serde_json::to_string(&new.identifiers).expect("identifiers serialize"),
                            new.expires,
                            new.not_before,
                            new.not_after,
                            new.now,
                            &new.profile,
                            new.replaces.as_ref().map(|r| r.0.clone()),
                        ],
                    )
                    .await?;
                let order_id = order_row.int("id")?;
                if let Some((_, serial)) = &new.replaces {
                    let marked = tx
                        .execute(
                            "UPDATE certificates SET replaced_by_order = $1 WHERE serial = $2 AND replaced_by_order IS NULL",
                            &params![order_id, serial],
                        )
                        .await?;
                    if marked != 1 {
                        return Err(StoreError::AlreadyReplaced);
                    }
                }
                let mut authz_ids = Vec::with_capacity(new.authorizations.len());
                for authz in &new.authorizations {
                    let authz_id = match authz {
                        NewAuthorization::Reuse(id) => id.0,
                        NewAuthorization::Create {
                            identifier,
                            wildcard,
                            expires,
                            challenges,
                        } => {
                            let id = tx
                                .fetch_one(
                                    &INSERT_AUTHORIZATION,
                                    &params![
                                        new.account_id.0,
                                        identifier_type_name(identifier.kind),
                                        &identifier.value,
                                        *wildcard,
                                        *expires,
                                        new.now,
                                    ],
                                )
                                .await?
                                .int("id")?;
                            // All of the authorization's challenges in one statement.
                            if !challenges.is_empty() {
                                let sql = insert_challenges(challenges.len());
                                let mut values = vec![Param::from(id)];
                                for (kind, token) in challenges {
                                    values.push(kind.as_str().into());
                                    values.push(token.into());
                                }
                                tx.execute(&sql, &values).await?;
                            }
                            id
                        }
                    };
                    authz_ids.push(AuthzId(authz_id));
                    tx.execute(
                        "INSERT INTO order_authorizations (order_id, authorization_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &params![order_id, authz_id],
                    )
                    .await?;
                }
                let event = AuditEvent::by_account(new.account_id, "order.create")
                    .order(OrderId(order_id))
                    .details(serde_json::json!({
                        "identifiers": new.identifiers,
                        "profile": new.profile,
                        "replaces": new.replaces.as_ref().map(|r| &r.1),
                        "not_before": new.not_before,
                        "not_after": new.not_after,
                    }));
                audit::append(tx, &event).await?;
                // As `order` reads them: by id, each once.
                authz_ids.sort_by_key(|a| a.0);
                authz_ids.dedup();
                OrderRecord::from_row(&order_row, authz_ids)
            })
        })
        .await
    }

    /// The order with `id`, with its authorization ids.
    pub async fn order(&self, id: OrderId) -> Result<OrderRecord> {
        // One statement: the order's columns on every row, one row per authorization.
        let rows = self
            .read_all(
                "SELECT o.*, oa.authorization_id AS order_authorization_id
                 FROM orders o LEFT JOIN order_authorizations oa ON oa.order_id = o.id
                 WHERE o.id = $1 ORDER BY oa.authorization_id",
                &params![id.0],
            )
            .await?;
        let first = rows.first().ok_or(StoreError::NotFound)?;
        let authz_ids = rows
            .iter()
            .filter_map(|r| r.opt_int("order_authorization_id").transpose())
            .map(|id| Ok(AuthzId(id?)))
            .collect::<Result<_>>()?;
        OrderRecord::from_row(first, authz_ids)
    }

    /// Statuses and expiry of an order's authorizations, for deriving the order's status.
    pub async fn order_authorization_states(
        &self,
        id: OrderId,
    ) -> Result<Vec<(AuthorizationStatus, i64)>> {
        self.read_all(
            "SELECT a.status, a.expires FROM authorizations a
             JOIN order_authorizations oa ON oa.authorization_id = a.id
             WHERE oa.order_id = $1",
            &params![id.0],
        )
        .await?
        .iter()
        .map(|r| {
            let status = parse_status(&r.text("status")?, AuthorizationStatus::parse)?;
            Ok((status, r.int("expires")?))
        })
        .collect()
    }

    /// An account's latest orders, newest first (at most `limit`, up to 50).
    pub async fn recent_account_orders(
        &self,
        account: AccountId,
        limit: usize,
    ) -> Result<Vec<OrderRecord>> {
        let ids = self
            .read_all(
                "SELECT id FROM orders WHERE account_id = $1 ORDER BY id DESC LIMIT $2",
                &params![account.0, limit.clamp(1, 50) as i64],
            )
            .await?;
        let mut orders = Vec::with_capacity(ids.len());
        for row in &ids {
            orders.push(self.order(OrderId(row.int("id")?)).await?);
        }
        Ok(orders)
    }

    /// A page of an account's order ids, oldest first, after `after` (exclusive).
    pub async fn account_order_ids(
        &self,
        account: AccountId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<OrderId>> {
        self.read_all(
            "SELECT id FROM orders WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            &params![account.0, after, i64::from(limit)],
        )
        .await?
        .iter()
        .map(|r| Ok(OrderId(r.int("id")?)))
        .collect()
    }

    /// Moves a `pending`-stored order (whose authorizations the RA found all valid) to
    /// `processing` and keeps its CSR. False if another finalize got there first.
    pub async fn begin_finalize(
        &self,
        order: OrderId,
        csr_der: &[u8],
        lease_until: i64,
    ) -> Result<bool> {
        let params = params![csr_der, lease_until, order.0].into();
        let done = self.write_one(BEGIN_FINALIZE.as_str(), params).await?;
        Ok(done == 1)
    }

    /// Stores the issued certificate and marks the order valid, atomically. `Conflict` if
    /// the serial is already taken (the caller issues again with a fresh serial).
    pub async fn complete_order(&self, order: OrderId, cert: &NewCertificate) -> Result<()> {
        let (cert, hooks) = (cert.clone(), self.webhooks.clone());
        self.write(move |tx| Box::pin(async move { complete_in(tx, order, &cert, &hooks).await }))
            .await
    }

    /// Marks an order invalid with `problem`.
    pub async fn fail_order(&self, order: OrderId, problem: &Problem) -> Result<bool> {
        let problem = problem.clone();
        self.write(move |tx| {
            Box::pin(async move { fail_in(tx, order, &problem, serde_json::json!({})).await })
        })
        .await
    }
}

/// `begin_finalize` inside a transaction.
pub(super) async fn begin_finalize_in(
    tx: &mut dyn Tx,
    order: OrderId,
    csr_der: &[u8],
    lease_until: i64,
) -> Result<bool> {
    let done = tx
        .execute(
            &BEGIN_FINALIZE,
            &params![csr_der.to_vec(), lease_until, order.0],
        )
        .await?;
    Ok(done == 1)
}

/// `complete_order` inside a transaction: the certificate, the order valid, the audit
/// entry, and the `certificate.issued` event when an endpoint wants it.
pub(super) async fn complete_in(
    tx: &mut dyn Tx,
    order: OrderId,
    cert: &NewCertificate,
    hooks: &WebhookRoutes,
) -> Result<()> {
    tx.execute(
        "INSERT INTO certificates (serial, account_id, order_id, der, chain_pem, names, not_before, not_after, created_at, profile, issuer)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &params![
            &cert.serial,
            cert.account_id.0,
            order.0,
            &cert.der,
            &cert.chain_pem,
            serde_json::to_string(&cert.names).expect("identifiers serialize"),
            cert.not_before,
            cert.not_after,
            cert.created_at,
            &cert.profile,
            &cert.issuer,
        ],
    )
    .await
    .map_err(unique_is_conflict)?;
    certificate_names::insert_in(tx, &cert.serial, cert.not_after, &cert.names).await?;
    // The account's EAB label (for the audit entry) comes back with the update.
    let done = tx
        .fetch_optional(&COMPLETE, &params![&cert.serial, order.0])
        .await?;
    let Some(done) = done else {
        return Err(StoreError::NotFound);
    };
    let eab_label = done.opt_text("eab_label")?;
    let event = AuditEvent::by_account(cert.account_id, "certificate.issue")
        .order(order)
        .serial(&cert.serial)
        .details(serde_json::json!({
            "names": cert.names,
            "profile": cert.profile,
            "issuer": cert.issuer,
            "key_type": cert.key_type,
            "not_before": cert.not_before,
            "not_after": cert.not_after,
            "eab_label": eab_label,
        }));
    audit::append(tx, &event).await?;
    if !hooks.wants(webhooks::CERTIFICATE_ISSUED) {
        return Ok(());
    }
    webhooks::enqueue_now(
        tx,
        hooks,
        webhooks::CERTIFICATE_ISSUED,
        serde_json::json!({
            "serial": cert.serial,
            "names": cert.names,
            "account_id": cert.account_id.0,
            "order_id": order.0,
            "eab_label": eab_label,
            "profile": cert.profile,
            "issuer": cert.issuer,
            "not_before": crate::clock::rfc3339(cert.not_before),
            "not_after": crate::clock::rfc3339(cert.not_after),
        }),
    )
    .await
}

/// `fail_order` inside a transaction, with `details` added to the audit entry's. Only
/// an order still being issued: a run whose lease ran out must not turn the order
/// another run completed meanwhile invalid.
pub(super) async fn fail_in(
    tx: &mut dyn Tx,
    order: OrderId,
    problem: &Problem,
    details: serde_json::Value,
) -> Result<bool> {
    let row = tx
        .fetch_optional(
            &FAIL,
            &params![
                serde_json::to_string(problem).expect("problems serialize"),
                order.0
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let mut all = serde_json::json!({ "problem": problem });
    if let (Some(all), serde_json::Value::Object(more)) = (all.as_object_mut(), details) {
        all.extend(more);
    }
    let event = AuditEvent::new(&Actor::System, "order.fail")
        .account(AccountId(row.int("account_id")?))
        .order(order)
        .details(all);
    audit::append(tx, &event).await?;
    Ok(true)
}
