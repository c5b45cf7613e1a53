//! JSON Web Keys (RFC 7517/7518) for the account-key types ACME uses, and their
//! RFC 7638 thumbprints.

use aws_lc_rs::digest;
use aws_lc_rs::error::Unspecified;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{json, Map, Value};

use crate::b64;
use crate::jws::JwsAlgorithm;

/// Elliptic curves accepted for ECDSA keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EcCurve {
    /// NIST P-256, signing ES256.
    P256,
    /// NIST P-384, signing ES384.
    P384,
}

impl EcCurve {
    /// The JWK `crv` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
        }
    }

    /// Length in bytes of one coordinate.
    pub fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }
}

/// Smallest RSA modulus accepted, in bits.
pub const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits.
pub const RSA_MAX_BITS: usize = 8192;

/// A public key in JWK form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Jwk {
    /// `kty: EC`.
    Ec {
        /// The curve.
        crv: EcCurve,
        /// X coordinate, big-endian, [`EcCurve::coordinate_len`] bytes.
        x: Vec<u8>,
        /// Y coordinate, big-endian, [`EcCurve::coordinate_len`] bytes.
        y: Vec<u8>,
    },
    /// `kty: RSA`; `n` and `e` big-endian without leading zeros.
    Rsa {
        /// The modulus.
        n: Vec<u8>,
        /// The public exponent.
        e: Vec<u8>,
    },
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519 {
        /// The 32-byte public key.
        x: Vec<u8>,
    },
}

/// Why a JWK was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// The JWK is not a JSON object.
    #[error("JWK is not a JSON object")]
    NotAnObject,
    /// A required member (named) is absent or not a string.
    #[error("JWK member {0:?} is missing or not a string")]
    MissingMember(&'static str),
    /// A member (named) is not valid base64url.
    #[error("JWK member {0:?} is not valid base64url")]
    BadEncoding(&'static str),
    /// A `kty` other than `EC`, `RSA` and `OKP`.
    #[error("unsupported key type {0:?} (supported: EC P-256/P-384, RSA, OKP Ed25519)")]
    UnsupportedKeyType(String),
    /// A `crv` other than P-256 and P-384 (EC) or Ed25519 (OKP).
    #[error("unsupported curve {0:?}")]
    UnsupportedCurve(String),
    /// A coordinate (`x` or `y`) has the wrong length for the curve.
    #[error("EC coordinate has the wrong length for {0}")]
    BadCoordinate(&'static str),
    /// The modulus size, in bits, outside [`RSA_MIN_BITS`]..=[`RSA_MAX_BITS`].
    #[error(
        "RSA modulus of {0} bits is outside the accepted {RSA_MIN_BITS}..={RSA_MAX_BITS} bits"
    )]
    RsaSize(usize),
    /// The public exponent is not an odd number in 3..2^32.
    #[error("RSA public exponent is not acceptable")]
    RsaExponent,
    /// The JWK has private members (`d`, `p`, `q`, `dp`, `dq`, `qi` or `k`).
    #[error("the JWK holds private key material")]
    PrivateMaterial,
}

fn member<'a>(obj: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, JwkError> {
    obj.get(name)
        .and_then(Value::as_str)
        .ok_or(JwkError::MissingMember(name))
}

fn b64_member(obj: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, JwkError> {
    b64::decode(member(obj, name)?).map_err(|_| JwkError::BadEncoding(name))
}

fn strip_leading_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}

fn bit_len(big_endian: &[u8]) -> usize {
    let trimmed = strip_leading_zeros(big_endian);
    match trimmed.first() {
        None => 0,
        Some(first) => trimmed.len() * 8 - first.leading_zeros() as usize,
    }
}

