//! The RA's errors: what went wrong in ACME's terms, without HTTP. The WFE alone turns
//! them into problem documents with a status (`wfe::problem`), and an operator command
//! prints their `Display`.

use certwright_proto::jws::JwsError;
use certwright_proto::types::Identifier;
use certwright_proto::Problem;

use crate::store::StoreError;

/// What a client hears when the CA's database fails (the cause is logged).
pub const DATABASE_FAILED: &str = "the CA's database failed; try again shortly";

/// Why the RA refused or failed a request.
///
/// Every variant but [`Error::Internal`] carries text written for the client. An internal
/// failure carries a fixed sentence for the client and its cause for the operator's log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request does not make sense (RFC 8555 `malformed`).
    #[error("{0}")]
    Malformed(String),
    /// The signer may not do this.
    #[error("{0}")]
    Unauthorized(String),
    /// No such resource for this requester (`detail` names what was looked for).
    #[error("{0}")]
    NotFound(String),
    /// `onlyReturnExisting` for a key without an account.
    #[error("{0}")]
    AccountDoesNotExist(String),
    /// The terms of service must be agreed to first.
    #[error("{0}")]
    TermsNotAgreed(String),
    /// New accounts need an external account binding.
    #[error("{0}")]
    ExternalAccountRequired(String),
    /// The order names a profile the CA does not offer.
    #[error("{0}")]
    InvalidProfile(String),
    /// A contact URL is not acceptable.
    #[error("{0}")]
    InvalidContact(String),
    /// A contact URL's scheme is not supported.
    #[error("{0}")]
    UnsupportedContact(String),
    /// A rate limit; the client may try again after `retry_after` seconds.
    #[error("{detail}")]
    RateLimited {
        /// Which limit, for whom, and when it resets.
        detail: String,
        /// Seconds until the request can succeed.
        retry_after: u64,
    },
    /// The order as a whole is refused (e.g. too many identifiers).
    #[error("{0}")]
    RejectedOrder(String),
    /// Some of an order's identifiers are refused, each for its own reason.
    #[error("{detail}")]
    RejectedIdentifiers {
        /// A summary sentence.
        detail: String,
        /// One entry per refused identifier.
        refusals: Vec<IdentifierRefusal>,
    },
    /// The CSR does not fit the order or the key policy.
    #[error("{0}")]
    BadCsr(String),
    /// Finalize on an order that is not `ready`.
    #[error("{0}")]
    OrderNotReady(String),
    /// Finalize's CAA re-check refused or failed for an identifier (the VA's problem).
    #[error("{identifier}: {problem}")]
    Recheck {
        /// The identifier re-checked.
        identifier: Identifier,
        /// What the VA found, in its fixed words.
        problem: Box<Problem>,
    },
    /// The certificate is already revoked.
    #[error("{0}")]
    AlreadyRevoked(String),
    /// The certificate named in `replaces` was already replaced.
    #[error("{0}")]
    AlreadyReplaced(String),
    /// A revocation reason that is not accepted.
    #[error("{0}")]
    BadRevocationReason(String),
    /// A JWS algorithm that is not accepted here.
    #[error("{0}")]
    BadSignatureAlgorithm(String),
    /// An inner JWS (key change, external account binding) that does not parse or verify.
    #[error("{context}: {error}")]
    Jws {
        /// Which JWS (e.g. "inner JWS").
        context: &'static str,
        /// The parser's or verifier's finding.
        error: JwsError,
    },
    /// A failure inside the CA. The client reads only `public`.
    #[error("{public} ({cause})")]
    Internal {
        /// A fixed sentence for the client.
        public: &'static str,
        /// The cause, for the operator's log and commands.
        cause: String,
    },
}

/// Why one identifier of an order is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifierRefusal {
    /// The identifier as the client sent it.
    pub identifier: Identifier,
    /// Whether the identifier is malformed or only refused.
    pub kind: RefusalKind,
    /// Why, for the client.
    pub detail: String,
}

/// The problem type an identifier refusal maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Not a well-formed identifier (`malformed`).
    Malformed,
    /// Well formed, but this CA will not issue for it (`rejectedIdentifier`).
    Rejected,
}

impl Error {
    /// An internal failure with a fixed sentence for the client and its cause.
    pub fn internal(public: &'static str, cause: impl std::fmt::Display) -> Self {
        Self::Internal {
            public,
            cause: cause.to_string(),
        }
    }

    /// Whether this is the CA's fault rather than the request's.
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::Internal { .. })
    }
}

impl From<StoreError> for Error {
    /// Only genuine server faults reach here: the RA handles `NotFound`, `Conflict` and
    /// the other expected outcomes where they mean something.
    fn from(e: StoreError) -> Self {
        Self::internal(DATABASE_FAILED, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_shows_its_cause_to_the_operator_only_in_display() {
        let e = Error::from(StoreError::Corrupt("row 7: bad status \"x\"".into()));
        assert!(e.is_internal());
        let Error::Internal { public, .. } = &e else {
            unreachable!("converted to Internal above")
        };
        assert_eq!(*public, DATABASE_FAILED);
        assert!(e.to_string().contains("row 7"), "{e}");
    }
}
