//! External Account Binding keys (RFC 8555 §7.3.4): created, listed and revoked by the
//! operator, their HMAC keys sealed with the key-encryption key (`secrets`). Binding one
//! to a new account is `create_account_with_eab` (`accounts`).

use std::sync::Arc;

use super::audit::{self, Actor, AuditEvent};
use super::engine::columns::Columns;
use super::engine::tx::params;
use super::{unique_is_conflict, EabKeyRecord, Result, Store, StoreError};
use crate::secrets::{Kek, SecretsError};

impl Store {
    pub(super) fn require_kek(&self) -> Result<Arc<Kek>> {
        self.eab_kek
            .clone()
            .ok_or(StoreError::Secret(SecretsError::NoKek))
    }

    /// Stores a new EAB key, its HMAC key sealed with the key-encryption key (which must
    /// be attached: `with_eab_kek`).
    pub async fn create_eab_key(
        &self,
        kid: &str,
        label: &str,
        hmac_key: &[u8],
        now: i64,
    ) -> Result<()> {
        let kek = self.require_kek()?;
        let sealed = kek.seal(kid, hmac_key)?;
        let kek_id = kek.id().to_owned();
        let (kid, label) = (kid.to_owned(), label.to_owned());
        let actor = self.operator.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let (kid, label) = (kid.as_str(), label.as_str());
                tx.execute(
                    "INSERT INTO eab_keys (kid, label, hmac_key, kek_id, created_at) VALUES ($1, $2, $3, $4, $5)",
                    &params![kid, label, sealed, kek_id, now],
                )
                .await
                .map_err(unique_is_conflict)?;
                // The MAC key itself never enters the trail.
                let event = AuditEvent::new(&actor, "eab.create")
                    .details(serde_json::json!({ "kid": kid, "label": label }));
                audit::append(tx, &event).await?;
                Ok(())
            })
        })
        .await
    }

    /// One EAB key.
    pub async fn eab_key(&self, kid: &str) -> Result<Option<EabKeyRecord>> {
        let row = self
            .read_optional("SELECT * FROM eab_keys WHERE kid = $1", &params![kid])
            .await?;
        row.as_ref().map(EabKeyRecord::from_row).transpose()
    }

    /// Every EAB key, oldest first.
    pub async fn eab_keys(&self) -> Result<Vec<EabKeyRecord>> {
        self.read_all("SELECT * FROM eab_keys ORDER BY created_at, kid", &[])
            .await?
            .iter()
            .map(EabKeyRecord::from_row)
            .collect()
    }

    /// The HMAC key of an EAB key, opened with the key-encryption key. A key sealed with
    /// another KEK, altered, or still in plaintext is an error (`StoreError::Secret`).
    pub fn eab_hmac_key(&self, key: &EabKeyRecord) -> Result<Vec<u8>> {
        Ok(self
            .require_kek()?
            .open(&key.kid, key.kek_id.as_deref(), key.stored_key.as_bytes())?)
    }

    /// Seals every EAB key an older version stored in plaintext (rows without a KEK id),
    /// in one transaction with one audit entry; returns how many.
    pub async fn seal_legacy_eab_keys(&self) -> Result<usize> {
        let kek = self.require_kek()?;
        self.write(move |tx| {
            Box::pin(async move {
                let legacy = tx
                    .fetch_all(
                        "SELECT kid, hmac_key FROM eab_keys WHERE kek_id IS NULL",
                        &params![],
                    )
                    .await?;
                for row in &legacy {
                    let kid = row.text("kid")?;
                    let sealed = kek.seal(&kid, &row.blob("hmac_key")?)?;
                    tx.execute(
                        "UPDATE eab_keys SET hmac_key = $1, kek_id = $2 WHERE kid = $3 AND kek_id IS NULL",
                        &params![sealed, kek.id(), kid],
                    )
                    .await?;
                }
                if !legacy.is_empty() {
                    let event = AuditEvent::new(&Actor::System, "eab.encrypt_legacy").details(
                        serde_json::json!({ "count": legacy.len(), "kek_id": kek.id() }),
                    );
                    audit::append(tx, &event).await?;
                }
                Ok(legacy.len())
            })
        })
        .await
    }

    /// Revokes an EAB key (unused ones can no longer bind); false if unknown or revoked.
    pub async fn revoke_eab_key(&self, kid: &str, now: i64) -> Result<bool> {
        self.change_one_audited(
            "UPDATE eab_keys SET revoked_at = $1 WHERE kid = $2 AND revoked_at IS NULL",
            params![now, kid].into(),
            AuditEvent::new(&self.operator, "eab.revoke")
                .details(serde_json::json!({ "kid": kid })),
        )
        .await
    }
}
