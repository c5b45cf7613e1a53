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
use super::engine::tx::{params, sqlx_fetch_all, Param, Row, Tx};
use super::statuses::{guard, quoted, set, status_sql};
use super::webhooks::{self, WebhookRoutes};
use super::{
    identifier_type_name, parse_status, unique_is_conflict, AccountId, AuthzId, Backend,
    NewAuthorization, NewCertificate, NewOrderRecord, OrderId, OrderRecord, Result, Store,
    StoreError,
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
        if self.backend == Backend::Postgres && new.replaces.is_none() {
            return self.create_in_one(&new).await;
        }
        // The order comes back from its INSERT (RETURNING *): no read after the write.
        self.write(move |tx| {
            Box::pin(async move {
                let new = &new;
                let order_row = tx
                    .fetch_one(
                        &INSERT_ORDER,
                        &order_params(new, new.replaces.as_ref().map(|r| r.0.clone())),
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
                audit::append(tx, &order_created(new, OrderId(order_id))).await?;
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
        let rows = self.read_all(&READ_ORDERED, &params![id.0]).await?;
        order_from_rows(&rows)?.ok_or(StoreError::NotFound)
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
        // On PostgreSQL one statement, alone in autocommit unless an event joins it.
        if self.backend == Backend::Postgres && !self.webhooks.wants(webhooks::CERTIFICATE_ISSUED) {
            let (sql, values) = complete_in_one(order, cert);
            self.counters.statement();
            let rows = sqlx_fetch_all(&self.writer, &sql, &values)
                .await
                .map_err(unique_is_conflict)?;
            return match rows.is_empty() {
                true => Err(StoreError::NotFound),
                false => Ok(()),
            };
        }
        let (cert, hooks) = (cert.clone(), self.webhooks.clone());
        let backend = self.backend;
        self.write(move |tx| {
            Box::pin(async move { complete_in(tx, backend, order, &cert, &hooks).await })
        })
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

/// The read of an order (`$1`) with its authorizations' ids: one row per authorization,
/// the order's columns on each; without its order (`READ_ORDERED`), so that a larger
/// statement can join it (`nonces`).
pub(super) const READ: &str = "SELECT o.*, oa.authorization_id AS order_authorization_id
 FROM orders o LEFT JOIN order_authorizations oa ON oa.order_id = o.id
 WHERE o.id = $1";

/// `Store::order`: `READ`, its authorizations by id.
static READ_ORDERED: LazyLock<String> =
    LazyLock::new(|| format!("{READ} ORDER BY oa.authorization_id"));

/// An order from the rows of its read (`Store::order`): its columns on every row, one
/// row per authorization with its id as `order_authorization_id`; `None` when the rows
/// hold no order (no row, or its `id` NULL).
pub(super) fn order_from_rows(rows: &[Row]) -> Result<Option<OrderRecord>> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    if first.opt_int("id")?.is_none() {
        return Ok(None);
    }
    let authz_ids = rows
        .iter()
        .filter_map(|r| r.opt_int("order_authorization_id").transpose())
        .map(|id| Ok(AuthzId(id?)))
        .collect::<Result<_>>()?;
    OrderRecord::from_row(first, authz_ids).map(Some)
}

/// The audit event of a new order.
fn order_created(new: &NewOrderRecord, order: OrderId) -> AuditEvent {
    AuditEvent::by_account(new.account_id, "order.create")
        .order(order)
        .details(serde_json::json!({
            "identifiers": new.identifiers,
            "profile": new.profile,
            "replaces": new.replaces.as_ref().map(|r| &r.1),
            "not_before": new.not_before,
            "not_after": new.not_after,
        }))
}

/// The order row's values, in `INSERT_ORDER`'s order (and the first eight of
/// `create_order_sql`'s), with the ARI id of the certificate it replaces.
fn order_params(new: &NewOrderRecord, replaces: Option<String>) -> [Param; 8] {
    params![
        new.account_id.0,
        serde_json::to_string(&new.identifiers).expect("identifiers serialize"),
        new.expires,
        new.not_before,
        new.not_after,
        new.now,
        &new.profile,
        replaces,
    ]
}

impl Store {
    /// PostgreSQL's `create_order` (without `replaces`): the order, its new
    /// authorizations and their challenges, the order's links to every authorization and
    /// its audit entry, in one statement (`create_order_sql`) run in autocommit: one round
    /// trip instead of `BEGIN`, three or more per authorization, and `COMMIT`.
    async fn create_in_one(&self, new: &NewOrderRecord) -> Result<OrderRecord> {
        let mut values = order_params(new, None).to_vec();
        let mut reused = Vec::new();
        for authz in &new.authorizations {
            match authz {
                NewAuthorization::Reuse(id) => reused.push(id.0),
                NewAuthorization::Create {
                    identifier,
                    wildcard,
                    expires,
                    ..
                } => values.extend(params![
                    identifier_type_name(identifier.kind),
                    &identifier.value,
                    *wildcard,
                    *expires,
                ]),
            }
        }
        for authz in &new.authorizations {
            if let NewAuthorization::Create { challenges, .. } = authz {
                for (kind, token) in challenges {
                    values.extend(params![kind.as_str(), token]);
                }
            }
        }
        values.extend(reused.iter().map(|id| Param::from(*id)));
        // The entry's own values; its order id comes from the order's INSERT.
        let event = order_created(new, OrderId(0));
        values.extend(params![
            audit::unix_now(),
            &event.actor,
            event.details.to_string()
        ]);
        self.counters.statement();
        let rows = sqlx_fetch_all(
            &self.writer,
            &create_order_sql(&new.authorizations),
            &values,
        )
        .await?;
        let first = rows.first().ok_or(StoreError::NotFound)?;
        let mut authz_ids = reused.into_iter().map(AuthzId).collect::<Vec<_>>();
        for row in &rows {
            if let Some(id) = row.opt_int("new_authorization_id")? {
                authz_ids.push(AuthzId(id));
            }
        }
        // As `order` reads them: by id, each once.
        authz_ids.sort_by_key(|a| a.0);
        authz_ids.dedup();
        OrderRecord::from_row(first, authz_ids)
    }
}

/// The statement of `create_in_one` for these authorizations (PostgreSQL: data-modifying
/// CTEs). Parameters: `$1`–`$8` the order (as `INSERT_ORDER`, `$8` NULL); then per new
/// authorization its identifier type, value, wildcard and expiry; then per challenge of
/// the new ones, in order, its type and token; then the reused authorizations' ids; then
/// the audit entry's `at`, actor and details (`audit::InlineEntry`). The new
/// authorizations are one multi-row `INSERT` (ids in the order given), their challenges
/// one `INSERT … SELECT` ordered as given, so ids come out as the statement by statement
/// path assigns them. Rows: the order's columns and one `new_authorization_id` per new
/// authorization (NULL when there is none).
pub(super) fn create_order_sql(authorizations: &[NewAuthorization]) -> String {
    let mut next = 9;
    let mut param = || {
        let p = format!("${next}");
        next += 1;
        p
    };
    let mut authz_rows = Vec::new();
    for authz in authorizations {
        if let NewAuthorization::Create { .. } = authz {
            let (kind, value, wildcard, expires) = (param(), param(), param(), param());
            authz_rows.push(format!(
                "($1, {kind}, {value}, {wildcard}, {created}, {expires}, $6)",
                created = quoted(AUTHORIZATION_CREATED)
            ));
        }
    }
    let mut challenge_rows = Vec::new();
    let mut n = 0;
    for authz in authorizations {
        if let NewAuthorization::Create { challenges, .. } = authz {
            n += 1;
            for k in 0..challenges.len() {
                let (kind, token) = (param(), param());
                challenge_rows.push(format!("({n}, {k}, {kind}, {token})"));
            }
        }
    }
    let reused: Vec<String> = authorizations
        .iter()
        .filter(|a| matches!(a, NewAuthorization::Reuse(_)))
        .map(|_| format!("({}::BIGINT)", param()))
        .collect();
    let (at, actor, details) = (param(), param(), param());
    let entry = audit::InlineEntry {
        changed: "o",
        at: &at,
        actor: &actor,
        action: "'order.create'",
        account: "o.account_id",
        order: "o.id",
        authz: "NULL",
        challenge: "NULL",
        serial: "NULL",
        details: &details,
    };
    let mut sql = format!(
        "WITH o AS (INSERT INTO orders (account_id, status, identifiers, expires, not_before, not_after, created_at, profile, replaces)
                    VALUES ($1, {created}, $2, $3, $4, $5, $6, $7, $8) RETURNING *),
              {audit}",
        created = quoted(ORDER_CREATED),
        audit = entry.ctes(),
    );
    let mut linked = Vec::new();
    if !authz_rows.is_empty() {
        sql.push_str(&format!(
            ",
              a AS (INSERT INTO authorizations
                      (account_id, identifier_type, identifier_value, wildcard, status, expires, created_at)
                    VALUES {} RETURNING id)",
            authz_rows.join(", ")
        ));
        linked.push("(SELECT id FROM a)".to_owned());
    }
    if !challenge_rows.is_empty() {
        sql.push_str(&format!(
            ",
              n AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM a),
              c AS (INSERT INTO challenges (authorization_id, type, token, status)
                    SELECT n.id, v.type, v.token, {created}
                    FROM n JOIN (VALUES {rows}) AS v (n, k, type, token) ON v.n = n.n
                    ORDER BY v.n, v.k)",
            created = quoted(CHALLENGE_CREATED),
            rows = challenge_rows.join(", ")
        ));
    }
    if !reused.is_empty() {
        linked.push(format!("VALUES {}", reused.join(", ")));
    }
    if !linked.is_empty() {
        sql.push_str(&format!(
            ",
              l AS (INSERT INTO order_authorizations (order_id, authorization_id)
                    SELECT o.id, x.id FROM o, ({}) AS x (id) ON CONFLICT DO NOTHING)",
            linked.join(" UNION ALL ")
        ));
    }
    // One row per new authorization (its id), or one row.
    let (new_id, from) = match authz_rows.is_empty() {
        true => ("NULL::BIGINT", "o"),
        false => ("a.id", "o CROSS JOIN a ORDER BY a.id"),
    };
    sql.push_str(&format!(
        "
         SELECT o.*, {new_id} AS new_authorization_id
         FROM {from}"
    ));
    sql
}

/// The shapes of `create_order_sql` the query-plan tests check: one new authorization
/// with one and with three challenges, one reused, and two new with one reused.
#[cfg(test)]
pub(super) fn create_order_examples() -> Vec<String> {
    use certwright_proto::types::{ChallengeType, Identifier};
    let create = |challenges: usize| NewAuthorization::Create {
        identifier: Identifier::dns("a.example"),
        wildcard: false,
        expires: 0,
        challenges: (0..challenges)
            .map(|i| (ChallengeType::Http01, format!("t{i}")))
            .collect(),
    };
    let reuse = || NewAuthorization::Reuse(AuthzId(1));
    [
        vec![create(1)],
        vec![create(3)],
        vec![reuse()],
        vec![create(3), reuse(), create(2)],
    ]
    .iter()
    .map(|shape| create_order_sql(shape))
    .collect()
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
    backend: Backend,
    order: OrderId,
    cert: &NewCertificate,
    hooks: &WebhookRoutes,
) -> Result<()> {
    let eab_label = if backend == Backend::Postgres {
        let (sql, values) = complete_in_one(order, cert);
        let done = tx
            .fetch_optional(&sql, &values)
            .await
            .map_err(unique_is_conflict)?;
        done.ok_or(StoreError::NotFound)?.opt_text("eab_label")?
    } else {
        let eab_label = complete_statements(tx, order, cert).await?;
        audit::append(tx, &certificate_issued(order, cert, eab_label.as_deref())).await?;
        eab_label
    };
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

/// The audit event of an issued certificate.
fn certificate_issued(
    order: OrderId,
    cert: &NewCertificate,
    eab_label: Option<&str>,
) -> AuditEvent {
    AuditEvent::by_account(cert.account_id, "certificate.issue")
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
        }))
}

/// The parameters of the certificate's `INSERT` (`$1`–`$11`).
fn certificate_params(order: OrderId, cert: &NewCertificate) -> Vec<Param> {
    params![
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
    ]
    .to_vec()
}

/// PostgreSQL's `complete_in` writes: the order valid and, only if it changed, the
/// certificate, its name index rows and the audit entry, in one statement
/// (`complete_sql`), which answers with the account's EAB label (no row and no change:
/// the order was not being issued). All or nothing in autocommit too.
fn complete_in_one(order: OrderId, cert: &NewCertificate) -> (String, Vec<Param>) {
    let keys = certificate_names::keys(&cert.names);
    let mut values = certificate_params(order, cert);
    for (kind, name) in &keys {
        values.push(Param::from(*kind));
        values.push(Param::from(name.as_str()));
    }
    // The entry's details but the EAB label, which the statement reads: serde_json
    // orders an object's keys, and "eab_label" comes first, so the rest follows it.
    let event = certificate_issued(order, cert, None);
    let mut details = event.details.clone();
    if let Some(fields) = details.as_object_mut() {
        fields.remove("eab_label");
    }
    let rest = details.to_string();
    values.extend(params![
        audit::unix_now(),
        &event.actor,
        format!(",{}", rest.strip_prefix('{').unwrap_or(&rest)),
    ]);
    (complete_sql(keys.len()), values)
}

/// `complete_in_one`'s statement for a certificate with `names` distinct index rows:
/// `$1`–`$11` as the certificate's `INSERT`, then kind and name of each index row, then
/// the audit entry's `at`, actor and its details after the EAB label (the details'
/// text from its first comma on).
pub(super) fn complete_sql(names: usize) -> String {
    let names_cte = if names == 0 {
        String::new()
    } else {
        format!(
            "n AS ({}),",
            certificate_names::insert_select_sql_after(names, 11, "$8", "$1", "u")
        )
    };
    let first = 12 + 2 * names;
    let (at, actor, rest) = (
        format!("${first}"),
        format!("${}", first + 1),
        format!("${}", first + 2),
    );
    let details = format!(
        "'{{\"eab_label\":' || coalesce(to_json(u.eab_label)::TEXT, 'null') || {rest}::TEXT"
    );
    let entry = audit::InlineEntry {
        changed: "u",
        at: &at,
        actor: &actor,
        action: "'certificate.issue'",
        account: "$2",
        order: "$3",
        authz: "NULL",
        challenge: "NULL",
        serial: "$1",
        details: &details,
    };
    format!(
        "WITH u AS (UPDATE orders SET {to}, certificate_serial = $1, csr = NULL
                    WHERE id = $3 AND {from}
                    RETURNING (SELECT eab_label FROM accounts WHERE id = orders.account_id) AS eab_label),
              c AS (INSERT INTO certificates (serial, account_id, order_id, der, chain_pem, names, not_before, not_after, created_at, profile, issuer)
                    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM u),
              {names_cte}
              {audit}
         SELECT u.eab_label FROM u",
        to = set(&ORDER_COMPLETE),
        from = guard("status", &ORDER_COMPLETE),
        audit = entry.ctes(),
    )
}

