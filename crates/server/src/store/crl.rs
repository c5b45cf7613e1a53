//! CRL state per issuer: monotonic CRL numbers and the latest CRL built with one.

use super::engine::columns::Columns;
use super::engine::tx::params;
use super::{CrlRecord, Result, Store};

impl Store {
    /// Allocates the next CRL number of `issuer` (monotonic, never reused).
    pub async fn allocate_crl_number(&self, issuer: &str) -> Result<i64> {
        let issuer = issuer.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                tx.fetch_one(
                    "INSERT INTO crl_state (issuer, number, der, this_update, next_update) VALUES ($1, 1, $2, 0, 0)
                     ON CONFLICT (issuer) DO UPDATE SET number = crl_state.number + 1
                     RETURNING number",
                    &params![issuer, Vec::<u8>::new()],
                )
                .await?
                .int("number")
            })
        })
        .await
    }

    /// Saves the CRL built with `number`, unless a newer number was allocated meanwhile.
    pub async fn save_crl(&self, issuer: &str, crl: &CrlRecord) -> Result<bool> {
        let (issuer, crl) = (issuer.to_owned(), crl.clone());
        self.write(move |tx| {
            Box::pin(async move {
                let done = tx
                    .execute(
                        "UPDATE crl_state SET der = $1, this_update = $2, next_update = $3 WHERE issuer = $4 AND number = $5",
                        &params![crl.der, crl.this_update, crl.next_update, issuer, crl.number],
                    )
                    .await?;
                Ok(done == 1)
            })
        })
        .await
    }

    /// The latest saved CRL of `issuer`.
    pub async fn latest_crl(&self, issuer: &str) -> Result<Option<CrlRecord>> {
        let row = self
            .read_optional(
                "SELECT number, der, this_update, next_update FROM crl_state WHERE issuer = $1",
                &params![issuer],
            )
            .await?;
        let crl = row
            .map(|r| -> Result<CrlRecord> {
                Ok(CrlRecord {
                    number: r.int("number")?,
                    der: r.blob("der")?,
                    this_update: r.int("this_update")?,
                    next_update: r.int("next_update")?,
                })
            })
            .transpose()?;
        Ok(crl.filter(|c| !c.der.is_empty()))
    }
}
