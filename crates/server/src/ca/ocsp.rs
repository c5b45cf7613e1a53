//! OCSP (RFC 6960) for the certificates the intermediate issues.
//!
//! A delegated responder certificate (issued by the issuer, EKU OCSPSigning,
//! id-pkix-ocsp-nocheck; see `responder.rs`) signs the answers, so the issuer's key is not
//! used per request. The ASN.1 is the RustCrypto `x509-ocsp`/`der` crates'; the responder
//! key is a [`CaKey`] (a file, or a token). No I/O here apart from re-issuing the
//! responder certificate, and time is passed in.
//!
//! Also here: the Authority Information Access extension that points issued certificates
//! at the responder and at the issuer's certificate.

use std::sync::{Arc, Mutex, PoisonError, RwLock, TryLockError};
use std::time::Duration;

use aws_lc_rs::digest;
use der::asn1::{BitString, GeneralizedTime, Ia5String, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax, CrlReason};
use x509_cert::ext::Extension;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse,
    OcspResponseStatus, ResponderId, ResponseData, RevokedInfo, SingleResponse, Version,
};

use super::hex;
use super::keys::CaKey;
use super::responder::ResponderCredentials;

/// Certificates one request may ask about.
pub const MAX_CERT_IDS: usize = 16;
/// Longest nonce accepted, in octets (RFC 8954 §2.1).
pub const MAX_NONCE_LEN: usize = 32;

const OID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const OID_ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
/// id-pkix-ocsp-nonce (RFC 6960 §4.4.1, RFC 8954).
pub const OID_OCSP_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
/// id-ad-ocsp (RFC 5280 §4.2.2.1).
const OID_AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
/// id-ad-caIssuers (RFC 5280 §4.2.2.1).
const OID_AD_CA_ISSUERS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.2");
/// id-pe-authorityInfoAccess.
const OID_AUTHORITY_INFO_ACCESS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];

/// Why no status could be given; each maps to an unsigned OCSP error response.
#[derive(Debug, thiserror::Error)]
pub enum OcspError {
    /// The request does not parse (`malformedRequest`).
    #[error("malformed OCSP request: {0}")]
    Malformed(String),
    /// The request asks about another issuer (`unauthorized`).
    #[error("the request names an issuer this responder does not answer for")]
    Unauthorized,
    /// The responder failed (`internalError`).
    #[error("OCSP responder failure: {0}")]
    Internal(String),
}

impl From<der::Error> for OcspError {
    fn from(e: der::Error) -> Self {
        Self::Internal(format!("DER encoding: {e}"))
    }
}

impl OcspError {
    /// The OCSPResponseStatus of this error.
    pub fn status(&self) -> OcspResponseStatus {
        match self {
            Self::Malformed(_) => OcspResponseStatus::MalformedRequest,
            Self::Unauthorized => OcspResponseStatus::Unauthorized,
            Self::Internal(_) => OcspResponseStatus::InternalError,
        }
    }

    /// The (unsigned) OCSPResponse carrying only this error status.
    pub fn response_der(&self) -> Vec<u8> {
        let status = self.status();
        OcspResponse {
            response_status: status,
            response_bytes: None,
        }
        .to_der()
        // SEQUENCE { ENUMERATED status }: what the encoder produces; cannot fail.
        .unwrap_or_else(|_| vec![0x30, 0x03, 0x0a, 0x01, status as u8])
    }
}

/// One certificate a request asks about.
#[derive(Debug, Clone)]
pub struct StatusQuery {
    /// The CertID as the client sent it (echoed in the answer).
    pub cert_id: CertId,
    /// The serial, lower-case hex, as the store keys certificates.
    pub serial_hex: String,
}

/// A DER OCSPRequest that parsed and lists 1 to [`MAX_CERT_IDS`] certificates, before
/// its CertIDs are matched to an issuer.
#[derive(Debug, Clone)]
pub struct DecodedRequest(OcspRequest);