/// The shapes of `complete_sql` the query-plan tests check.
#[cfg(test)]
pub(super) fn complete_examples() -> Vec<String> {
    (0..=2).map(complete_sql).collect()
}

/// `complete_in`'s writes statement by statement (SQLite, where a statement costs no
/// round trip): the certificate, its name index rows, the order valid; the account's EAB
/// label.
async fn complete_statements(
    tx: &mut dyn Tx,
    order: OrderId,
    cert: &NewCertificate,
) -> Result<Option<String>> {
    tx.execute(
        "INSERT INTO certificates (serial, account_id, order_id, der, chain_pem, names, not_before, not_after, created_at, profile, issuer)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &certificate_params(order, cert),
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
    done.opt_text("eab_label")
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

#[cfg(test)]
mod tests {
    use certwright_proto::types::{ChallengeType, Identifier};
    use certwright_proto::{AccountKey, KeyType};

    use super::super::console::tests::test_store;
    use super::super::{AuditVerdict, CertificateRecord};
    use super::*;

    fn create(name: &str, tokens: &[&str]) -> NewAuthorization {
        NewAuthorization::Create {
            identifier: Identifier::dns(name),
            wildcard: false,
            expires: 100,
            challenges: tokens
                .iter()
                .zip([
                    ChallengeType::Http01,
                    ChallengeType::Dns01,
                    ChallengeType::TlsAlpn01,
                ])
                .map(|(token, kind)| (kind, (*token).to_owned()))
                .collect(),
        }
    }

    fn order(account: AccountId, authorizations: Vec<NewAuthorization>) -> NewOrderRecord {
        NewOrderRecord {
            account_id: account,
            identifiers: vec![Identifier::dns("a.example"), Identifier::dns("b.example")],
            expires: 100,
            not_before: None,
            not_after: None,
            authorizations,
            now: 1,
            profile: None,
            replaces: None,
        }
    }

    fn certificate(account: AccountId, serial: &str, names: &[&str]) -> NewCertificate {
        NewCertificate {
            serial: serial.into(),
            account_id: account,
            der: vec![0x30, 0x00],
            chain_pem: "-----BEGIN CERTIFICATE-----\n".into(),
            names: names.iter().map(|n| Identifier::dns(*n)).collect(),
            not_before: 1,
            not_after: 99,
            created_at: 2,
            profile: None,
            key_type: "ECDSA P-256".into(),
            issuer: "intermediate".into(),
        }
    }

    /// On either engine (one statement on PostgreSQL, several on SQLite), an order with
    /// new and reused authorizations gets ids in the order given, its challenges in
    /// theirs, and reads back as it was returned; the audit chain stays intact.
    #[tokio::test]
    async fn an_order_with_new_and_reused_authorizations_is_created_as_given() {
        let s = test_store().await;
        let jwk = AccountKey::generate(KeyType::EcP256).unwrap().jwk();
        let account = s.create_account(&jwk, &[], true, 1).await.unwrap().id;
        let first = s
            .create_order(&order(account, vec![create("c.example", &["c1"])]))
            .await
            .unwrap();
        let reused = first.authorization_ids[0];
        let authorizations = vec![
            create("a.example", &["a1", "a2", "a3"]),
            NewAuthorization::Reuse(reused),
            create("b.example", &["b1", "b2"]),
            NewAuthorization::Reuse(reused),
        ];
        let created = s
            .create_order(&order(account, authorizations))
            .await
            .unwrap();
        let read = s.order(created.id).await.unwrap();
        assert_eq!(format!("{read:?}"), format!("{created:?}"));
        let ids = &created.authorization_ids;
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert_eq!(ids[0], reused);
        let (a, b) = (
            s.authorization(ids[1]).await.unwrap(),
            s.authorization(ids[2]).await.unwrap(),
        );
        assert_eq!(
            (a.identifier.value.as_str(), b.identifier.value.as_str()),
            ("a.example", "b.example")
        );
        for (authz, tokens) in [(&a, vec!["a1", "a2", "a3"]), (&b, vec!["b1", "b2"])] {
            let mut challenges = authz.challenges.clone();
            challenges.sort_by_key(|c| c.id.0);
            let got: Vec<&str> = challenges.iter().map(|c| c.token.as_str()).collect();
            assert_eq!(got, tokens);
            assert!(challenges.iter().all(|c| c.authorization_id == authz.id));
        }
        assert!(matches!(
            s.verify_audit().await.unwrap(),
            AuditVerdict::Intact { entries: 3, .. }
        ));
    }

    /// `complete_order` stores the certificate and its name index rows and marks the
    /// order valid, or, for an order not being issued, nothing at all; a taken serial is
    /// a `Conflict`.
    #[tokio::test]
    async fn completing_an_order_is_all_or_nothing() {
        let s = test_store().await;
        let jwk = AccountKey::generate(KeyType::EcP256).unwrap().jwk();
        let account = s.create_account(&jwk, &[], true, 1).await.unwrap().id;
        let new = order(account, vec![create("a.example", &["t"])]);
        let (done, pending) = (
            s.create_order(&new).await.unwrap(),
            s.create_order(&new).await.unwrap(),
        );
        let cert = certificate(account, "0c", &["a.example", "B.example", "b.example"]);
        assert!(matches!(
            s.complete_order(pending.id, &cert).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            s.certificate("0c").await,
            Err(StoreError::NotFound)
        ));
        assert!(s.begin_finalize(done.id, b"csr", 60).await.unwrap());
        s.complete_order(done.id, &cert).await.unwrap();
        let stored: CertificateRecord = s.certificate("0c").await.unwrap();
        assert_eq!(stored.order_id, done.id);
        let order = s.order(done.id).await.unwrap();
        assert_eq!(order.certificate_serial.as_deref(), Some("0c"));
        assert!(order.csr.is_none());
        // B.example and b.example are one row (a second would violate the key).
        for name in ["example.a", "example.b"] {
            let rows = s
                .read_all(
                    "SELECT serial FROM certificate_names WHERE kind = $1 AND name = $2",
                    &params!["dns", name],
                )
                .await
                .unwrap();
            let serials: Vec<String> = rows.iter().map(|r| r.text("serial").unwrap()).collect();
            assert_eq!(serials, ["0c"], "{name}");
        }
        assert!(s.begin_finalize(pending.id, b"csr", 60).await.unwrap());
        assert!(matches!(
            s.complete_order(pending.id, &cert).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(s.order(pending.id).await.unwrap().certificate_serial, None);
        assert!(matches!(
            s.verify_audit().await.unwrap(),
            AuditVerdict::Intact { entries: 4, .. }
        ));
    }
}
