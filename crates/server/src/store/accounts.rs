//! Accounts (RFC 8555 §7.3): creation (with or without an External Account Binding),
//! lookups by id and by key, contact and terms-of-service updates, key change and
//! deactivation.

use certwright_proto::Jwk;

use super::audit::{self, AuditEvent};
use super::engine::columns::Columns;
use super::engine::tx::params;
use super::statuses::{guard, quoted, set, status_sql};
use super::{unique_is_conflict, AccountId, AccountRecord, Result, Store, StoreError};
use crate::status::transitions::{ACCOUNT_CREATED, ACCOUNT_DEACTIVATE, AUTHORIZATION_DEACTIVATE};

status_sql! {
    /// `create_account` and `create_account_with_eab` (EAB key id and label NULL, or
    /// those of the key the account is bound to).
    static INSERT_ACCOUNT = (
        "INSERT INTO accounts (key_thumbprint, jwk, contact, status, tos_agreed, created_at, eab_kid, eab_label)
         VALUES ($1, $2, $3, {created}, $4, $5, $6, $7) RETURNING *",
        created = quoted(ACCOUNT_CREATED)
    );
    /// `deactivate_account`: the account,
    static DEACTIVATE = (
        "UPDATE accounts SET {to} WHERE id = $1",
        to = set(&ACCOUNT_DEACTIVATE)
    );
    /// … and its authorizations that can still be deactivated.
    static DEACTIVATE_AUTHORIZATIONS = (
        "UPDATE authorizations SET {to} WHERE account_id = $1 AND {from}",
        to = set(&AUTHORIZATION_DEACTIVATE),
        from = guard("status", &AUTHORIZATION_DEACTIVATE)
    );
}

impl Store {
    /// Creates a valid account for `jwk`; `Conflict` if the key already has one.
    pub async fn create_account(
        &self,
        jwk: &Jwk,
        contact: &[String],
        tos_agreed: bool,
        now: i64,
    ) -> Result<AccountRecord> {
        self.insert_account(jwk, contact, tos_agreed, now, None)
            .await
    }

    /// Creates an account bound to an External Account Binding key, atomically: the key
    /// must exist, not be revoked and not be bound yet (`EabUnavailable` otherwise).
    pub async fn create_account_with_eab(
        &self,
        jwk: &Jwk,
        contact: &[String],
        tos_agreed: bool,
        now: i64,
        eab_kid: &str,
    ) -> Result<AccountRecord> {
        self.insert_account(jwk, contact, tos_agreed, now, Some(eab_kid))
            .await
    }

    /// Creates an account, bound to the EAB key `eab_kid` if one is given.
    async fn insert_account(
        &self,
        jwk: &Jwk,
        contact: &[String],
        tos_agreed: bool,
        now: i64,
        eab_kid: Option<&str>,
    ) -> Result<AccountRecord> {
        let (jwk, contact) = (jwk.clone(), contact.to_vec());
        let eab_kid = eab_kid.map(str::to_owned);
        // The account comes back from its INSERT (RETURNING *): no read after the write.
        self.write(move |tx| {
            Box::pin(async move {
                let (jwk, contact) = (&jwk, &contact[..]);
                let eab = match &eab_kid {
                    None => None,
                    Some(kid) => {
                        let key = tx
                            .fetch_optional(
                                "SELECT label FROM eab_keys WHERE kid = $1 AND revoked_at IS NULL AND account_id IS NULL",
                                &params![kid],
                            )
                            .await?
                            .ok_or(StoreError::EabUnavailable)?;
                        Some((kid.as_str(), key.text("label")?))
                    }
                };
                let row = tx
                    .fetch_one(
                        &INSERT_ACCOUNT,
                        &params![
                            jwk.thumbprint(),
                            jwk.to_value().to_string(),
                            serde_json::to_string(contact).expect("strings serialize"),
                            tos_agreed,
                            now,
                            eab.as_ref().map(|(kid, _)| *kid),
                            eab.as_ref().map(|(_, label)| label.clone()),
                        ],
                    )
                    .await
                    .map_err(unique_is_conflict)?;
                let id = row.int("id")?;
                if let Some((kid, _)) = &eab {
                    tx.execute(
                        "UPDATE eab_keys SET account_id = $1 WHERE kid = $2",
                        &params![id, *kid],
                    )
                    .await?;
                }
                let eab = eab.as_ref().map(|(kid, label)| (*kid, label.as_str()));
                let event = audit::account_created(AccountId(id), jwk, contact, tos_agreed, eab);
                audit::append(tx, &event).await?;
                AccountRecord::from_row(&row)
            })
        })
        .await
    }

