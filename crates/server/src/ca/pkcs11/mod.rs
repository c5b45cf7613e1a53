//! CA keys in a PKCS#11 token (cryptoki): an RFC 7512 `pkcs11:` URI names the key
//! object; the private key never leaves the token.
//!
//! PLACEHOLDER: the contract only; the implementation lands with the PKCS#11 work.

use std::fmt;

use rcgen::SignatureAlgorithm;

use super::hierarchy::CaKeyType;
use super::issuer::IssuerError;
use super::keys::{CaKey, KeyError, Pkcs11Settings};

/// An RFC 7512 `pkcs11:` URI naming a token object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    raw: String,
}

impl Pkcs11Uri {
    /// Parses a `pkcs11:` URI.
    pub fn parse(value: &str) -> Result<Self, KeyError> {
        Ok(Self {
            raw: value.to_owned(),
        })
    }
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// A private key in a PKCS#11 token.
pub struct Pkcs11Key {
    uri: Pkcs11Uri,
}

impl Pkcs11Key {
    /// Opens the key `uri` names.
    pub fn open(uri: &Pkcs11Uri, _settings: &Pkcs11Settings) -> Result<Self, KeyError> {
        Err(KeyError::Pkcs11(format!("{uri}: PKCS#11 is not built yet")))
    }

    /// Generates a key pair in the token.
    pub fn generate(
        uri: &Pkcs11Uri,
        _key_type: CaKeyType,
        _settings: &Pkcs11Settings,
    ) -> Result<Self, KeyError> {
        Err(KeyError::Pkcs11(format!("{uri}: PKCS#11 is not built yet")))
    }
}

impl CaKey for Pkcs11Key {
    fn public_key(&self) -> &[u8] {
        &[]
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }

    fn sign(&self, _msg: &[u8]) -> Result<Vec<u8>, IssuerError> {
        Err(IssuerError(format!(
            "{}: PKCS#11 is not built yet",
            self.uri
        )))
    }

    fn location(&self) -> String {
        self.uri.to_string()
    }
}
