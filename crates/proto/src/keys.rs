//! Account signing keys over aws-lc-rs: generation, PKCS#8 round trip, JWK and signing.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};

use crate::jwk::{EcCurve, Jwk};
use crate::jws::JwsAlgorithm;

/// Key types for account and certificate keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// ECDSA on P-256 (ES256).
    EcP256,
    /// ECDSA on P-384 (ES384).
    EcP384,
    /// RSA with a 2048-bit modulus (RS256).
    Rsa2048,
    /// RSA with a 3072-bit modulus (RS256).
    Rsa3072,
    /// RSA with a 4096-bit modulus (RS256).
    Rsa4096,
    /// Ed25519 (EdDSA).
    Ed25519,
}

impl KeyType {
    /// The CLI name: `ec256`, `ec384`, `rsa2048`, `rsa3072`, `rsa4096`, `ed25519`.
    pub fn name(self) -> &'static str {
        match self {
            Self::EcP256 => "ec256",
            Self::EcP384 => "ec384",
            Self::Rsa2048 => "rsa2048",
            Self::Rsa3072 => "rsa3072",
            Self::Rsa4096 => "rsa4096",
            Self::Ed25519 => "ed25519",
        }
    }

    /// Parses a CLI name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::EcP256,
            Self::EcP384,
            Self::Rsa2048,
            Self::Rsa3072,
            Self::Rsa4096,
            Self::Ed25519,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// Why a key operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The random generator or key generation failed.
    #[error("key generation failed")]
    Generate,
    /// The PKCS#8 document is not a key of a supported type and size.
    #[error("not a supported PKCS#8 private key (EC P-256/P-384, RSA 2048-8192, Ed25519)")]
    Unsupported,
    /// The signing operation failed.
    #[error("signing failed")]
    Sign,
}

/// A private key that signs JWS objects.
pub enum AccountKey {
    /// An ECDSA key pair and its curve.
    Ecdsa(EcdsaKeyPair, EcCurve),
    /// An RSA key pair (signs RS256).
    Rsa(RsaKeyPair),
    /// An Ed25519 key pair (signs EdDSA).
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "AccountKey({})", self.jwk().describe())
    }
}

fn ec_alg(curve: EcCurve) -> &'static signature::EcdsaSigningAlgorithm {
    match curve {
        EcCurve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        EcCurve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
    }
}

impl AccountKey {
    /// Generates a fresh key of `kind`.
    pub fn generate(kind: KeyType) -> Result<Self, KeyError> {
        let rsa = |size| {
            RsaKeyPair::generate(size)
                .map(Self::Rsa)
                .map_err(|_| KeyError::Generate)
        };
        let ec = |curve| {
            EcdsaKeyPair::generate(ec_alg(curve))
                .map(|k| Self::Ecdsa(k, curve))
                .map_err(|_| KeyError::Generate)
        };
        match kind {
            KeyType::EcP256 => ec(EcCurve::P256),
            KeyType::EcP384 => ec(EcCurve::P384),
            KeyType::Rsa2048 => rsa(KeySize::Rsa2048),
            KeyType::Rsa3072 => rsa(KeySize::Rsa3072),
            KeyType::Rsa4096 => rsa(KeySize::Rsa4096),
            KeyType::Ed25519 => {
                let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| KeyError::Generate)?;
                Self::from_pkcs8(doc.as_ref())
            }
        }
    }

    /// Loads a PKCS#8 DER private key of any supported type.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        for curve in [EcCurve::P256, EcCurve::P384] {
            if let Ok(k) = EcdsaKeyPair::from_pkcs8(ec_alg(curve), der) {
                return Ok(Self::Ecdsa(k, curve));
            }
        }
        if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            return Ok(Self::Rsa(k));
        }
        if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Ok(Self::Ed25519(k));
        }
        Err(KeyError::Unsupported)
    }

    /// The key as PKCS#8 DER (secret: store 0600).
    pub fn to_pkcs8(&self) -> Result<Vec<u8>, KeyError> {
        match self {
            Self::Ecdsa(k, _) => k.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
            Self::Rsa(k) => {
                AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(k).map(|d| d.as_ref().to_vec())
            }
            Self::Ed25519(k) => k.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
        }
        .map_err(|_| KeyError::Unsupported)
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Jwk {
        match self {
            Self::Ecdsa(k, curve) => {
                let point = k.public_key().as_ref();
                let n = curve.coordinate_len();
                Jwk::Ec {
                    crv: *curve,
                    x: point[1..1 + n].to_vec(),
                    y: point[1 + n..1 + 2 * n].to_vec(),
                }
            }
            Self::Rsa(k) => {
                let public = k.public_key();
                let components: signature::RsaPublicKeyComponents<Vec<u8>> = public.into();
                Jwk::Rsa {
                    n: components.n,
                    e: components.e,
                }
            }
            Self::Ed25519(k) => Jwk::Ed25519 {
                x: k.public_key().as_ref().to_vec(),
            },
        }
    }

    /// The JWS algorithm this key signs with.
    pub fn algorithm(&self) -> JwsAlgorithm {
        self.jwk().algorithm()
    }

    /// Signs `message` (a JWS signing input) and returns the raw JWS signature.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match self {
            Self::Ecdsa(k, _) => k
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign),
            Self::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
            Self::Ed25519(k) => Ok(k.sign(message).as_ref().to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs8_round_trip_keeps_the_public_key() {
        for kt in [
            KeyType::EcP256,
            KeyType::EcP384,
            KeyType::Rsa2048,
            KeyType::Ed25519,
        ] {
            let key = AccountKey::generate(kt).unwrap();
            let again = AccountKey::from_pkcs8(&key.to_pkcs8().unwrap()).unwrap();
            assert_eq!(key.jwk(), again.jwk(), "{kt:?}");
        }
        assert_eq!(
            AccountKey::from_pkcs8(b"junk").unwrap_err(),
            KeyError::Unsupported
        );
    }

    #[test]
    fn rsa_jwk_has_2048_bits() {
        let key = AccountKey::generate(KeyType::Rsa2048).unwrap();
        assert_eq!(key.jwk().describe(), "RSA 2048");
        assert_eq!(KeyType::parse("rsa3072"), Some(KeyType::Rsa3072));
    }
}
