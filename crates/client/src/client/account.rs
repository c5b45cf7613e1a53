//! Accounts (RFC 8555 §7.3): create with optional External Account Binding, find by key,
//! update contacts, deactivate, and roll the key over (§7.3.5).

use std::sync::Arc;

use certwright_proto::jws::{self, Signer};
use certwright_proto::types::{self, AccountStatus, AccountUpdate, KeyChange, NewAccount};
use certwright_proto::AccountKey;

use super::{AcmeClient, Response};
use crate::error::{Error, Result};

/// External Account Binding credentials from the CA operator (§7.3.4).
#[derive(Clone)]
pub struct Eab {
    /// The key identifier.
    pub kid: String,
    /// The MAC key (raw bytes; the CA hands it out base64url-encoded).
    pub hmac_key: Vec<u8>,
}

impl std::fmt::Debug for Eab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the MAC key.
        write!(f, "Eab {{ kid: {:?}, hmac_key: <secret> }}", self.kid)
    }
}

impl Eab {
    /// Credentials from the kid and the base64url MAC key as CAs publish them.
    pub fn from_b64(kid: impl Into<String>, hmac_key_b64: &str) -> Result<Self> {
        let trimmed = hmac_key_b64.trim().trim_end_matches('=');
        let hmac_key = certwright_proto::b64::decode(trimmed)
            .map_err(|_| Error::Config("the EAB HMAC key is not base64url".into()))?;
        Ok(Self {
            kid: kid.into(),
            hmac_key,
        })
    }
}

/// What a new account is created with.
#[derive(Debug, Clone, Default)]
pub struct NewAccountOptions {
    /// `mailto:` URLs (plain addresses get the prefix added).
    pub contact: Vec<String>,
    /// Agree to the CA's terms of service.
    pub terms_of_service_agreed: bool,
    /// External Account Binding, when the CA requires it.
    pub eab: Option<Eab>,
}

/// What is stored to use an account again: its URL and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountCredentials {
    /// The account URL (`kid`).
    pub url: String,
    /// The key as PKCS#8 DER (secret).
    pub key_pkcs8: Vec<u8>,
}

/// An account at one CA: its URL, key and last known object.
#[derive(Debug)]
pub struct Account {
    client: Arc<AcmeClient>,
    key: AccountKey,
    url: String,
    object: types::Account,
}

fn mailto(contact: &[String]) -> Vec<String> {
    contact
        .iter()
        .map(|c| {
            if c.contains(':') {
                c.clone()
            } else {
                format!("mailto:{c}")
            }
        })
        .collect()
}

impl Account {
    /// Registers `key` as a new account (or returns the existing account of that key).
    pub async fn create(
        client: Arc<AcmeClient>,
        key: AccountKey,
        options: &NewAccountOptions,
    ) -> Result<Self> {
        let url = client.directory().new_account.clone();
        let eab = options.eab.as_ref().map(|eab| {
            serde_json::to_value(jws::sign_eab(&eab.hmac_key, &eab.kid, &url, &key.jwk()))
                .expect("a JWS serializes")
        });
        let payload = NewAccount {
            contact: (!options.contact.is_empty()).then(|| mailto(&options.contact)),
            terms_of_service_agreed: options.terms_of_service_agreed.then_some(true),
            only_return_existing: None,
            external_account_binding: eab,
        };
        let resp = client
            .post_json(&key, &Signer::Jwk(key.jwk()), &url, &payload)
            .await?;
        Self::from_response(client, key, resp)
    }

    /// Finds the existing account of `key` (`onlyReturnExisting`); a CA that knows no such
    /// account answers `accountDoesNotExist`.
    pub async fn find(client: Arc<AcmeClient>, key: AccountKey) -> Result<Self> {
        let url = client.directory().new_account.clone();
        let payload = NewAccount {
            only_return_existing: Some(true),
            ..Default::default()
        };
        let resp = client
            .post_json(&key, &Signer::Jwk(key.jwk()), &url, &payload)
            .await?;
        Self::from_response(client, key, resp)
    }

