//! The CA's key hierarchy on disk: a root, an intermediate that signs end-entity
//! certificates, and the TLS certificate of the ACME listener. Created on first start,
//! reused after; keys are written 0600.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use super::issuer::{rcgen_issuer, LocalIssuer};
use super::keys::FileKey;
use crate::fsutil::write_atomic;

/// Key algorithms for the CA's own keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaKeyType {
    /// ECDSA P-256.
    Ec256,
    /// ECDSA P-384.
    Ec384,
    /// RSA, 2048 bits.
    Rsa2048,
    /// RSA, 3072 bits.
    Rsa3072,
    /// RSA, 4096 bits.
    Rsa4096,
}

impl CaKeyType {
    pub(crate) fn generate(self) -> Result<KeyPair, rcgen::Error> {
        use rcgen::RsaKeySize;
        match self {
            Self::Ec256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            Self::Ec384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            Self::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048),
            Self::Rsa3072 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072),
            Self::Rsa4096 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096),
        }
    }
}

/// Errors while creating or loading the hierarchy.
#[derive(Debug, thiserror::Error)]
pub enum HierarchyError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no usable certificate or key.
    #[error("{path}: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// Generating a key or certificate failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// Paths of the hierarchy's files inside the data directory.
#[derive(Debug, Clone)]
pub struct HierarchyPaths {
    /// `root.pem`.
    pub root_cert: PathBuf,
    /// `root.key`.
    pub root_key: PathBuf,
    /// `intermediate.pem`.
    pub intermediate_cert: PathBuf,
    /// `intermediate.key`.
    pub intermediate_key: PathBuf,
    /// `tls.pem`: the ACME listener's certificate.
    pub tls_cert: PathBuf,
    /// `tls.key`.
    pub tls_key: PathBuf,
    /// The delegated OCSP responder's certificate and key (see `load_or_create_ocsp_responder`).
    pub ocsp_cert: PathBuf,
    /// See `ocsp_cert`.
    pub ocsp_key: PathBuf,
}

impl HierarchyPaths {
    /// The standard file names under `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root_cert: data_dir.join("root.pem"),
            root_key: data_dir.join("root.key"),
            intermediate_cert: data_dir.join("intermediate.pem"),
            intermediate_key: data_dir.join("intermediate.key"),
            tls_cert: data_dir.join("tls.pem"),
            tls_key: data_dir.join("tls.key"),
            ocsp_cert: data_dir.join("ocsp.pem"),
            ocsp_key: data_dir.join("ocsp.key"),
        }
    }
}

/// The loaded hierarchy.
pub struct Hierarchy {
    /// Where the files are.
    pub paths: HierarchyPaths,
    /// The root certificate (PEM).
    pub root_pem: String,
    /// The root certificate (DER).
    pub root_der: Vec<u8>,
    /// The intermediate certificate (PEM).
    pub intermediate_pem: String,
    /// The intermediate certificate (DER).
    pub intermediate_der: Vec<u8>,
    /// Signs end-entity certificates, CRLs and the OCSP responder's certificate (a
    /// [`LocalIssuer`] over `intermediate.key`).
    pub intermediate: Arc<dyn super::Issuer>,
    /// The ACME listener's certificate (PEM), issued by the root.
    pub tls_cert_pem: String,
    /// The ACME listener's private key (PEM).
    pub tls_key_pem: String,
}

fn read(path: &Path) -> Result<String, HierarchyError> {
    std::fs::read_to_string(path).map_err(|source| HierarchyError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, data: &str, mode: u32) -> Result<(), HierarchyError> {
    write_atomic(path, data.as_bytes(), mode).map_err(|source| HierarchyError::Io {
        path: path.to_owned(),
        source,
    })
}

fn pem_to_der(path: &Path, pem: &str) -> Result<Vec<u8>, HierarchyError> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| HierarchyError::Invalid {
            path: path.to_owned(),
            detail: format!("not a PEM certificate: {e}"),
        })
}

fn load_key(path: &Path) -> Result<KeyPair, HierarchyError> {
    KeyPair::from_pem(&read(path)?).map_err(|e| HierarchyError::Invalid {
        path: path.to_owned(),
        detail: format!("not a usable private key: {e}"),
    })
}

fn random_suffix() -> String {
    let mut b = [0u8; 3];
    aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn ca_params(cn: &str, org: &str, years: i64, path_len: Option<u8>) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(365 * years);
    p.use_authority_key_identifier_extension = path_len.is_some();
    p
}

