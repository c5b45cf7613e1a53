//! OCSP answers: the store says whether a certificate is good or revoked, the CA's
//! delegated responder signs (RFC 6960).

use super::Ra;
use crate::ca::ocsp::{CertificateStatus, OcspError, SignedResponse};
use crate::store::StoreError;

/// What the responder says to one request.
#[derive(Debug)]
pub enum OcspAnswer {
    /// OCSP is off in the configuration.
    Disabled,
    /// A signed, successful response.
    Signed(SignedResponse),
    /// An unsigned error response (malformedRequest, unauthorized, internalError).
    Error(OcspError),
}

impl Ra {
    /// Answers a DER OCSPRequest.
    pub async fn ocsp(&self, request_der: &[u8]) -> OcspAnswer {
        let ca = &self.inner.ca;
        if !ca.ocsp_enabled() {
            return OcspAnswer::Disabled;
        }
        let now = self.now();
        // The issuer whose CertIDs the request carries (every one must name it).
        let (issuer, request) = match ca.ocsp_request(request_der) {
            Ok(found) => found,
            Err(e) => return OcspAnswer::Error(e),
        };
        let Some(responder) = issuer.ocsp() else {
            return OcspAnswer::Error(OcspError::Unauthorized);
        };
        let mut statuses = Vec::with_capacity(request.queries.len());
        for query in &request.queries {
            let status = match self.inner.store.certificate(&query.serial_hex).await {
                // A serial another issuer signed is not this issuer's to vouch for.
                Ok(cert)
                    if cert.issuer != issuer.name() || !responder.issued_by_issuer(&cert.der) =>
                {
                    CertificateStatus::Unknown
                }
                Ok(cert) => match cert.revoked_at {
                    Some(at) => CertificateStatus::Revoked {
                        at,
                        reason: cert.revocation_reason.unwrap_or(0),
                    },
                    None => CertificateStatus::Good,
                },
                Err(StoreError::NotFound) => CertificateStatus::Unknown,
                Err(e) => {
                    tracing::error!(error = %e, "OCSP: looking up a certificate failed");
                    return OcspAnswer::Error(OcspError::Internal(
                        "certificate status lookup failed".into(),
                    ));
                }
            };
            statuses.push(status);
        }
        if let Err(e) = issuer.refresh_ocsp_responder(ca.pkcs11(), now) {
            // The current responder certificate is still valid for a while: keep going.
            tracing::error!(error = %e, "OCSP: re-issuing the responder certificate failed");
        }
        match responder.sign(&request, &statuses, now) {
            Ok(signed) => OcspAnswer::Signed(signed),
            Err(e) => {
                tracing::error!(error = %e, "OCSP: signing a response failed");
                OcspAnswer::Error(e)
            }
        }
    }

    /// DER of issuer `name`'s certificate (its caIssuers URL), if there is such an issuer.
    pub fn issuer_certificate_der(&self, name: &str) -> Option<Vec<u8>> {
        self.inner
            .ca
            .issuer_named(name)
            .map(|i| i.issuer().certificate_der().to_vec())
    }
}
