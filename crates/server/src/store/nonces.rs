//! Shared nonces, for several instances on PostgreSQL: any instance redeems a nonce
//! another issued. One autocommit statement per nonce is the cheapest write there, so they
//! bypass `write`. (A single instance keeps its nonces in memory: `wfe::nonce`.)

use super::{Result, Store};

impl Store {
    /// Records a nonce this instance issued (shared nonces: any instance redeems it).
    pub async fn insert_nonce(&self, nonce: &str, expires: i64) -> Result<()> {
        sqlx::query("INSERT INTO nonces (nonce, expires) VALUES ($1, $2)")
            .bind(nonce)
            .bind(expires)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Redeems a nonce: true exactly once, and only before it expires.
    pub async fn redeem_nonce(&self, nonce: &str, now: i64) -> Result<bool> {
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
