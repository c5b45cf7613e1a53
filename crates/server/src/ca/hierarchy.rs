//! The CA's key hierarchy on disk: a root, an intermediate that signs end-entity
//! certificates, and the TLS certificate of the ACME listener, which the intermediate
//! issues. Created on first start (or explicitly by `certwright-ca init`, see [`init`]),
//! reused after; keys are written 0600.
//!
//! Serving never needs the root key: only `root.pem` is read. The root key is read when
//! something must be signed with it — the CA's creation, or a new intermediate when the
//! intermediate's key file was lost — so it may live offline (`init --root-offline`), and
//! the intermediate may come from another CA (`init --intermediate-csr`, then
//! `--import-intermediate`).

pub mod init;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::files::{pem_chain, IssuerFiles, IssuerFilesError};
use super::issuer::rcgen_issuer;
use super::keys::{KeyError, KeyLocation, Pkcs11Settings};
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
    /// Every key type with its name (as `[ca].key_type` and `init --key-type` spell it).
    pub const ALL: [(&'static str, Self); 5] = [
        ("ec256", Self::Ec256),
        ("ec384", Self::Ec384),
        ("rsa2048", Self::Rsa2048),
        ("rsa3072", Self::Rsa3072),
        ("rsa4096", Self::Rsa4096),
    ];

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

impl std::str::FromStr for CaKeyType {
    type Err = String;

    /// `ec256`, `ec384`, `rsa2048`, `rsa3072` or `rsa4096`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
                format!("unknown key type {s:?} (one of {})", names.join(", "))
            })
    }
}

impl std::fmt::Display for CaKeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = Self::ALL
            .iter()
            .find(|(_, t)| t == self)
            .map(|(n, _)| *n)
            .unwrap_or("?");
        f.write_str(name)
    }
}

/// Errors while creating or loading the hierarchy. Each names the file (or key) it is
/// about.
#[derive(Debug, thiserror::Error)]
pub enum HierarchyError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, not a separate cause, so it is printed once).
        error: std::io::Error,
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
    /// A CA key could not be opened or created.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The intermediate could not be loaded.
    #[error(transparent)]
    Issuer(#[from] IssuerFilesError),
    /// The data directory is not in a state the operation can start from (a CA exists
    /// already, an import is half done, a key is missing); the message says what to do.
    #[error("{0}")]
    State(String),
    /// A command-line choice that cannot work (an offline root key inside the data
    /// directory, an intermediate outliving its root, …).
    #[error("{0}")]
    Usage(String),
}

/// Paths of the hierarchy's files inside the data directory.
#[derive(Debug, Clone)]
pub struct HierarchyPaths {
    /// `root.pem`.
    pub root_cert: PathBuf,
    /// `root.key`: the root's key when it is a file kept in the data directory (absent
    /// with an offline root).
    pub root_key: PathBuf,
    /// `root.key-uri`: the `pkcs11:` URI of the root's key when it is in a token and not
    /// offline.
    pub root_key_uri: PathBuf,
    /// `intermediate.pem`.
    pub intermediate_cert: PathBuf,
    /// `intermediate.key`.
    pub intermediate_key: PathBuf,
    /// `tls.pem`: the ACME listener's certificate, then its chain.
    pub tls_cert: PathBuf,
    /// `tls.key`.
    pub tls_key: PathBuf,
}

