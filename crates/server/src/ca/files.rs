//! The files of one issuing CA in the data directory, and loading them into an
//! [`Issuer`](super::Issuer).
//!
//! The first issuer, `intermediate`, lives at the top of the data directory (as it always
//! has); issuers added later live in `issuers/<name>/`:
//!
//! | what | first issuer | added issuer |
//! | --- | --- | --- |
//! | certificate, then any CA certificates above it up to (not including) the root, PEM | `intermediate.pem` | `issuers/NAME/cert.pem` |
//! | private key, PEM (0600) — or | `intermediate.key` | `issuers/NAME/key.pem` |
//! | the `pkcs11:` URI of the key in a token | `intermediate.key-uri` | `issuers/NAME/key-uri` |
//! | delegated OCSP responder certificate | `ocsp.pem` | `issuers/NAME/ocsp.pem` |
//! | its key (0600, re-generated with each certificate) — or | `ocsp.key` | `issuers/NAME/ocsp.key` |
//! | the `pkcs11:` URI of a fixed responder key in a token | `ocsp.key-uri` | `issuers/NAME/ocsp.key-uri` |
//! | alternate chains: the issuer cross-signed by another root, then what is above it | `intermediate.alternate-*.pem` | `issuers/NAME/alternate-*.pem` |

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::issuer::{rcgen_issuer, LocalIssuer};
use super::keys::{self, CaKey, KeyError, KeyLocation, Pkcs11Settings};

/// The name of the first issuer (the data directory's `intermediate.*`).
pub const FIRST_ISSUER: &str = "intermediate";

/// Where one issuer's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerFiles {
    /// The issuer's name: `intermediate`, or the directory name under `issuers/`.
    pub name: String,
    /// The certificate chain (issuer first), PEM.
    pub cert: PathBuf,
    /// The private key (PEM), when the key is a file.
    pub key: PathBuf,
    /// A file holding the key's `pkcs11:` URI, when the key is in a token.
    pub key_uri: PathBuf,
    /// The delegated OCSP responder's certificate.
    pub ocsp_cert: PathBuf,
    /// Its key, when a file.
    pub ocsp_key: PathBuf,
    /// A file holding its key's `pkcs11:` URI, when the responder key is in a token.
    pub ocsp_key_uri: PathBuf,
    /// Alternate chains are the files whose path starts with this and ends `.pem`.
    pub alternate_prefix: PathBuf,
}

/// Errors loading an issuer: each names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum IssuerFilesError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file's content is not usable.
    #[error("{path}: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The key could not be opened.
    #[error("the key of issuer {issuer}: {source}")]
    Key {
        /// The issuer's name.
        issuer: String,
        /// Why.
        source: KeyError,
    },
}

