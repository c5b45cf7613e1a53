//! RFC 8555 §6.7 problem documents (RFC 7807) and their error types.

use serde::{Deserialize, Serialize};

use crate::types::Identifier;

/// The `urn:ietf:params:acme:error:*` types of RFC 8555 §6.7 (plus `invalidProfile`
/// from draft-ietf-acme-profiles), and any other type a server sends, kept as it came.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProblemType {
    /// The request names an account that does not exist.
    AccountDoesNotExist,
    /// RFC 9773: the certificate named in `replaces` was already replaced.
    AlreadyReplaced,
    /// The certificate to revoke is already revoked.
    AlreadyRevoked,
    /// The CSR is unacceptable (e.g. a key too short, a name not in the order).
    BadCsr,
    /// The anti-replay nonce is unknown, used or expired.
    BadNonce,
    /// The JWS is signed by a public key the server does not support.
    BadPublicKey,
    /// The revocation reason is not allowed.
    BadRevocationReason,
    /// The JWS is signed with an algorithm the server does not support.
    BadSignatureAlgorithm,
    /// CAA records forbid the CA to issue for the identifier.
    Caa,
    /// Several problems, listed in `subproblems`.
    Compound,
    /// The server could not connect to the validation target.
    Connection,
    /// A DNS query during validation failed.
    Dns,
    /// newAccount must carry an `externalAccountBinding`.
    ExternalAccountRequired,
    /// The response did not match the challenge's requirements.
    IncorrectResponse,
    /// A contact URL of the account is invalid.
    InvalidContact,
    /// draft-ietf-acme-profiles: the order names a profile the server does not offer.
    InvalidProfile,
    /// The request is malformed.
    Malformed,
    /// The order to finalize is not `ready`.
    OrderNotReady,
    /// The request exceeds a rate limit.
    RateLimited,
    /// The server will not issue for the identifier.
    RejectedIdentifier,
    /// The server failed internally.
    ServerInternal,
    /// A TLS error during validation.
    Tls,
    /// The client lacks authorization for the request.
    Unauthorized,
    /// A contact URL uses a scheme the server does not support.
    UnsupportedContact,
    /// An identifier is of a type the server does not support.
    UnsupportedIdentifier,
    /// The user must act: see the problem's `instance` URL.
    UserActionRequired,
    /// A generic HTTP problem (`about:blank`), used for 404/405 answers.
    AboutBlank,
    /// A type URI this library does not know (a newer ACME error, a CA's own): kept whole
    /// so that it is shown and compared as the server sent it.
    Other(String),
}

const PREFIX: &str = "urn:ietf:params:acme:error:";

impl ProblemType {
    const ALL: [ProblemType; 27] = [
        Self::AccountDoesNotExist,
        Self::AlreadyReplaced,
        Self::AlreadyRevoked,
        Self::BadCsr,
        Self::BadNonce,
        Self::BadPublicKey,
        Self::BadRevocationReason,
        Self::BadSignatureAlgorithm,
        Self::Caa,
        Self::Compound,
        Self::Connection,
        Self::Dns,
        Self::ExternalAccountRequired,
        Self::IncorrectResponse,
        Self::InvalidContact,
        Self::InvalidProfile,
        Self::Malformed,
        Self::OrderNotReady,
        Self::RateLimited,
        Self::RejectedIdentifier,
        Self::ServerInternal,
        Self::Tls,
        Self::Unauthorized,
        Self::UnsupportedContact,
        Self::UnsupportedIdentifier,
        Self::UserActionRequired,
        Self::AboutBlank,
    ];

    /// The short name after the URN prefix, e.g. `badNonce` (an unknown type's whole URI
    /// when it does not have that prefix).
    pub fn name(&self) -> &str {
        match self {
            Self::AccountDoesNotExist => "accountDoesNotExist",
            Self::AlreadyReplaced => "alreadyReplaced",
            Self::AlreadyRevoked => "alreadyRevoked",
            Self::BadCsr => "badCSR",
            Self::BadNonce => "badNonce",
            Self::BadPublicKey => "badPublicKey",
            Self::BadRevocationReason => "badRevocationReason",
            Self::BadSignatureAlgorithm => "badSignatureAlgorithm",
            Self::Caa => "caa",
            Self::Compound => "compound",
            Self::Connection => "connection",
            Self::Dns => "dns",
            Self::ExternalAccountRequired => "externalAccountRequired",
            Self::IncorrectResponse => "incorrectResponse",
            Self::InvalidContact => "invalidContact",
            Self::InvalidProfile => "invalidProfile",
            Self::Malformed => "malformed",
            Self::OrderNotReady => "orderNotReady",
            Self::RateLimited => "rateLimited",
            Self::RejectedIdentifier => "rejectedIdentifier",
            Self::ServerInternal => "serverInternal",
            Self::Tls => "tls",
            Self::Unauthorized => "unauthorized",
            Self::UnsupportedContact => "unsupportedContact",
            Self::UnsupportedIdentifier => "unsupportedIdentifier",
            Self::UserActionRequired => "userActionRequired",
            Self::AboutBlank => "about:blank",
            Self::Other(uri) => uri.strip_prefix(PREFIX).unwrap_or(uri),
        }
    }

    /// The full type URI as it appears in a problem document.
    pub fn uri(&self) -> String {
        match self {
            Self::AboutBlank => "about:blank".to_owned(),
            Self::Other(uri) => uri.clone(),
            known => format!("{PREFIX}{}", known.name()),
        }
    }