/// Decodes a DER OCSPRequest: anything unparsable, empty or too long is `Malformed`.
/// Whose request it is comes after, per issuer ([`OcspResponder::check_request`]).
pub fn decode_request(der: &[u8]) -> Result<DecodedRequest, OcspError> {
    if der.is_empty() {
        return Err(OcspError::Malformed("the request is empty".into()));
    }
    let request = OcspRequest::from_der(der)
        .map_err(|e| OcspError::Malformed(format!("not a DER OCSPRequest: {e}")))?;
    let count = request.tbs_request.request_list.len();
    if count == 0 {
        return Err(OcspError::Malformed(
            "the request lists no certificate".into(),
        ));
    }
    if count > MAX_CERT_IDS {
        return Err(OcspError::Malformed(format!(
            "the request lists {count} certificates; at most {MAX_CERT_IDS} are answered at once"
        )));
    }
    Ok(DecodedRequest(request))
}

/// A request that parsed and names this responder's issuer.
#[derive(Debug, Clone)]
pub struct CheckedRequest {
    /// The certificates asked about.
    pub queries: Vec<StatusQuery>,
    /// The request's nonce extension, echoed in the response.
    pub nonce: Option<Extension>,
}

/// The status of one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateStatus {
    /// Issued by this CA and not revoked.
    Good,
    /// Revoked at a Unix time with an RFC 5280 reason code.
    Revoked {
        /// When it was revoked (Unix seconds).
        at: i64,
        /// The revocation reason code.
        reason: u8,
    },
    /// Not a certificate this CA issued (as far as the store knows).
    Unknown,
}

/// A signed, successful OCSP response.
#[derive(Debug, Clone)]
pub struct SignedResponse {
    /// The response (DER).
    pub der: Vec<u8>,
    /// thisUpdate (also producedAt), Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
    /// The response echoes a nonce (so it is specific to one request).
    pub has_nonce: bool,
}

/// The key and certificate that sign responses.
struct ResponderSigner {
    key: Arc<dyn CaKey>,
    /// The signatureAlgorithm of responses.
    algorithm: AlgorithmIdentifierOwned,
    cert: Certificate,
    /// SHA-1 of the responder's public key (ResponderID byKey, RFC 6960 §4.2.1).
    key_hash: Vec<u8>,
    not_after: i64,
}

impl ResponderSigner {
    fn from_credentials(pem: &ResponderCredentials) -> Result<Self, OcspError> {
        use rustls::pki_types::pem::PemObject;
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            OcspError::Internal(format!("OCSP responder {what}: {e}"))
        };
        let key = pem.key.clone();
        let algorithm = signature_algorithm(key.algorithm())
            .ok_or_else(|| bad("key", &"is not ECDSA P-256/P-384 or RSA"))?;
        let cert_der = rustls::pki_types::CertificateDer::from_pem_slice(pem.cert_pem.as_bytes())
            .map_err(|e| bad("certificate", &e))?;
        let cert = Certificate::from_der(&cert_der).map_err(|e| bad("certificate", &e))?;
        let public = cert
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        if public != key.public_key() {
            return Err(bad("certificate", &"does not match the key"));
        }
        let key_hash = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, public)
            .as_ref()
            .to_vec();
        Ok(Self {
            key,
            algorithm,
            cert,
            key_hash,
            not_after: pem.not_after,
        })
    }
}

/// Answers status requests for the certificates of one issuer (the intermediate).
pub struct OcspResponder {
    /// DER of the issuer's subject Name (hashed into CertID.issuerNameHash).
    issuer_name_der: Vec<u8>,
    /// The issuer's public key bits (hashed into CertID.issuerKeyHash).
    issuer_key_bits: Vec<u8>,
    /// nextUpdate - thisUpdate.
    validity_secs: i64,
    signer: RwLock<Arc<ResponderSigner>>,
    /// Held while the responder certificate is being re-issued.
    rotating: Mutex<()>,
}

/// The signatureAlgorithm of responses signed with a key of `algorithm`.
fn signature_algorithm(algorithm: &rcgen::SignatureAlgorithm) -> Option<AlgorithmIdentifierOwned> {
    let (oid, parameters) = if algorithm == &rcgen::PKCS_ECDSA_P256_SHA256 {
        (OID_ECDSA_WITH_SHA256, None)
    } else if algorithm == &rcgen::PKCS_ECDSA_P384_SHA384 {
        (OID_ECDSA_WITH_SHA384, None)
    } else if algorithm == &rcgen::PKCS_RSA_SHA256 {
        (OID_SHA256_WITH_RSA, Some(der::Any::null()))
    } else {
        return None;
    };
    Some(AlgorithmIdentifierOwned { oid, parameters })
}

