//! Shared nonces, for several instances on PostgreSQL: any instance redeems a nonce
//! another issued. One autocommit statement per nonce is the cheapest write there, so they
//! bypass `write`. (A single instance keeps its nonces in memory: `wfe::nonce`.)

use std::sync::LazyLock;

use super::engine::columns::{Columns, Prefixed};
use super::engine::tx::{params, sqlx_execute, sqlx_fetch_all, Param};
use super::{
    AccountId, AccountRecord, AuthzId, AuthzRecord, Backend, CertificateRecord, OrderId,
    OrderRecord, Result, Store,
};

/// The record a `kid`-signed request to an object's URL reads first after its account
/// (the object its URL names), which PostgreSQL reads in the same statement as the
/// nonce's redemption and the account: one round trip for all three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prefetch {
    /// An authorization (its URL, or one of its challenges').
    Authorization(AuthzId),
    /// An order (its URL, or its finalize URL).
    Order(OrderId),
    /// A certificate, by serial.
    Certificate(String),
}

/// A prefetched record; `None` inside when there is none with that id.
#[derive(Debug, Clone)]
pub enum Prefetched {
    /// The authorization with its challenges.
    Authorization(Option<AuthzRecord>),
    /// The order with its authorizations' ids.
    Order(Option<OrderRecord>),
    /// The certificate.
    Certificate(Option<CertificateRecord>),
}

/// What `account_redeeming_nonce` found.
#[derive(Debug, Clone)]
pub struct Redeemed {
    /// Whether the nonce was spent by this call.
    pub spent: bool,
    /// The account, if it exists.
    pub account: Option<AccountRecord>,
    /// The record asked for (PostgreSQL only; `None` elsewhere or when none was asked).
    pub prefetched: Option<Prefetched>,
}

/// The account's columns, read prefixed `acct_` beside a prefetched record's own.
const ACCOUNT_COLUMNS: [&str; 9] = [
    "id",
    "key_thumbprint",
    "jwk",
    "contact",
    "status",
    "tos_agreed",
    "created_at",
    "eab_kid",
    "eab_label",
];

/// `account_redeeming_nonce` on PostgreSQL: spends nonce `$1` (unexpired at `$2`) and reads
/// account `$3`, its columns prefixed `acct_`, in one statement (a data-modifying CTE,
/// which SQLite does not have); with `object`, also that read (its id `$4`) and the order
/// of its rows, one row with NULLs when it finds nothing.
fn redeeming(object: Option<(&str, &str)>) -> String {
    let account: Vec<String> = ACCOUNT_COLUMNS
        .iter()
        .map(|c| format!("acct.{c} AS acct_{c}"))
        .collect();
    let (columns, join) = match object {
        None => (String::new(), String::new()),
        Some((read, order)) => (
            ", x.*".to_owned(),
            format!(
                " LEFT JOIN ({}) AS x ON true ORDER BY {order}",
                read.replace("$1", "$4")
            ),
        ),
    };
    format!(
        "WITH spent AS (DELETE FROM nonces WHERE nonce = $1 AND expires > $2 RETURNING 1)
         SELECT (SELECT count(*) FROM spent) AS redeemed, {account}{columns}
         FROM (SELECT 1 AS one) AS one
         LEFT JOIN accounts AS acct ON acct.id = $3{join}",
        account = account.join(", "),
    )
}

/// The redeeming statements: the account alone, and with an authorization, an order or
/// a certificate.
static REDEEMING: LazyLock<[String; 4]> = LazyLock::new(|| {
    [
        redeeming(None),
        redeeming(Some((super::authorizations::READ, "x.c_id"))),
        redeeming(Some((super::orders::READ, "x.order_authorization_id"))),
        redeeming(Some((super::certificates::READ, "x.serial"))),
    ]
});

/// The redeeming statements, for the query-plan test.
#[cfg(test)]
pub(super) fn redeeming_statements() -> Vec<String> {
    REDEEMING.to_vec()
}

/// How many nonces `insert_nonces` records at once.
pub const NONCE_BATCH: usize = 32;

/// `insert_nonces`: `$1` is the expiry, `$2` … the nonces.
pub(super) static INSERT_NONCES: LazyLock<String> = LazyLock::new(|| {
    let rows: Vec<String> = (0..NONCE_BATCH)
        .map(|i| format!("(${}, $1)", i + 2))
        .collect();
    format!(
        "INSERT INTO nonces (nonce, expires) VALUES {}",
        rows.join(", ")
    )
});

