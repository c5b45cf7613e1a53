//! The agent CA: a dedicated ECDSA P-256 CA, created on first need and kept in the store
//! (its key sealed with the key-encryption key). It issues the agents' client
//! certificates (enrolment, renewal) and, at every start, the agent listener's server
//! certificate. The listener trusts only this CA; the ACME issuers have no part in it.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::store::{Store, StoreError};

/// Years the agent CA certificate is valid.
const CA_YEARS: i64 = 20;
/// Days the listener's server certificate is valid (a new one is made at every start).
const SERVER_CERT_DAYS: i64 = 397;
/// Seconds certificates are back-dated (clock skew between the CA and its agents).
const BACKDATE_SECS: i64 = 300;

/// What can go wrong with the agent CA.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The CSR does not parse, its signature does not verify, or its key is not usable.
    #[error("bad CSR: {0}")]
    BadCsr(String),
    /// Making or signing a certificate failed.
    #[error("agent CA: {0}")]
    Certificate(#[from] rcgen::Error),
    /// Reading or storing the agent CA failed (including a missing or wrong KEK).
    #[error("agent CA store: {0}")]
    Store(#[from] StoreError),
    /// Building the TLS configuration failed.
    #[error("agent listener TLS: {0}")]
    Tls(String),
}

/// A certificate issued to an agent.
#[derive(Debug, Clone)]
pub struct AgentCertificate {
    /// The certificate (DER).
    pub der: Vec<u8>,
    /// The certificate (PEM).
    pub pem: String,
    /// Lower-case hex SHA-256 of the DER (how the store knows the agent).
    pub sha256: String,
    /// Expiry (Unix seconds).
    pub not_after: i64,
}

/// The agent CA, ready to sign.
pub struct AgentCa {
    der: CertificateDer<'static>,
    pem: String,
    issuer: rcgen::Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for AgentCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentCa")
            .field("sha256", &crate::encoding::hex(&self.sha256()))
            .finish_non_exhaustive()
    }
}

fn time_at(unix: i64) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| PkiError::Tls(format!("time out of range: {e}")))
}

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
    b[0] &= 0x7f;
    b[0] |= 0x01;
    SerialNumber::from_slice(&b)
}

/// Lower-case hex SHA-256 of `der`.
pub fn fingerprint(der: &[u8]) -> String {
    crate::encoding::hex(&crate::va::remote::sha256(der))
}

impl AgentCa {
    /// The agent CA from the store, created (and stored, key sealed) when there is none.
    /// The store must have the key-encryption key attached.
    pub async fn load_or_create(store: &Store, now: i64) -> Result<Self, PkiError> {
        let record = match store.agent_ca().await? {
            Some(r) => r,
            None => {
                let (cert, key) = Self::generate(now)?;
                store.create_agent_ca(&cert, &key, now).await?
            }
        };
        let key = store.agent_ca_key(&record)?;
        Self::from_der(record.certificate, &key)
    }

