//! The `Issuer` seam: who signs for the CA. Everything the CA signs with the issuing
//! key — end-entity certificates, CRLs, the delegated OCSP responder's certificate — goes
//! through [`Issuer::sign`], so the key may live anywhere: in a file or a PKCS#11 token
//! ([`LocalIssuer`] over a [`CaKey`]), or an upstream CA. Nothing here assumes the
//! private key's bytes are at hand.

use std::sync::Arc;

use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey};
use rustls::pki_types::CertificateDer;

use super::keys::CaKey;

/// A signature the issuer could not make (a token gone away, an upstream refusing).
#[derive(Debug, thiserror::Error)]
#[error("the issuer could not sign: {0}")]
pub struct IssuerError(pub String);

/// The issuing CA: its certificate, and a key that signs as it.
pub trait Issuer: Send + Sync {
    /// The issuer's certificate, DER. Its subject is the issuer name of what it signs,
    /// its key identifier their authorityKeyIdentifier.
    fn certificate_der(&self) -> &[u8];

    /// What follows a leaf it signed in the chain clients get: its certificate and any
    /// further intermediates, PEM.
    fn chain_pem(&self) -> &str;

    /// The issuer's public key: the subjectPublicKey bits of its certificate (an
    /// uncompressed EC point, or a DER RSAPublicKey).
    fn public_key(&self) -> &[u8];

    /// The algorithm of [`Issuer::sign`]'s signatures (written into what it signs).
    fn signature_algorithm(&self) -> &'static SignatureAlgorithm;

    /// Signs `tbs`, the DER of a TBSCertificate or TBSCertList, with the issuer's key.
    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, IssuerError>;
}

/// An issuer whose key the CA holds: a PEM file or a PKCS#11 token object.
pub struct LocalIssuer {
    certificate_der: Vec<u8>,
    chain_pem: String,
    key: Arc<dyn CaKey>,
}

impl LocalIssuer {
    /// The issuer with certificate `cert_der` (PEM `cert_pem`, as the chain after a
    /// leaf) and its `key`.
    pub fn new(cert_der: Vec<u8>, cert_pem: &str, key: Arc<dyn CaKey>) -> Self {
        Self {
            certificate_der: cert_der,
            chain_pem: cert_pem.to_owned(),
            key,
        }
    }
}

impl Issuer for LocalIssuer {
    fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    fn public_key(&self) -> &[u8] {
        self.key.public_key()
    }

    fn signature_algorithm(&self) -> &'static SignatureAlgorithm {
        self.key.algorithm()
    }

    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, IssuerError> {
        self.key.sign(tbs)
    }
}

/// An [`Issuer`] as rcgen's signing key.
pub struct IssuerKey(Arc<dyn Issuer>);

impl PublicKeyData for IssuerKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_key()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.0.signature_algorithm()
    }
}

impl SigningKey for IssuerKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg).map_err(|e| {
            // rcgen's error has no room for the cause: it goes to the log.
            tracing::error!(error = %e, "the issuer failed to sign");
            rcgen::Error::RemoteKeyError
        })
    }
}

/// `issuer` as rcgen's issuer (its name, key identifier and key usages read from its
/// certificate), for `signed_by`.
pub fn rcgen_issuer(
    issuer: Arc<dyn Issuer>,
) -> Result<rcgen::Issuer<'static, IssuerKey>, rcgen::Error> {
    let der = CertificateDer::from(issuer.certificate_der().to_vec());
    rcgen::Issuer::from_ca_cert_der(&der, IssuerKey(issuer))
}
