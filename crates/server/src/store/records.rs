//! Typed ids and the records the store hands out.

use certwright_proto::types::{
    AccountStatus, AuthorizationStatus, ChallengeStatus, ChallengeType, Identifier, IdentifierType,
    OrderStatus,
};
use certwright_proto::{Jwk, Problem};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{parse_status, Result, StoreError};

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

fn json_column<T: serde::de::DeserializeOwned>(row: &AnyRow, column: &str) -> Result<T> {
    let text: String = row.get(column);
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn optional_json_column<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    column: &str,
) -> Result<Option<T>> {
    let text: Option<String> = row.get(column);
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
    })
    .transpose()
}

/// An account.
#[derive(Debug, Clone)]
pub struct AccountRecord {
    pub id: AccountId,
    pub jwk: Jwk,
    pub contact: Vec<String>,
    pub status: AccountStatus,
    pub tos_agreed: bool,
    pub created_at: i64,
    /// The External Account Binding key id and label this account was bound with.
    pub eab_kid: Option<String>,
    pub eab_label: Option<String>,
}

impl AccountRecord {
    pub(super) fn from_row(row: &AnyRow) -> Result<Self> {
        let jwk: Value = json_column(row, "jwk")?;
        Ok(Self {
            id: AccountId(row.get("id")),
            jwk: Jwk::from_value(&jwk).map_err(|e| StoreError::Corrupt(format!("jwk: {e}")))?,
            contact: json_column(row, "contact")?,
            status: parse_status(row.get("status"), AccountStatus::parse)?,
            tos_agreed: row.get::<i64, _>("tos_agreed") != 0,
            created_at: row.get("created_at"),
            eab_kid: row.get("eab_kid"),
            eab_label: row.get("eab_label"),
        })
    }
}

/// An order as stored. Its `status` is the stored one: the RA refines `pending` from the
/// authorizations (see `ra::status`).
#[derive(Debug, Clone)]
pub struct OrderRecord {
    pub id: OrderId,
    pub account_id: AccountId,
    pub status: OrderStatus,
    pub identifiers: Vec<Identifier>,
    pub expires: i64,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub error: Option<Problem>,
    pub csr: Option<Vec<u8>>,
    pub certificate_serial: Option<String>,
    pub authorization_ids: Vec<AuthzId>,
    pub profile: Option<String>,
    /// ARI certificate identifier of the certificate this order replaces.
    pub replaces: Option<String>,
}

impl OrderRecord {
    pub(super) fn from_row(row: &AnyRow, authorization_ids: Vec<AuthzId>) -> Result<Self> {
        Ok(Self {
            id: OrderId(row.get("id")),
            account_id: AccountId(row.get("account_id")),
            status: parse_status(row.get("status"), OrderStatus::parse)?,
            identifiers: json_column(row, "identifiers")?,
            expires: row.get("expires"),
            not_before: row.get("not_before"),
            not_after: row.get("not_after"),
            error: optional_json_column(row, "error")?,
            csr: row.get("csr"),
            certificate_serial: row.get("certificate_serial"),
            authorization_ids,
            profile: row.get("profile"),
            replaces: row.get("replaces"),
        })
    }
}

/// An authorization with its challenges.
#[derive(Debug, Clone)]
pub struct AuthzRecord {
    pub id: AuthzId,
    pub account_id: AccountId,
    pub identifier: Identifier,
    pub wildcard: bool,
    pub status: AuthorizationStatus,
    pub expires: i64,
    pub challenges: Vec<ChallengeRecord>,
}

impl AuthzRecord {
    pub(super) fn from_row(row: &AnyRow, challenges: Vec<ChallengeRecord>) -> Result<Self> {
        let kind = match row.get::<&str, _>("identifier_type") {
            "dns" => IdentifierType::Dns,
            "ip" => IdentifierType::Ip,
            other => return Err(StoreError::Corrupt(format!("identifier type {other:?}"))),
        };
        Ok(Self {
            id: AuthzId(row.get("id")),
            account_id: AccountId(row.get("account_id")),
            identifier: Identifier {
                kind,
                value: row.get("identifier_value"),
            },
            wildcard: row.get::<i64, _>("wildcard") != 0,
            status: parse_status(row.get("status"), AuthorizationStatus::parse)?,
            expires: row.get("expires"),
            challenges,
        })
    }
}

/// A challenge, with what the VA recorded about its validation.
#[derive(Debug, Clone)]
pub struct ChallengeRecord {
    pub id: ChallengeId,
    pub authorization_id: AuthzId,
    pub kind: ChallengeType,
    pub token: String,
    pub status: ChallengeStatus,
    pub validated: Option<i64>,
    pub error: Option<Problem>,
    pub record: Option<Value>,
}

