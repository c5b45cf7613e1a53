//! ACME resource objects (RFC 8555 §7.1) and request payloads, as they travel on the wire.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::problem::Problem;

/// The directory object (§7.1.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Directory {
    /// URL of newNonce.
    pub new_nonce: String,
    /// URL of newAccount.
    pub new_account: String,
    /// URL of newOrder.
    pub new_order: String,
    /// URL of newAuthz (pre-authorization), when the CA offers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_authz: Option<String>,
    /// URL of revokeCert.
    pub revoke_cert: String,
    /// URL of keyChange.
    pub key_change: String,
    /// ARI (RFC 9773).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_info: Option<String>,
    /// Terms of service, website, CAA identities, EAB and profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<DirectoryMeta>,
}

/// The directory's `meta` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryMeta {
    /// URL of the current terms of service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_of_service: Option<String>,
    /// URL of the CA's website.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    /// Domain names the CA recognizes as itself in CAA records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caa_identities: Vec<String>,
    /// Whether newAccount requires an External Account Binding.
    #[serde(default)]
    pub external_account_required: bool,
    /// draft-ietf-acme-profiles: profile name → description.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub profiles: serde_json::Map<String, Value>,
}

/// Declares a status enum with its lower-case wire names, `as_str`, `parse` and `Display`.
macro_rules! status_enum {
    (
        $(#[$doc:meta])* $name:ident {
            $($(#[$vdoc:meta])* $variant:ident => $wire:literal),* $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $wire)] $variant,)*
        }
        impl $name {
            /// The lower-case wire name of this status.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $wire,)* }
            }
            /// Parses the lower-case wire name.
            pub fn parse(name: &str) -> Option<Self> {
                match name { $($wire => Some(Self::$variant),)* _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_enum!(
    /// Account status (§7.1.6).
    AccountStatus {
        /// In use.
        Valid => "valid",
        /// Deactivated by its holder; final.
        Deactivated => "deactivated",
        /// Revoked by the CA; final.
        Revoked => "revoked",
    }
);
status_enum!(
    /// Order status (§7.1.6).
    OrderStatus {
        /// Waiting for its authorizations to become valid.
        Pending => "pending",
        /// All authorizations are valid: waiting for finalize.
        Ready => "ready",
        /// Finalized: the certificate is being issued.
        Processing => "processing",
        /// The certificate is issued.
        Valid => "valid",
        /// An authorization failed, the order expired, or issuance failed; final.
        Invalid => "invalid",
    }
);
status_enum!(
    /// Authorization status (§7.1.6).
    AuthorizationStatus {
        /// Waiting for one of its challenges to succeed.
        Pending => "pending",
        /// A challenge succeeded.
        Valid => "valid",
        /// A challenge failed; final.
        Invalid => "invalid",
        /// Deactivated by the client; final.
        Deactivated => "deactivated",
        /// Past its expiry; final.
        Expired => "expired",
        /// Revoked by the CA; final.
        Revoked => "revoked",
    }
);
status_enum!(
    /// Challenge status (§7.1.6).
    ChallengeStatus {
        /// Waiting for the client to ask for validation.
        Pending => "pending",
        /// Being validated.
        Processing => "processing",
        /// Validation succeeded.
        Valid => "valid",
        /// Validation failed.
        Invalid => "invalid",
    }
);

/// The type of an identifier (§9.7.7, RFC 8738).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentifierType {
    /// A DNS name (`dns`).
    Dns,
    /// An IP address (`ip`, RFC 8738).
    Ip,
}

/// An identifier (§7.1.4): a type and a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    /// The type (`type` on the wire).
    #[serde(rename = "type")]
    pub kind: IdentifierType,
    /// The DNS name, or the IP address in text form.
    pub value: String,
}

impl Identifier {
    /// A `dns` identifier.
    pub fn dns(value: impl Into<String>) -> Self {
        Self {
            kind: IdentifierType::Dns,
            value: value.into(),
        }
    }

    /// An `ip` identifier.
    pub fn ip(value: impl Into<String>) -> Self {
        Self {
            kind: IdentifierType::Ip,
            value: value.into(),
        }
    }
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            IdentifierType::Dns => "dns",
            IdentifierType::Ip => "ip",
        };
        write!(f, "{kind}:{}", self.value)
    }
}

/// newAccount payload (§7.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccount {
    /// Contact URLs (e.g. `mailto:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Vec<String>>,
    /// Whether the client agrees to the terms of service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_of_service_agreed: Option<bool>,
    /// Only look up the key's existing account; never create one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_return_existing: Option<bool>,
    /// External Account Binding: a JWS, MAC'd with the EAB key, over the account key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_account_binding: Option<Value>,
}

/// Account update payload (§7.3.2, §7.3.6); all fields optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountUpdate {
    /// New contact URLs (replacing the old ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Vec<String>>,
    /// `deactivated` to deactivate the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AccountStatus>,
    /// Agreement to the (changed) terms of service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_of_service_agreed: Option<bool>,
}

