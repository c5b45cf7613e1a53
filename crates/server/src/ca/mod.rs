//! The certificate authority: issues end-entity certificates from checked CSRs with the
//! intermediate key. Knows nothing of ACME; the RA decides *whether* to issue.

pub mod crl;
pub mod csr;
pub mod hierarchy;
pub mod ocsp;

use std::net::IpAddr;

use certwright_proto::types::{Identifier, IdentifierType};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType, SerialNumber,
};
use time::OffsetDateTime;

pub use csr::{parse_csr, CheckedCsr, KeyPolicy};
pub use hierarchy::{CaKeyType, Hierarchy};

/// Issuance settings common to every profile.
#[derive(Debug, Clone)]
pub struct IssuancePolicy {
    /// How far notBefore is set before the time of issuance (clock skew allowance).
    pub backdate_secs: i64,
    /// The CRL Distribution Point URL put in every certificate.
    pub crl_url: Option<String>,
    /// The OCSP responder URL put in every certificate's Authority Information Access
    /// (None: OCSP is off).
    pub ocsp_url: Option<String>,
    /// The URL of the issuer's certificate (DER) put beside it (caIssuers).
    pub ca_issuers_url: Option<String>,
}

/// A certificate profile: what one kind of certificate looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    /// Certificate lifetime in seconds.
    pub lifetime_secs: i64,
    pub server_auth: bool,
    pub client_auth: bool,
    /// Set the subject common name (the CSR's CN, else the first DNS name).
    pub common_name: bool,
}

/// An issued certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    pub serial_hex: String,
    pub der: Vec<u8>,
    /// Leaf first, then the intermediate.
    pub chain_pem: String,
    pub not_before: i64,
    pub not_after: i64,
}

