//! Shared nonces, for several instances on PostgreSQL: any instance redeems a nonce
//! another issued. One autocommit statement per nonce is the cheapest write there, so they
//! bypass `write`. (A single instance keeps its nonces in memory: `wfe::nonce`.)

use std::sync::LazyLock;

use super::engine::columns::Columns;
use super::engine::tx::{params, sqlx_execute, sqlx_fetch_all, Param};
use super::{AccountId, AccountRecord, Backend, Result, Store};

/// `account_redeeming_nonce` on PostgreSQL: the nonce's redemption and the account's read
/// in one statement (a data-modifying CTE, which SQLite does not have: listed in
/// `query_plans::POSTGRES_ONLY`). `$1` nonce, `$2` now, `$3` the account id.
pub(super) const ACCOUNT_REDEEMING_NONCE: &str = "WITH spent AS (DELETE FROM nonces WHERE nonce = $1 AND expires > $2 RETURNING 1) SELECT (SELECT count(*) FROM spent) AS redeemed, accounts.* FROM (SELECT 1 AS one) AS one LEFT JOIN accounts ON accounts.id = $3";

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
    /// first statement of every `kid`-signed request. The nonce is spent whatever the
    /// request's fate afterwards.
    pub async fn account_redeeming_nonce(
        &self,
        id: AccountId,
        nonce: &str,
        now: i64,
    ) -> Result<(bool, Option<AccountRecord>)> {
        if self.backend != Backend::Postgres {
            let account = match self.account(id).await {
                Ok(a) => Some(a),
                Err(super::StoreError::NotFound) => None,
                Err(e) => return Err(e),
            };
            return Ok((self.redeem_nonce(nonce, now).await?, account));
        }
        self.counters.statement();
        let rows = sqlx_fetch_all(
            &self.writer,
            ACCOUNT_REDEEMING_NONCE,
            &params![nonce, now, id.0],
        )
        .await?;
        let row = rows.first().ok_or(super::StoreError::NotFound)?;
        let redeemed = row.int("redeemed")? == 1;
        let account = match row.opt_int("id")? {
            Some(_) => Some(AccountRecord::from_row(row)?),
            None => None,
        };
        Ok((redeemed, account))
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
    use crate::store::console::tests::{account, test_store};
    use crate::store::AccountId;

    /// One statement on PostgreSQL, two on SQLite; the same answers on both.
    #[tokio::test]
    async fn a_nonce_is_redeemed_once_with_the_accounts_read() {
        let s = test_store().await;
        let id = account(&s, &["mailto:a@example.test"]).await;
        s.insert_nonce("n1", 100).await.unwrap();
        s.insert_nonce("n2", 100).await.unwrap();
        s.insert_nonce("old", 50).await.unwrap();

        let (spent, found) = s.account_redeeming_nonce(id, "n1", 60).await.unwrap();
        assert!(spent);
        let found = found.expect("the account");
        let stored = s.account(id).await.unwrap();
        assert_eq!(found.jwk.thumbprint(), stored.jwk.thumbprint());
        assert_eq!(
            (found.id, found.contact, found.created_at, found.status),
            (stored.id, stored.contact, stored.created_at, stored.status)
        );
        // Spent once only; an expired or unknown nonce is not redeemed, and the account
        // is read all the same.
        for nonce in ["n1", "old", "never"] {
            let (spent, found) = s.account_redeeming_nonce(id, nonce, 60).await.unwrap();
            assert!(!spent, "{nonce}");
            assert!(found.is_some(), "{nonce}");
        }
        // An unknown account: no account, and the nonce is spent all the same.
        let (spent, found) = s
            .account_redeeming_nonce(AccountId(id.0 + 1000), "n2", 60)
            .await
            .unwrap();
        assert!(spent);
        assert!(found.is_none());
        assert!(!s.redeem_nonce("n2", 60).await.unwrap());
    }
}