/// The account object (§7.1.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// Valid, deactivated or revoked.
    pub status: AccountStatus,
    /// Contact URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contact: Vec<String>,
    /// Whether the terms of service were agreed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_of_service_agreed: Option<bool>,
    /// URL of the account's orders list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<String>,
    /// The account's public key as a JWK, when the CA includes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Value>,
    /// Creation time (RFC 3339), when the CA includes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// The orders list of an account (§7.1.2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrdersList {
    /// URLs of the account's orders.
    pub orders: Vec<String>,
}

/// newOrder payload (§7.4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOrder {
    /// The identifiers the certificate is to cover.
    pub identifiers: Vec<Identifier>,
    /// Requested notBefore of the certificate (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// Requested notAfter of the certificate (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// draft-ietf-acme-profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// RFC 9773 (ARI): the certificate this order replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// The order object (§7.1.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Where the order is in its lifecycle.
    pub status: OrderStatus,
    /// When the order expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// The identifiers the certificate will cover.
    pub identifiers: Vec<Identifier>,
    /// Requested notBefore of the certificate (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// Requested notAfter of the certificate (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// Why the order became invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
    /// URLs of the authorizations to complete before finalizing.
    pub authorizations: Vec<String>,
    /// URL to POST the CSR to.
    pub finalize: String,
    /// URL of the issued certificate, once the order is valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// draft-ietf-acme-profiles: the profile the certificate is issued under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// RFC 9773 (ARI): the certificate this order replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// The authorization object (§7.1.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// The identifier whose control is to be proven.
    pub identifier: Identifier,
    /// Where the authorization is in its lifecycle.
    pub status: AuthorizationStatus,
    /// When the authorization expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// The challenges offered to prove control.
    pub challenges: Vec<Challenge>,
    /// `true` for a wildcard name (the identifier then lacks the `*.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wildcard: Option<bool>,
}

/// A challenge type: the three this project implements, or any other a CA offers (kept
/// by name, so that an authorization with an unknown type still parses).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChallengeType {
    /// `http-01` (RFC 8555 §8.3).
    Http01,
    /// `dns-01` (RFC 8555 §8.4).
    Dns01,
    /// `tls-alpn-01` (RFC 8737).
    TlsAlpn01,
    /// A type this project does not implement (e.g. `dns-account-01`), by its wire name.
    Unknown(String),
}

impl ChallengeType {
    /// The types this project implements.
    pub const KNOWN: [ChallengeType; 3] = [Self::Http01, Self::Dns01, Self::TlsAlpn01];

    /// The wire name, e.g. `http-01`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Http01 => "http-01",
            Self::Dns01 => "dns-01",
            Self::TlsAlpn01 => "tls-alpn-01",
            Self::Unknown(name) => name,
        }
    }

    /// Parses the wire name of a type this project implements; `None` for any other.
    pub fn parse(name: &str) -> Option<Self> {
        Self::KNOWN.into_iter().find(|t| t.as_str() == name)
    }

    /// The type a wire name stands for, [`Self::Unknown`] when it is not implemented here.
    pub fn from_name(name: &str) -> Self {
        Self::parse(name).unwrap_or_else(|| Self::Unknown(name.to_owned()))
    }

    /// Whether this project implements the type.
    pub fn is_known(&self) -> bool {
        !matches!(self, Self::Unknown(_))
    }

    /// Whether the type can prove control of an identifier of `kind` (`wildcard`: a
    /// `*.` name): dns-01 for DNS names, wildcards included (RFC 8555 §7.1.3, §8.4);
    /// http-01 and tls-alpn-01 for DNS names without a wildcard and for IP addresses
    /// (RFC 8555 §8.3, RFC 8737 §3, RFC 8738 §7).
    pub fn proves(&self, kind: IdentifierType, wildcard: bool) -> bool {
        match self {
            Self::Dns01 => kind == IdentifierType::Dns,
            Self::Http01 | Self::TlsAlpn01 => !wildcard,
            Self::Unknown(_) => false,
        }
    }
}