impl ChallengeRecord {
    pub(super) fn from_row(row: &AnyRow) -> Result<Self> {
        let kind: &str = row.get("type");
        Ok(Self {
            id: ChallengeId(row.get("id")),
            authorization_id: AuthzId(row.get("authorization_id")),
            kind: ChallengeType::parse(kind)
                .ok_or_else(|| StoreError::Corrupt(format!("challenge type {kind:?}")))?,
            token: row.get("token"),
            status: parse_status(row.get("status"), ChallengeStatus::parse)?,
            validated: row.get("validated"),
            error: optional_json_column(row, "error")?,
            record: optional_json_column(row, "record")?,
        })
    }
}

/// An issued certificate.
#[derive(Debug, Clone)]
pub struct CertificateRecord {
    pub serial: String,
    pub account_id: AccountId,
    pub order_id: OrderId,
    pub der: Vec<u8>,
    pub chain_pem: String,
    pub names: Vec<Identifier>,
    pub not_before: i64,
    pub not_after: i64,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<u8>,
    /// An operator asked clients to renew now (ARI).
    pub renew_early: bool,
    pub replaced_by_order: Option<OrderId>,
    pub profile: Option<String>,
}

impl CertificateRecord {
    pub(super) fn from_row(row: &AnyRow) -> Result<Self> {
        Ok(Self {
            serial: row.get("serial"),
            account_id: AccountId(row.get("account_id")),
            order_id: OrderId(row.get("order_id")),
            der: row.get("der"),
            chain_pem: row.get("chain_pem"),
            names: json_column(row, "names")?,
            not_before: row.get("not_before"),
            not_after: row.get("not_after"),
            revoked_at: row.get("revoked_at"),
            revocation_reason: row
                .get::<Option<i64>, _>("revocation_reason")
                .map(|r| r as u8),
            renew_early: row.get::<i64, _>("renew_early") != 0,
            replaced_by_order: row.get::<Option<i64>, _>("replaced_by_order").map(OrderId),
            profile: row.get("profile"),
        })
    }
}

/// An External Account Binding key.
#[derive(Debug, Clone)]
pub struct EabKeyRecord {
    pub kid: String,
    pub label: String,
    /// The HMAC key (secret).
    pub hmac_key: Vec<u8>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub account_id: Option<AccountId>,
}

impl EabKeyRecord {
    pub(super) fn from_row(row: &AnyRow) -> Result<Self> {
        Ok(Self {
            kid: row.get("kid"),
            label: row.get("label"),
            hmac_key: row.get("hmac_key"),
            created_at: row.get("created_at"),
            revoked_at: row.get("revoked_at"),
            account_id: row.get::<Option<i64>, _>("account_id").map(AccountId),
        })
    }
}

/// A revoked certificate as a CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    pub serial: String,
    pub revoked_at: i64,
    pub reason: u8,
}

/// The latest published CRL of an issuer.
#[derive(Debug, Clone)]
pub struct CrlRecord {
    pub number: i64,
    pub der: Vec<u8>,
    pub this_update: i64,
    pub next_update: i64,
}

/// What `create_order` needs.
#[derive(Debug, Clone)]
pub struct NewOrderRecord {
    pub account_id: AccountId,
    pub identifiers: Vec<Identifier>,
    pub expires: i64,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub authorizations: Vec<NewAuthorization>,
    pub now: i64,
    pub profile: Option<String>,
    /// ARI identifier and serial (hex) of the certificate replaced; the certificate is
    /// marked atomically with the order.
    pub replaces: Option<(String, String)>,
}

/// One authorization of a new order: reused, or created with its challenges.
#[derive(Debug, Clone)]
pub enum NewAuthorization {
    Reuse(AuthzId),
    Create {
        identifier: Identifier,
        wildcard: bool,
        expires: i64,
        challenges: Vec<(ChallengeType, String)>,
    },
}

/// What `complete_order` stores.
#[derive(Debug, Clone)]
pub struct NewCertificate {
    pub serial: String,
    pub account_id: AccountId,
    pub der: Vec<u8>,
    pub chain_pem: String,
    pub names: Vec<Identifier>,
    pub not_before: i64,
    pub not_after: i64,
    pub created_at: i64,
    pub profile: Option<String>,
    /// The certificate key, e.g. `ECDSA P-256` (for the audit trail).
    pub key_type: String,
}
