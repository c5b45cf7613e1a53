//! Typed ids and the records the store hands out.

use super::engine::columns::Columns;
use super::{parse_status, Result, StoreError};
use certwright_proto::types::{
    AccountStatus, AuthorizationStatus, ChallengeStatus, ChallengeType, Identifier, IdentifierType,
    OrderStatus,
};
use certwright_proto::{Jwk, Problem};
use serde_json::Value;

macro_rules! typed_id {
    ($($(#[$doc:meta])* $name:ident),*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub i64);
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

typed_id!(
    /// An account's id (its URL is `/acme/acct/<id>`).
    AccountId,
    /// An order's id.
    OrderId,
    /// An authorization's id.
    AuthzId,
    /// A challenge's id.
    ChallengeId
);

/// An account.
#[derive(Debug, Clone)]
pub struct AccountRecord {
    /// The account's id.
    pub id: AccountId,
    /// The account's public key (its thumbprint identifies the account).
    pub jwk: Jwk,
    /// Contact URLs (`mailto:` only).
    pub contact: Vec<String>,
    /// Valid, deactivated or revoked.
    pub status: AccountStatus,
    /// Whether the client agreed to the terms of service.
    pub tos_agreed: bool,
    /// When the account was created (Unix seconds).
    pub created_at: i64,
    /// The External Account Binding key id and label this account was bound with.
    pub eab_kid: Option<String>,
    /// See `eab_kid`.
    pub eab_label: Option<String>,
}

impl AccountRecord {
    pub(super) fn from_row(row: &impl Columns) -> Result<Self> {
        let jwk: Value = row.json("jwk")?;
        Ok(Self {
            id: AccountId(row.int("id")?),
            jwk: Jwk::from_value(&jwk).map_err(|e| StoreError::Corrupt(format!("jwk: {e}")))?,
            contact: row.json("contact")?,
            status: parse_status(&row.text("status")?, AccountStatus::parse)?,
            tos_agreed: row.flag("tos_agreed")?,
            created_at: row.int("created_at")?,
            eab_kid: row.opt_text("eab_kid")?,
            eab_label: row.opt_text("eab_label")?,
        })
    }
}

/// An order as stored. Its `status` is the stored one: the RA refines `pending` from the
/// authorizations (see `status`).
#[derive(Debug, Clone)]
pub struct OrderRecord {
    /// The order's id.
    pub id: OrderId,
    /// The account that owns the order.
    pub account_id: AccountId,
    /// The stored status (see above).
    pub status: OrderStatus,
    /// The identifiers the order asks for.
    pub identifiers: Vec<Identifier>,
    /// When the order expires (Unix seconds).
    pub expires: i64,
    /// The `notBefore` the client requested (Unix seconds).
    pub not_before: Option<i64>,
    /// The `notAfter` the client requested (Unix seconds).
    pub not_after: Option<i64>,
    /// Why the order became invalid.
    pub error: Option<Problem>,
    /// The CSR of the finalize request (DER).
    pub csr: Option<Vec<u8>>,
    /// Serial (hex) of the certificate issued for the order.
    pub certificate_serial: Option<String>,
    /// The order's authorizations, one per identifier.
    pub authorization_ids: Vec<AuthzId>,
    /// The certificate profile the client requested.
    pub profile: Option<String>,
    /// ARI certificate identifier of the certificate this order replaces.
    pub replaces: Option<String>,
}

impl OrderRecord {
    pub(super) fn from_row(row: &impl Columns, authorization_ids: Vec<AuthzId>) -> Result<Self> {
        Ok(Self {
            id: OrderId(row.int("id")?),
            account_id: AccountId(row.int("account_id")?),
            status: parse_status(&row.text("status")?, OrderStatus::parse)?,
            identifiers: row.json("identifiers")?,
            expires: row.int("expires")?,
            not_before: row.opt_int("not_before")?,
            not_after: row.opt_int("not_after")?,
            error: row.opt_json("error")?,
            csr: row.opt_blob("csr")?,
            certificate_serial: row.opt_text("certificate_serial")?,
            authorization_ids,
            profile: row.opt_text("profile")?,
            replaces: row.opt_text("replaces")?,
        })
    }
}

/// An authorization with its challenges.
#[derive(Debug, Clone)]
pub struct AuthzRecord {
    /// The authorization's id.
    pub id: AuthzId,
    /// The account that owns the authorization.
    pub account_id: AccountId,
    /// The identifier to validate, without the `*.` of a wildcard.
    pub identifier: Identifier,
    /// Whether the order asked for `*.` plus `identifier`.
    pub wildcard: bool,
    /// The stored status.
    pub status: AuthorizationStatus,
    /// When the authorization expires (Unix seconds).
    pub expires: i64,
    /// Its challenges.
    pub challenges: Vec<ChallengeRecord>,
}

impl AuthzRecord {
    pub(super) fn from_row(row: &impl Columns, challenges: Vec<ChallengeRecord>) -> Result<Self> {
        let kind = match row.text("identifier_type")?.as_str() {
            "dns" => IdentifierType::Dns,
            "ip" => IdentifierType::Ip,
            other => return Err(StoreError::Corrupt(format!("identifier type {other:?}"))),
        };
        Ok(Self {
            id: AuthzId(row.int("id")?),
            account_id: AccountId(row.int("account_id")?),
            identifier: Identifier {
                kind,
                value: row.text("identifier_value")?,
            },
            wildcard: row.flag("wildcard")?,
            status: parse_status(&row.text("status")?, AuthorizationStatus::parse)?,
            expires: row.int("expires")?,
            challenges,
        })
    }
}

/// A challenge, with what the VA recorded about its validation.
#[derive(Debug, Clone)]
pub struct ChallengeRecord {
    /// The challenge's id.
    pub id: ChallengeId,
    /// The authorization the challenge belongs to.
    pub authorization_id: AuthzId,
    /// `http-01`, `dns-01` or `tls-alpn-01`.
    pub kind: ChallengeType,
    /// The challenge token.
    pub token: String,
    /// The stored status.
    pub status: ChallengeStatus,
    /// When validation succeeded (Unix seconds).
    pub validated: Option<i64>,
    /// Why validation failed.
    pub error: Option<Problem>,
    /// The `validationRecord` the VA wrote (JSON).
    pub record: Option<Value>,
}

impl ChallengeRecord {
    pub(super) fn from_row(row: &impl Columns) -> Result<Self> {
        let kind = row.text("type")?;
        Ok(Self {
            id: ChallengeId(row.int("id")?),
            authorization_id: AuthzId(row.int("authorization_id")?),
            kind: ChallengeType::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("challenge type {kind:?}")))?,
            token: row.text("token")?,
            status: parse_status(&row.text("status")?, ChallengeStatus::parse)?,
            validated: row.opt_int("validated")?,
            error: row.opt_json("error")?,
            record: row.opt_json("record")?,
        })
    }
}

/// An issued certificate.
#[derive(Debug, Clone)]
pub struct CertificateRecord {
    /// Serial number (hex).
    pub serial: String,
    /// The account the certificate was issued to.
    pub account_id: AccountId,
    /// The order it was issued for.
    pub order_id: OrderId,
    /// The certificate (DER).
    pub der: Vec<u8>,
    /// The certificate and its chain (PEM), as served to the client.
    pub chain_pem: String,
    /// The identifiers the certificate names.
    pub names: Vec<Identifier>,
    /// Start of validity (Unix seconds).
    pub not_before: i64,
    /// End of validity (Unix seconds).
    pub not_after: i64,
    /// When it was revoked (Unix seconds).
    pub revoked_at: Option<i64>,
    /// The CRL reason code of the revocation.
    pub revocation_reason: Option<u8>,
    /// An operator asked clients to renew now (ARI).
    pub renew_early: bool,
    /// The order that replaced this certificate (ARI `replaces`).
    pub replaced_by_order: Option<OrderId>,
    /// The certificate profile it was issued with.
    pub profile: Option<String>,
    /// The issuer that signed it.
    pub issuer: String,
}

impl CertificateRecord {
    pub(super) fn from_row(row: &impl Columns) -> Result<Self> {
        Ok(Self {
            serial: row.text("serial")?,
            account_id: AccountId(row.int("account_id")?),
            order_id: OrderId(row.int("order_id")?),
            der: row.blob("der")?,
            chain_pem: row.text("chain_pem")?,
            names: row.json("names")?,
            not_before: row.int("not_before")?,
            not_after: row.int("not_after")?,
            revoked_at: row.opt_int("revoked_at")?,
            revocation_reason: row
                .opt_int("revocation_reason")?
                .map(|r| {
                    u8::try_from(r).map_err(|_| {
                        StoreError::Corrupt(format!("revocation_reason {r} out of range"))
                    })
                })
                .transpose()?,
            renew_early: row.flag("renew_early")?,
            replaced_by_order: row.opt_int("replaced_by_order")?.map(OrderId),
            profile: row.opt_text("profile")?,
            issuer: row.text("issuer")?,
        })
    }
}

/// The recorded state of an issuer (`issuers` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerRecord {
    /// The issuer's name.
    pub name: String,
    /// Retired: no new certificates.
    pub retired: bool,
    /// Retired: holders of its certificates are asked to renew before this (Unix seconds).
    pub retire_by: Option<i64>,
    /// When the state was last changed (Unix seconds).
    pub changed_at: i64,
}

/// What an issuer signed that is still valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerUsage {
    /// Certificates not yet expired.
    pub valid: i64,
    /// Of those, revoked ones.
    pub revoked: i64,
    /// The last notAfter among them (Unix seconds).
    pub last_expiry: Option<i64>,
}