/// Issuance failures (all server-side: the CSR was already checked).
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("certificate signing failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("encoding an extension failed: {0}")]
    Der(#[from] der::Error),
}

/// Signs end-entity certificates.
pub struct CertificateAuthority {
    hierarchy: Hierarchy,
    policy: IssuancePolicy,
    /// The OCSP responder (see `ocsp.rs`), when enabled.
    ocsp: Option<ocsp::OcspResponder>,
}

/// A random positive serial of 128 bits (minus the sign bit), lower-case hex. The first
/// byte is never zero, so the DER encoding always has the same length.
pub fn random_serial() -> Vec<u8> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG works");
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        bytes[0] = 0x01;
    }
    bytes.to_vec()
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl CertificateAuthority {
    /// A CA over a loaded hierarchy.
    pub fn new(hierarchy: Hierarchy, policy: IssuancePolicy) -> Self {
        Self {
            hierarchy,
            policy,
            ocsp: None,
        }
    }

    /// The hierarchy (root, intermediate, TLS material).
    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    /// Issues a certificate of `profile` for `identifiers` to the CSR's key, at `now`.
    pub fn issue(
        &self,
        csr: &CheckedCsr,
        identifiers: &[Identifier],
        profile: &Profile,
        now: i64,
    ) -> Result<Issued, IssueError> {
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(&csr.spki_der)?;
        let serial = random_serial();
        let mut params = CertificateParams::default();
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.subject_alt_names = identifiers
            .iter()
            .map(|id| match id.kind {
                IdentifierType::Dns => id.value.clone().try_into().map(SanType::DnsName),
                IdentifierType::Ip => id
                    .value
                    .parse::<IpAddr>()
                    .map(SanType::IpAddress)
                    .map_err(|_| rcgen::Error::InvalidIpAddressOctetLength(0)),
            })
            .collect::<Result<_, _>>()?;
        let mut dn = DistinguishedName::new();
        let cn = profile
            .common_name
            .then(|| csr.common_name.clone())
            .flatten()
            .or_else(|| {
                if !profile.common_name {
                    return None;
                }
                identifiers
                    .iter()
                    .find(|i| i.kind == IdentifierType::Dns && i.value.len() <= 64)
                    .map(|i| i.value.clone())
            });
        if let Some(cn) = cn {
            dn.push(DnType::CommonName, cn);
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = match csr.key {
            certwright_proto::Jwk::Rsa { .. } => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            _ => vec![KeyUsagePurpose::DigitalSignature],
        };
        params.extended_key_usages = Vec::new();
        if profile.server_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if profile.client_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        if let Some(url) = &self.policy.crl_url {
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: vec![url.clone()],
            }];
        }
        if let Some(aia) = ocsp::authority_info_access(
            self.policy.ocsp_url.as_deref(),
            self.policy.ca_issuers_url.as_deref(),
        )? {
            params.custom_extensions.push(aia);
        }
        params.use_authority_key_identifier_extension = true;
        let not_before = now - self.policy.backdate_secs;
        let not_after = now + profile.lifetime_secs - 1;
        params.not_before =
            OffsetDateTime::from_unix_timestamp(not_before).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        params.not_after =
            OffsetDateTime::from_unix_timestamp(not_after).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let cert = params.signed_by(&public_key, &self.hierarchy.intermediate)?;
        let mut chain_pem = cert.pem();
        if !chain_pem.ends_with('\n') {
            chain_pem.push('\n');
        }
        chain_pem.push_str(&self.hierarchy.intermediate_pem);
        Ok(Issued {
            serial_hex: hex(&serial),
            der: cert.der().to_vec(),
            chain_pem,
            not_before,
            not_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn issues_a_leaf_with_the_expected_profile() {
        let dir = tempfile::tempdir().unwrap();
        let h = Hierarchy::load_or_create(
            dir.path(),
            CaKeyType::Ec256,
            "certwright",
            &["localhost".into()],
        )
        .unwrap();
        let ca = CertificateAuthority::new(
            h,
            IssuancePolicy {
                backdate_secs: 300,
                crl_url: Some("http://ca.test/crl/intermediate.crl".into()),
                ocsp_url: None,
                ca_issuers_url: None,
            },
        );
        let profile = Profile {
            name: "tls-server".into(),
            lifetime_secs: 90 * 86400,
            server_auth: true,
            client_auth: false,
            common_name: true,
        };
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["a.example".to_string()]).unwrap();
        params.distinguished_name = DistinguishedName::new();
        let der = params.serialize_request(&key).unwrap().der().to_vec();
        let checked = parse_csr(&der, &KeyPolicy::default()).unwrap();
        let ids = vec![Identifier::dns("a.example"), Identifier::ip("192.0.2.7")];
        let issued = ca.issue(&checked, &ids, &profile, 1_800_000_000).unwrap();
        let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
        assert_eq!(
            cert.raw_serial_as_string().replace(':', ""),
            issued.serial_hex
        );
        assert!(cert.tbs_certificate.serial.bits() >= 64);
        assert_eq!(cert.validity().not_before.timestamp(), 1_800_000_000 - 300);
        assert_eq!(
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp(),
            90 * 86400 + 299
        );
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(!bc.value.ca);
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.server_auth && !eku.value.client_auth);
        assert!(cert.key_usage().unwrap().unwrap().value.digital_signature());
        assert!(cert
            .get_extension_unique(&oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
            .unwrap()
            .is_some());
        assert!(cert
            .get_extension_unique(&oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
            .unwrap()
            .is_some());
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names.len(), 2);
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "a.example"
        );
        assert!(issued.chain_pem.matches("BEGIN CERTIFICATE").count() == 2);
        let cdp = cert
            .get_extension_unique(&oid_registry::OID_X509_EXT_CRL_DISTRIBUTION_POINTS)
            .unwrap()
            .unwrap();
        assert!(
            format!("{:?}", cdp.parsed_extension()).contains("http://ca.test/crl/intermediate.crl")
        );

        // A client-auth profile without a common name.
        let mtls = Profile {
            name: "mtls".into(),
            lifetime_secs: 7 * 86400,
            server_auth: false,
            client_auth: true,
            common_name: false,
        };
        let issued = ca.issue(&checked, &ids, &mtls, 1_800_000_000).unwrap();
        let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.client_auth && !eku.value.server_auth);
        assert!(cert.subject().iter_common_name().next().is_none());
        assert_eq!(
            cert.validity().not_after.timestamp() - 1_800_000_000,
            7 * 86400 - 1
        );
    }
}
