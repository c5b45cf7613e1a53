//! TLS towards the CA's agent listener: the one unverified fetch of the agent CA (checked
//! against the token's pin), and the clients that trust only that CA.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use certwright_va::tlsalpn01::AnyCertificate;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The user agent the agent sends.
pub const USER_AGENT: &str = concat!("certwright-va-agent/", env!("CARGO_PKG_VERSION"));

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificates in `pem`, in order.
pub fn certs_from_pem(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        bail!("no certificate in the PEM text");
    }
    Ok(certs)
}

/// Checks that `pem` holds exactly one certificate whose DER has the SHA-256 `pin` (from
/// the enrolment token), and returns that certificate.
pub fn check_pin(pem: &str, pin: &[u8; 32]) -> anyhow::Result<CertificateDer<'static>> {
    let mut certs = certs_from_pem(pem).context("the server's agent CA")?;
    if certs.len() != 1 {
        bail!(
            "the server sent {} certificates as its agent CA; expected one",
            certs.len()
        );
    }
    let cert = certs.remove(0);
    let got = certwright_va::remote::sha256(&cert);
    if &got != pin {
        bail!(
            "the server's agent CA does not match the enrolment token (its SHA-256 is {}, the token pins {}): \
             this is not the CA that issued the token, or the connection is intercepted; nothing was written",
            certwright_proto::b64::encode(got),
            certwright_proto::b64::encode(pin)
        );
    }
    Ok(cert)
}

fn build(config: rustls::ClientConfig, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
        .no_proxy()
        .build()
        .context("building the HTTP client")
}

fn with_alpn(mut config: rustls::ClientConfig) -> rustls::ClientConfig {
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// The client for the one unverified request (`GET` the agent CA).
pub fn unverified_client() -> anyhow::Result<reqwest::Client> {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate::new(provider)))
        .with_no_client_auth();
    build(with_alpn(config), Duration::from_secs(30))
}

/// The agent's own key and certificate chain.
pub struct Identity {
    /// The client certificate (and any chain the CA sent).
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Reads a PEM certificate chain and a PEM private key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> anyhow::Result<Self> {
        Ok(Self {
            chain: certs_from_pem(cert_pem).context("the agent certificate")?,
            key: PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|e| anyhow!("the agent key is not a PEM private key: {e}"))?,
        })
    }
}

/// A client trusting only `ca` for the server, presenting `identity` when given;
/// requests time out after `timeout` unless they set their own.
pub fn pinned_client(
    ca: &CertificateDer<'static>,
    identity: Option<Identity>,
    timeout: Duration,
) -> anyhow::Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.clone())
        .context("the agent CA is not a usable trust anchor")?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .context("the agent key does not fit its certificate")?,
        None => builder.with_no_client_auth(),
    };
    build(with_alpn(config), timeout)
}

/// What the agent reads from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity (Unix seconds).
    pub not_before: i64,
    /// End of validity (Unix seconds).
    pub not_after: i64,
    /// The subject, as text.
    pub subject: String,
    /// The SubjectPublicKeyInfo (DER).
    pub spki: Vec<u8>,
}

impl CertInfo {
    /// Reads `der`.
    pub fn parse(der: &[u8]) -> anyhow::Result<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| anyhow!("not an X.509 certificate: {e}"))?;
        let v = cert.validity();
        Ok(Self {
            not_before: v.not_before.timestamp(),
            not_after: v.not_after.timestamp(),
            subject: cert.subject().to_string(),
            spki: cert.public_key().raw.to_vec(),
        })
    }

    /// The first certificate in `pem`.
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        Self::parse(&certs_from_pem(pem)?[0])
    }

    /// When the certificate should be renewed: two thirds into its lifetime.
    pub fn renew_at(&self) -> i64 {
        renew_at(self.not_before, self.not_after)
    }
}

/// Two thirds of the way from `not_before` to `not_after` (Unix seconds).
pub fn renew_at(not_before: i64, not_after: i64) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    not_before + lifetime * 2 / 3
}

/// How long from `now` until renewal is due (zero when it is due already).
pub fn until_renewal(info: &CertInfo, now: i64) -> Duration {
    Duration::from_secs(u64::try_from(info.renew_at() - now).unwrap_or(0))
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// Whether `key_pem`'s public key is the one certified in `info`.
pub fn key_fits(key_pem: &str, info: &CertInfo) -> bool {
    rcgen::KeyPair::from_pem(key_pem)
        .is_ok_and(|k| rcgen::PublicKeyData::subject_public_key_info(&k) == info.spki)
}

/// A new P-256 key and a CSR for it (DER, base64url as the protocol wants). The CA puts
/// the agent's name and segment in the certificate; the CSR only proves the key.
pub fn new_key_and_csr() -> anyhow::Result<(rcgen::KeyPair, String)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "certwright-va-agent");
    let csr = params.serialize_request(&key)?;
    Ok((key, certwright_proto::b64::encode(csr.der())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_two_thirds() {
        assert_eq!(renew_at(0, 90), 60);
        assert_eq!(renew_at(1_000, 1_000 + 90 * 86_400), 1_000 + 60 * 86_400);
        // A certificate that is already expired or broken is due at once.
        assert_eq!(renew_at(100, 50), 100);
        let info = CertInfo {
            not_before: 0,
            not_after: 90,
            subject: String::new(),
            spki: Vec::new(),
        };
        assert_eq!(until_renewal(&info, 0), Duration::from_secs(60));
        assert_eq!(until_renewal(&info, 59), Duration::from_secs(1));
        assert_eq!(until_renewal(&info, 60), Duration::ZERO);
        assert_eq!(until_renewal(&info, 1_000), Duration::ZERO);
    }

    #[test]
    fn the_pin_is_checked() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let ca = rcgen::CertificateParams::new(vec!["ca.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pin = certwright_va::remote::sha256(ca.der());
        assert_eq!(
            check_pin(&ca.pem(), &pin).unwrap().as_ref(),
            ca.der().as_ref()
        );
        let mut wrong = pin;
        wrong[0] ^= 1;
        let err = check_pin(&ca.pem(), &wrong).unwrap_err().to_string();
        assert!(err.contains("does not match the enrolment token"), "{err}");
        let two = format!("{}{}", ca.pem(), ca.pem());
        assert!(check_pin(&two, &pin).is_err());
        assert!(check_pin("not pem", &pin).is_err());
    }

    #[test]
    fn a_new_key_fits_only_its_certificate() {
        let (key, csr) = new_key_and_csr().unwrap();
        assert!(!csr.is_empty());
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let info = CertInfo::parse(cert.der()).unwrap();
        assert!(key_fits(&key.serialize_pem(), &info));
        let (other, _) = new_key_and_csr().unwrap();
        assert!(!key_fits(&other.serialize_pem(), &info));
    }
}
