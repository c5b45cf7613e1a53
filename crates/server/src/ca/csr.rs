//! PKCS#10 CSR checks for finalize (RFC 8555 §7.4): signature, names, key policy.

use std::collections::BTreeSet;
use std::net::IpAddr;

use certwright_proto::jwk::{EcCurve, Jwk};
use certwright_proto::types::Identifier;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// Which CSR keys the CA accepts.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    /// Smallest RSA key accepted, in bits.
    pub rsa_min_bits: usize,
    /// Largest RSA key accepted, in bits.
    pub rsa_max_bits: usize,
    /// Accept ECDSA P-256 keys.
    pub allow_p256: bool,
    /// Accept ECDSA P-384 keys.
    pub allow_p384: bool,
    /// Accept Ed25519 keys.
    pub allow_ed25519: bool,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            rsa_min_bits: 2048,
            rsa_max_bits: 4096,
            allow_p256: true,
            allow_p384: true,
            allow_ed25519: false,
        }
    }
}

/// A CSR that passed every check.
#[derive(Debug, Clone)]
pub struct CheckedCsr {
    /// DER SubjectPublicKeyInfo of the requested key.
    pub spki_der: Vec<u8>,
    /// The requested key as a JWK (to compare with the account key).
    pub key: Jwk,
    /// The subject common name, if the CSR had one.
    pub common_name: Option<String>,
    /// Every requested identifier (SANs plus CN), normalized and sorted.
    pub identifiers: BTreeSet<Identifier>,
}

/// Why a CSR is refused, in words for the client (the RA answers it as `badCSR`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CsrError(pub String);

fn bad(detail: impl Into<String>) -> CsrError {
    CsrError(detail.into())
}

/// Parses and verifies a DER CSR and checks its key against `policy`.
pub fn parse_csr(der: &[u8], policy: &KeyPolicy) -> Result<CheckedCsr, CsrError> {
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| bad(format!("the CSR is not a valid PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(bad("the CSR has trailing bytes after its DER encoding"));
    }
    let info = &csr.certification_request_info;
    let key = public_key_jwk(&info.subject_pki, policy)?;
    csr.verify_signature()
        .map_err(|_| bad("the CSR's signature does not verify with its own public key"))?;

    let mut identifiers = BTreeSet::new();
    let mut common_name = None;
    for cn in info.subject.iter_common_name() {
        let cn = cn
            .as_str()
            .map_err(|_| bad("the CSR's common name is not a string"))?;
        if common_name.is_some() {
            return Err(bad("the CSR has more than one common name"));
        }
        common_name = Some(cn.to_owned());
        identifiers.insert(identifier_from_text(cn)?);
    }
    if let Some(extensions) = csr.requested_extensions() {
        for ext in extensions {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    identifiers.insert(match name {
                        GeneralName::DNSName(d) => identifier_from_text(d)?,
                        GeneralName::IPAddress(bytes) => Identifier::ip(ip_from_bytes(bytes)?.to_string()),
                        other => {
                            return Err(bad(format!(
                                "the CSR asks for a subjectAltName of a type the CA does not issue: {other}"
                            )))
                        }
                    });
                }
            }
        }
    }
    if identifiers.is_empty() {
        return Err(bad(
            "the CSR names no identifier (no subjectAltName and no common name)",
        ));
    }
    Ok(CheckedCsr {
        spki_der: info.subject_pki.raw.to_vec(),
        key,
        common_name,
        identifiers,
    })
}

fn identifier_from_text(text: &str) -> Result<Identifier, CsrError> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Identifier::ip(ip.to_string()));
    }
    Ok(Identifier::dns(text.to_ascii_lowercase()))
}

fn ip_from_bytes(bytes: &[u8]) -> Result<IpAddr, CsrError> {
    match bytes.len() {
        4 => Ok(IpAddr::from(
            <[u8; 4]>::try_from(bytes).expect("length checked"),
        )),
        16 => Ok(IpAddr::from(
            <[u8; 16]>::try_from(bytes).expect("length checked"),
        )),
        n => Err(bad(format!("the CSR has an IP address SAN of {n} bytes"))),
    }
}

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let i = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    b[i..].to_vec()
}