/// The digest a CertID's hashAlgorithm names, if supported.
fn cert_id_digest(oid: &ObjectIdentifier) -> Option<&'static digest::Algorithm> {
    if *oid == OID_SHA1 {
        Some(&digest::SHA1_FOR_LEGACY_USE_ONLY)
    } else if *oid == OID_SHA256 {
        Some(&digest::SHA256)
    } else if *oid == OID_SHA384 {
        Some(&digest::SHA384)
    } else if *oid == OID_SHA512 {
        Some(&digest::SHA512)
    } else {
        None
    }
}

fn generalized(unix: i64) -> Result<OcspGeneralizedTime, OcspError> {
    let secs = u64::try_from(unix)
        .map_err(|_| OcspError::Internal(format!("time {unix} is before 1970")))?;
    Ok(OcspGeneralizedTime(GeneralizedTime::from_unix_duration(
        Duration::from_secs(secs),
    )?))
}

/// The CRLReason of a code; unspecified (0) and unknown codes are left out, as in the CRL.
fn crl_reason(code: u8) -> Option<CrlReason> {
    Some(match code {
        1 => CrlReason::KeyCompromise,
        2 => CrlReason::CaCompromise,
        3 => CrlReason::AffiliationChanged,
        4 => CrlReason::Superseded,
        5 => CrlReason::CessationOfOperation,
        6 => CrlReason::CertificateHold,
        8 => CrlReason::RemoveFromCRL,
        9 => CrlReason::PrivilegeWithdrawn,
        10 => CrlReason::AaCompromise,
        _ => return None,
    })
}

/// Checks a request's nonce extension (RFC 8954: an OCTET STRING of 1 to 32 octets; the
/// bare octets of older clients are accepted too) and returns the extension to echo.
fn checked_nonce(ext: &Extension) -> Result<Extension, OcspError> {
    let value = ext.extn_value.as_bytes();
    let len = match OctetString::from_der(value) {
        Ok(inner) => inner.as_bytes().len(),
        Err(_) => value.len(),
    };
    if len == 0 || len > MAX_NONCE_LEN {
        return Err(OcspError::Malformed(format!(
            "the nonce has {len} octets; 1 to {MAX_NONCE_LEN} are accepted"
        )));
    }
    Ok(Extension {
        extn_id: OID_OCSP_NONCE,
        critical: false,
        extn_value: ext.extn_value.clone(),
    })
}

impl OcspResponder {
    /// A responder for the issuer `issuer_der` signing with `responder`; answers are valid
    /// for `validity_secs`.
    pub fn new(
        issuer_der: &[u8],
        responder: &ResponderCredentials,
        validity_secs: i64,
    ) -> Result<Self, OcspError> {
        let issuer = Certificate::from_der(issuer_der)
            .map_err(|e| OcspError::Internal(format!("issuer certificate: {e}")))?;
        Ok(Self {
            issuer_name_der: issuer.tbs_certificate.subject.to_der()?,
            issuer_key_bits: issuer
                .tbs_certificate
                .subject_public_key_info
                .subject_public_key
                .raw_bytes()
                .to_vec(),
            validity_secs,
            signer: RwLock::new(Arc::new(ResponderSigner::from_credentials(responder)?)),
            rotating: Mutex::new(()),
        })
    }

    /// Seconds between thisUpdate and nextUpdate.
    pub fn validity_secs(&self) -> i64 {
        self.validity_secs
    }

    /// notAfter of the responder certificate in use.
    pub fn responder_not_after(&self) -> i64 {
        self.signer().not_after
    }

    /// DER of the responder certificate in use.
    pub fn responder_cert_der(&self) -> Vec<u8> {
        self.signer().cert.to_der().unwrap_or_default()
    }

