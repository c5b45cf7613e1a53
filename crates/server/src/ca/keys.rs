//! Where a CA key lives and how it signs: a PEM file in the data directory, or a key
//! object in a PKCS#11 token (named by an RFC 7512 `pkcs11:` URI) that never leaves it.
//! Everything the CA signs goes through [`CaKey::sign`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm, SigningKey};

use super::hierarchy::CaKeyType;
use super::issuer::IssuerError;
use super::pkcs11;
use crate::fsutil::write_atomic;

/// A private key the CA signs with.
pub trait CaKey: Send + Sync {
    /// The public key: the subjectPublicKey bits (an uncompressed EC point, or a DER
    /// RSAPublicKey), as rcgen's `PublicKeyData::der_bytes`.
    fn public_key(&self) -> &[u8];

    /// The signature algorithm of [`CaKey::sign`] (ECDSA with SHA-256 for P-256,
    /// SHA-384 for P-384, RSA PKCS#1 v1.5 with SHA-256 for RSA).
    fn algorithm(&self) -> &'static SignatureAlgorithm;

    /// Signs `msg` (the whole message: the key hashes it) and returns the signature as
    /// X.509 wants it (DER `Ecdsa-Sig-Value` for ECDSA).
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, IssuerError>;

    /// Where the key is, for messages and `issuer list`: a path, or the `pkcs11:` URI
    /// (never a PIN).
    fn location(&self) -> String;
}

/// Where a CA key is: parsed from a config value or a command-line argument. A value
/// starting `pkcs11:` is a token object, anything else a file path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    /// A PEM (PKCS#8) file, 0600.
    File(PathBuf),
    /// A key object in a PKCS#11 token.
    Pkcs11(pkcs11::Pkcs11Uri),
}

impl KeyLocation {
    /// Parses `value`: `pkcs11:…` (RFC 7512) or a path.
    pub fn parse(value: &str) -> Result<Self, KeyError> {
        if value.starts_with("pkcs11:") {
            Ok(Self::Pkcs11(pkcs11::Pkcs11Uri::parse(value)?))
        } else if value.is_empty() {
            Err(KeyError::Invalid("an empty key location".into()))
        } else {
            Ok(Self::File(PathBuf::from(value)))
        }
    }
}

impl fmt::Display for KeyLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Pkcs11(uri) => write!(f, "{uri}"),
        }
    }
}

/// Errors opening or creating a CA key. The message names the file or URI.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key location or a key is not usable (a bad URI, a file that holds no key).
    #[error("{0}")]
    Invalid(String),
    /// The PKCS#11 module or token failed (not found, locked, wrong PIN, unplugged).
    #[error("{0}")]
    Pkcs11(String),
    /// Generating a key failed.
    #[error("key generation failed: {0}")]
    Generate(String),
}

/// A key in a PEM file the CA reads.
pub struct FileKey {
    path: PathBuf,
    key: KeyPair,
}

impl FileKey {
    /// The key in `key` (read from `path`).
    pub fn new(path: &Path, key: KeyPair) -> Self {
        Self {
            path: path.to_owned(),
            key,
        }
    }

    /// Reads the PEM key at `path`.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        let key = KeyPair::from_pem(&pem).map_err(|e| {
            KeyError::Invalid(format!("{}: not a usable private key: {e}", path.display()))
        })?;
        Ok(Self::new(path, key))
    }

    /// Generates a key of `key_type` and writes it to `path` (0600), refusing to replace
    /// a file that exists.
    pub fn generate(path: &Path, key_type: CaKeyType) -> Result<Self, KeyError> {
        if path.exists() {
            return Err(KeyError::Invalid(format!(
                "{}: exists; refusing to replace a CA key",
                path.display()
            )));
        }
        let key = key_type
            .generate()
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        write_atomic(path, key.serialize_pem().as_bytes(), 0o600).map_err(|source| {
            KeyError::Io {
                path: path.to_owned(),
                source,
            }
        })?;
        Ok(Self::new(path, key))
    }

    /// The PEM of the key (for the hierarchy's own files).
    pub fn key_pair(&self) -> &KeyPair {
        &self.key
    }
}

impl CaKey for FileKey {
    fn public_key(&self) -> &[u8] {
        self.key.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.key.algorithm()
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, IssuerError> {
        SigningKey::sign(&self.key, msg).map_err(|e| IssuerError(e.to_string()))
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

/// How to reach PKCS#11 tokens: the module, and where the user PIN comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Settings {
    /// The module (`.so`) to load; a URI's `module-path` wins over it.
    pub module: Option<PathBuf>,
    /// Where the user PIN is read from; a URI's `pin-source` wins over it.
    pub pin: Option<PinSource>,
}

/// Where a PKCS#11 user PIN is read from: never the command line, never a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// A file holding the PIN (trailing newline ignored); should be 0600.
    File(PathBuf),
    /// An environment variable holding the PIN.
    Env(String),
}

/// Opens the key at `location`.
pub fn open(location: &KeyLocation, pkcs11: &Pkcs11Settings) -> Result<Arc<dyn CaKey>, KeyError> {
    match location {
        KeyLocation::File(path) => Ok(Arc::new(FileKey::load(path)?)),
        KeyLocation::Pkcs11(uri) => Ok(Arc::new(pkcs11::Pkcs11Key::open(uri, pkcs11)?)),
    }
}

/// Creates a key of `key_type` at `location`: a new 0600 file, or a new key pair in the
/// token (private key sensitive and not extractable), refusing to replace one.
pub fn generate(
    location: &KeyLocation,
    key_type: CaKeyType,
    pkcs11: &Pkcs11Settings,
) -> Result<Arc<dyn CaKey>, KeyError> {
    match location {
        KeyLocation::File(path) => Ok(Arc::new(FileKey::generate(path, key_type)?)),
        KeyLocation::Pkcs11(uri) => Ok(Arc::new(pkcs11::Pkcs11Key::generate(
            uri, key_type, pkcs11,
        )?)),
    }
}

/// A [`CaKey`] as rcgen's signing key (to self-sign a root or sign a certificate).
pub struct RcgenKey(pub Arc<dyn CaKey>);

impl PublicKeyData for RcgenKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_key()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.0.algorithm()
    }
}

impl SigningKey for RcgenKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg).map_err(|e| {
            // rcgen's error has no room for the cause: it goes to the log.
            tracing::error!(error = %e, key = %self.0.location(), "a CA key failed to sign");
            rcgen::Error::RemoteKeyError
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn locations_parse_and_file_keys_are_0600_and_never_replaced() {
        assert_eq!(
            KeyLocation::parse("/var/lib/ca/intermediate.key").unwrap(),
            KeyLocation::File("/var/lib/ca/intermediate.key".into())
        );
        assert!(KeyLocation::parse("").is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let key = FileKey::generate(&path, CaKeyType::Ec256).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = FileKey::load(&path).unwrap();
        assert_eq!(key.public_key(), again.public_key());
        let err = FileKey::generate(&path, CaKeyType::Ec256).err().unwrap();
        assert!(err.to_string().contains("refusing to replace"), "{err}");
        let sig = again.sign(b"tbs").unwrap();
        assert!(!sig.is_empty());
    }
}