    /// Uses stored credentials and fetches the account object.
    pub async fn load(client: Arc<AcmeClient>, creds: &AccountCredentials) -> Result<Self> {
        let key = AccountKey::from_pkcs8(&creds.key_pkcs8)?;
        let mut account = Self {
            client,
            key,
            url: creds.url.clone(),
            object: types::Account {
                status: AccountStatus::Valid,
                contact: Vec::new(),
                terms_of_service_agreed: None,
                orders: None,
                key: None,
                created_at: None,
            },
        };
        account.refresh().await?;
        Ok(account)
    }

    fn from_response(client: Arc<AcmeClient>, key: AccountKey, resp: Response) -> Result<Self> {
        let url = resp.location().ok_or_else(|| Error::Protocol {
            url: resp.url.clone(),
            detail: "newAccount answered without a Location header".into(),
        })?;
        let object = resp.json()?;
        Ok(Self {
            client,
            key,
            url,
            object,
        })
    }

    /// The account URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The last fetched account object.
    pub fn object(&self) -> &types::Account {
        &self.object
    }

    /// The account key.
    pub fn key(&self) -> &AccountKey {
        &self.key
    }

    /// The client this account talks through.
    pub fn client(&self) -> &Arc<AcmeClient> {
        &self.client
    }

    /// The credentials to store.
    pub fn credentials(&self) -> Result<AccountCredentials> {
        Ok(AccountCredentials {
            url: self.url.clone(),
            key_pkcs8: self.key.to_pkcs8()?,
        })
    }

    pub(crate) fn signer(&self) -> Signer {
        Signer::Kid(self.url.clone())
    }

    /// A signed POST as this account.
    pub async fn post(&self, url: &str, payload: Option<&[u8]>) -> Result<Response> {
        self.client
            .post(&self.key, &self.signer(), url, payload)
            .await
    }

    /// A signed POST with a JSON payload as this account.
    pub async fn post_json<T: serde::Serialize>(&self, url: &str, payload: &T) -> Result<Response> {
        self.client
            .post_json(&self.key, &self.signer(), url, payload)
            .await
    }

    /// Re-reads the account object (POST-as-GET).
    pub async fn refresh(&mut self) -> Result<&types::Account> {
        let resp = self.post(&self.url.clone(), None).await?;
        self.object = resp.json()?;
        Ok(&self.object)
    }

    /// Replaces the contact list.
    pub async fn update_contact(&mut self, contact: &[String]) -> Result<&types::Account> {
        let payload = AccountUpdate {
            contact: Some(mailto(contact)),
            ..Default::default()
        };
        let resp = self.post_json(&self.url.clone(), &payload).await?;
        self.object = resp.json()?;
        Ok(&self.object)
    }

    /// Deactivates the account (§7.3.6); it can no longer be used.
    pub async fn deactivate(&mut self) -> Result<&types::Account> {
        let payload = AccountUpdate {
            status: Some(AccountStatus::Deactivated),
            ..Default::default()
        };
        let resp = self.post_json(&self.url.clone(), &payload).await?;
        self.object = resp.json()?;
        Ok(&self.object)
    }

    /// Rolls the account over to `new_key` (§7.3.5). On success the account uses the new key.
    pub async fn change_key(&mut self, new_key: AccountKey) -> Result<()> {
        let url = self.client.directory().key_change.clone();
        let inner_payload = KeyChange {
            account: self.url.clone(),
            old_key: self.key.jwk().to_value(),
        };
        let inner = jws::sign(
            &new_key,
            &Signer::Jwk(new_key.jwk()),
            None,
            &url,
            &serde_json::to_vec(&inner_payload).expect("serializes"),
        )?;
        self.post_json(&url, &inner).await?;
        self.key = new_key;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eab_key_decodes_and_hides() {
        let eab = Eab::from_b64("kid-1", "c2VjcmV0").unwrap();
        assert_eq!(eab.hmac_key, b"secret");
        assert!(!format!("{eab:?}").contains("secret\""));
        assert!(Eab::from_b64("k", "not base64!").is_err());
        assert_eq!(
            mailto(&["a@b.test".into(), "mailto:c@d.test".into()]),
            ["mailto:a@b.test", "mailto:c@d.test"]
        );
    }
}