/// Whether `name` can name an issuer: 1–32 of `a-z 0-9 -`, not starting with `-`.
pub fn valid_issuer_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl IssuerFiles {
    /// The first issuer's files at the top of `data_dir`.
    pub fn first(data_dir: &Path) -> Self {
        Self {
            name: FIRST_ISSUER.to_owned(),
            cert: data_dir.join("intermediate.pem"),
            key: data_dir.join("intermediate.key"),
            key_uri: data_dir.join("intermediate.key-uri"),
            ocsp_cert: data_dir.join("ocsp.pem"),
            ocsp_key: data_dir.join("ocsp.key"),
            ocsp_key_uri: data_dir.join("ocsp.key-uri"),
            alternate_prefix: data_dir.join("intermediate.alternate-"),
        }
    }

    /// The files of issuer `name`: the first issuer's for `intermediate`, else under
    /// `issuers/<name>/`.
    pub fn named(data_dir: &Path, name: &str) -> Self {
        if name == FIRST_ISSUER {
            return Self::first(data_dir);
        }
        let dir = Self::dir(data_dir, name);
        Self {
            name: name.to_owned(),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            key_uri: dir.join("key-uri"),
            ocsp_cert: dir.join("ocsp.pem"),
            ocsp_key: dir.join("ocsp.key"),
            ocsp_key_uri: dir.join("ocsp.key-uri"),
            alternate_prefix: dir.join("alternate-"),
        }
    }

    /// `issuers/<name>/` under `data_dir`.
    pub fn dir(data_dir: &Path, name: &str) -> PathBuf {
        data_dir.join("issuers").join(name)
    }

    /// Every issuer in `data_dir`: the first one (when its certificate exists), then the
    /// directories under `issuers/` in name order.
    pub fn all(data_dir: &Path) -> Result<Vec<Self>, IssuerFilesError> {
        let mut out = Vec::new();
        let first = Self::first(data_dir);
        if first.cert.exists() {
            out.push(first);
        }
        let dir = data_dir.join("issuers");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => return Err(IssuerFilesError::Io { path: dir, source }),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| IssuerFilesError::Io {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && valid_issuer_name(&name) && name != FIRST_ISSUER {
                names.push(name);
            }
        }
        names.sort();
        out.extend(names.iter().map(|n| Self::named(data_dir, n)));
        Ok(out)
    }

    /// Where the issuer's key is: the URI in `key_uri` if that file exists, else the PEM
    /// file `key` (which may not exist yet).
    pub fn key_location(&self) -> Result<KeyLocation, IssuerFilesError> {
        location(&self.key_uri, &self.key)
    }

    /// Where the responder key is fixed (a token object named in `ocsp_key_uri`), if it is.
    pub fn ocsp_key_location(&self) -> Result<Option<KeyLocation>, IssuerFilesError> {
        if self.ocsp_key_uri.exists() {
            location(&self.ocsp_key_uri, &self.ocsp_key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Loads the issuer: its chain, and its key (which must match the certificate).
    pub fn load(&self, pkcs11: &Pkcs11Settings) -> Result<Arc<LocalIssuer>, IssuerFilesError> {
        let pem = std::fs::read_to_string(&self.cert).map_err(|source| IssuerFilesError::Io {
            path: self.cert.clone(),
            source,
        })?;
        let invalid = |detail: String| IssuerFilesError::Invalid {
            path: self.cert.clone(),
            detail,
        };
        let chain = pem_chain(&pem).map_err(&invalid)?;
        let der = chain
            .first()
            .ok_or_else(|| invalid("holds no certificate".into()))?
            .clone();
        check_ca_certificate(&der).map_err(&invalid)?;
        let location = self.key_location()?;
        let key = keys::open(&location, pkcs11).map_err(|source| IssuerFilesError::Key {
            issuer: self.name.clone(),
            source,
        })?;
        check_key_matches(&der, key.as_ref()).map_err(|detail| IssuerFilesError::Invalid {
            path: self.cert.clone(),
            detail: format!("{detail} ({location})"),
        })?;
        let mut chain_pem = pem;
        if !chain_pem.ends_with('\n') {
            chain_pem.push('\n');
        }
        let issuer = Arc::new(LocalIssuer::new(der, &chain_pem, key));
        rcgen_issuer(issuer.clone()).map_err(|e| invalid(e.to_string()))?;
        Ok(issuer)
    }
}

impl IssuerFiles {
    /// The issuer's alternate chains (PEM), in file-name order: each starts with a
    /// certificate of the same subject and key as the issuer's (a cross-signed one), then
    /// what is above it; served to clients as `Link: rel="alternate"` chains.
    pub fn alternate_chains(&self, issuer_der: &[u8]) -> Result<Vec<String>, IssuerFilesError> {
        let (Some(dir), Some(prefix)) = (
            self.alternate_prefix.parent(),
            self.alternate_prefix.file_name().and_then(|n| n.to_str()),
        ) else {
            return Ok(Vec::new());
        };
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".pem"))
                })
                .collect(),
            Err(_) => return Ok(Vec::new()),
        };
        paths.sort();
        let (_, issuer) =
            X509Certificate::from_der(issuer_der).map_err(|e| IssuerFilesError::Invalid {
                path: self.cert.clone(),
                detail: e.to_string(),
            })?;
        let mut out = Vec::new();
        for path in paths {
            let invalid = |detail: String| IssuerFilesError::Invalid {
                path: path.clone(),
                detail,
            };
            let pem = std::fs::read_to_string(&path).map_err(|source| IssuerFilesError::Io {
                path: path.clone(),
                source,
            })?;
            let chain = pem_chain(&pem).map_err(&invalid)?;
            let first = chain
                .first()
                .ok_or_else(|| invalid("holds no certificate".into()))?;
            let (_, cross) = X509Certificate::from_der(first)
                .map_err(|e| invalid(format!("not an X.509 certificate: {e}")))?;
            if cross.subject().as_raw() != issuer.subject().as_raw()
                || cross.public_key().raw != issuer.public_key().raw
            {
                return Err(invalid(format!(
                    "its first certificate is not {} cross-signed: the subject or key differs",
                    self.name
                )));
            }
            let mut pem = pem;
            if !pem.ends_with('\n') {
                pem.push('\n');
            }
            out.push(pem);
        }
        Ok(out)
    }
}

