//! JWS in ACME's shape (RFC 8555 §6.2, RFC 7515): flattened JSON serialization, one
//! signature, a protected header with `alg`, `nonce`, `url` and exactly one of `jwk`/`kid`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::b64;
use crate::jwk::{Jwk, JwkError, VerifyingKey};

/// Signature algorithms ACME accounts use; HS256 only for External Account Binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlgorithm {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// Ed25519.
    EdDsa,
    /// HMAC-SHA256: valid only inside an External Account Binding.
    Hs256,
}

impl JwsAlgorithm {
    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
            Self::Hs256 => "HS256",
        }
    }

    /// Parses an `alg` value; unknown names (and `none`) yield `None`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Self::Es256),
            "ES384" => Some(Self::Es384),
            "RS256" => Some(Self::Rs256),
            "EdDSA" => Some(Self::EdDsa),
            "HS256" => Some(Self::Hs256),
            _ => None,
        }
    }

    /// Whether this is a MAC algorithm (never acceptable for an account signature).
    pub fn is_mac(self) -> bool {
        matches!(self, Self::Hs256)
    }
}

impl std::fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The flattened JSON serialization (RFC 7515 §7.2.2) with no unprotected header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlattenedJws {
    /// base64url of the protected header's JSON.
    pub protected: String,
    /// base64url of the payload; empty for POST-as-GET.
    pub payload: String,
    /// base64url of the signature.
    pub signature: String,
}

/// Who signed: a full key (newAccount, revocation by certificate key) or an account URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// The `jwk` header: the signer's public key.
    Jwk(Jwk),
    /// The `kid` header: the account URL.
    Kid(String),
}

/// The protected header of an ACME request, checked for shape (not yet for meaning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedHeader {
    /// The `alg` header.
    pub alg: JwsAlgorithm,
    /// The `jwk` or `kid` header.
    pub signer: Signer,
    /// Absent only in the inner JWS of a key change or EAB.
    pub nonce: Option<String>,
    /// The `url` header: the URL the request is sent to.
    pub url: String,
}

