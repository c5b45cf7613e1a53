//! The issuing CAs of one certwright-ca. Each has its own key, CRL and caIssuers URLs,
//! delegated OCSP responder and state (active, or retired by a date); a new certificate
//! comes from an active one whose key type matches the CSR's (as Let's Encrypt chooses
//! between its ECDSA and RSA intermediates), or the one its profile names.

use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use rcgen::SignatureAlgorithm;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use super::files::IssuerFiles;
use super::issuer::{rcgen_issuer, Issuer, IssuerKey};
use super::keys::Pkcs11Settings;
use super::ocsp::{OcspError, OcspResponder};
use super::responder::{self, OCSP_RESPONDER_RENEW_BEFORE_SECS};
use super::{IssuancePolicy, IssueError};

/// The kind of an issuer's key, matched against the CSR's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA (P-256, P-384).
    Ecdsa,
    /// RSA.
    Rsa,
}

impl KeyKind {
    /// The kind of a key that signs with `algorithm`.
    pub fn of_algorithm(algorithm: &SignatureAlgorithm) -> Self {
        if algorithm == &rcgen::PKCS_RSA_SHA256
            || algorithm == &rcgen::PKCS_RSA_SHA384
            || algorithm == &rcgen::PKCS_RSA_SHA512
        {
            Self::Rsa
        } else {
            Self::Ecdsa
        }
    }

    /// The kind of an ACME/CSR public key.
    pub fn of_jwk(key: &certwright_proto::Jwk) -> Self {
        match key {
            certwright_proto::Jwk::Rsa { .. } => Self::Rsa,
            _ => Self::Ecdsa,
        }
    }

    /// `ecdsa` or `rsa`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ecdsa => "ecdsa",
            Self::Rsa => "rsa",
        }
    }
}

/// Whether an issuer signs new certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerState {
    /// Signs new certificates.
    Active,
    /// Signs no new certificates; its CRL and OCSP go on. Its certificates' holders are
    /// asked (ARI) to renew before `by` (Unix seconds).
    Retired {
        /// Renew-before date of its certificates.
        by: i64,
    },
}

/// One issuing CA as the CA uses it.
pub struct IssuingCa {
    files: IssuerFiles,
    issuer: Arc<dyn Issuer>,
    signer: rcgen::Issuer<'static, IssuerKey>,
    key_kind: KeyKind,
    key_id: Vec<u8>,
    not_before: i64,
    not_after: i64,
    crl_url: Option<String>,
    ocsp_url: Option<String>,
    ca_issuers_url: Option<String>,
    ocsp: OnceLock<OcspResponder>,
    state: RwLock<IssuerState>,
    /// Chains through a cross-signed certificate of this issuer (each PEM, without the leaf).
    alternates: Vec<String>,
}

impl IssuingCa {
    /// The issuer at `files`, signing through `issuer`, naming its URLs under the
    /// policy's PKI base URL.
    pub fn new(
        files: IssuerFiles,
        issuer: Arc<dyn Issuer>,
        policy: &IssuancePolicy,
    ) -> Result<Self, IssueError> {
        let signer = rcgen_issuer(issuer.clone())?;
        let (_, cert) = X509Certificate::from_der(issuer.certificate_der())
            .map_err(|e| IssueError::Issuer(format!("{}: {e}", files.cert.display())))?;
        let key_id = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .unwrap_or_default();
        let not_before = cert.validity().not_before.timestamp();
        let not_after = cert.validity().not_after.timestamp();
        let alternates = files
            .alternate_chains(issuer.certificate_der())
            .map_err(|e| IssueError::Issuer(e.to_string()))?;
        let name = &files.name;
        let pki = policy.pki_base.as_deref();
        Ok(Self {
            crl_url: pki.map(|b| format!("{b}{}", crl_path(name))),
            ocsp_url: pki
                .filter(|_| policy.ocsp)
                .map(|b| format!("{b}{}", super::OCSP_PATH)),
            ca_issuers_url: pki.map(|b| format!("{b}{}", ca_issuers_path(name))),
            key_kind: KeyKind::of_algorithm(issuer.signature_algorithm()),
            files,
            issuer,
            signer,
            key_id,
            not_before,
            not_after,
            ocsp: OnceLock::new(),
            state: RwLock::new(IssuerState::Active),
            alternates,
        })
    }

    /// This issuer answering OCSP with `responder` (a second one is ignored).
    pub fn set_ocsp(&self, responder: OcspResponder) {
        let _ = self.ocsp.set(responder);
    }

