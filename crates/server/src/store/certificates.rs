//! Issued certificates: lookup by serial, revocation, the revoked entries a CRL lists,
//! and the ARI "renew early" mark. (Storing one is part of `complete_order`; the operator's
//! inventory is `inventory`.)

use super::audit::{self, Actor, AuditEvent};
use super::engine::columns::Columns;
use super::engine::tx::params;
use super::webhooks;
use super::{AccountId, CertificateRecord, Result, RevokedEntry, Store, StoreError};

/// The read of a certificate by serial (`$1`).
pub(super) const READ: &str = "SELECT * FROM certificates WHERE serial = $1";

impl Store {
    /// The certificate with this serial (lower-case hex).
    pub async fn certificate(&self, serial: &str) -> Result<CertificateRecord> {
        let row = self
            .read_optional(READ, &params![serial])
            .await?
            .ok_or(StoreError::NotFound)?;
        CertificateRecord::from_row(&row)
    }

    /// Revokes a certificate; false if it was already revoked. `by` says who asked, for
    /// the audit trail (an account, the certificate's key, or the operator).
    pub async fn revoke_certificate(
        &self,
        serial: &str,
        reason: u8,
        now: i64,
        by: &Actor,
    ) -> Result<bool> {
        let (serial, by, hooks) = (serial.to_owned(), by.clone(), self.webhooks.clone());
        self.write(move |tx| {
            Box::pin(async move {
                let (serial, by) = (serial.as_str(), &by);
                let done = tx
                    .fetch_optional(
                        "UPDATE certificates SET revoked_at = $1, revocation_reason = $2 WHERE serial = $3 AND revoked_at IS NULL
                         RETURNING account_id, names",
                        &params![now, i64::from(reason), serial],
                    )
                    .await?;
                let Some(row) = done else {
                    return Ok(false);
                };
                let account = AccountId(row.int("account_id")?);
                let event = AuditEvent::new(by, "certificate.revoke")
                    .account(account)
                    .serial(serial)
                    .details(serde_json::json!({ "reason": reason }));
                audit::append(tx, &event).await?;
                if hooks.wants(webhooks::CERTIFICATE_REVOKED) {
                    let names: serde_json::Value = row.json("names")?;
                    let data = serde_json::json!({
                        "serial": serial,
                        "names": names,
                        "account_id": account.0,
                        "reason": reason,
                        "revoked_at": crate::clock::rfc3339(now),
                        "by": by.to_string(),
                    });
                    webhooks::enqueue(tx, &hooks, webhooks::CERTIFICATE_REVOKED, data, now)
                        .await?;
                }
                Ok(true)
            })
        })
        .await
    }

    /// Every certificate of `issuer` that is revoked and has not expired by `now` (the
    /// entries of its CRL).
    pub async fn revoked_certificates(&self, issuer: &str, now: i64) -> Result<Vec<RevokedEntry>> {
        self.read_all(
            "SELECT serial, revoked_at, revocation_reason FROM certificates
             WHERE revoked_at IS NOT NULL AND not_after > $1 AND issuer = $2 ORDER BY revoked_at, serial",
            &params![now, issuer],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(RevokedEntry {
                serial: r.text("serial")?,
                revoked_at: r.int("revoked_at")?,
                reason: r.int("revocation_reason")? as u8,
            })
        })
        .collect()
    }

    /// Asks clients to renew a certificate now (ARI); false if the serial is unknown.
    pub async fn mark_renew_early(&self, serial: &str) -> Result<bool> {
        self.change_one_audited(
            "UPDATE certificates SET renew_early = 1 WHERE serial = $1",
            params![serial].into(),
            AuditEvent::new(&self.operator, "certificate.renew_early").serial(serial),
        )
        .await
    }
}