impl HierarchyPaths {
    /// The standard file names under `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root_cert: data_dir.join("root.pem"),
            root_key: data_dir.join("root.key"),
            root_key_uri: data_dir.join("root.key-uri"),
            intermediate_cert: data_dir.join("intermediate.pem"),
            intermediate_key: data_dir.join("intermediate.key"),
            tls_cert: data_dir.join("tls.pem"),
            tls_key: data_dir.join("tls.key"),
        }
    }

    /// Where the root's key is, if the data directory knows: the URI in `root.key-uri`,
    /// else `root.key` when that file exists. `None` for an offline root.
    pub fn root_key_location(&self) -> Result<Option<KeyLocation>, HierarchyError> {
        match std::fs::read_to_string(&self.root_key_uri) {
            Ok(text) => {
                KeyLocation::parse(text.trim())
                    .map(Some)
                    .map_err(|e| HierarchyError::Invalid {
                        path: self.root_key_uri.clone(),
                        detail: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(self
                .root_key
                .exists()
                .then(|| KeyLocation::File(self.root_key.clone()))),
            Err(error) => Err(HierarchyError::Io {
                path: self.root_key_uri.clone(),
                error,
            }),
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
    /// The intermediate certificate, then any CA certificates between it and the root
    /// (PEM): what follows a leaf in the chains clients get.
    pub intermediate_pem: String,
    /// The intermediate certificate (DER).
    pub intermediate_der: Vec<u8>,
    /// Signs end-entity certificates, CRLs, the OCSP responder's certificate and the
    /// listener's TLS certificate (a [`LocalIssuer`](super::LocalIssuer) over the key
    /// `intermediate.key` or `intermediate.key-uri` names).
    pub intermediate: Arc<dyn super::Issuer>,
    /// The ACME listener's certificate, then its chain (PEM): issued by the intermediate,
    /// or the operator's own. Empty when the hierarchy was loaded without listener names.
    pub tls_cert_pem: String,
    /// The ACME listener's private key (PEM); empty as `tls_cert_pem`.
    pub tls_key_pem: String,
}

fn read(path: &Path) -> Result<String, HierarchyError> {
    std::fs::read_to_string(path).map_err(|error| HierarchyError::Io {
        path: path.to_owned(),
        error,
    })
}

fn write(path: &Path, data: &str, mode: u32) -> Result<(), HierarchyError> {
    write_atomic(path, data.as_bytes(), mode).map_err(|error| HierarchyError::Io {
        path: path.to_owned(),
        error,
    })
}

fn remove_if_exists(path: &Path) -> Result<(), HierarchyError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(HierarchyError::Io {
            path: path.to_owned(),
            error,
        }),
    }
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

fn random_suffix() -> String {
    let mut b = [0u8; 3];
    aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A CA certificate's parameters: `O=org, CN=cn`, valid from an hour ago for `days`,
/// keyCertSign, cRLSign, digitalSignature; a pathLenConstraint when `path_len` is given
/// (an intermediate), none for a root.
fn ca_params(cn: &str, org: &str, days: u32, path_len: Option<u8>) -> CertificateParams {
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
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&super::random_serial()));
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(i64::from(days));
    p.use_authority_key_identifier_extension = path_len.is_some();
    p
}

impl Hierarchy {
    /// Loads the hierarchy from `data_dir`. `tls_names` are the DNS names and IPs the
    /// listener's certificate must cover (none: no listener certificate is made or read).
    ///
    /// - A data directory without a CA gets the default one, made as `init` makes it
    ///   with `key_type` and `organization`: `root.pem`, `root.key`, `intermediate.pem`,
    ///   `intermediate.key`.
    /// - Otherwise only `root.pem` is read of the root; the intermediate is loaded
    ///   through [`IssuerFiles::load`], so `intermediate.key-uri` selects a key in a token
    ///   (reached with `pkcs11`). If the intermediate is missing, or its key file is,
    ///   and the root's key is at hand (`root.key`, `root.key-uri`), a new intermediate
    ///   is made; without the root key that is an error.
    /// - The listener's certificate (`tls.pem`, leaf then the intermediate's chain) is
    ///   issued by the intermediate, and re-issued when it expires within 30 days, does
    ///   not cover `tls_names` or was not issued by the current intermediate. A `tls.pem`
    ///   issued by neither the intermediate nor the root is the operator's own: it is
    ///   used as it is, never replaced. When the intermediate's name constraints exclude
    ///   a listener name, loading fails and says to provide such files.
    pub fn load_or_create(
        data_dir: &Path,
        key_type: CaKeyType,
        organization: &str,
        tls_names: &[String],
        pkcs11: &Pkcs11Settings,
    ) -> Result<Self, HierarchyError> {
        let paths = HierarchyPaths::new(data_dir);
        let files = IssuerFiles::first(data_dir);
        let defaults = init::InitOptions::new(key_type, organization);
        let intermediate_key_exists = files.key.exists() || files.key_uri.exists();
        if !paths.root_cert.exists() {
            if files.cert.exists()
                || intermediate_key_exists
                || paths.root_key.exists()
                || paths.root_key_uri.exists()
            {
                return Err(incomplete(data_dir, &paths, &files));
            }
            // A data directory without a CA: the default one. A listener certificate an
            // older CA left here means nothing now.
            remove_if_exists(&paths.tls_key)?;
            remove_if_exists(&paths.tls_cert)?;
            init::create_unchecked(data_dir, &defaults, pkcs11)?;
        } else if !files.cert.exists() && intermediate_key_exists {
            return Err(incomplete(data_dir, &paths, &files));
        } else if !files.cert.exists() || !intermediate_key_exists {
            // No intermediate (a first start that stopped after the root), or its key
            // file is lost: a new intermediate, which only the root's key can sign.
            let Some(root_key) = paths.root_key_location()? else {
                return Err(HierarchyError::State(format!(
                    "{}: missing, so the intermediate cannot sign; a new intermediate needs \
                     the root's key, which is not in {} (an offline root): restore the key, \
                     or sign a new intermediate with the root (see docs/keys.md)",
                    if files.cert.exists() {
                        files.key.display()
                    } else {
                        files.cert.display()
                    },
                    data_dir.display()
                )));
            };
            init::replace_intermediate(data_dir, &root_key, &defaults, pkcs11)?;
        }

        let root_pem = read(&paths.root_cert)?;
        let root_der = pem_to_der(&paths.root_cert, &root_pem)?;
        let intermediate: Arc<dyn super::Issuer> = files.load(pkcs11)?;
        let intermediate_pem = intermediate.chain_pem().to_owned();
        let chain = pem_chain(&intermediate_pem).map_err(|detail| HierarchyError::Invalid {
            path: files.cert.clone(),
            detail,
        })?;
        init::check_chains_to_root(&chain, &root_der).map_err(|detail| {
            HierarchyError::Invalid {
                path: files.cert.clone(),
                detail: format!("{detail} (root.pem is {})", paths.root_cert.display()),
            }
        })?;
        let intermediate_der = chain[0].clone();

        let (tls_cert_pem, tls_key_pem) = if tls_names.is_empty() {
            (String::new(), String::new())
        } else {
            load_or_issue_tls(&paths, &intermediate, &chain, &root_der, tls_names)?
        };

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
        fingerprint(&self.root_der)
    }
}

/// SHA-256 fingerprint of `der`, colon-separated upper-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The error for a data directory holding part of a CA.
fn incomplete(data_dir: &Path, paths: &HierarchyPaths, files: &IssuerFiles) -> HierarchyError {
    let key = if files.key_uri.exists() {
        &files.key_uri
    } else {
        &files.key
    };
    if !files.cert.exists() && key.exists() {
        return HierarchyError::State(format!(
            "{}: the intermediate's key exists but its certificate {} does not: an \
             intermediate from `certwright-ca init --intermediate-csr` is waiting for its \
             certificate; import it with `certwright-ca init --import-intermediate CERT \
             --chain CHAIN`, or remove the key to start over",
            key.display(),
            files.cert.display()
        ));
    }
    let present: Vec<String> = [
        &files.cert,
        &files.key,
        &files.key_uri,
        &paths.root_key,
        &paths.root_key_uri,
    ]
    .iter()
    .filter(|p| p.exists())
    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    .collect();
    HierarchyError::State(format!(
        "{}: missing, but {} holds the rest of a CA ({}): restore root.pem; a new CA is \
         created only in a data directory without one",
        paths.root_cert.display(),
        data_dir.display(),
        present.join(", ")
    ))
}
// ------------------------------------------------------------ the listener's certificate

/// Lifetime of the listener's TLS certificate (cut to the intermediate's).
const TLS_LIFETIME_DAYS: i64 = 365;
/// The listener's certificate is re-issued when it expires within this.
const TLS_RENEW_BEFORE_DAYS: i64 = 30;
/// The organizational unit of the listener certificates certwright-ca makes: a
/// `tls.pem` without it, issued by neither the intermediate nor the root, is the
/// operator's own.
const TLS_MARK: &str = "certwright-ca listener";

/// What `tls.pem` is.
enum TlsFiles {
    /// Issued by the current intermediate, with its chain, fresh, covering the names.
    Current,
    /// Missing, not parseable, made by certwright-ca under an older hierarchy or
    /// intermediate, expiring, or short of a name: issue a new one.
    Replace,
    /// The operator's own (issued by another CA): used as it is; what is wrong with it
    /// is logged.
    Operators(Vec<String>),
}

/// `child` names `parent` as its issuer and carries its signature.
fn issued_by(child: &X509Certificate<'_>, parent: &X509Certificate<'_>) -> bool {
    child.issuer().as_raw() == parent.subject().as_raw()
        && child.verify_signature(Some(parent.public_key())).is_ok()
}

/// The DNS names and IP addresses of `cert`'s subjectAltName, as strings.
fn san_names(cert: &X509Certificate<'_>) -> Vec<String> {
    use x509_parser::prelude::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::IPAddress(b) => ip_from_bytes(b).map(|ip| ip.to_string()),
            _ => None,
        })
        .collect()
}

fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

fn classify_tls(
    paths: &HierarchyPaths,
    intermediate_chain: &[Vec<u8>],
    root_der: &[u8],
    names: &[String],
) -> TlsFiles {
    let (Ok(pem), true) = (
        std::fs::read_to_string(&paths.tls_cert),
        paths.tls_key.exists(),
    ) else {
        return TlsFiles::Replace;
    };
    let Ok(chain) = pem_chain(&pem) else {
        return TlsFiles::Replace;
    };
    let Some(Ok((_, leaf))) = chain.first().map(|d| X509Certificate::from_der(d)) else {
        return TlsFiles::Replace;
    };
    let mut problems = Vec::new();
    let soon = OffsetDateTime::now_utc() + Duration::days(TLS_RENEW_BEFORE_DAYS);
    if leaf.validity().not_after.to_datetime() < soon {
        problems.push(format!(
            "it expires within {TLS_RENEW_BEFORE_DAYS} days ({})",
            leaf.validity().not_after
        ));
    }
    let covered = san_names(&leaf);
    let missing: Vec<&str> = names
        .iter()
        .filter(|n| !covered.contains(n))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        problems.push(format!("it does not cover {}", missing.join(", ")));
    }
    let by_intermediate = X509Certificate::from_der(&intermediate_chain[0])
        .is_ok_and(|(_, issuer)| issued_by(&leaf, &issuer));
    if by_intermediate {
        return if problems.is_empty() && chain[1..] == intermediate_chain[..] {
            TlsFiles::Current
        } else {
            TlsFiles::Replace
        };
    }
    // Made by certwright-ca under an earlier hierarchy or intermediate: its own mark, or
    // signed by the root (as before the intermediate issued it).
    let marked = leaf
        .subject()
        .iter_organizational_unit()
        .any(|ou| ou.as_str().is_ok_and(|s| s == TLS_MARK));
    let by_root =
        X509Certificate::from_der(root_der).is_ok_and(|(_, root)| issued_by(&leaf, &root));
    if marked || by_root {
        TlsFiles::Replace
    } else {
        TlsFiles::Operators(problems)
    }
}