    /// The rotation lock, unless another thread holds it.
    pub(crate) fn try_rotate(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        match self.rotating.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    fn signer(&self) -> Arc<ResponderSigner> {
        self.signer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn replace_signer(&self, pem: &ResponderCredentials) -> Result<(), OcspError> {
        let signer = Arc::new(ResponderSigner::from_credentials(pem)?);
        *self.signer.write().unwrap_or_else(PoisonError::into_inner) = signer;
        Ok(())
    }

    /// Parses a DER OCSPRequest ([`decode_request`]) and checks it
    /// ([`OcspResponder::check_request`]).
    pub fn parse_request(&self, der: &[u8]) -> Result<CheckedRequest, OcspError> {
        self.check_request(&decode_request(der)?)
    }

    /// Checks a decoded request: every CertID must name this responder's issuer (else
    /// `Unauthorized`); a bad nonce is `Malformed`. A request signature, if any, is
    /// ignored (RFC 6960 §4.1.2).
    pub fn check_request(&self, decoded: &DecodedRequest) -> Result<CheckedRequest, OcspError> {
        let tbs = &decoded.0.tbs_request;
        let queries = tbs
            .request_list
            .iter()
            .map(|r| {
                Ok(StatusQuery {
                    serial_hex: self.check_cert_id(&r.req_cert)?,
                    cert_id: r.req_cert.clone(),
                })
            })
            .collect::<Result<Vec<_>, OcspError>>()?;
        let nonce = tbs
            .request_extensions
            .as_ref()
            .and_then(|exts| exts.iter().find(|e| e.extn_id == OID_OCSP_NONCE))
            .map(checked_nonce)
            .transpose()?;
        Ok(CheckedRequest { queries, nonce })
    }

    /// Checks that a CertID names our issuer; returns its serial in hex.
    fn check_cert_id(&self, id: &CertId) -> Result<String, OcspError> {
        let alg = cert_id_digest(&id.hash_algorithm.oid).ok_or_else(|| {
            OcspError::Malformed(format!(
                "CertID hash algorithm {} is not supported (SHA-1, SHA-256, SHA-384, SHA-512 are)",
                id.hash_algorithm.oid
            ))
        })?;
        let name_hash = digest::digest(alg, &self.issuer_name_der);
        let key_hash = digest::digest(alg, &self.issuer_key_bits);
        if id.issuer_name_hash.as_bytes() != name_hash.as_ref()
            || id.issuer_key_hash.as_bytes() != key_hash.as_ref()
        {
            return Err(OcspError::Unauthorized);
        }
        Ok(hex(id.serial_number.as_bytes()))
    }

    /// Whether `cert_der` names this responder's issuer as its issuer (a stored
    /// certificate of an earlier intermediate is not ours to answer for).
    pub fn issued_by_issuer(&self, cert_der: &[u8]) -> bool {
        Certificate::from_der(cert_der)
            .ok()
            .and_then(|c| c.tbs_certificate.issuer.to_der().ok())
            .is_some_and(|name| name == self.issuer_name_der)
    }

    /// Signs a response giving `statuses` (one per query, in order) at `now`.
    pub fn sign(
        &self,
        request: &CheckedRequest,
        statuses: &[CertificateStatus],
        now: i64,
    ) -> Result<SignedResponse, OcspError> {
        if statuses.len() != request.queries.len() {
            return Err(OcspError::Internal(
                "one status per queried certificate is needed".into(),
            ));
        }
        let signer = self.signer();
        let this_update = now;
        let next_update = now + self.validity_secs;
        let responses = request
            .queries
            .iter()
            .zip(statuses)
            .map(|(query, status)| {
                Ok(SingleResponse {
                    cert_id: query.cert_id.clone(),
                    cert_status: match *status {
                        CertificateStatus::Good => CertStatus::good(),
                        CertificateStatus::Unknown => CertStatus::unknown(),
                        CertificateStatus::Revoked { at, reason } => {
                            CertStatus::revoked(RevokedInfo {
                                revocation_time: generalized(at)?,
                                revocation_reason: crl_reason(reason),
                            })
                        }
                    },
                    this_update: generalized(this_update)?,
                    next_update: Some(generalized(next_update)?),
                    single_extensions: None,
                })
            })
            .collect::<Result<Vec<_>, OcspError>>()?;
        let tbs = ResponseData {
            version: Version::V1,
            responder_id: ResponderId::ByKey(OctetString::new(signer.key_hash.clone())?),
            produced_at: generalized(now)?,
            responses,
            response_extensions: request.nonce.clone().map(|n| vec![n]),
        };
        let signature = signer
            .key
            .sign(&tbs.to_der()?)
            .map_err(|e| OcspError::Internal(format!("signing the response failed: {e}")))?;
        let basic = BasicOcspResponse {
            tbs_response_data: tbs,
            signature_algorithm: signer.algorithm.clone(),
            signature: BitString::from_bytes(signature.as_ref())?,
            certs: Some(vec![signer.cert.clone()]),
        };
        Ok(SignedResponse {
            der: OcspResponse::successful(basic)?.to_der()?,
            this_update,
            next_update,
            has_nonce: request.nonce.is_some(),
        })
    }
}

/// The Authority Information Access extension (RFC 5280 §4.2.2.1) of issued
/// certificates: the OCSP responder URL and the issuer certificate's URL (caIssuers).
/// None when neither is given.
pub fn authority_info_access(
    ocsp_url: Option<&str>,
    ca_issuers_url: Option<&str>,
) -> Result<Option<rcgen::CustomExtension>, der::Error> {
    let mut descriptions = Vec::new();
    for (method, url) in [(OID_AD_OCSP, ocsp_url), (OID_AD_CA_ISSUERS, ca_issuers_url)] {
        if let Some(url) = url {
            descriptions.push(AccessDescription {
                access_method: method,
                access_location: GeneralName::UniformResourceIdentifier(Ia5String::new(url)?),
            });
        }
    }
    if descriptions.is_empty() {
        return Ok(None);
    }
    let der = AuthorityInfoAccessSyntax(descriptions).to_der()?;
    Ok(Some(rcgen::CustomExtension::from_oid_content(
        OID_AUTHORITY_INFO_ACCESS,
        der,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{Hierarchy, IssuancePolicy};
    use der::asn1::Any;
    use x509_cert::serial_number::SerialNumber;
    use x509_ocsp::{Request, TbsRequest};

    const NOW: i64 = 1_800_000_000;

    use crate::ca::test_hierarchy as hierarchy;

    use crate::ca::files::IssuerFiles;
    use crate::ca::keys::Pkcs11Settings;
    use crate::ca::responder::{self, OCSP_RESPONDER_LIFETIME_SECS};
    use crate::ca::CertificateAuthority;

    /// The first issuer's responder credentials at `now` (loaded or issued).
    fn credentials(h: &Hierarchy, now: i64) -> ResponderCredentials {
        let files = IssuerFiles::first(h.paths.intermediate_cert.parent().unwrap());
        responder::load_or_create(&files, &h.intermediate, &Pkcs11Settings::default(), now).unwrap()
    }

    fn responder(h: &Hierarchy) -> OcspResponder {
        let pem = credentials(h, NOW);
        OcspResponder::new(&h.intermediate_der, &pem, 24 * 3600).unwrap()
    }

    /// A CertID for `serial` under the certificate `issuer_der`, hashed with `oid`.
    fn cert_id(issuer_der: &[u8], oid: ObjectIdentifier, serial: &[u8]) -> CertId {
        let issuer = Certificate::from_der(issuer_der).unwrap();
        let alg = cert_id_digest(&oid).unwrap();
        let name = issuer.tbs_certificate.subject.to_der().unwrap();
        let key = issuer
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid,
                parameters: Some(Any::null()),
            },
            issuer_name_hash: OctetString::new(digest::digest(alg, &name).as_ref()).unwrap(),
            issuer_key_hash: OctetString::new(digest::digest(alg, key).as_ref()).unwrap(),
            serial_number: SerialNumber::new(serial).unwrap(),
        }
    }

    fn request_der(ids: Vec<CertId>, nonce_extn_value: Option<Vec<u8>>) -> Vec<u8> {
        OcspRequest {
            tbs_request: TbsRequest {
                version: Version::V1,
                requestor_name: None,
                request_list: ids
                    .into_iter()
                    .map(|req_cert| Request {
                        req_cert,
                        single_request_extensions: None,
                    })
                    .collect(),
                request_extensions: nonce_extn_value.map(|v| {
                    vec![Extension {
                        extn_id: OID_OCSP_NONCE,
                        critical: false,
                        extn_value: OctetString::new(v).unwrap(),
                    }]
                }),
            },
            optional_signature: None,
        }
        .to_der()
        .unwrap()
    }

    /// DER of an OCTET STRING holding `n`, as RFC 8954 nonces are.
    fn nonce(n: &[u8]) -> Vec<u8> {
        OctetString::new(n).unwrap().to_der().unwrap()
    }

    /// Decodes a successful response and checks its signature with the certificate in it.
    fn decode_verified(der: &[u8]) -> BasicOcspResponse {
        let response = OcspResponse::from_der(der).unwrap();
        assert_eq!(response.response_status, OcspResponseStatus::Successful);
        let bytes = response.response_bytes.unwrap();
        assert_eq!(
            bytes.response_type,
            <BasicOcspResponse as der::oid::AssociatedOid>::OID
        );
        let basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).unwrap();
        let certs = basic.certs.as_ref().unwrap();
        let key = certs[0]
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
            key,
        )
        .verify(
            &basic.tbs_response_data.to_der().unwrap(),
            basic.signature.raw_bytes(),
        )
        .expect("the response signature verifies");
        let ResponderId::ByKey(hash) = &basic.tbs_response_data.responder_id else {
            panic!("responder id by key");
        };
        assert_eq!(
            hash.as_bytes(),
            digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, key).as_ref()
        );
        basic
    }