/// Why a JWS was refused. Each maps to one ACME problem type in the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// The body does not parse as one; the JSON parser's message.
    #[error("request body is not a flattened JWS: {0}")]
    NotFlattenedJws(String),
    /// A part (`protected`, `payload` or `signature`) is not valid base64url.
    #[error("{0} is not valid base64url")]
    BadEncoding(&'static str),
    /// The protected header does not decode to a JSON object.
    #[error("protected header is not a JSON object")]
    HeaderNotObject,
    /// A required header (named) is absent or has the wrong JSON type.
    #[error("protected header lacks {0:?}")]
    MissingHeader(&'static str),
    /// A header ACME does not allow (`b64`, `crit`, `x5c`, `x5u`, `jku`).
    #[error("protected header {0:?} is not allowed in ACME")]
    ForbiddenHeader(String),
    /// An `alg` that is unknown or not acceptable here.
    #[error("algorithm {0:?} is not supported (use ES256, ES384, RS256 or EdDSA)")]
    UnsupportedAlgorithm(String),
    /// Both or neither of `jwk` and `kid`.
    #[error("protected header must hold exactly one of \"jwk\" and \"kid\"")]
    JwkXorKid,
    /// The `jwk` header is not an acceptable public key.
    #[error("invalid JWK: {0}")]
    BadJwk(#[from] JwkError),
    /// The signature does not verify, or `alg` does not fit the key.
    #[error("{0}")]
    Signature(#[from] crate::jwk::VerifyError),
}

/// A parsed (not yet verified) JWS.
#[derive(Debug, Clone)]
pub struct ParsedJws {
    /// The checked protected header.
    pub header: ProtectedHeader,
    /// Decoded payload; empty for POST-as-GET.
    pub payload: Vec<u8>,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

impl ParsedJws {
    /// Parses a request body as a flattened JWS and checks its protected header's shape.
    pub fn parse(body: &[u8]) -> Result<Self, JwsError> {
        let jws: FlattenedJws =
            serde_json::from_slice(body).map_err(|e| JwsError::NotFlattenedJws(e.to_string()))?;
        Self::from_flattened(&jws)
    }

    /// Parses an already-deserialized flattened JWS (e.g. the inner JWS of a key change).
    pub fn from_flattened(jws: &FlattenedJws) -> Result<Self, JwsError> {
        let header_bytes =
            b64::decode(&jws.protected).map_err(|_| JwsError::BadEncoding("protected"))?;
        let payload = b64::decode(&jws.payload).map_err(|_| JwsError::BadEncoding("payload"))?;
        let signature =
            b64::decode(&jws.signature).map_err(|_| JwsError::BadEncoding("signature"))?;
        let header: Map<String, Value> =
            serde_json::from_slice(&header_bytes).map_err(|_| JwsError::HeaderNotObject)?;
        let header = parse_header(&header)?;
        let mut signing_input = Vec::with_capacity(jws.protected.len() + 1 + jws.payload.len());
        signing_input.extend_from_slice(jws.protected.as_bytes());
        signing_input.push(b'.');
        signing_input.extend_from_slice(jws.payload.as_bytes());
        Ok(Self {
            header,
            payload,
            signing_input,
            signature,
        })
    }

    /// Verifies the signature with `key` (the header's `jwk`, or the account's key for `kid`).
    pub fn verify(&self, key: &Jwk) -> Result<(), JwsError> {
        key.verify(self.header.alg, &self.signing_input, &self.signature)?;
        Ok(())
    }

    /// As [`ParsedJws::verify`], with a key parsed beforehand (e.g. kept for an account).
    pub fn verify_with(&self, key: &VerifyingKey) -> Result<(), JwsError> {
        key.verify(self.header.alg, &self.signing_input, &self.signature)?;
        Ok(())
    }

    /// Verifies an HS256 MAC (External Account Binding) with `mac_key`.
    pub fn verify_hmac(&self, mac_key: &[u8]) -> Result<(), JwsError> {
        use aws_lc_rs::hmac;
        if self.header.alg != JwsAlgorithm::Hs256 {
            return Err(JwsError::UnsupportedAlgorithm(
                self.header.alg.name().into(),
            ));
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, mac_key);
        hmac::verify(&key, &self.signing_input, &self.signature)
            .map_err(|_| JwsError::Signature(crate::jwk::VerifyError::BadSignature))
    }

    /// Whether this is a POST-as-GET (empty payload).
    pub fn is_post_as_get(&self) -> bool {
        self.payload.is_empty()
    }
}

fn parse_header(h: &Map<String, Value>) -> Result<ProtectedHeader, JwsError> {
    for forbidden in ["b64", "crit", "x5c", "x5u", "jku"] {
        if h.contains_key(forbidden) {
            return Err(JwsError::ForbiddenHeader(forbidden.to_owned()));
        }
    }
    let alg_name = h
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwsError::MissingHeader("alg"))?;
    let alg = JwsAlgorithm::parse(alg_name)
        .ok_or_else(|| JwsError::UnsupportedAlgorithm(alg_name.to_owned()))?;
    let signer = match (h.get("jwk"), h.get("kid")) {
        (Some(jwk), None) => Signer::Jwk(Jwk::from_value(jwk)?),
        (None, Some(Value::String(kid))) => Signer::Kid(kid.clone()),
        (None, Some(_)) => return Err(JwsError::MissingHeader("kid")),
        _ => return Err(JwsError::JwkXorKid),
    };
    let nonce = match h.get("nonce") {
        None => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => return Err(JwsError::MissingHeader("nonce")),
    };
    let url = h
        .get("url")
        .and_then(Value::as_str)
        .ok_or(JwsError::MissingHeader("url"))?
        .to_owned();
    Ok(ProtectedHeader {
        alg,
        signer,
        nonce,
        url,
    })
}

/// Builds and signs a flattened JWS. `nonce` is `None` for inner JWS objects.
pub fn sign(
    key: &crate::keys::AccountKey,
    signer: &Signer,
    nonce: Option<&str>,
    url: &str,
    payload: &[u8],
) -> Result<FlattenedJws, crate::keys::KeyError> {
    let mut header = Map::new();
    header.insert("alg".into(), key.algorithm().name().into());
    match signer {
        Signer::Jwk(jwk) => header.insert("jwk".into(), jwk.to_value()),
        Signer::Kid(kid) => header.insert("kid".into(), kid.clone().into()),
    };
    if let Some(nonce) = nonce {
        header.insert("nonce".into(), nonce.into());
    }
    header.insert("url".into(), url.into());
    let protected = b64::encode(serde_json::to_vec(&header).expect("a JSON map serializes"));
    let payload = b64::encode(payload);
    let signature = key.sign(format!("{protected}.{payload}").as_bytes())?;
    Ok(FlattenedJws {
        protected,
        payload,
        signature: b64::encode(signature),
    })
}

/// Builds the External Account Binding JWS (RFC 8555 §7.3.4): HS256 over the account JWK.
pub fn sign_eab(mac_key: &[u8], kid: &str, url: &str, account_jwk: &Jwk) -> FlattenedJws {
    use aws_lc_rs::hmac;
    let header = serde_json::json!({"alg": "HS256", "kid": kid, "url": url});
    let protected = b64::encode(header.to_string());
    let payload = b64::encode(account_jwk.to_value().to_string());
    let key = hmac::Key::new(hmac::HMAC_SHA256, mac_key);
    let tag = hmac::sign(&key, format!("{protected}.{payload}").as_bytes());
    FlattenedJws {
        protected,
        payload,
        signature: b64::encode(tag.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{AccountKey, KeyType};
    use serde_json::json;

    fn flattened(header: Value, payload: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "protected": b64::encode(header.to_string()),
            "payload": b64::encode(payload),
            "signature": b64::encode([1u8, 2, 3]),
        }))
        .unwrap()
    }

    #[test]
    fn sign_then_verify_every_algorithm() {
        for kt in [
            KeyType::EcP256,
            KeyType::EcP384,
            KeyType::Rsa2048,
            KeyType::Ed25519,
        ] {
            let key = AccountKey::generate(kt).unwrap();
            let jws = sign(
                &key,
                &Signer::Jwk(key.jwk()),
                Some("n1"),
                "https://ca/x",
                b"{}",
            )
            .unwrap();
            let parsed = ParsedJws::from_flattened(&jws).unwrap();
            assert_eq!(parsed.header.alg, key.algorithm());
            assert_eq!(parsed.header.nonce.as_deref(), Some("n1"));
            parsed.verify(&key.jwk()).unwrap();
            parsed.verify_with(&VerifyingKey::new(&key.jwk())).unwrap();
            // Another key of the same type does not verify it, parsed beforehand or not.
            let other = AccountKey::generate(kt).unwrap();
            assert!(parsed.verify(&other.jwk()).is_err(), "{kt:?}");
            assert_eq!(
                parsed.verify_with(&VerifyingKey::new(&other.jwk())),
                parsed.verify(&other.jwk()),
                "{kt:?}"
            );
        }
    }

    #[test]
    fn a_parsed_key_refuses_what_the_jwk_refuses() {
        let p256 = AccountKey::generate(KeyType::EcP256).unwrap();
        let jws = sign(&p256, &Signer::Kid("k".into()), Some("n"), "u", b"{}").unwrap();
        let parsed = ParsedJws::from_flattened(&jws).unwrap();
        // A key of another type: the algorithm does not fit.
        let ed = AccountKey::generate(KeyType::Ed25519).unwrap().jwk();
        let refused = parsed.verify(&ed).unwrap_err();
        assert!(matches!(
            refused,
            JwsError::Signature(crate::jwk::VerifyError::AlgorithmMismatch { .. })
        ));
        assert_eq!(parsed.verify_with(&VerifyingKey::new(&ed)), Err(refused));
        // A point that is not on the curve (right length, so the JWK itself parses).
        let off_curve = Jwk::Ec {
            crv: crate::jwk::EcCurve::P256,
            x: vec![1; 32],
            y: vec![2; 32],
        };
        let refused = parsed.verify(&off_curve).unwrap_err();
        assert!(matches!(
            refused,
            JwsError::Signature(crate::jwk::VerifyError::BadSignature)
        ));
        assert_eq!(
            parsed.verify_with(&VerifyingKey::new(&off_curve)),
            Err(refused)
        );
    }

    #[test]
    fn tampered_payload_fails() {
        let key = AccountKey::generate(KeyType::EcP256).unwrap();
        let mut jws = sign(&key, &Signer::Kid("k".into()), Some("n"), "u", b"{}").unwrap();
        jws.payload = b64::encode(b"{\"a\":1}");
        let parsed = ParsedJws::from_flattened(&jws).unwrap();
        assert!(matches!(
            parsed.verify(&key.jwk()),
            Err(JwsError::Signature(_))
        ));
    }

    #[test]
    fn header_shape_is_checked() {
        let jwk = AccountKey::generate(KeyType::EcP256)
            .unwrap()
            .jwk()
            .to_value();
        let cases = [
            (
                json!({"alg": "none", "kid": "k", "nonce": "n", "url": "u"}),
                "UnsupportedAlgorithm",
            ),
            (
                json!({"alg": "ES256", "jwk": jwk, "kid": "k", "nonce": "n", "url": "u"}),
                "JwkXorKid",
            ),
            (
                json!({"alg": "ES256", "nonce": "n", "url": "u"}),
                "JwkXorKid",
            ),
            (
                json!({"alg": "ES256", "kid": "k", "nonce": "n"}),
                "MissingHeader",
            ),
            (
                json!({"alg": "ES256", "kid": "k", "nonce": "n", "url": "u", "b64": false}),
                "ForbiddenHeader",
            ),
            (
                json!({"alg": "ES256", "kid": "k", "nonce": "n", "url": "u", "crit": ["x"]}),
                "ForbiddenHeader",
            ),
            (
                json!({"kid": "k", "nonce": "n", "url": "u"}),
                "MissingHeader",
            ),
        ];
        for (header, want) in cases {
            let err = ParsedJws::parse(&flattened(header.clone(), "")).unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{header}: {err:?}");
        }
        assert!(matches!(
            ParsedJws::parse(
                b"{\"protected\":\"\",\"payload\":\"\",\"signature\":\"\",\"header\":{}}"
            ),
            Err(JwsError::NotFlattenedJws(_))
        ));
    }

    #[test]
    fn eab_mac_round_trip() {
        let account = AccountKey::generate(KeyType::EcP256).unwrap().jwk();
        let jws = sign_eab(b"secret-mac-key", "kid-1", "https://ca/new-acct", &account);
        let parsed = ParsedJws::from_flattened(&jws).unwrap();
        parsed.verify_hmac(b"secret-mac-key").unwrap();
        assert!(parsed.verify_hmac(b"other").is_err());
        assert_eq!(
            Jwk::from_value(&serde_json::from_slice(&parsed.payload).unwrap()).unwrap(),
            account
        );
    }
}