impl Jwk {
    /// Parses and checks a public JWK; private members (`d`, `p`, …) are refused.
    pub fn from_value(value: &Value) -> Result<Self, JwkError> {
        let obj = value.as_object().ok_or(JwkError::NotAnObject)?;
        if ["d", "p", "q", "dp", "dq", "qi", "k"]
            .iter()
            .any(|m| obj.contains_key(*m))
        {
            return Err(JwkError::PrivateMaterial);
        }
        match member(obj, "kty")? {
            "EC" => {
                let crv = match member(obj, "crv")? {
                    "P-256" => EcCurve::P256,
                    "P-384" => EcCurve::P384,
                    other => return Err(JwkError::UnsupportedCurve(other.to_owned())),
                };
                let x = b64_member(obj, "x")?;
                let y = b64_member(obj, "y")?;
                if x.len() != crv.coordinate_len() {
                    return Err(JwkError::BadCoordinate("x"));
                }
                if y.len() != crv.coordinate_len() {
                    return Err(JwkError::BadCoordinate("y"));
                }
                Ok(Self::Ec { crv, x, y })
            }
            "RSA" => {
                let n = strip_leading_zeros(&b64_member(obj, "n")?);
                let e = strip_leading_zeros(&b64_member(obj, "e")?);
                let bits = bit_len(&n);
                if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                    return Err(JwkError::RsaSize(bits));
                }
                // Only odd exponents in 3..2^32 are usable (aws-lc refuses others anyway).
                if e.is_empty() || e.len() > 4 || e.last().is_some_and(|b| b % 2 == 0) || e == [1] {
                    return Err(JwkError::RsaExponent);
                }
                Ok(Self::Rsa { n, e })
            }
            "OKP" => match member(obj, "crv")? {
                "Ed25519" => {
                    let x = b64_member(obj, "x")?;
                    if x.len() != 32 {
                        return Err(JwkError::BadCoordinate("x"));
                    }
                    Ok(Self::Ed25519 { x })
                }
                other => Err(JwkError::UnsupportedCurve(other.to_owned())),
            },
            other => Err(JwkError::UnsupportedKeyType(other.to_owned())),
        }
    }

    /// The JWK as a JSON object holding only the required public members.
    pub fn to_value(&self) -> Value {
        match self {
            Self::Ec { crv, x, y } => json!({
                "crv": crv.name(), "kty": "EC", "x": b64::encode(x), "y": b64::encode(y)
            }),
            Self::Rsa { n, e } => json!({"e": b64::encode(e), "kty": "RSA", "n": b64::encode(n)}),
            Self::Ed25519 { x } => json!({"crv": "Ed25519", "kty": "OKP", "x": b64::encode(x)}),
        }
    }

    /// The RFC 7638 thumbprint input: required members in lexicographic order, no spaces.
    fn canonical_json(&self) -> String {
        match self {
            Self::Ec { crv, x, y } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                crv.name(),
                b64::encode(x),
                b64::encode(y)
            ),
            Self::Rsa { n, e } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                b64::encode(e),
                b64::encode(n)
            ),
            Self::Ed25519 { x } => {
                format!(
                    r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                    b64::encode(x)
                )
            }
        }
    }

    /// RFC 7638 SHA-256 thumbprint, base64url.
    pub fn thumbprint(&self) -> String {
        b64::encode(digest::digest(
            &digest::SHA256,
            self.canonical_json().as_bytes(),
        ))
    }

    /// The JWS algorithm this key signs with (RSA keys: RS256).
    pub fn algorithm(&self) -> JwsAlgorithm {
        match self {
            Self::Ec {
                crv: EcCurve::P256, ..
            } => JwsAlgorithm::Es256,
            Self::Ec {
                crv: EcCurve::P384, ..
            } => JwsAlgorithm::Es384,
            Self::Rsa { .. } => JwsAlgorithm::Rs256,
            Self::Ed25519 { .. } => JwsAlgorithm::EdDsa,
        }
    }

    /// A short description such as `ECDSA P-256` or `RSA 2048`, for messages and policy.
    pub fn describe(&self) -> String {
        match self {
            Self::Ec { crv, .. } => format!("ECDSA {}", crv.name()),
            Self::Rsa { n, .. } => format!("RSA {}", bit_len(n)),
            Self::Ed25519 { .. } => "Ed25519".to_owned(),
        }
    }

    /// Verifies `signature` over `message` with algorithm `alg`, which must fit the key.
    pub fn verify(&self, alg: JwsAlgorithm, message: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
        self.check_algorithm(alg)?;
        let ok = match self {
            Self::Ec { crv, x, y } => {
                UnparsedPublicKey::new(ec_algorithm(*crv), ec_point(x, y)).verify(message, sig)
            }
            Self::Rsa { n, e } => rsa_verify(n, e, message, sig),
            Self::Ed25519 { x } => {
                UnparsedPublicKey::new(&signature::ED25519, x).verify(message, sig)
            }
        };
        ok.map_err(|_| VerifyError::BadSignature)
    }

    /// `alg` is the algorithm of this key's type.
    fn check_algorithm(&self, alg: JwsAlgorithm) -> Result<(), VerifyError> {
        if alg == self.algorithm() {
            Ok(())
        } else {
            Err(VerifyError::AlgorithmMismatch {
                alg,
                key: self.describe(),
            })
        }
    }
}