/// The listener's certificate and key (PEM), issuing a new certificate when needed.
fn load_or_issue_tls(
    paths: &HierarchyPaths,
    intermediate: &Arc<dyn super::Issuer>,
    intermediate_chain: &[Vec<u8>],
    root_der: &[u8],
    names: &[String],
) -> Result<(String, String), HierarchyError> {
    match classify_tls(paths, intermediate_chain, root_der, names) {
        TlsFiles::Current => {}
        TlsFiles::Operators(problems) => {
            for problem in problems {
                tracing::warn!(
                    file = %paths.tls_cert.display(),
                    "the listener's own TLS certificate (not issued by this CA, so never \
                     replaced by it): {problem}"
                );
            }
        }
        TlsFiles::Replace => issue_tls(paths, intermediate, intermediate_chain, names)?,
    }
    Ok((read(&paths.tls_cert)?, read(&paths.tls_key)?))
}

/// Issues the listener's certificate with the intermediate and writes `tls.key`, then
/// `tls.pem` (leaf, then the intermediate's chain).
fn issue_tls(
    paths: &HierarchyPaths,
    intermediate: &Arc<dyn super::Issuer>,
    intermediate_chain: &[Vec<u8>],
    names: &[String],
) -> Result<(), HierarchyError> {
    let (_, issuer_cert) =
        X509Certificate::from_der(&intermediate_chain[0]).map_err(|e| HierarchyError::Invalid {
            path: paths.intermediate_cert.clone(),
            detail: format!("not an X.509 certificate: {e}"),
        })?;
    for der in intermediate_chain {
        if let Ok((_, ca)) = X509Certificate::from_der(der) {
            if let Err(refused) = init::names_permitted(&ca, names) {
                return Err(HierarchyError::State(format!(
                    "{}: the name constraints of {} do not allow the listener's {refused}, so \
                     TLS clients would refuse a listener certificate it issued. Give the \
                     listener a certificate from another CA — put it (leaf, then chain) in \
                     {} and its key in {}; certwright-ca uses such files as they are — or \
                     serve plain HTTP behind a TLS proxy (--no-tls)",
                    paths.intermediate_cert.display(),
                    ca.subject(),
                    paths.tls_cert.display(),
                    paths.tls_key.display(),
                )));
            }
        }
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("localhost"),
    );
    dn.push(DnType::OrganizationalUnitName, TLS_MARK);
    params.distinguished_name = dn;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&super::random_serial()));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = (now + Duration::days(TLS_LIFETIME_DAYS))
        .min(issuer_cert.validity().not_after.to_datetime());
    let cert = params.signed_by(&key, &rcgen_issuer(intermediate.clone())?)?;
    let mut pem = cert.pem();
    if !pem.ends_with('\n') {
        pem.push('\n');
    }
    pem.push_str(intermediate.chain_pem());
    write(&paths.tls_key, &key.serialize_pem(), 0o600)?;
    write(&paths.tls_cert, &pem, 0o644)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn names() -> Vec<String> {
        vec!["localhost".to_string(), "127.0.0.1".to_string()]
    }

    fn load(dir: &Path, names: &[String]) -> Result<Hierarchy, HierarchyError> {
        Hierarchy::load_or_create(
            dir,
            CaKeyType::Ec256,
            "certwright",
            names,
            &Pkcs11Settings::default(),
        )
    }

    #[test]
    fn created_once_then_reused_with_private_keys_0600() {
        let dir = tempfile::tempdir().unwrap();
        let first = load(dir.path(), &names()).unwrap();
        let again = load(dir.path(), &names()).unwrap();
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
        // The files the README lists, and no key-uri files.
        for name in [
            "root.pem",
            "root.key",
            "intermediate.pem",
            "intermediate.key",
        ] {
            assert!(dir.path().join(name).is_file(), "{name}");
        }
        assert!(!first.paths.root_key_uri.exists());
        // A new name for the listener gets a new TLS certificate, same root.
        let more = vec!["localhost".to_string(), "ca.example".to_string()];
        let third = load(dir.path(), &more).unwrap();
        assert_ne!(third.tls_cert_pem, first.tls_cert_pem);
        assert_eq!(third.root_pem, first.root_pem);
        assert_eq!(first.root_fingerprint().len(), 32 * 3 - 1);
    }

    /// The listener's chain as a TLS client trusting only the root sees it.
    fn verify_listener_chain(h: &Hierarchy, name: &str) -> Result<(), rustls::Error> {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
        let chain = pem_chain(&h.tls_cert_pem).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(h.root_der.clone())).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        let certs: Vec<CertificateDer<'static>> =
            chain.into_iter().map(CertificateDer::from).collect();
        verifier
            .verify_server_cert(
                &certs[0],
                &certs[1..],
                &ServerName::try_from(name.to_owned()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn the_intermediate_issues_the_listener_certificate_and_serve_needs_no_root_key() {
        let dir = tempfile::tempdir().unwrap();
        let h = load(dir.path(), &names()).unwrap();
        // tls.pem: the leaf, then the intermediate; issued by the intermediate.
        let chain = pem_chain(&h.tls_cert_pem).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], h.intermediate_der);
        let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
        let (_, inter) = X509Certificate::from_der(&h.intermediate_der).unwrap();
        assert!(issued_by(&leaf, &inter));
        verify_listener_chain(&h, "localhost").unwrap();

        // No root key: serving still loads, and a new listener certificate is issued.
        std::fs::remove_file(&h.paths.root_key).unwrap();
        std::fs::remove_file(&h.paths.tls_cert).unwrap();
        let again = load(dir.path(), &names()).unwrap();
        assert_eq!(again.intermediate_der, h.intermediate_der);
        assert_ne!(again.tls_cert_pem, h.tls_cert_pem);
        verify_listener_chain(&again, "localhost").unwrap();
        assert!(!h.paths.root_key.exists(), "nothing recreated the root key");

        // A lost intermediate key cannot be replaced without the root key: a clear error.
        std::fs::remove_file(&h.paths.intermediate_key).unwrap();
        let err = load(dir.path(), &names()).err().unwrap().to_string();
        assert!(err.contains("intermediate.key: missing"), "{err}");
        assert!(err.contains("root's key"), "{err}");
    }

    #[test]
    fn a_listener_certificate_signed_by_the_root_is_replaced() {
        // As versions before this one made it: signed by the root, no chain.
        let dir = tempfile::tempdir().unwrap();
        let h = load(dir.path(), &names()).unwrap();
        let root_key = KeyPair::from_pem(&read(&h.paths.root_key).unwrap()).unwrap();
        let root = rcgen::Issuer::from_ca_cert_pem(&h.root_pem, root_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let old = CertificateParams::new(names())
            .unwrap()
            .signed_by(&key, &root)
            .unwrap();
        write(&h.paths.tls_cert, &old.pem(), 0o644).unwrap();
        write(&h.paths.tls_key, &key.serialize_pem(), 0o600).unwrap();
        let again = load(dir.path(), &names()).unwrap();
        assert_ne!(again.tls_cert_pem, old.pem());
        assert_eq!(pem_chain(&again.tls_cert_pem).unwrap().len(), 2);
        verify_listener_chain(&again, "localhost").unwrap();
    }

    #[test]
    fn name_constraints_that_exclude_the_listener_stop_startup_unless_tls_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = init::InitOptions::new(CaKeyType::Ec256, "certwright");
        opts.permitted_dns = vec!["example.test".into()];
        init::create(dir.path(), &opts, &Pkcs11Settings::default()).unwrap();
        let err = load(dir.path(), &names()).err().unwrap().to_string();
        assert!(
            err.contains("do not allow the listener's name(s) localhost"),
            "{err}"
        );
        assert!(err.contains("tls.pem"), "{err}");
        assert!(!dir.path().join("tls.pem").exists());
        // Names inside the subtree are fine; without a listener nothing is checked.
        let ok = vec!["ca.example.test".to_string(), "127.0.0.1".to_string()];
        let h = load(dir.path(), &ok).unwrap();
        verify_listener_chain(&h, "ca.example.test").unwrap();
        load(dir.path(), &[]).unwrap();

        // The operator's own certificate (another CA's) is used as it is, never replaced.
        let key = KeyPair::generate().unwrap();
        let own = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        write(&h.paths.tls_cert, &own.pem(), 0o644).unwrap();
        write(&h.paths.tls_key, &key.serialize_pem(), 0o600).unwrap();
        let h = load(dir.path(), &names()).unwrap();
        assert_eq!(h.tls_cert_pem, own.pem());
    }

    #[test]
    fn half_made_data_directories_get_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let h = load(dir.path(), &names()).unwrap();
        std::fs::remove_file(&h.paths.root_cert).unwrap();
        let err = load(dir.path(), &names()).err().unwrap().to_string();
        assert!(err.contains("root.pem: missing"), "{err}");

        // An intermediate key waiting for its certificate (init --intermediate-csr).
        let dir = tempfile::tempdir().unwrap();
        let opts = init::InitOptions::new(CaKeyType::Ec256, "certwright");
        let csr = dir.path().join("intermediate.csr");
        init::write_intermediate_csr(dir.path(), &opts, &csr, &Pkcs11Settings::default()).unwrap();
        let err = load(dir.path(), &names()).err().unwrap().to_string();
        assert!(err.contains("--import-intermediate"), "{err}");
        assert!(!dir.path().join("root.pem").exists());
    }

    #[test]
    fn key_types_parse_and_print() {
        for (name, t) in CaKeyType::ALL {
            assert_eq!(name.parse::<CaKeyType>().unwrap(), t);
            assert_eq!(t.to_string(), name);
        }
        let err = "ec521".parse::<CaKeyType>().unwrap_err();
        assert!(err.contains("rsa4096"), "{err}");
    }
}