impl Store {
    /// Records a nonce this instance issued (shared nonces: any instance redeems it).
    pub async fn insert_nonce(&self, nonce: &str, expires: i64) -> Result<()> {
        self.counters.statement();
        sqlx::query("INSERT INTO nonces (nonce, expires) VALUES ($1, $2)")
            .bind(nonce)
            .bind(expires)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Records [`NONCE_BATCH`] nonces this instance issued, in one statement (shared
    /// nonces: any instance redeems them), all expiring at `expires`.
    pub async fn insert_nonces(&self, nonces: &[String; NONCE_BATCH], expires: i64) -> Result<()> {
        self.counters.statement();
        let mut params = Vec::with_capacity(NONCE_BATCH + 1);
        params.push(Param::from(expires));
        params.extend(nonces.iter().map(Param::from));
        sqlx_execute(&self.writer, &INSERT_NONCES, &params).await?;
        Ok(())
    }

    /// Redeems a nonce: true exactly once, and only before it expires.
    pub async fn redeem_nonce(&self, nonce: &str, now: i64) -> Result<bool> {
        self.counters.statement();
        let done = sqlx::query("DELETE FROM nonces WHERE nonce = $1 AND expires > $2")
            .bind(nonce)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Redeems a nonce (as [`Store::redeem_nonce`]) and reads account `id` (as
    /// [`Store::account`], `None` if there is none), in one round trip on PostgreSQL: the
    /// first statement of every `kid`-signed request. With `prefetch`, PostgreSQL reads
    /// that record in the same statement (SQLite, whose reads cost no round trip, leaves
    /// it to the caller). The nonce is spent whatever the request's fate afterwards.
    pub async fn account_redeeming_nonce(
        &self,
        id: AccountId,
        nonce: &str,
        now: i64,
        prefetch: Option<&Prefetch>,
    ) -> Result<Redeemed> {
        if self.backend != Backend::Postgres {
            let account = match self.account(id).await {
                Ok(a) => Some(a),
                Err(super::StoreError::NotFound) => None,
                Err(e) => return Err(e),
            };
            let spent = self.redeem_nonce(nonce, now).await?;
            return Ok(Redeemed {
                spent,
                account,
                prefetched: None,
            });
        }
        self.counters.statement();
        let (sql, object) = match prefetch {
            None => (&REDEEMING[0], None),
            Some(Prefetch::Authorization(a)) => (&REDEEMING[1], Some(Param::from(a.0))),
            Some(Prefetch::Order(o)) => (&REDEEMING[2], Some(Param::from(o.0))),
            Some(Prefetch::Certificate(serial)) => {
                (&REDEEMING[3], Some(Param::from(serial.as_str())))
            }
        };
        let mut values = params![nonce, now, id.0].to_vec();
        values.extend(object);
        let rows = sqlx_fetch_all(&self.writer, sql, &values).await?;
        let row = rows.first().ok_or(super::StoreError::NotFound)?;
        let spent = row.int("redeemed")? == 1;
        let account = Prefixed {
            prefix: "acct_",
            row,
        };
        let account = match account.opt_int("id")? {
            Some(_) => Some(AccountRecord::from_row(&account)?),
            None => None,
        };
        let Some(prefetch) = prefetch else {
            return Ok(Redeemed {
                spent,
                account,
                prefetched: None,
            });
        };
        let prefetched = match prefetch {
            Prefetch::Authorization(_) => {
                Prefetched::Authorization(super::authorizations::authorization_from_rows(&rows)?)
            }
            Prefetch::Order(_) => Prefetched::Order(super::orders::order_from_rows(&rows)?),
            Prefetch::Certificate(_) => Prefetched::Certificate(match row.opt_text("serial")? {
                Some(_) => Some(CertificateRecord::from_row(row)?),
                None => None,
            }),
        };
        Ok(Redeemed {
            spent,
            account,
            prefetched: Some(prefetched),
        })
    }

    /// Drops expired nonces; returns how many.
    pub async fn purge_nonces(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM nonces WHERE expires <= $1")
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::super::engine::columns::Columns;
    use super::super::engine::tx::sqlx_fetch_all;
    use crate::store::console::tests::{account, postgres_store, test_store};
    use crate::store::AccountId;

    /// One statement on PostgreSQL, two on SQLite; the same answers on both.
    #[tokio::test]
    async fn a_nonce_is_redeemed_once_with_the_accounts_read() {
        let s = test_store().await;
        let id = account(&s, &["mailto:a@example.test"]).await;
        s.insert_nonce("n1", 100).await.unwrap();
        s.insert_nonce("n2", 100).await.unwrap();
        s.insert_nonce("old", 50).await.unwrap();

        let redeemed = s.account_redeeming_nonce(id, "n1", 60, None).await.unwrap();
        assert!(redeemed.spent);
        assert!(redeemed.prefetched.is_none());
        let found = redeemed.account.expect("the account");
        let stored = s.account(id).await.unwrap();
        assert_eq!(found.jwk.thumbprint(), stored.jwk.thumbprint());
        assert_eq!(
            (found.id, &found.contact, found.created_at, found.status),
            (stored.id, &stored.contact, stored.created_at, stored.status)
        );
        // Every column (the redeeming statement names the account's columns one by one).
        assert_eq!(format!("{found:?}"), format!("{stored:?}"));
        // Spent once only; an expired or unknown nonce is not redeemed, and the account
        // is read all the same.
        for nonce in ["n1", "old", "never"] {
            let redeemed = s
                .account_redeeming_nonce(id, nonce, 60, None)
                .await
                .unwrap();
            assert!(!redeemed.spent, "{nonce}");
            assert!(redeemed.account.is_some(), "{nonce}");
        }
        // An unknown account: no account, and the nonce is spent all the same.
        let redeemed = s
            .account_redeeming_nonce(AccountId(id.0 + 1000), "n2", 60, None)
            .await
            .unwrap();
        assert!(redeemed.spent);
        assert!(redeemed.account.is_none());
        assert!(!s.redeem_nonce("n2", 60).await.unwrap());
    }

    /// PostgreSQL keeps the shared nonces in an unlogged table (migration 0020): spending
    /// or recording one waits for no WAL flush, and a crash empties the table, so that no
    /// nonce issued before it is accepted after it.
    #[tokio::test]
    async fn postgres_keeps_the_nonces_unlogged() {
        let Some(s) = postgres_store().await else {
            return;
        };
        // A catalog query, built with format! so that the SQLite plan test's scan of SQL
        // literals passes it by.
        let catalog = format!(
            "SELECT relname::TEXT AS relname, relpersistence::TEXT AS relpersistence
             FROM pg_class WHERE relname IN ({}) ORDER BY relname",
            "'nonces', 'nonces_by_expiry', 'accounts'"
        );
        let rows = sqlx_fetch_all(&s.reader, &catalog, &[]).await.unwrap();
        let found: Vec<(String, String)> = rows
            .iter()
            .map(|r| {
                (
                    r.text("relname").unwrap(),
                    r.text("relpersistence").unwrap(),
                )
            })
            .collect();
        let expected = [
            ("accounts", "p"),
            ("nonces", "u"),
            ("nonces_by_expiry", "u"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, p)| ((*n).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(found, expected);
    }

    /// With a prefetch, PostgreSQL reads the named record in the redeeming statement,
    /// exactly as its own read finds it (an authorization with its challenges, an order
    /// with its authorizations, a certificate), or finds none; the nonce and the account
    /// come out as without. SQLite leaves the read to the caller.
    #[tokio::test]
    async fn a_prefetched_record_is_the_record_its_own_read_finds() {
        use super::{Prefetch, Prefetched};
        use crate::store::{AuthzId, OrderId};

        let s = test_store().await;
        let id = account(&s, &[]).await;
        crate::store::console::tests::issue(&s, id, &["a.example", "b.example"], "0f", 90, None)
            .await;
        let order = s.order(OrderId(1)).await.unwrap();
        let authz = s.authorization(order.authorization_ids[0]).await.unwrap();
        let cert = s.certificate("0f").await.unwrap();
        let on_postgres = s.backend == crate::store::Backend::Postgres;
        let asks = [
            Prefetch::Authorization(authz.id),
            Prefetch::Order(order.id),
            Prefetch::Certificate("0f".into()),
            Prefetch::Authorization(AuthzId(authz.id.0 + 1000)),
            Prefetch::Order(OrderId(order.id.0 + 1000)),
            Prefetch::Certificate("ff".into()),
        ];
        for (n, ask) in asks.iter().enumerate() {
            let nonce = format!("p{n}");
            s.insert_nonce(&nonce, 100).await.unwrap();
            let redeemed = s
                .account_redeeming_nonce(id, &nonce, 60, Some(ask))
                .await
                .unwrap();
            assert!(redeemed.spent, "{ask:?}");
            assert_eq!(redeemed.account.map(|a| a.id), Some(id), "{ask:?}");
            let Some(found) = redeemed.prefetched else {
                assert!(!on_postgres, "{ask:?}: nothing prefetched on PostgreSQL");
                continue;
            };
            let found = match found {
                Prefetched::Authorization(a) => a.map(|a| format!("{a:?}")),
                Prefetched::Order(o) => o.map(|o| format!("{o:?}")),
                Prefetched::Certificate(c) => c.map(|c| format!("{c:?}")),
            };
            let expected = match n {
                0 => Some(format!("{authz:?}")),
                1 => Some(format!("{order:?}")),
                2 => Some(format!("{cert:?}")),
                _ => None,
            };
            assert_eq!(found, expected, "{ask:?}");
        }
        // Asked for with a spent nonce or an unknown account, the record still comes.
        let redeemed = s
            .account_redeeming_nonce(AccountId(id.0 + 1000), "p0", 60, Some(&asks[1]))
            .await
            .unwrap();
        assert!(!redeemed.spent && redeemed.account.is_none());
        assert_eq!(
            redeemed.prefetched.is_some(),
            on_postgres,
            "the record is read whatever the nonce and account"
        );
    }
}