    /// The account with `id`.
    pub async fn account(&self, id: AccountId) -> Result<AccountRecord> {
        let row = self
            .read_optional("SELECT * FROM accounts WHERE id = $1", &params![id.0])
            .await?
            .ok_or(StoreError::NotFound)?;
        AccountRecord::from_row(&row)
    }

    /// The account whose key has this RFC 7638 thumbprint.
    pub async fn account_by_thumbprint(&self, thumbprint: &str) -> Result<Option<AccountRecord>> {
        let row = self
            .read_optional(
                "SELECT * FROM accounts WHERE key_thumbprint = $1",
                &params![thumbprint],
            )
            .await?;
        row.as_ref().map(AccountRecord::from_row).transpose()
    }

    /// Replaces an account's contact list.
    pub async fn update_account_contact(&self, id: AccountId, contact: &[String]) -> Result<()> {
        let contact = contact.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let contact = &contact[..];
                tx.execute(
                    "UPDATE accounts SET contact = $1 WHERE id = $2",
                    &params![
                        serde_json::to_string(contact).expect("strings serialize"),
                        id.0
                    ],
                )
                .await?;
                let event = AuditEvent::by_account(id, "account.update")
                    .details(serde_json::json!({ "contact": contact }));
                audit::append(tx, &event).await?;
                Ok(())
            })
        })
        .await
    }

    /// Records that the account agreed to the terms of service.
    pub async fn set_account_tos_agreed(&self, id: AccountId) -> Result<()> {
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "UPDATE accounts SET tos_agreed = 1 WHERE id = $1",
                    &params![id.0],
                )
                .await?;
                let event = AuditEvent::by_account(id, "account.update")
                    .details(serde_json::json!({ "terms_of_service_agreed": true }));
                audit::append(tx, &event).await?;
                Ok(())
            })
        })
        .await
    }

    /// Replaces an account's key (§7.3.5); `Conflict` if another account has the new key.
    pub async fn change_account_key(&self, id: AccountId, new_key: &Jwk) -> Result<()> {
        let new_key = new_key.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let new_key = &new_key;
                let old = tx
                    .fetch_one(
                        "SELECT key_thumbprint FROM accounts WHERE id = $1",
                        &params![id.0],
                    )
                    .await?
                    .text("key_thumbprint")?;
                tx.execute(
                    "UPDATE accounts SET key_thumbprint = $1, jwk = $2 WHERE id = $3",
                    &params![new_key.thumbprint(), new_key.to_value().to_string(), id.0],
                )
                .await
                .map_err(unique_is_conflict)?;
                let event =
                    AuditEvent::by_account(id, "account.key_change").details(serde_json::json!({
                        "old_key_thumbprint": old,
                        "new_key_thumbprint": new_key.thumbprint(),
                    }));
                audit::append(tx, &event).await?;
                Ok(())
            })
        })
        .await
    }

    /// Deactivates an account and its pending authorizations (§7.3.6), at its own request.
    pub async fn deactivate_account(&self, id: AccountId) -> Result<()> {
        self.deactivate_account_as(id, AuditEvent::by_account(id, "account.deactivate"))
            .await
    }

    /// Deactivates an account and its pending authorizations as this store's operator
    /// (the console); `NotFound` if there is no such account.
    pub async fn deactivate_account_by_operator(&self, id: AccountId) -> Result<()> {
        self.account(id).await?;
        let event = AuditEvent::new(&self.operator, "account.deactivate").account(id);
        self.deactivate_account_as(id, event).await
    }

    async fn deactivate_account_as(&self, id: AccountId, event: AuditEvent) -> Result<()> {
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute(&DEACTIVATE, &params![id.0]).await?;
                tx.execute(&DEACTIVATE_AUTHORIZATIONS, &params![id.0])
                    .await?;
                audit::append(tx, &event).await?;
                Ok(())
            })
        })
        .await
    }
}