    /// Parses a type URI; a URI this library does not know is kept as [`Self::Other`].
    pub fn from_uri(uri: &str) -> Self {
        if uri == "about:blank" {
            return Self::AboutBlank;
        }
        uri.strip_prefix(PREFIX)
            .and_then(|name| Self::ALL.iter().find(|t| t.name() == name))
            .cloned()
            .unwrap_or_else(|| Self::Other(uri.to_owned()))
    }

    /// Whether this is one of the types this library knows.
    pub fn is_known(&self) -> bool {
        !matches!(self, Self::Other(_))
    }

    /// The HTTP status a server answers with for this type (Boulder's and Pebble's choices).
    pub fn default_status(&self) -> u16 {
        match self {
            Self::AccountDoesNotExist => 400,
            Self::AlreadyReplaced => 409,
            Self::Unauthorized => 403,
            Self::UserActionRequired => 403,
            Self::OrderNotReady => 403,
            Self::RateLimited => 429,
            Self::ServerInternal => 500,
            Self::AboutBlank => 404,
            Self::AlreadyRevoked => 400,
            _ => 400,
        }
    }
}

impl Serialize for ProblemType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.uri())
    }
}

impl<'de> Deserialize<'de> for ProblemType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let uri = String::deserialize(d)?;
        Ok(Self::from_uri(&uri))
    }
}

/// An RFC 7807 problem document as ACME uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The `type` URI.
    #[serde(rename = "type")]
    pub kind: ProblemType,
    /// Human-readable explanation; empty when absent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The HTTP status code, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The identifier this (sub)problem is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    /// Problems per identifier, for a `compound` problem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subproblems: Vec<Problem>,
    /// Seconds after which the client may try again (sent as `Retry-After`, not in the
    /// document). 32 bits (136 years) keep a problem small enough to return by value.
    #[serde(skip)]
    pub retry_after: Option<u32>,
}

impl Problem {
    /// A problem of `kind` with its default status and `detail`.
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            status: Some(kind.default_status()),
            kind,
            detail: detail.into(),
            identifier: None,
            subproblems: Vec::new(),
            retry_after: None,
        }
    }

    /// The same problem with a `Retry-After` of `secs`.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(u32::try_from(secs).unwrap_or(u32::MAX));
        self
    }

    /// The same problem with another HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// A subproblem about one identifier (status omitted, as RFC 8555 §6.7.1 shows).
    pub fn for_identifier(mut self, identifier: Identifier) -> Self {
        self.identifier = Some(identifier);
        self.status = None;
        self
    }

    /// Attaches per-identifier subproblems.
    pub fn with_subproblems(mut self, subproblems: Vec<Problem>) -> Self {
        self.subproblems = subproblems;
        self
    }

    /// The HTTP status to answer with.
    pub fn http_status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.kind.default_status())
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.uri(), self.detail)?;
        for sub in &self.subproblems {
            write!(f, "; {sub}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

/// Shorthand constructors, one per common type.
macro_rules! ctor {
    ($($fn_name:ident => $kind:ident),* $(,)?) => {
        impl Problem {
            $(
                #[doc = concat!("A `", stringify!($kind), "` problem.")]
                pub fn $fn_name(detail: impl Into<String>) -> Self {
                    Self::new(ProblemType::$kind, detail)
                }
            )*
        }
    };
}

ctor! {
    malformed => Malformed,
    unauthorized => Unauthorized,
    bad_nonce => BadNonce,
    bad_csr => BadCsr,
    bad_public_key => BadPublicKey,
    bad_signature_algorithm => BadSignatureAlgorithm,
    account_does_not_exist => AccountDoesNotExist,
    server_internal => ServerInternal,
    rejected_identifier => RejectedIdentifier,
    unsupported_identifier => UnsupportedIdentifier,
    invalid_contact => InvalidContact,
    unsupported_contact => UnsupportedContact,
    order_not_ready => OrderNotReady,
    connection => Connection,
    incorrect_response => IncorrectResponse,
    dns => Dns,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trip_for_every_type() {
        for t in ProblemType::ALL {
            assert_eq!(ProblemType::from_uri(&t.uri()), t);
            assert!(t.is_known());
        }
        assert_eq!(
            ProblemType::BadCsr.uri(),
            "urn:ietf:params:acme:error:badCSR"
        );
    }

    #[test]
    fn unknown_types_are_kept_not_blanked() {
        let json = r#"{"type":"urn:ietf:params:acme:error:futureThing","detail":"x"}"#;
        let p: Problem = serde_json::from_str(json).unwrap();
        assert_eq!(
            p.kind,
            ProblemType::Other("urn:ietf:params:acme:error:futureThing".into())
        );
        assert!(!p.kind.is_known());
        assert_eq!(p.kind.name(), "futureThing");
        assert_eq!(
            serde_json::to_value(&p).unwrap()["type"],
            "urn:ietf:params:acme:error:futureThing"
        );
        let own = ProblemType::from_uri("https://ca.example/problems/quota");
        assert_eq!(own.name(), "https://ca.example/problems/quota");
        assert_eq!(own.uri(), "https://ca.example/problems/quota");
        assert_eq!(own.default_status(), 400);
    }

    #[test]
    fn serializes_as_rfc7807() {
        let p = Problem::bad_nonce("stale");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "urn:ietf:params:acme:error:badNonce");
        assert_eq!(v["status"], 400);
        assert_eq!(v["detail"], "stale");
        assert!(v.get("subproblems").is_none());
    }
}
