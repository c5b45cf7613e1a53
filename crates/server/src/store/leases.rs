//! Leases on work in flight: a challenge being validated or an order being issued is
//! `processing` with a lease; when the lease runs out (its instance died, or this is a
//! restart), another run claims the work, so nothing is left `processing` forever.

use super::engine::columns::Columns;
use super::engine::tx::params;
use super::statuses::{quoted, status_sql};
use super::{ChallengeId, OrderId, Result, Store};
use crate::status::transitions::{StoredStatus, CHALLENGE_START, ORDER_BEGIN_FINALIZE};

// The status under a lease is the one its start set; the claims change only the lease.
status_sql! {
    /// Validations whose lease ran out.
    static STALE_CHALLENGES = ("{}", stale("challenges", CHALLENGE_START.to));
    /// Claims one of them, if no one else did.
    static CLAIM_CHALLENGE = ("{}", claim("challenges", CHALLENGE_START.to));
    /// Issuances whose lease ran out.
    static STALE_ORDERS = ("{}", stale("orders", ORDER_BEGIN_FINALIZE.to));
    /// Claims one of them, if no one else did.
    static CLAIM_ORDER = ("{}", claim("orders", ORDER_BEGIN_FINALIZE.to));
    /// Extends the lease of an order still being issued.
    static EXTEND_ORDER = (
        "UPDATE orders SET lease_expires = $1 WHERE id = $2 AND status = {}",
        quoted(ORDER_BEGIN_FINALIZE.to)
    );
}

/// Extends the lease of `order`, still `processing`, to `lease_until` (inside a
/// transaction); false if it is no longer `processing`.
pub(super) async fn extend_in(
    tx: &mut dyn super::engine::tx::Tx,
    order: OrderId,
    lease_until: i64,
) -> Result<bool> {
    Ok(tx
        .execute(&EXTEND_ORDER, &params![lease_until, order.0])
        .await?
        == 1)
}

/// The rows of `table` in status `leased` whose lease ran out (`$1`: now).
fn stale(table: &str, leased: impl StoredStatus) -> String {
    format!(
        "SELECT id FROM {table} WHERE status = {} AND (lease_expires IS NULL OR lease_expires <= $1)",
        quoted(leased)
    )
}

/// Leases the row `$2` of `table` until `$1` if it is still stale at `$3`.
fn claim(table: &str, leased: impl StoredStatus) -> String {
    format!(
        "UPDATE {table} SET lease_expires = $1
         WHERE id = $2 AND status = {} AND (lease_expires IS NULL OR lease_expires <= $3)",
        quoted(leased)
    )
}

impl Store {
    /// Takes over validations whose lease ran out (their instance died, or this is a
    /// restart): each returned challenge is now leased to the caller until `lease_until`.
    pub async fn claim_stale_validations(
        &self,
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<ChallengeId>> {
        let claim = (STALE_CHALLENGES.as_str(), CLAIM_CHALLENGE.as_str());
        self.claim_stale(claim, now, lease_until, ChallengeId).await
    }

    /// Takes over issuances whose lease ran out, like `claim_stale_validations`.
    pub async fn claim_stale_issuances(&self, now: i64, lease_until: i64) -> Result<Vec<OrderId>> {
        let claim = (STALE_ORDERS.as_str(), CLAIM_ORDER.as_str());
        self.claim_stale(claim, now, lease_until, OrderId).await
    }

    /// Claims the rows the first statement finds (`processing`, lease run out) with the
    /// second; a conditional update per row, so two instances never claim the same one.
    async fn claim_stale<T: Send + 'static>(
        &self,
        (stale, claim): (&'static str, &'static str),
        now: i64,
        lease_until: i64,
        id: fn(i64) -> T,
    ) -> Result<Vec<T>> {
        self.write(move |tx| {
            Box::pin(async move {
                let candidates = tx.fetch_all(stale, &params![now]).await?;
                let mut claimed = Vec::new();
                for row in candidates {
                    let row_id = row.int("id")?;
                    if tx
                        .execute(claim, &params![lease_until, row_id, now])
                        .await?
                        == 1
                    {
                        claimed.push(id(row_id));
                    }
                }
                Ok(claimed)
            })
        })
        .await
    }
}