fn location(uri_file: &Path, pem_file: &Path) -> Result<KeyLocation, IssuerFilesError> {
    match std::fs::read_to_string(uri_file) {
        Ok(text) => KeyLocation::parse(text.trim()).map_err(|e| IssuerFilesError::Invalid {
            path: uri_file.to_owned(),
            detail: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(KeyLocation::File(pem_file.to_owned()))
        }
        Err(source) => Err(IssuerFilesError::Io {
            path: uri_file.to_owned(),
            source,
        }),
    }
}

/// The certificates of a PEM bundle, in order (DER).
pub fn pem_chain(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate: {e}"))
}

/// The certificate is a CA certificate that may sign certificates: basicConstraints
/// cA TRUE and, when keyUsage is present, keyCertSign.
pub fn check_ca_certificate(der: &[u8]) -> Result<(), String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        Ok(_) => {
            return Err(
                "the certificate is not a CA certificate (basicConstraints cA is not TRUE)".into(),
            )
        }
        Err(e) => return Err(format!("its basicConstraints do not decode: {e}")),
    }
    match cert.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => {
            Err("the certificate's keyUsage lacks keyCertSign".into())
        }
        Ok(_) => Ok(()),
        Err(e) => Err(format!("its keyUsage does not decode: {e}")),
    }
}

/// The organization (O) in a certificate's subject.
pub fn subject_organization(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let org = cert.subject().iter_organization().next()?.as_str().ok()?;
    Some(org.to_owned())
}

/// The key is the certificate's: same public key bits.
pub fn check_key_matches(cert_der: &[u8], key: &dyn CaKey) -> Result<(), String> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key() {
        return Err("the private key does not match the certificate".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_names_and_layout() {
        assert!(valid_issuer_name("int-2027-ec"));
        for bad in ["", "-x", "Int", "a/b", "..", &"x".repeat(33)] {
            assert!(!valid_issuer_name(bad), "{bad:?}");
        }
        let data = Path::new("/var/lib/ca");
        assert_eq!(
            IssuerFiles::named(data, "intermediate"),
            IssuerFiles::first(data)
        );
        let f = IssuerFiles::named(data, "r2");
        assert_eq!(f.cert, Path::new("/var/lib/ca/issuers/r2/cert.pem"));
        assert_eq!(
            f.key_location().unwrap(),
            KeyLocation::File("/var/lib/ca/issuers/r2/key.pem".into())
        );
    }

    #[test]
    fn the_first_issuer_loads_and_a_wrong_key_or_non_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let h = crate::ca::test_hierarchy(dir.path());
        let files = IssuerFiles::first(dir.path());
        let all = IssuerFiles::all(dir.path()).unwrap();
        assert_eq!(all, vec![files.clone()]);
        let issuer = files.load(&Pkcs11Settings::default()).unwrap();
        use super::super::Issuer;
        assert_eq!(issuer.certificate_der(), h.intermediate_der.as_slice());

        // The TLS key is not the intermediate's.
        std::fs::copy(&h.paths.tls_key, &files.key).unwrap();
        let err = files.load(&Pkcs11Settings::default()).err().unwrap();
        assert!(err.to_string().contains("does not match"), "{err}");
        assert!(err.to_string().contains("intermediate.pem"), "{err}");

        // An alternate chain whose first certificate is not the issuer cross-signed.
        std::fs::write(dir.path().join("intermediate.alternate-1.pem"), &h.root_pem).unwrap();
        let err = files.alternate_chains(&h.intermediate_der).unwrap_err();
        assert!(
            err.to_string().contains("intermediate.alternate-1.pem"),
            "{err}"
        );
        assert!(
            err.to_string().contains("not intermediate cross-signed"),
            "{err}"
        );

        // The TLS certificate is not a CA.
        let tls_der = pem_chain(&h.tls_cert_pem).unwrap().remove(0);
        let err = check_ca_certificate(&tls_der).unwrap_err();
        assert!(err.contains("not a CA certificate"), "{err}");
    }
}