    #[test]
    fn answers_good_revoked_and_unknown_with_the_nonce_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let h = hierarchy(dir.path());
        let r = responder(&h);
        let ids = vec![
            cert_id(&h.intermediate_der, OID_SHA1, &[0x7f, 0x01]),
            cert_id(&h.intermediate_der, OID_SHA256, &[0x12, 0x34, 0x56]),
            cert_id(&h.intermediate_der, OID_SHA1, &[0x01]),
            cert_id(&h.intermediate_der, OID_SHA1, &[0x02]),
        ];
        let der = request_der(ids.clone(), Some(nonce(&[7; 16])));
        let checked = r.parse_request(&der).unwrap();
        let serials: Vec<_> = checked
            .queries
            .iter()
            .map(|q| q.serial_hex.as_str())
            .collect();
        assert_eq!(serials, ["7f01", "123456", "01", "02"]);
        assert!(checked.nonce.is_some());

        let statuses = [
            CertificateStatus::Good,
            CertificateStatus::Revoked {
                at: NOW - 60,
                reason: 1,
            },
            CertificateStatus::Revoked {
                at: NOW - 30,
                reason: 0,
            },
            CertificateStatus::Unknown,
        ];
        let signed = r.sign(&checked, &statuses, NOW).unwrap();
        assert_eq!(signed.this_update, NOW);
        assert_eq!(signed.next_update, NOW + 24 * 3600);
        assert!(signed.has_nonce);
        let basic = decode_verified(&signed.der);
        let data = &basic.tbs_response_data;
        assert_eq!(data.produced_at.0.to_unix_duration().as_secs() as i64, NOW);
        assert_eq!(data.responses.len(), 4);
        for (single, id) in data.responses.iter().zip(&ids) {
            assert_eq!(&single.cert_id, id, "the CertID is echoed as sent");
            assert_eq!(
                single.this_update.0.to_unix_duration().as_secs() as i64,
                NOW
            );
            assert_eq!(
                single.next_update.unwrap().0.to_unix_duration().as_secs() as i64,
                NOW + 24 * 3600
            );
        }
        assert_eq!(data.responses[0].cert_status, CertStatus::good());
        let CertStatus::Revoked(info) = data.responses[1].cert_status else {
            panic!("revoked");
        };
        assert_eq!(
            info.revocation_time.0.to_unix_duration().as_secs() as i64,
            NOW - 60
        );
        assert_eq!(info.revocation_reason, Some(CrlReason::KeyCompromise));
        let CertStatus::Revoked(info) = data.responses[2].cert_status else {
            panic!("revoked");
        };
        assert_eq!(info.revocation_reason, None, "unspecified is left out");
        assert_eq!(data.responses[3].cert_status, CertStatus::unknown());
        let echoed = data.response_extensions.as_ref().unwrap();
        assert_eq!(echoed.len(), 1);
        assert_eq!(echoed[0].extn_id, OID_OCSP_NONCE);
        assert_eq!(echoed[0].extn_value.as_bytes(), nonce(&[7; 16]));