fn ec_algorithm(crv: EcCurve) -> &'static signature::EcdsaVerificationAlgorithm {
    match crv {
        EcCurve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
        EcCurve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
    }
}

/// The uncompressed SEC1 point `04 || x || y`.
fn ec_point(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut point = Vec::with_capacity(1 + x.len() + y.len());
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    point
}

fn rsa_verify(n: &[u8], e: &[u8], message: &[u8], sig: &[u8]) -> Result<(), Unspecified> {
    RsaPublicKeyComponents { n, e }.verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
}

/// A [`Jwk`] made ready to verify many signatures: EC and Ed25519 keys are parsed once
/// (point decoding and the on-curve check) instead of on every [`Jwk::verify`]. It
/// accepts exactly the signatures [`Jwk::verify`] accepts with the same key.
pub struct VerifyingKey {
    jwk: Jwk,
    /// `None` for RSA keys (verified from their components) and for EC or Ed25519 keys
    /// that do not parse (which verify nothing, as with [`Jwk::verify`]).
    parsed: Option<ParsedPublicKey>,
}

impl VerifyingKey {
    /// Prepares `jwk` for verification.
    pub fn new(jwk: &Jwk) -> Self {
        let parsed = match jwk {
            Jwk::Ec { crv, x, y } => ParsedPublicKey::new(ec_algorithm(*crv), ec_point(x, y)).ok(),
            Jwk::Ed25519 { x } => ParsedPublicKey::new(&signature::ED25519, x).ok(),
            Jwk::Rsa { .. } => None,
        };
        Self {
            jwk: jwk.clone(),
            parsed,
        }
    }

    /// The key this verifies with.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// As [`Jwk::verify`].
    pub fn verify(&self, alg: JwsAlgorithm, message: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
        self.jwk.check_algorithm(alg)?;
        let ok = match (&self.jwk, &self.parsed) {
            (Jwk::Rsa { n, e }, _) => rsa_verify(n, e, message, sig),
            (_, Some(parsed)) => parsed.verify_sig(message, sig),
            (_, None) => Err(Unspecified),
        };
        ok.map_err(|_| VerifyError::BadSignature)
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("jwk", &self.jwk)
            .field("parsed", &self.parsed.is_some())
            .finish()
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// `alg` is not the algorithm of the key's type.
    #[error("algorithm {alg} does not match the {key} key")]
    AlgorithmMismatch {
        /// The algorithm of the signature.
        alg: JwsAlgorithm,
        /// The key, as [`Jwk::describe`] puts it.
        key: String,
    },
    /// The signature does not verify over the message with the key.
    #[error("the signature does not verify")]
    BadSignature,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1: the example RSA key and its thumbprint.
    #[test]
    fn rfc7638_thumbprint_example() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let key = Jwk::from_value(&jwk).unwrap();
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert_eq!(key.describe(), "RSA 2048");
    }

    #[test]
    fn refuses_bad_keys() {
        assert_eq!(
            Jwk::from_value(&json!({"kty": "oct", "k": "abc"})),
            Err(JwkError::PrivateMaterial)
        );
        assert_eq!(
            Jwk::from_value(&json!({"kty": "EC", "crv": "P-521", "x": "", "y": ""})),
            Err(JwkError::UnsupportedCurve("P-521".into()))
        );
        assert_eq!(
            Jwk::from_value(&json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"})),
            Err(JwkError::BadCoordinate("x"))
        );
        let small = b64::encode([0xc5u8; 128]);
        assert_eq!(
            Jwk::from_value(&json!({"kty": "RSA", "n": small, "e": "AQAB"})),
            Err(JwkError::RsaSize(1024))
        );
        assert!(matches!(
            Jwk::from_value(&json!([1])),
            Err(JwkError::NotAnObject)
        ));
    }
}