    /// Starts this issuer's delegated OCSP responder (loading or issuing its
    /// certificate), unless it runs already.
    pub fn start_ocsp(
        &self,
        pkcs11: &Pkcs11Settings,
        validity_secs: i64,
        now: i64,
    ) -> Result<(), IssueError> {
        if self.ocsp.get().is_some() {
            return Ok(());
        }
        let credentials = responder::load_or_create(&self.files, &self.issuer, pkcs11, now)
            .map_err(|e| IssueError::Issuer(e.to_string()))?;
        let responder =
            OcspResponder::new(self.issuer.certificate_der(), &credentials, validity_secs)
                .map_err(|e| IssueError::Issuer(e.to_string()))?;
        self.set_ocsp(responder);
        Ok(())
    }

    /// The issuer's name (`intermediate`, or its directory under `issuers/`).
    pub fn name(&self) -> &str {
        &self.files.name
    }

    /// Where its files are.
    pub fn files(&self) -> &IssuerFiles {
        &self.files
    }

    /// Who signs.
    pub fn issuer(&self) -> &Arc<dyn Issuer> {
        &self.issuer
    }

    /// rcgen's view of the issuer (for `signed_by`).
    pub(crate) fn signer(&self) -> &rcgen::Issuer<'static, IssuerKey> {
        &self.signer
    }

    /// The kind of its key.
    pub fn key_kind(&self) -> KeyKind {
        self.key_kind
    }

    /// Its Subject Key Identifier (the AKI of what it signs; ARI's certID prefix).
    pub fn key_id(&self) -> &[u8] {
        &self.key_id
    }

    /// notBefore of its certificate (Unix seconds).
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// notAfter of its certificate (Unix seconds).
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The CRL Distribution Point named in its certificates.
    pub fn crl_url(&self) -> Option<&str> {
        self.crl_url.as_deref()
    }

    /// The OCSP URL named in its certificates.
    pub fn ocsp_url(&self) -> Option<&str> {
        self.ocsp_url.as_deref()
    }

    /// Its caIssuers URL.
    pub fn ca_issuers_url(&self) -> Option<&str> {
        self.ca_issuers_url.as_deref()
    }

    /// Its alternate chains (PEM, what follows the leaf), for `Link: rel="alternate"`.
    pub fn alternate_chains(&self) -> &[String] {
        &self.alternates
    }

    /// Its OCSP responder, when OCSP is on.
    pub fn ocsp(&self) -> Option<&OcspResponder> {
        self.ocsp.get()
    }

    /// Its state now.
    pub fn state(&self) -> IssuerState {
        *self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets its state (from the store: `issuer retire` on any instance).
    pub fn set_state(&self, state: IssuerState) {
        let mut current = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if *current != state {
            tracing::info!(issuer = %self.name(), ?state, "issuer state changed");
            *current = state;
        }
    }

    /// Signs new certificates.
    pub fn is_active(&self) -> bool {
        self.state() == IssuerState::Active
    }

    /// Re-issues the responder certificate when it expires within 30 days of `now` (a CA
    /// that runs for months without a restart). Returns whether it did.
    pub fn refresh_ocsp_responder(
        &self,
        pkcs11: &Pkcs11Settings,
        now: i64,
    ) -> Result<bool, OcspError> {
        let Some(responder) = self.ocsp.get() else {
            return Ok(false);
        };
        if responder.responder_not_after() - now >= OCSP_RESPONDER_RENEW_BEFORE_SECS {
            return Ok(false);
        }
        let Some(_guard) = responder.try_rotate() else {
            // Another request is re-issuing it; the current one is still valid.
            return Ok(false);
        };
        if responder.responder_not_after() - now >= OCSP_RESPONDER_RENEW_BEFORE_SECS {
            return Ok(false);
        }
        let credentials = responder::issue(&self.files, &self.issuer, pkcs11, now)
            .map_err(|e| OcspError::Internal(format!("re-issuing the responder: {e}")))?;
        responder.replace_signer(&credentials)?;
        Ok(true)
    }
}

/// Where issuer `name`'s CRL is served (and named in its certificates).
pub fn crl_path(name: &str) -> String {
    format!("/crl/{name}.crl")
}

/// Where issuer `name`'s certificate is served, DER (caIssuers).
pub fn ca_issuers_path(name: &str) -> String {
    format!("/ca/{name}.der")
}

/// The issuer for a new certificate: `wanted` (a profile's issuer) when it is active;
/// else, among the active issuers whose key is of `kind`, the one with the newest
/// certificate; else the newest active one of any kind.
pub fn choose(
    issuers: &[Arc<IssuingCa>],
    wanted: Option<&str>,
    kind: KeyKind,
) -> Option<Arc<IssuingCa>> {
    if let Some(found) = wanted.and_then(|w| {
        issuers
            .iter()
            .find(|i| i.name() == w && i.is_active())
            .cloned()
    }) {
        return Some(found);
    }
    let newest = |same_kind: bool| {
        issuers
            .iter()
            .filter(|i| i.is_active() && (!same_kind || i.key_kind() == kind))
            .max_by_key(|i| i.not_before())
            .cloned()
    };
    newest(true).or_else(|| newest(false))
}
