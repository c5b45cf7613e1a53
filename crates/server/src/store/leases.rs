//! Leases on work in flight: a challenge being validated or an order being issued is
//! `processing` with a lease; when the lease runs out (its instance died, or this is a
//! restart), another run claims the work, so nothing is left `processing` forever.

use super::engine::columns::Columns;
use super::engine::tx::params;
use super::{ChallengeId, OrderId, Result, Store};

impl Store {
    /// Takes over validations whose lease ran out (their instance died, or this is a
    /// restart): each returned challenge is now leased to the caller until `lease_until`.
    pub async fn claim_stale_validations(
        &self,
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<ChallengeId>> {
        Ok(self
            .claim_stale("challenges", now, lease_until)
            .await?
            .into_iter()
            .map(ChallengeId)
            .collect())
    }

    /// Takes over issuances whose lease ran out, like `claim_stale_validations`.
    pub async fn claim_stale_issuances(&self, now: i64, lease_until: i64) -> Result<Vec<OrderId>> {
        Ok(self
            .claim_stale("orders", now, lease_until)
            .await?
            .into_iter()
            .map(OrderId)
            .collect())
    }

    /// Claims `processing` rows of `table` whose lease ran out; a conditional update per
    /// row, so two instances never claim the same one.
    async fn claim_stale(
        &self,
        table: &'static str,
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<i64>> {
        self.write(move |tx| {
            Box::pin(async move {
                let candidates = tx
                    .fetch_all(
                        &format!(
                            "SELECT id FROM {table} WHERE status = 'processing' AND (lease_expires IS NULL OR lease_expires <= $1)"
                        ),
                        &params![now],
                    )
                    .await?;
                let claim = format!(
                    "UPDATE {table} SET lease_expires = $1
                     WHERE id = $2 AND status = 'processing' AND (lease_expires IS NULL OR lease_expires <= $3)"
                );
                let mut claimed = Vec::new();
                for row in candidates {
                    let id = row.int("id")?;
                    if tx.execute(&claim, &params![lease_until, id, now]).await? == 1 {
                        claimed.push(id);
                    }
                }
                Ok(claimed)
            })
        })
        .await
    }
}