impl Hierarchy {
    /// Loads the hierarchy from `data_dir`, creating whatever is missing. `tls_names` are
    /// the DNS names and IPs the listener's certificate must cover.
    pub fn load_or_create(
        data_dir: &Path,
        key_type: CaKeyType,
        organization: &str,
        tls_names: &[String],
    ) -> Result<Self, HierarchyError> {
        let paths = HierarchyPaths::new(data_dir);
        let suffix = random_suffix();

        if !paths.root_key.exists() {
            let key = key_type.generate()?;
            let params = ca_params(
                &format!("{organization} Root CA {suffix}"),
                organization,
                20,
                None,
            );
            let cert = params.self_signed(&key)?;
            write(&paths.root_key, &key.serialize_pem(), 0o600)?;
            write(&paths.root_cert, &cert.pem(), 0o644)?;
            // A new root makes any old intermediate and TLS certificate meaningless.
            let _ = std::fs::remove_file(&paths.intermediate_key);
            let _ = std::fs::remove_file(&paths.tls_key);
        }
        let root_pem = read(&paths.root_cert)?;
        let root_der = pem_to_der(&paths.root_cert, &root_pem)?;
        let root_key = load_key(&paths.root_key)?;
        let root =
            Issuer::from_ca_cert_pem(&root_pem, root_key).map_err(|e| HierarchyError::Invalid {
                path: paths.root_cert.clone(),
                detail: e.to_string(),
            })?;

        if !paths.intermediate_key.exists() {
            let key = key_type.generate()?;
            let mut params = ca_params(
                &format!("{organization} Intermediate CA {suffix}"),
                organization,
                10,
                Some(0),
            );
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params.signed_by(&key, &root)?;
            write(&paths.intermediate_key, &key.serialize_pem(), 0o600)?;
            write(&paths.intermediate_cert, &cert.pem(), 0o644)?;
        }
        let intermediate_pem = read(&paths.intermediate_cert)?;
        let intermediate_der = pem_to_der(&paths.intermediate_cert, &intermediate_pem)?;
        let intermediate: Arc<dyn super::Issuer> = Arc::new(LocalIssuer::new(
            intermediate_der.clone(),
            &intermediate_pem,
            Arc::new(FileKey::new(
                &paths.intermediate_key,
                load_key(&paths.intermediate_key)?,
            )),
        ));
        // The certificate must be one rcgen can sign as (a name, key usages).
        rcgen_issuer(intermediate.clone()).map_err(|e| HierarchyError::Invalid {
            path: paths.intermediate_cert.clone(),
            detail: e.to_string(),
        })?;

        if !tls_cert_usable(&paths, tls_names) {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.subject_alt_names = tls_names
                .iter()
                .map(|n| match n.parse() {
                    Ok(ip) => Ok(SanType::IpAddress(ip)),
                    Err(_) => n.clone().try_into().map(SanType::DnsName),
                })
                .collect::<Result<_, _>>()?;
            let mut dn = DistinguishedName::new();
            dn.push(
                DnType::CommonName,
                tls_names.first().map(String::as_str).unwrap_or("localhost"),
            );
            params.distinguished_name = dn;
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.use_authority_key_identifier_extension = true;
            let now = OffsetDateTime::now_utc();
            params.not_before = now - Duration::hours(1);
            params.not_after = now + Duration::days(365);
            let cert = params.signed_by(&key, &root)?;
            write(&paths.tls_key, &key.serialize_pem(), 0o600)?;
            write(&paths.tls_cert, &cert.pem(), 0o644)?;
        }
        let tls_cert_pem = read(&paths.tls_cert)?;
        let tls_key_pem = read(&paths.tls_key)?;

        Ok(Self {
            paths,
            root_pem,
            root_der,
            intermediate_pem,
            intermediate_der,
            intermediate,
            tls_cert_pem,
            tls_key_pem,
        })
    }

    /// SHA-256 fingerprint of the root certificate, colon-separated upper-case hex.
    pub fn root_fingerprint(&self) -> String {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.root_der);
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// The TLS certificate exists, is valid for 30 more days and covers `names`.
fn tls_cert_usable(paths: &HierarchyPaths, names: &[String]) -> bool {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (Ok(pem), true) = (
        std::fs::read_to_string(&paths.tls_cert),
        paths.tls_key.exists(),
    ) else {
        return false;
    };
    let Ok(der) = pem_to_der(&paths.tls_cert, &pem) else {
        return false;
    };
    let Ok((_, cert)) = X509Certificate::from_der(&der) else {
        return false;
    };
    let soon = OffsetDateTime::now_utc() + Duration::days(30);
    if cert.validity().not_after.to_datetime() < soon {
        return false;
    }
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let covered: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    names.iter().all(|n| covered.contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_then_reused_with_private_keys_0600() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let first =
            Hierarchy::load_or_create(dir.path(), CaKeyType::Ec256, "certwright", &names).unwrap();
        let again =
            Hierarchy::load_or_create(dir.path(), CaKeyType::Ec256, "certwright", &names).unwrap();
        assert_eq!(first.root_pem, again.root_pem);
        assert_eq!(first.intermediate_pem, again.intermediate_pem);
        assert_eq!(first.tls_cert_pem, again.tls_cert_pem);
        for key in [
            &first.paths.root_key,
            &first.paths.intermediate_key,
            &first.paths.tls_key,
        ] {
            let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        // A new name for the listener gets a new TLS certificate, same root.
        let more = vec!["localhost".to_string(), "ca.example".to_string()];
        let third =
            Hierarchy::load_or_create(dir.path(), CaKeyType::Ec256, "certwright", &more).unwrap();
        assert_ne!(third.tls_cert_pem, first.tls_cert_pem);
        assert_eq!(third.root_pem, first.root_pem);
        assert_eq!(first.root_fingerprint().len(), 32 * 3 - 1);
    }
}
