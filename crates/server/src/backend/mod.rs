//! Backend CAs: where an order is signed when this CA is the ACME front of another CA
//! (`docs/upstream.md`). certwright-ca keeps the ACME side (accounts, orders, validation,
//! policy, rate limits, audit) and forwards the checked CSR to a [`Backend`]:
//! an upstream ACME CA ([`acme`]) or a command-line CA ([`exec`]). The CA's own issuers
//! are the backend named `local` and never pass through here.
//!
//! The RA (`ra/upstream.rs`) runs each forwarded order as a durable job in the store:
//! it routes the order ([`routing`]), calls [`Backend::issue`], converts what comes back
//! ([`convert`]), checks it against the order ([`check`]) and only then stores it.

pub mod acme;
pub mod check;
pub mod convert;
pub mod exec;
pub mod routing;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use certwright_proto::types::Identifier;
use futures_util::future::BoxFuture;
use rustls::pki_types::CertificateDer;

pub use routing::{OrderFacts, Route, Router};

/// What a backend is asked to sign: the order's CSR and facts.
#[derive(Debug, Clone)]
pub struct BackendRequest {
    /// Stable for the order (`order-ID`): a backend that sees the same id twice must
    /// return the same certificate (`CERTWRIGHT_REQUEST_ID` for `exec`).
    pub request_id: String,
    /// The CSR, DER (checked against the order and the key policy already).
    pub csr_der: Vec<u8>,
    /// The order's identifiers: the certificate must name exactly these.
    pub identifiers: Vec<Identifier>,
    /// The order's profile, if it asked for one.
    pub profile: Option<String>,
    /// The account's EAB label, if it was bound with one.
    pub eab_label: Option<String>,
    /// The ACME account's id here.
    pub account_id: i64,
    /// The lifetime the order's profile gives, in seconds (a backend may give less).
    pub lifetime_secs: i64,
    /// What the backend saved through [`Checkpoint::save`] on an earlier attempt for this
    /// order (the upstream order URL, say); `None` on the first.
    pub state: Option<String>,
}

/// A certificate to revoke at the backend that issued it.
#[derive(Debug, Clone)]
pub struct RevokeRequest {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Its serial, lowercase hex.
    pub serial_hex: String,
    /// The RFC 5280 reason code.
    pub reason: u8,
}

/// Where a backend keeps what it needs to resume an interrupted attempt (durable before
/// `save` returns).
pub trait Checkpoint: Send + Sync {
    /// Replaces the saved state of this order's job.
    fn save<'a>(&'a self, state: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// Why a backend did not deliver. The cause is for the log and the audit trail only:
/// nothing a backend said reaches an ACME client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Try again later (a time-out, the upstream down or answering 5xx, an exit code
    /// marked temporary). Retried with backoff until the job's deadline.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// The backend refused this request for good; the order fails with `refusal`'s
    /// problem type and a fixed sentence.
    #[error("refused ({refusal:?}): {cause}")]
    Refused {
        /// What kind of refusal (chooses the client's problem type).
        refusal: Refusal,
        /// The backend's own words, for the log.
        cause: String,
    },
}

/// A backend's permanent refusal, as the client's problem type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The backend refused the CSR (`badCSR`).
    BadCsr,
    /// The backend refused a name (`rejectedIdentifier`).
    RejectedIdentifier,
    /// Anything else (`serverInternal`).
    Other,
}

/// A CA that signs for this one through its own interface.
pub trait Backend: Send + Sync {
    /// The kind, for logs and metrics: `exec` or `acme`.
    fn kind(&self) -> &'static str;

    /// Whether an attempt interrupted mid-flight (this process killed, a time-out) may
    /// be made again for the same order without risking a second certificate: the
    /// backend resumes from its [`Checkpoint`] or is idempotent on the request id.
    fn resumable(&self) -> bool;

    /// Obtains the certificate for `request`: the bytes the backend returned (PEM, DER
    /// or PKCS#7; [`convert`] reads them). Saves what it must remember to resume through
    /// `checkpoint` before any step that cannot be repeated.
    fn issue<'a>(
        &'a self,
        request: &'a BackendRequest,
        checkpoint: &'a dyn Checkpoint,
    ) -> BoxFuture<'a, Result<Vec<u8>, BackendError>>;

    /// Revokes a certificate it issued.
    fn revoke<'a>(&'a self, request: &'a RevokeRequest) -> BoxFuture<'a, Result<(), BackendError>>;

    /// The renewal window the backend suggests for a certificate it issued (ARI, as
    /// `(start, end)` Unix seconds), if it has one.
    fn renewal_window<'a>(&'a self, _cert_der: &'a [u8]) -> BoxFuture<'a, Option<(i64, i64)>> {
        Box::pin(async { None })
    }
}

/// One configured backend: its implementation and the settings every kind shares.
#[derive(Clone)]
pub struct BackendEntry {
    /// Its name in the configuration (also the certificates' `issuer`).
    pub name: String,
    /// The implementation.
    pub backend: Arc<dyn Backend>,
    /// Shared settings.
    pub settings: BackendSettings,
}

/// Settings every kind of backend has (`[backends.NAME]`).
#[derive(Debug, Clone)]
pub struct BackendSettings {
    /// Longest one attempt may take.
    pub timeout: Duration,
    /// How long after finalize transient failures are retried.
    pub deadline: Duration,
    /// The roots a returned chain must end at; empty: any (the chain must still link).
    pub trust_anchors: Vec<CertificateDer<'static>>,
}

/// Every configured backend and the rules that route orders to them.
#[derive(Clone, Default)]
pub struct Backends {
    entries: BTreeMap<String, BackendEntry>,
    router: Router,
}

impl Backends {
    /// `entries` routed by `router` (whose backend names are checked by the config).
    pub fn new(entries: Vec<BackendEntry>, router: Router) -> Self {
        Self {
            entries: entries.into_iter().map(|e| (e.name.clone(), e)).collect(),
            router,
        }
    }

    /// The backend of an order: `None` for the CA's own issuers.
    pub fn route(&self, facts: &OrderFacts<'_>) -> Option<&BackendEntry> {
        match self.router.route(facts) {
            Route::Local => None,
            Route::Backend(name) => self.entries.get(name),
        }
    }

    /// The backend named `name` (a certificate's `issuer`, a job's backend).
    pub fn get(&self, name: &str) -> Option<&BackendEntry> {
        self.entries.get(name)
    }
}