/// The JWK of a SubjectPublicKeyInfo, if `policy` accepts the key.
pub fn public_key_jwk(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
    policy: &KeyPolicy,
) -> Result<Jwk, CsrError> {
    let refuse = CsrError;
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_PKCS1_RSAENCRYPTION {
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err(refuse("the CSR's RSA public key does not parse".into()));
        };
        let bits = rsa.key_size();
        if bits < policy.rsa_min_bits || bits > policy.rsa_max_bits {
            return Err(refuse(format!(
                "RSA keys must have {} to {} bits; this one has {bits}",
                policy.rsa_min_bits, policy.rsa_max_bits
            )));
        }
        return Ok(Jwk::Rsa {
            n: strip_zeros(rsa.modulus),
            e: strip_zeros(rsa.exponent),
        });
    }
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve_oid = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        let curve = match curve_oid {
            Some(oid) if oid == OID_EC_P256 && policy.allow_p256 => EcCurve::P256,
            Some(oid) if oid == OID_NIST_EC_P384 && policy.allow_p384 => EcCurve::P384,
            _ => return Err(refuse("ECDSA keys must be on curve P-256 or P-384".into())),
        };
        let point = spki.subject_public_key.data.as_ref();
        let n = curve.coordinate_len();
        if point.len() != 1 + 2 * n || point[0] != 0x04 {
            return Err(refuse(
                "the CSR's EC public key is not an uncompressed point".into(),
            ));
        }
        return Ok(Jwk::Ec {
            crv: curve,
            x: point[1..1 + n].to_vec(),
            y: point[1 + n..].to_vec(),
        });
    }
    if *alg == OID_SIG_ED25519 {
        if !policy.allow_ed25519 {
            return Err(refuse("this CA does not issue for Ed25519 keys".into()));
        }
        return Ok(Jwk::Ed25519 {
            x: spki.subject_public_key.data.to_vec(),
        });
    }
    Err(refuse(format!(
        "unsupported public key algorithm {alg}; use RSA 2048-4096 or ECDSA P-256/P-384"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn csr(names: &[&str], key: &KeyPair) -> Vec<u8> {
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.serialize_request(key).unwrap().der().to_vec()
    }

    #[test]
    fn accepts_a_good_csr() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let c = parse_csr(
            &csr(&["b.example", "a.example", "192.0.2.1"], &key),
            &KeyPolicy::default(),
        )
        .unwrap();
        // rcgen's default CN "rcgen self signed cert" is not a name: it shows up as an identifier.
        assert!(c.identifiers.contains(&Identifier::dns("a.example")));
        assert!(c.identifiers.contains(&Identifier::ip("192.0.2.1")));
        assert!(matches!(
            c.key,
            Jwk::Ec {
                crv: EcCurve::P256,
                ..
            }
        ));
    }

    #[test]
    fn refuses_garbage_tampering_and_weak_keys() {
        let policy = KeyPolicy::default();
        assert!(parse_csr(b"junk", &policy)
            .unwrap_err()
            .0
            .contains("not a valid PKCS#10 request"));
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut der = csr(&["a.example"], &key);
        let i = der.windows(9).position(|w| w == b"a.example").unwrap();
        der[i] = b'b';
        let err = parse_csr(&der, &policy).unwrap_err();
        assert!(err.0.contains("signature"), "{err}");
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert!(parse_csr(&csr(&["a.example"], &ed), &policy)
            .unwrap_err()
            .0
            .contains("Ed25519"));
        let allow = KeyPolicy {
            allow_ed25519: true,
            ..KeyPolicy::default()
        };
        assert!(parse_csr(&csr(&["a.example"], &ed), &allow).is_ok());
    }
}