    /// A new CA certificate and its PKCS#8 key.
    fn generate(now: i64) -> Result<(Vec<u8>, Vec<u8>), PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "certwright validation agent CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        params.not_before = time_at(now - BACKDATE_SECS)?;
        params.not_after = time_at(now + CA_YEARS * 365 * 86_400)?;
        let cert = params.self_signed(&key)?;
        Ok((cert.der().to_vec(), key.serialize_der()))
    }

    /// The CA from its certificate (DER) and PKCS#8 key.
    pub fn from_der(certificate: Vec<u8>, pkcs8: &[u8]) -> Result<Self, PkiError> {
        let key = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8),
            &rcgen::PKCS_ECDSA_P256_SHA256,
        )?;
        let der = CertificateDer::from(certificate);
        let issuer = rcgen::Issuer::from_ca_cert_der(&der, key)?;
        let pem = pem_of("CERTIFICATE", &der);
        Ok(Self { der, pem, issuer })
    }

    /// The CA certificate (DER).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The CA certificate (PEM).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// SHA-256 of the CA certificate (the pin in enrolment tokens).
    pub fn sha256(&self) -> [u8; 32] {
        crate::va::remote::sha256(&self.der)
    }

    /// Issues agent `name` of `segment` a client certificate for the key of `csr_der`
    /// (PKCS#10, signature checked; whatever else it asks for is ignored): CN `name`, EKU
    /// clientAuth only, URI SAN `urn:certwright:agent:<segment>:<name>`, valid `days`.
    pub fn issue_agent(
        &self,
        csr_der: &[u8],
        name: &str,
        segment: &str,
        days: u32,
        now: i64,
    ) -> Result<AgentCertificate, PkiError> {
        let csr = CertificateSigningRequestParams::from_der(&csr_der.into())
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        let uri = format!("urn:certwright:agent:{segment}:{name}");
        params.subject_alt_names = vec![SanType::URI(
            uri.try_into()
                .map_err(|e: rcgen::Error| PkiError::BadCsr(e.to_string()))?,
        )];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let not_after = now + i64::from(days) * 86_400;
        params.not_before = time_at(now - BACKDATE_SECS)?;
        params.not_after = time_at(not_after)?;
        let signed = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        }
        .signed_by(&self.issuer)?;
        let der = signed.der().to_vec();
        Ok(AgentCertificate {
            sha256: fingerprint(&der),
            pem: signed.pem(),
            der,
            not_after,
        })
    }

    /// A new server certificate and key for the listener: EKU serverAuth, SANs
    /// `server_names`, `listen`'s address unless it is a wildcard, and `localhost`.
    pub fn server_certificate(
        &self,
        server_names: &[String],
        listen: SocketAddr,
        now: i64,
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), PkiError> {
        let mut names: Vec<String> = server_names.to_vec();
        if !listen.ip().is_unspecified() {
            names.push(listen.ip().to_string());
        }
        names.push("localhost".into());
        names.sort();
        names.dedup();
        let mut params = CertificateParams::new(names)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "certwright agent listener");
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        params.not_before = time_at(now - BACKDATE_SECS)?;
        params.not_after = time_at(now + SERVER_CERT_DAYS * 86_400)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ))
    }

    /// The listener's TLS configuration: a fresh server certificate, and client
    /// certificates verified against this CA alone. A connection without a client
    /// certificate is let through (the CA certificate and enrolment need none; every other
    /// route refuses it).
    pub fn server_tls_config(
        &self,
        server_names: &[String],
        listen: SocketAddr,
        now: i64,
    ) -> Result<rustls::ServerConfig, PkiError> {
        let (cert, key) = self.server_certificate(server_names, listen, now)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.der.clone())
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Tls(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PkiError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert], key)
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// PEM of one DER object.
fn pem_of(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use x509_parser::prelude::*;

    /// A new agent CA (not stored).
    pub(crate) fn test_ca() -> AgentCa {
        let (cert, key) = AgentCa::generate(1_700_000_000).unwrap();
        AgentCa::from_der(cert, &key).unwrap()
    }

    /// A CSR (DER) and its key (PKCS#8 PEM).
    pub(crate) fn csr() -> (Vec<u8>, KeyPair) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = CertificateParams::new(vec!["ignored.test".to_owned()])
            .unwrap()
            .serialize_request(&key)
            .unwrap();
        (csr.der().to_vec(), key)
    }

    #[test]
    fn agent_certificates_are_client_only_and_named() {
        let ca = test_ca();
        let (der, _key) = csr();
        let cert = ca
            .issue_agent(&der, "a1", "lab", 30, 1_700_000_000)
            .unwrap();
        assert_eq!(cert.not_after, 1_700_000_000 + 30 * 86_400);
        let (_, x) = X509Certificate::from_der(&cert.der).unwrap();
        let cn = x.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "a1");
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let san = x.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(
            format!("{:?}", san.general_names),
            "[URI(\"urn:certwright:agent:lab:a1\")]"
        );
        // Signed by the CA.
        let (_, issuer) = X509Certificate::from_der(ca.der()).unwrap();
        x.verify_signature(Some(issuer.public_key())).unwrap();
        assert!(matches!(
            ca.issue_agent(b"garbage", "a1", "lab", 30, 0),
            Err(PkiError::BadCsr(_))
        ));
    }

    #[test]
    fn the_server_certificate_names_the_listener() {
        let ca = test_ca();
        let (cert, _) = ca
            .server_certificate(
                &["ca.lab.test".into()],
                "127.0.0.1:9555".parse().unwrap(),
                1_700_000_000,
            )
            .unwrap();
        let (_, x) = X509Certificate::from_der(&cert).unwrap();
        let san = format!(
            "{:?}",
            x.subject_alternative_name()
                .unwrap()
                .unwrap()
                .value
                .general_names
        );
        for name in ["ca.lab.test", "localhost", "127.0.0.1"] {
            assert!(
                san.contains(name) || san.contains("[127, 0, 0, 1]"),
                "{name}: {san}"
            );
        }
        assert!(x.extended_key_usage().unwrap().unwrap().value.server_auth);
        ca.server_tls_config(&[], "0.0.0.0:1".parse().unwrap(), 1_700_000_000)
            .unwrap();
    }
}