/// An External Account Binding key.
#[derive(Debug, Clone)]
pub struct EabKeyRecord {
    /// The key id clients put in the EAB JWS.
    pub kid: String,
    /// The operator's label for the key.
    pub label: String,
    /// The HMAC key as stored: sealed with the key-encryption key (`Store::eab_hmac_key`
    /// opens it), or plaintext in a row an older version wrote, until start-up seals it.
    pub stored_key: StoredKey,
    /// Id of the key-encryption key that sealed it (None: plaintext).
    pub kek_id: Option<String>,
    /// When the key was created (Unix seconds).
    pub created_at: i64,
    /// When the key was revoked (Unix seconds).
    pub revoked_at: Option<i64>,
    /// The account the key was bound to.
    pub account_id: Option<AccountId>,
}

impl EabKeyRecord {
    pub(super) fn from_row(row: &impl Columns) -> Result<Self> {
        Ok(Self {
            kid: row.text("kid")?,
            label: row.text("label")?,
            stored_key: StoredKey(row.blob("hmac_key")?),
            kek_id: row.opt_text("kek_id")?,
            created_at: row.int("created_at")?,
            revoked_at: row.opt_int("revoked_at")?,
            account_id: row.opt_int("account_id")?.map(AccountId),
        })
    }
}

/// A secret as the database stores it. `Debug` shows its length only.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey(pub(crate) Vec<u8>);