        // Without a nonce: no response extensions.
        let plain = r
            .parse_request(&request_der(ids[..1].to_vec(), None))
            .unwrap();
        let signed = r.sign(&plain, &[CertificateStatus::Good], NOW).unwrap();
        assert!(!signed.has_nonce);
        assert!(decode_verified(&signed.der)
            .tbs_response_data
            .response_extensions
            .is_none());
        // A status count that does not match the queries is refused, not mis-signed.
        assert!(matches!(
            r.sign(&plain, &[], NOW),
            Err(OcspError::Internal(_))
        ));
    }

    #[test]
    fn bad_requests_are_malformed_and_foreign_issuers_unauthorized() {
        let dir = tempfile::tempdir().unwrap();
        let h = hierarchy(dir.path());
        let r = responder(&h);
        let ours = cert_id(&h.intermediate_der, OID_SHA1, &[0x42]);
        let malformed = |der: &[u8]| matches!(r.parse_request(der), Err(OcspError::Malformed(_)));
        assert!(malformed(b""));
        assert!(malformed(b"garbage"));
        assert!(malformed(&[0x30, 0x82, 0xff, 0xff, 0x30]));
        let mut trailing = request_der(vec![ours.clone()], None);
        trailing.push(0);
        assert!(malformed(&trailing));
        assert!(malformed(&request_der(vec![], None)));
        assert!(malformed(&request_der(
            vec![ours.clone(); MAX_CERT_IDS + 1],
            None
        )));
        assert!(r
            .parse_request(&request_der(vec![ours.clone(); MAX_CERT_IDS], None))
            .is_ok());
        assert!(malformed(&request_der(
            vec![ours.clone()],
            Some(nonce(&[1; 33]))
        )));
        assert!(malformed(&request_der(
            vec![ours.clone()],
            Some(nonce(&[]))
        )));
        // A bare nonce (no inner OCTET STRING) of an older client is echoed as sent.
        let bare = r
            .parse_request(&request_der(vec![ours.clone()], Some(vec![0xaa; 8])))
            .unwrap();
        assert_eq!(bare.nonce.unwrap().extn_value.as_bytes(), &[0xaa; 8]);
        // MD5 is not a CertID hash we accept.
        let mut md5 = ours.clone();
        md5.hash_algorithm.oid = ObjectIdentifier::new_unwrap("1.2.840.113549.2.5");
        assert!(malformed(&request_der(vec![md5], None)));

        // The root is not the issuer this responder answers for; nor is a hash that is
        // off by one bit.
        let foreign = cert_id(&h.root_der, OID_SHA1, &[0x42]);
        assert!(matches!(
            r.parse_request(&request_der(vec![ours.clone(), foreign], None)),
            Err(OcspError::Unauthorized)
        ));
        let mut flipped = ours;
        let mut key_hash = flipped.issuer_key_hash.as_bytes().to_vec();
        key_hash[0] ^= 1;
        flipped.issuer_key_hash = OctetString::new(key_hash).unwrap();
        assert!(matches!(
            r.parse_request(&request_der(vec![flipped], None)),
            Err(OcspError::Unauthorized)
        ));

        // Error responses are bare statuses.
        for (e, status) in [
            (
                OcspError::Malformed("x".into()),
                OcspResponseStatus::MalformedRequest,
            ),
            (OcspError::Unauthorized, OcspResponseStatus::Unauthorized),
            (
                OcspError::Internal("x".into()),
                OcspResponseStatus::InternalError,
            ),
        ] {
            let decoded = OcspResponse::from_der(&e.response_der()).unwrap();
            assert_eq!(decoded.response_status, status);
            assert!(decoded.response_bytes.is_none());
        }
    }

    #[test]
    fn the_responder_certificate_is_delegated_kept_and_renewed() {
        use std::os::unix::fs::PermissionsExt;
        use x509_parser::prelude::{FromDer, X509Certificate};
        let dir = tempfile::tempdir().unwrap();
        let h = hierarchy(dir.path());
        let first = credentials(&h, NOW);
        let mode = std::fs::metadata(dir.path().join("ocsp.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let r = OcspResponder::new(&h.intermediate_der, &first, 3600).unwrap();
        let der = r.responder_cert_der();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let (_, issuer) = X509Certificate::from_der(&h.intermediate_der).unwrap();
        cert.verify_signature(Some(issuer.public_key())).unwrap();
        assert_eq!(cert.issuer(), issuer.subject());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.ocsp_signing && !eku.server_auth && !eku.any);
        assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
        let nocheck = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.48.1.5")
            .expect("id-pkix-ocsp-nocheck");
        assert_eq!(nocheck.value, &[0x05, 0x00]);
        assert!(!nocheck.critical);
        assert_eq!(
            cert.validity().not_after.timestamp(),
            NOW + OCSP_RESPONDER_LIFETIME_SECS
        );

        // Reused while it has more than 30 days left; re-issued after.
        let again = credentials(&h, NOW + 59 * 86400);
        assert_eq!(again.cert_pem, first.cert_pem);
        let renewed = credentials(&h, NOW + 61 * 86400);
        assert_ne!(renewed.cert_pem, first.cert_pem);
        assert_ne!(renewed.key.public_key(), first.key.public_key());

        // A new intermediate (here: a new hierarchy after its key was lost) gets a new one.
        std::fs::remove_file(&h.paths.intermediate_key).unwrap();
        let h2 = hierarchy(dir.path());
        assert_ne!(h2.intermediate_der, h.intermediate_der);
        let other = credentials(&h2, NOW + 61 * 86400);
        assert_ne!(other.cert_pem, renewed.cert_pem);
    }

    #[test]
    fn the_ca_renews_its_responder_while_running() {
        let dir = tempfile::tempdir().unwrap();
        let h = hierarchy(dir.path());
        let ca = CertificateAuthority::new(h, IssuancePolicy::default()).unwrap();
        ca.start_ocsp(3600, NOW).unwrap();
        let issuer = ca.issuer_named("intermediate").unwrap();
        let none = Pkcs11Settings::default();
        let before = issuer.ocsp().unwrap().responder_not_after();
        assert!(!issuer
            .refresh_ocsp_responder(&none, NOW + 59 * 86400)
            .unwrap());
        assert!(issuer
            .refresh_ocsp_responder(&none, NOW + 61 * 86400)
            .unwrap());
        let after = issuer.ocsp().unwrap().responder_not_after();
        assert_eq!(after, NOW + 61 * 86400 + OCSP_RESPONDER_LIFETIME_SECS);
        assert!(after > before);
        // The new certificate is on disk for the next start.
        let on_disk = credentials(ca.hierarchy(), NOW + 61 * 86400);
        assert_eq!(on_disk.not_after, after);
    }

    #[test]
    fn issued_certificates_carry_authority_information_access() {
        use crate::ca::{parse_csr, KeyPolicy, Profile};
        use certwright_proto::types::Identifier;
        use x509_parser::prelude::{FromDer, GeneralName as Gn, ParsedExtension, X509Certificate};
        let dir = tempfile::tempdir().unwrap();
        let h = hierarchy(dir.path());
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key).unwrap().der().to_vec();
        let checked = parse_csr(&csr, &KeyPolicy::default()).unwrap();
        let profile = Profile::tls_server("tls-server", 86400);
        let ca = CertificateAuthority::new(
            h,
            IssuancePolicy {
                backdate_secs: 0,
                pki_base: Some("http://ca.test".into()),
                ocsp: true,
            },
        )
        .unwrap();
        let issued = ca
            .issue(&checked, &[Identifier::dns("a.example")], &profile, NOW)
            .unwrap();
        let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
        let aia = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityInfoAccess(a) => Some(a.clone()),
                _ => None,
            })
            .expect("an AIA extension");
        let found: Vec<(String, String)> = aia
            .accessdescs
            .iter()
            .map(|d| {
                let Gn::URI(uri) = d.access_location else {
                    panic!("a URI");
                };
                (d.access_method.to_id_string(), uri.to_string())
            })
            .collect();
        assert_eq!(
            found,
            [
                (
                    "1.3.6.1.5.5.7.48.1".to_string(),
                    "http://ca.test/ocsp".to_string()
                ),
                (
                    "1.3.6.1.5.5.7.48.2".to_string(),
                    "http://ca.test/ca/intermediate.der".to_string()
                ),
            ]
        );

        // OCSP off: caIssuers only; nothing at all: no extension.
        let only = authority_info_access(None, Some("http://ca.test/i.der"))
            .unwrap()
            .unwrap();
        let parsed = AuthorityInfoAccessSyntax::from_der(only.content()).unwrap();
        assert_eq!(parsed.0.len(), 1);
        assert_eq!(parsed.0[0].access_method, OID_AD_CA_ISSUERS);
        assert!(authority_info_access(None, None).unwrap().is_none());
        assert!(authority_info_access(Some("http://ca.tëst/ocsp"), None).is_err());
    }
}
