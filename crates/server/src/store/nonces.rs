//! Shared nonces, for several instances on PostgreSQL: any instance redeems a nonce
//! another issued. One autocommit statement per nonce is the cheapest write there, so they
//! bypass `write`. (A single instance keeps its nonces in memory: `wfe::nonce`.)

use std::sync::LazyLock;

use super::engine::tx::{sqlx_execute, Param};
use super::{Result, Store};

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

    /// Drops expired nonces; returns how many.
    pub async fn purge_nonces(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM nonces WHERE expires <= $1")
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }
}
