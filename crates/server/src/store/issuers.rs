//! The state of each issuer (active, or retired with a renew-before date) and what it
//! issued: valid certificates per issuer, and the revoked ones its CRL lists.

use super::audit::{self, AuditEvent};
use super::engine::columns::Columns;
use super::engine::tx::params;
use super::{IssuerRecord, IssuerUsage, Result, Store};

/// `issuers.status` of an issuer that signs new certificates.
const ISSUER_ACTIVE: &str = "active";
/// `issuers.status` of a retired issuer.
const ISSUER_RETIRED: &str = "retired";

impl Store {
    /// Every issuer with a recorded state (an issuer without one is active).
    pub async fn issuer_states(&self) -> Result<Vec<IssuerRecord>> {
        self.read_all(
            "SELECT name, status, retire_by, changed_at FROM issuers ORDER BY name",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(IssuerRecord {
                name: r.text("name")?,
                retired: r.text("status")? == ISSUER_RETIRED,
                retire_by: r.opt_int("retire_by")?,
                changed_at: r.int("changed_at")?,
            })
        })
        .collect()
    }

    /// Retires issuer `name`: no new certificates from it; holders of its certificates
    /// are asked to renew before `by`. Audited with the operator's name. Returns whether
    /// the state changed (false: already retired with that date).
    pub async fn retire_issuer(&self, name: &str, by: i64, now: i64) -> Result<bool> {
        self.set_issuer_state(name, ISSUER_RETIRED, Some(by), now, "issuer.retire")
            .await
    }

    /// Makes issuer `name` active again (undoing a retirement). Audited.
    pub async fn activate_issuer(&self, name: &str, now: i64) -> Result<bool> {
        self.set_issuer_state(name, ISSUER_ACTIVE, None, now, "issuer.activate")
            .await
    }

    async fn set_issuer_state(
        &self,
        name: &str,
        status: &'static str,
        retire_by: Option<i64>,
        now: i64,
        action: &'static str,
    ) -> Result<bool> {
        let (name, by) = (name.to_owned(), self.operator.clone());
        self.write(move |tx| {
            Box::pin(async move {
                let changed = tx
                    .execute(
                        "INSERT INTO issuers (name, status, retire_by, changed_at) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (name) DO UPDATE SET status = $2, retire_by = $3, changed_at = $4
                         WHERE issuers.status <> $2 OR issuers.retire_by IS DISTINCT FROM $3",
                        &params![&name, status, retire_by, now],
                    )
                    .await?;
                if changed != 1 {
                    return Ok(false);
                }
                let event = AuditEvent::new(&by, action).details(serde_json::json!({
                    "issuer": name,
                    "retire_by": retire_by,
                }));
                audit::append(tx, &event).await?;
                Ok(true)
            })
        })
        .await
    }

    /// How many certificates `issuer` signed are still valid at `now` (and how many of
    /// those are revoked), and the last notAfter among them: when its CRL and OCSP may stop.
    pub async fn issuer_usage(&self, issuer: &str, now: i64) -> Result<IssuerUsage> {
        let row = self
            .read_optional(
                "SELECT COUNT(*) AS valid, COUNT(revoked_at) AS revoked, MAX(not_after) AS last_expiry
                 FROM certificates WHERE issuer = $1 AND not_after > $2",
                &params![issuer, now],
            )
            .await?;
        let Some(row) = row else {
            return Ok(IssuerUsage::default());
        };
        Ok(IssuerUsage {
            valid: row.int("valid")?,
            revoked: row.int("revoked")?,
            last_expiry: row.opt_int("last_expiry")?,
        })
    }
}