impl Serialize for ChallengeType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ChallengeType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(Self::from_name(&name))
    }
}

impl std::fmt::Display for ChallengeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The challenge object (§7.1.5, §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Challenge {
    /// The type; one this project does not implement parses as [`ChallengeType::Unknown`].
    #[serde(rename = "type")]
    pub kind: ChallengeType,
    /// URL to POST to: starts validation, and answers with the challenge.
    pub url: String,
    /// Where the challenge is in its lifecycle.
    pub status: ChallengeStatus,
    /// The token of the key authorization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// When the CA validated the challenge (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validated: Option<String>,
    /// Why validation failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
    /// What the CA saw when it validated (a CA extension, as Boulder's
    /// `validationRecord`): addresses contacted, records found, the CAA decision.
    #[serde(
        rename = "validationRecord",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub validation_record: Option<Value>,
}

/// Finalize payload (§7.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finalize {
    /// base64url DER of a PKCS#10 CSR.
    pub csr: String,
}

/// revokeCert payload (§7.6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revocation {
    /// base64url DER of the certificate.
    pub certificate: String,
    /// CRL reason code (RFC 5280 §5.3.1); absent means unspecified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<u8>,
}

/// Inner payload of a keyChange request (§7.3.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyChange {
    /// URL of the account whose key changes.
    pub account: String,
    /// The current (old) public key as a JWK.
    pub old_key: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_wire_names() {
        assert_eq!(OrderStatus::Processing.as_str(), "processing");
        assert_eq!(
            AuthorizationStatus::parse("deactivated"),
            Some(AuthorizationStatus::Deactivated)
        );
        assert_eq!(ChallengeStatus::parse("nope"), None);
    }

    #[test]
    fn which_types_prove_which_identifiers() {
        use ChallengeType as C;
        use IdentifierType as I;
        // (type, DNS name, wildcard DNS name, IP address)
        let table = [
            (C::Http01, true, false, true),
            (C::Dns01, true, true, false),
            (C::TlsAlpn01, true, false, true),
            (C::Unknown("dns-account-01".into()), false, false, false),
        ];
        for (t, dns, wildcard, ip) in table {
            assert_eq!(t.proves(I::Dns, false), dns, "{t} for a DNS name");
            assert_eq!(t.proves(I::Dns, true), wildcard, "{t} for a wildcard");
            assert_eq!(t.proves(I::Ip, false), ip, "{t} for an IP address");
        }
    }

    #[test]
    fn unknown_challenge_types_parse_and_round_trip() {
        let json = r#"{
          "identifier": {"type": "dns", "value": "www.example.org"},
          "status": "pending",
          "challenges": [
            {"type": "http-01", "url": "https://ca.example/c/1", "status": "pending", "token": "t"},
            {"type": "dns-account-01", "url": "https://ca.example/c/2", "status": "pending", "token": "u"}
          ]
        }"#;
        let authz: Authorization = serde_json::from_str(json).unwrap();
        assert_eq!(authz.challenges[0].kind, ChallengeType::Http01);
        let unknown = &authz.challenges[1].kind;
        assert_eq!(*unknown, ChallengeType::Unknown("dns-account-01".into()));
        assert!(!unknown.is_known());
        assert_eq!(ChallengeType::parse("dns-account-01"), None);
        assert_eq!(
            serde_json::to_value(&authz.challenges[1]).unwrap()["type"],
            "dns-account-01"
        );
        for known in ChallengeType::KNOWN {
            assert_eq!(ChallengeType::from_name(known.as_str()), known);
        }
    }

    #[test]
    fn order_parses_rfc8555_example() {
        let json = r#"{
          "status": "valid",
          "expires": "2016-01-20T14:09:07.99Z",
          "identifiers": [{ "type": "dns", "value": "www.example.org" },
                          { "type": "dns", "value": "example.org" }],
          "notBefore": "2016-01-01T00:00:00Z",
          "notAfter": "2016-01-08T00:00:00Z",
          "authorizations": ["https://example.com/acme/authz/PAniVnsZcis",
                             "https://example.com/acme/authz/r4HqLzrSrpI"],
          "finalize": "https://example.com/acme/order/TOlocE8rfgo/finalize",
          "certificate": "https://example.com/acme/cert/mAt3xBGaobw"
        }"#;
        let order: Order = serde_json::from_str(json).unwrap();
        assert_eq!(order.status, OrderStatus::Valid);
        assert_eq!(order.identifiers[1], Identifier::dns("example.org"));
    }
}
