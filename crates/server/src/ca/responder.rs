//! The delegated OCSP responder of one issuer: a certificate the issuer signs (EKU
//! OCSPSigning, id-pkix-ocsp-nocheck, 90 days) for a key that signs the OCSP answers, so
//! the issuer's own key is not used per request. The key is a file re-generated with each
//! certificate (`ocsp.key`, 0600), or a fixed key in a PKCS#11 token (`ocsp.key-uri`).

use std::sync::Arc;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::files::{pem_chain, subject_organization, IssuerFiles, IssuerFilesError};
use super::issuer::{rcgen_issuer, Issuer};
use super::keys::{self, CaKey, FileKey, KeyLocation, Pkcs11Settings, RcgenKey};
use crate::fsutil::write_atomic;

/// Lifetime of the delegated OCSP responder certificate.
pub const OCSP_RESPONDER_LIFETIME_SECS: i64 = 90 * 86400;
/// The responder certificate is re-issued when it expires within this.
pub const OCSP_RESPONDER_RENEW_BEFORE_SECS: i64 = 30 * 86400;
/// id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1): clients need not check the revocation
/// status of the responder certificate itself. Its value is NULL.
const OID_OCSP_NOCHECK: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 5];

/// The delegated responder's certificate and the key that signs as it.
#[derive(Clone)]
pub struct ResponderCredentials {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key.
    pub key: Arc<dyn CaKey>,
    /// The certificate's notAfter, Unix seconds.
    pub not_after: i64,
}

fn unix_time(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn invalid(path: &std::path::Path, detail: impl std::fmt::Display) -> IssuerFilesError {
    IssuerFilesError::Invalid {
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

/// Loads the responder of the issuer at `files`, issuing a new certificate when there is
/// none, it was not issued by `issuer`, it does not match its key, or it expires within
/// 30 days of `now`.
pub fn load_or_create(
    files: &IssuerFiles,
    issuer: &Arc<dyn Issuer>,
    pkcs11: &Pkcs11Settings,
    now: i64,
) -> Result<ResponderCredentials, IssuerFilesError> {
    match usable(files, issuer, pkcs11, now)? {
        Some(existing) => Ok(existing),
        None => issue(files, issuer, pkcs11, now),
    }
}

/// Issues a new responder certificate (signed by `issuer`, EKU OCSPSigning,
/// id-pkix-ocsp-nocheck, 90 days from `now`) for a new P-256 file key, or for the fixed
/// token key, and writes it.
pub fn issue(
    files: &IssuerFiles,
    issuer: &Arc<dyn Issuer>,
    pkcs11: &Pkcs11Settings,
    now: i64,
) -> Result<ResponderCredentials, IssuerFilesError> {
    let fixed = files.ocsp_key_location()?;
    let (key, new_pem): (Arc<dyn CaKey>, Option<String>) = match &fixed {
        Some(location) => (open_key(files, location, pkcs11)?, None),
        None => {
            let pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| invalid(&files.ocsp_key, e))?;
            let pem = pair.serialize_pem();
            (Arc::new(FileKey::new(&files.ocsp_key, pair)), Some(pem))
        }
    };
    let org =
        subject_organization(issuer.certificate_der()).unwrap_or_else(|| "certwright".to_owned());
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org.clone());
    dn.push(DnType::CommonName, format!("{org} OCSP Responder"));
    params.distinguished_name = dn;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&super::random_serial()));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        OID_OCSP_NOCHECK,
        vec![0x05, 0x00],
    )];
    params.use_authority_key_identifier_extension = true;
    let not_after = now + OCSP_RESPONDER_LIFETIME_SECS;
    params.not_before = unix_time(now - 3600);
    params.not_after = unix_time(not_after);
    let signer = rcgen_issuer(issuer.clone()).map_err(|e| invalid(&files.cert, e))?;
    let cert = params
        .signed_by(&RcgenKey(key.clone()), &signer)
        .map_err(|e| invalid(&files.ocsp_cert, format!("issuing the responder: {e}")))?;
    let write = |path: &std::path::Path, data: &str, mode: u32| {
        write_atomic(path, data.as_bytes(), mode).map_err(|source| IssuerFilesError::Io {
            path: path.to_owned(),
            source,
        })
    };
    if let Some(pem) = new_pem {
        write(&files.ocsp_key, &pem, 0o600)?;
    }
    write(&files.ocsp_cert, &cert.pem(), 0o644)?;
    Ok(ResponderCredentials {
        cert_pem: cert.pem(),
        key,
        not_after,
    })
}

fn open_key(
    files: &IssuerFiles,
    location: &KeyLocation,
    pkcs11: &Pkcs11Settings,
) -> Result<Arc<dyn CaKey>, IssuerFilesError> {
    keys::open(location, pkcs11).map_err(|source| IssuerFilesError::Key {
        issuer: format!("{} (OCSP responder)", files.name),
        source,
    })
}

/// The responder on disk, if it can go on being used at `now`. Only a fixed token key
/// that cannot be opened is an error; anything else unusable is re-issued.
fn usable(
    files: &IssuerFiles,
    issuer: &Arc<dyn Issuer>,
    pkcs11: &Pkcs11Settings,
    now: i64,
) -> Result<Option<ResponderCredentials>, IssuerFilesError> {
    let Ok(cert_pem) = std::fs::read_to_string(&files.ocsp_cert) else {
        return Ok(None);
    };
    let Some(der) = pem_chain(&cert_pem).ok().and_then(|c| c.into_iter().next()) else {
        return Ok(None);
    };
    let Ok((_, cert)) = X509Certificate::from_der(&der) else {
        return Ok(None);
    };
    let Ok((_, issuer_cert)) = X509Certificate::from_der(issuer.certificate_der()) else {
        return Ok(None);
    };
    if cert
        .verify_signature(Some(issuer_cert.public_key()))
        .is_err()
    {
        return Ok(None);
    }
    let not_after = cert.validity().not_after.timestamp();
    if not_after - now < OCSP_RESPONDER_RENEW_BEFORE_SECS {
        return Ok(None);
    }
    let key: Arc<dyn CaKey> = match files.ocsp_key_location()? {
        Some(location) => open_key(files, &location, pkcs11)?,
        None => match FileKey::load(&files.ocsp_key) {
            Ok(k) => Arc::new(k),
            Err(_) => return Ok(None),
        },
    };
    if key.public_key() != cert.public_key().subject_public_key.data.as_ref() {
        return Ok(None);
    }
    Ok(Some(ResponderCredentials {
        cert_pem,
        key,
        not_after,
    }))
}