impl StoredKey {
    /// The stored bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredKey({} bytes)", self.0.len())
    }
}

/// A revoked certificate as a CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Serial number (hex).
    pub serial: String,
    /// When it was revoked (Unix seconds).
    pub revoked_at: i64,
    /// The CRL reason code.
    pub reason: u8,
}

/// The latest published CRL of an issuer.
#[derive(Debug, Clone)]
pub struct CrlRecord {
    /// The CRL number.
    pub number: i64,
    /// The CRL (DER).
    pub der: Vec<u8>,
    /// `thisUpdate` (Unix seconds).
    pub this_update: i64,
    /// `nextUpdate` (Unix seconds).
    pub next_update: i64,
}

/// What `create_order` needs.
#[derive(Debug, Clone)]
pub struct NewOrderRecord {
    /// The account that places the order.
    pub account_id: AccountId,
    /// The identifiers the order asks for.
    pub identifiers: Vec<Identifier>,
    /// When the order expires (Unix seconds).
    pub expires: i64,
    /// The `notBefore` the client requested (Unix seconds).
    pub not_before: Option<i64>,
    /// The `notAfter` the client requested (Unix seconds).
    pub not_after: Option<i64>,
    /// One per identifier, in the order of `identifiers`.
    pub authorizations: Vec<NewAuthorization>,
    /// The current time (Unix seconds): the order's creation time.
    pub now: i64,
    /// The certificate profile the client requested.
    pub profile: Option<String>,
    /// ARI identifier and serial (hex) of the certificate replaced; the certificate is
    /// marked atomically with the order.
    pub replaces: Option<(String, String)>,
}

/// One authorization of a new order: reused, or created with its challenges.
#[derive(Debug, Clone)]
pub enum NewAuthorization {
    /// A still-valid authorization of the account, reused.
    Reuse(AuthzId),
    /// A new authorization.
    Create {
        /// The identifier to validate, without the `*.` of a wildcard.
        identifier: Identifier,
        /// Whether the order asked for `*.` plus `identifier`.
        wildcard: bool,
        /// When the authorization expires (Unix seconds).
        expires: i64,
        /// Each challenge's type and token.
        challenges: Vec<(ChallengeType, String)>,
    },
}

/// What `complete_order` stores.
#[derive(Debug, Clone)]
pub struct NewCertificate {
    /// Serial number (hex).
    pub serial: String,
    /// The account the certificate is issued to.
    pub account_id: AccountId,
    /// The certificate (DER).
    pub der: Vec<u8>,
    /// The certificate and its chain (PEM).
    pub chain_pem: String,
    /// The identifiers the certificate names.
    pub names: Vec<Identifier>,
    /// Start of validity (Unix seconds).
    pub not_before: i64,
    /// End of validity (Unix seconds).
    pub not_after: i64,
    /// When it was stored (Unix seconds).
    pub created_at: i64,
    /// The certificate profile it was issued with.
    pub profile: Option<String>,
    /// The certificate key, e.g. `ECDSA P-256` (for the audit trail).
    pub key_type: String,
    /// The issuer that signed it.
    pub issuer: String,
}
