//! Rate-limit events: what the RA's limits count, kept in the database so that counts
//! survive restarts and are shared by every instance.

use super::engine::columns::Columns;
use super::engine::tx::params;
use super::statuses::{quoted, status_sql};
use super::{AccountId, Result, Store, StoreError};
use certwright_proto::types::AuthorizationStatus;

status_sql! {
    /// `pending_authorization_count`.
    static PENDING_AUTHORIZATIONS = (
        "SELECT COUNT(*) AS n FROM authorizations WHERE account_id = $1 AND status = {pending} AND expires > $2",
        pending = quoted(AuthorizationStatus::Pending)
    );
}

impl Store {
    /// Records one event counted by `limit` for `key` at `at`.
    pub async fn record_rate_event(&self, limit: &str, key: &str, at: i64) -> Result<()> {
        let (limit, key) = (limit.to_owned(), key.to_owned());
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO rate_events (limit_name, key, at) VALUES ($1, $2, $3)",
                    &params![limit, key, at],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// How many events of `limit` for `key` happened after `since`, and when the oldest
    /// of them did.
    pub async fn rate_events_since(
        &self,
        limit: &str,
        key: &str,
        since: i64,
    ) -> Result<(i64, Option<i64>)> {
        let rows = self
            .read_all(
                "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM rate_events WHERE limit_name = $1 AND key = $2 AND at > $3",
                &params![limit, key, since],
            )
            .await?;
        let row = rows.first().ok_or(StoreError::NotFound)?;
        Ok((row.int("n")?, row.opt_int("oldest")?))
    }

    /// Deletes events at or before `before` (the sweeper, past the longest window).
    pub async fn prune_rate_events(&self, before: i64) -> Result<u64> {
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute("DELETE FROM rate_events WHERE at <= $1", &params![before])
                    .await
            })
        })
        .await
    }

    /// Unexpired pending authorizations of `account`.
    pub async fn pending_authorization_count(&self, account: AccountId, now: i64) -> Result<i64> {
        let rows = self
            .read_all(&PENDING_AUTHORIZATIONS, &params![account.0, now])
            .await?;
        rows.first().ok_or(StoreError::NotFound)?.int("n")
    }
}
