//! The certificate authority: issues end-entity certificates from checked CSRs with the
//! intermediate key. Knows nothing of ACME; the RA decides *whether* to issue.

pub mod crl;
pub mod csr;
pub mod files;
pub mod hierarchy;
pub mod issuer;
pub mod issuers;
pub mod keys;
pub mod ocsp;
pub mod pkcs11;
pub mod responder;
pub mod rotation;

use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

use certwright_proto::types::{Identifier, IdentifierType};
use der::oid::AssociatedOid;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType, SerialNumber,
};
use time::OffsetDateTime;

pub use csr::{parse_csr, CheckedCsr, CsrError, KeyPolicy};
pub use hierarchy::{CaKeyType, Hierarchy};
pub use issuer::{Issuer, IssuerError, LocalIssuer};
pub use issuers::{IssuerState, IssuingCa, KeyKind};

/// Where the OCSP responder listens, under the PKI base URL (named in certificates' AIA).
pub const OCSP_PATH: &str = "/ocsp";

/// Issuance settings common to every profile and issuer.
#[derive(Debug, Clone, Default)]
pub struct IssuancePolicy {
    /// How far notBefore is set before the time of issuance (clock skew allowance).
    pub backdate_secs: i64,
    /// The base URL of the PKI resources named in certificates: each issuer's CRL
    /// (`/crl/NAME.crl`), certificate (`/ca/NAME.der`, caIssuers) and, with `ocsp`, the
    /// OCSP responder (`/ocsp`). None: certificates name none of them.
    pub pki_base: Option<String>,
    /// Name the OCSP responder in certificates.
    pub ocsp: bool,
}

/// A certificate profile: what one kind of certificate looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The profile's name (what orders ask for).
    pub name: String,
    /// Certificate lifetime in seconds.
    pub lifetime_secs: i64,
    /// The issuer that signs this profile's certificates, when it is active (else the
    /// usual choice by key type).
    pub issuer: Option<String>,
    /// Add the serverAuth extended key usage.
    pub server_auth: bool,
    /// Add the clientAuth extended key usage.
    pub client_auth: bool,
    /// Set the subject common name (the CSR's CN, else the first DNS name).
    pub common_name: bool,
    /// Certificate Policies (RFC 5280 §4.2.1.4), in order; empty: no extension.
    pub policy_oids: Vec<der::asn1::ObjectIdentifier>,
    /// Put a Subject Key Identifier in the certificate.
    pub subject_key_identifier: bool,
}

/// The Certificate Policies OID of domain-validated TLS server certificates (BR §7.1.6.1).
pub const DV_POLICY_OID: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.23.140.1.2.1");

impl Profile {
    /// A TLS server profile as the Baseline Requirements' DV subscriber profile wants it
    /// (and `tls-server` is by default): serverAuth, the DV policy OID, neither a
    /// subject common name nor a Subject Key Identifier.
    pub fn tls_server(name: impl Into<String>, lifetime_secs: i64) -> Self {
        Self {
            name: name.into(),
            lifetime_secs,
            issuer: None,
            server_auth: true,
            client_auth: false,
            common_name: false,
            policy_oids: vec![DV_POLICY_OID],
            subject_key_identifier: false,
        }
    }
}

/// An issued certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Serial number (hex).
    pub serial_hex: String,
    /// The certificate (DER).
    pub der: Vec<u8>,
    /// Leaf first, then the intermediate.
    pub chain_pem: String,
    /// Start of validity (Unix seconds).
    pub not_before: i64,
    /// End of validity (Unix seconds).
    pub not_after: i64,
    /// The name of the issuer that signed it.
    pub issuer: String,
}

/// Issuance failures (all server-side: the CSR was already checked).
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The issuer's key did not sign (a token unplugged, locked or refusing): nothing
    /// was issued, and trying again later may work. The cause is in the log.
    #[error("the issuer's key is unavailable (see the log for the cause)")]
    KeyUnavailable,
    /// No issuer is active (every one retired).
    #[error("no active issuer")]
    NoActiveIssuer,
    /// An issuer's certificate or files are not usable.
    #[error("issuer: {0}")]
    Issuer(String),
    /// Building or signing the certificate failed.
    #[error("certificate signing failed: {0}")]
    Rcgen(rcgen::Error),
    /// DER-encoding an extension failed.
    #[error("encoding an extension failed: {0}")]
    Der(#[from] der::Error),
}

impl From<rcgen::Error> for IssueError {
    fn from(e: rcgen::Error) -> Self {
        match e {
            rcgen::Error::RemoteKeyError => Self::KeyUnavailable,
            e => Self::Rcgen(e),
        }
    }
}

/// Signs end-entity certificates and CRLs through its issuers.
pub struct CertificateAuthority {
    hierarchy: Hierarchy,
    /// Every issuer, the first (`intermediate`) first; replaced whole when one is added.
    issuers: RwLock<Arc<[Arc<IssuingCa>]>>,
    policy: IssuancePolicy,
    /// How to reach token keys (a responder certificate re-issued at runtime).
    pkcs11: keys::Pkcs11Settings,
    /// The validity of OCSP responses, once OCSP is started.
    ocsp_validity: std::sync::OnceLock<i64>,
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

pub use crate::encoding::hex;

/// The arcs of an OID, as rcgen takes them.
fn arcs(oid: &der::asn1::ObjectIdentifier) -> Vec<u64> {
    oid.arcs().map(u64::from).collect()
}

/// basicConstraints `CA:FALSE`, critical (RFC 5280 §4.2.1.9; BR §7.1.2.7.8): an empty
/// SEQUENCE, the DEFAULT cA FALSE left out as DER requires.
fn basic_constraints_end_entity() -> Result<rcgen::CustomExtension, der::Error> {
    use der::Encode;
    let value = x509_cert::ext::pkix::BasicConstraints {
        ca: false,
        path_len_constraint: None,
    }
    .to_der()?;
    let mut ext = rcgen::CustomExtension::from_oid_content(
        &arcs(&<x509_cert::ext::pkix::BasicConstraints as AssociatedOid>::OID),
        value,
    );
    ext.set_criticality(true);
    Ok(ext)
}

/// Certificate Policies (RFC 5280 §4.2.1.4), not critical, policy identifiers only (no
/// qualifiers, as RFC 5280 recommends). None for no OIDs.
fn certificate_policies(
    oids: &[der::asn1::ObjectIdentifier],
) -> Result<Option<rcgen::CustomExtension>, der::Error> {
    use der::Encode;
    use x509_cert::ext::pkix::{certpolicy::PolicyInformation, CertificatePolicies};
    if oids.is_empty() {
        return Ok(None);
    }
    let value = CertificatePolicies(
        oids.iter()
            .map(|oid| PolicyInformation {
                policy_identifier: *oid,
                policy_qualifiers: None,
            })
            .collect(),
    )
    .to_der()?;
    Ok(Some(rcgen::CustomExtension::from_oid_content(
        &arcs(&<CertificatePolicies as AssociatedOid>::OID),
        value,
    )))
}

impl CertificateAuthority {
    /// A CA over a loaded hierarchy, its intermediate the first issuer.
    pub fn new(hierarchy: Hierarchy, policy: IssuancePolicy) -> Result<Self, IssueError> {
        let data_dir = hierarchy
            .paths
            .intermediate_cert
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .to_owned();
        let first = IssuingCa::new(
            files::IssuerFiles::first(&data_dir),
            hierarchy.intermediate.clone(),
            &policy,
        )?;
        Ok(Self {
            hierarchy,
            issuers: RwLock::new(Arc::from(vec![Arc::new(first)])),
            policy,
            pkcs11: keys::Pkcs11Settings::default(),
            ocsp_validity: std::sync::OnceLock::new(),
        })
    }

    /// This CA reaching token keys with `pkcs11`.
    pub fn with_pkcs11(mut self, pkcs11: keys::Pkcs11Settings) -> Self {
        self.pkcs11 = pkcs11;
        self
    }

    /// The hierarchy (root, intermediate, TLS material).
    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    /// The issuance policy (backdating, PKI URLs).
    pub fn policy(&self) -> &IssuancePolicy {
        &self.policy
    }

    /// How token keys are reached.
    pub fn pkcs11(&self) -> &keys::Pkcs11Settings {
        &self.pkcs11
    }

    /// Every issuer, the first one first.
    pub fn issuers(&self) -> Arc<[Arc<IssuingCa>]> {
        self.issuers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The issuer called `name`.
    pub fn issuer_named(&self, name: &str) -> Option<Arc<IssuingCa>> {
        self.issuers().iter().find(|i| i.name() == name).cloned()
    }

    /// The issuer whose key identifier is `key_id` (an AKI).
    pub fn issuer_by_key_id(&self, key_id: &[u8]) -> Option<Arc<IssuingCa>> {
        self.issuers()
            .iter()
            .find(|i| !key_id.is_empty() && i.key_id() == key_id)
            .cloned()
    }

    /// Adds an issuer (a name already present is refused).
    pub fn add_issuer(&self, issuer: IssuingCa) -> Result<Arc<IssuingCa>, IssueError> {
        let mut guard = self.issuers.write().unwrap_or_else(PoisonError::into_inner);
        if guard.iter().any(|i| i.name() == issuer.name()) {
            return Err(IssueError::Issuer(format!(
                "an issuer named {} is already loaded",
                issuer.name()
            )));
        }
        let issuer = Arc::new(issuer);
        let mut list: Vec<Arc<IssuingCa>> = guard.iter().cloned().collect();
        list.push(issuer.clone());
        *guard = Arc::from(list);
        Ok(issuer)
    }

    /// Starts the OCSP responder of every issuer, and of every issuer loaded later;
    /// responses are valid for `validity_secs`.
    pub fn start_ocsp(&self, validity_secs: i64, now: i64) -> Result<(), IssueError> {
        let _ = self.ocsp_validity.set(validity_secs);
        for issuer in self.issuers().iter() {
            issuer.start_ocsp(&self.pkcs11, validity_secs, now)?;
        }
        Ok(())
    }

    /// The issuer an OCSP request is about (all its CertIDs must name one issuer of this
    /// CA), and the checked request. The DER is decoded once, then matched per issuer.
    pub fn ocsp_request(
        &self,
        der: &[u8],
    ) -> Result<(Arc<IssuingCa>, ocsp::CheckedRequest), ocsp::OcspError> {
        let decoded = ocsp::decode_request(der)?;
        for issuer in self.issuers().iter() {
            let Some(responder) = issuer.ocsp() else {
                continue;
            };
            match responder.check_request(&decoded) {
                Ok(request) => return Ok((issuer.clone(), request)),
                Err(ocsp::OcspError::Unauthorized) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ocsp::OcspError::Unauthorized)
    }

    /// Whether OCSP is on.
    pub fn ocsp_enabled(&self) -> bool {
        self.ocsp_validity.get().is_some()
    }

    /// Loads the issuer at `files` (its key, and its OCSP responder when OCSP is on) and
    /// adds it.
    pub fn load_issuer(
        &self,
        files: files::IssuerFiles,
        now: i64,
    ) -> Result<Arc<IssuingCa>, IssueError> {
        let issuer = files
            .load(&self.pkcs11)
            .map_err(|e| IssueError::Issuer(e.to_string()))?;
        let issuing = IssuingCa::new(files, issuer, &self.policy)?;
        if let Some(validity) = self.ocsp_validity.get() {
            issuing.start_ocsp(&self.pkcs11, *validity, now)?;
        }
        self.add_issuer(issuing)
    }

    /// Issues a certificate of `profile` for `identifiers` to the CSR's key, at `now`.
    pub fn issue(
        &self,
        csr: &CheckedCsr,
        identifiers: &[Identifier],
        profile: &Profile,
        now: i64,
    ) -> Result<Issued, IssueError> {
        let issuer = issuers::choose(
            &self.issuers(),
            profile.issuer.as_deref(),
            KeyKind::of_jwk(&csr.key),
        )
        .ok_or(IssueError::NoActiveIssuer)?;
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
        if profile.subject_key_identifier {
            // rcgen writes the SKI together with basicConstraints CA:FALSE.
            params.is_ca = IsCa::ExplicitNoCa;
        } else {
            // Without the SKI rcgen writes no basicConstraints either: add it ourselves.
            params.is_ca = IsCa::NoCa;
            params
                .custom_extensions
                .push(basic_constraints_end_entity()?);
        }
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
        if let Some(url) = issuer.crl_url() {
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: vec![url.to_owned()],
            }];
        }
        if let Some(aia) = ocsp::authority_info_access(issuer.ocsp_url(), issuer.ca_issuers_url())?
        {
            params.custom_extensions.push(aia);
        }
        if let Some(policies) = certificate_policies(&profile.policy_oids)? {
            params.custom_extensions.push(policies);
        }
        params.use_authority_key_identifier_extension = true;
        let not_before = now - self.policy.backdate_secs;
        let not_after = now + profile.lifetime_secs - 1;
        params.not_before =
            OffsetDateTime::from_unix_timestamp(not_before).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        params.not_after =
            OffsetDateTime::from_unix_timestamp(not_after).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let cert = params.signed_by(&public_key, issuer.signer())?;
        let mut chain_pem = cert.pem();
        if !chain_pem.ends_with('\n') {
            chain_pem.push('\n');
        }
        chain_pem.push_str(issuer.issuer().chain_pem());
        Ok(Issued {
            serial_hex: hex(&serial),
            der: cert.der().to_vec(),
            chain_pem,
            not_before,
            not_after,
            issuer: issuer.name().to_owned(),
        })
    }
}

/// A P-256 hierarchy for `localhost` created in `dir` (tests of the `ca` modules).
#[cfg(test)]
pub(crate) fn test_hierarchy(dir: &std::path::Path) -> Hierarchy {
    Hierarchy::load_or_create(
        dir,
        CaKeyType::Ec256,
        "certwright",
        &["localhost".into()],
        &keys::Pkcs11Settings::default(),
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn issues_a_leaf_with_the_expected_profile() {
        let dir = tempfile::tempdir().unwrap();
        let h = test_hierarchy(dir.path());
        let ca = CertificateAuthority::new(
            h,
            IssuancePolicy {
                backdate_secs: 300,
                pki_base: Some("http://ca.test".into()),
                ocsp: false,
            },
        )
        .unwrap();
        // A profile that turns on what the default leaves out (common name, SKI) and
        // names no policy.
        let profile = Profile {
            name: "tls-server".into(),
            lifetime_secs: 90 * 86400,
            issuer: None,
            server_auth: true,
            client_auth: false,
            common_name: true,
            policy_oids: Vec::new(),
            subject_key_identifier: true,
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
            issuer: None,
            server_auth: false,
            client_auth: true,
            common_name: false,
            policy_oids: Vec::new(),
            subject_key_identifier: false,
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
        assert!(cert.get_extension_unique(&OID_SKI).unwrap().is_none());
        assert!(cert.get_extension_unique(&OID_POLICIES).unwrap().is_none());
        // basicConstraints is still there, critical, CA:FALSE.
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && !bc.value.ca && bc.value.path_len_constraint.is_none());
    }

    use oid_registry::{
        Oid, OID_PKIX_AUTHORITY_INFO_ACCESS as OID_AIA,
        OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER as OID_AKI, OID_X509_EXT_BASIC_CONSTRAINTS as OID_BC,
        OID_X509_EXT_CERTIFICATE_POLICIES as OID_POLICIES,
        OID_X509_EXT_CRL_DISTRIBUTION_POINTS as OID_CRL_DP,
        OID_X509_EXT_EXTENDED_KEY_USAGE as OID_EKU, OID_X509_EXT_KEY_USAGE as OID_KU,
        OID_X509_EXT_SUBJECT_ALT_NAME as OID_SAN, OID_X509_EXT_SUBJECT_KEY_IDENTIFIER as OID_SKI,
    };

    /// id-pkix-ocsp-nocheck.
    fn oid_nocheck() -> Oid<'static> {
        Oid::from(&[1, 3, 6, 1, 5, 5, 7, 48, 1, 5]).unwrap()
    }

    /// Every extension of `cert` as (OID, critical), after checking that each one decodes
    /// (x509-parser knows all of them but id-pkix-ocsp-nocheck, whose value must be NULL).
    fn extensions(cert: &X509Certificate<'_>) -> Vec<(Oid<'static>, bool)> {
        let mut out = Vec::new();
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::UnsupportedExtension { .. } if ext.oid == oid_nocheck() => {
                    assert_eq!(ext.value, [0x05, 0x00], "nocheck is NULL");
                }
                ParsedExtension::UnsupportedExtension { .. }
                | ParsedExtension::ParseError { .. } => {
                    panic!(
                        "extension {} does not decode: {:?}",
                        ext.oid,
                        ext.parsed_extension()
                    )
                }
                _ => {}
            }
            out.push((ext.oid.to_owned(), ext.critical));
        }
        let mut sorted: Vec<String> = out.iter().map(|(o, _)| o.to_id_string()).collect();
        sorted.sort();
        let len = sorted.len();
        sorted.dedup();
        assert_eq!(sorted.len(), len, "no extension twice");
        out
    }

    /// Asserts the exact set of extensions (OID, critical), in any order.
    fn assert_extensions(what: &str, cert: &X509Certificate<'_>, expected: &[(&Oid<'_>, bool)]) {
        let mut got: Vec<(String, bool)> = extensions(cert)
            .iter()
            .map(|(o, c)| (o.to_id_string(), *c))
            .collect();
        let mut want: Vec<(String, bool)> = expected
            .iter()
            .map(|(o, c)| (o.to_id_string(), *c))
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "the extensions of the {what}");
    }

    fn ski(cert: &X509Certificate<'_>) -> Vec<u8> {
        match cert
            .get_extension_unique(&OID_SKI)
            .unwrap()
            .unwrap()
            .parsed_extension()
        {
            ParsedExtension::SubjectKeyIdentifier(k) => k.0.to_vec(),
            other => panic!("SKI: {other:?}"),
        }
    }

    fn aki(cert: &X509Certificate<'_>) -> Vec<u8> {
        match cert
            .get_extension_unique(&OID_AKI)
            .unwrap()
            .unwrap()
            .parsed_extension()
        {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                // keyIdentifier only (BR §7.1.2.11.1: no issuer name and serial).
                assert!(a.authority_cert_issuer.is_none() && a.authority_cert_serial.is_none());
                a.key_identifier.as_ref().unwrap().0.to_vec()
            }
            other => panic!("AKI: {other:?}"),
        }
    }

    fn uris(names: &[GeneralName<'_>]) -> Vec<String> {
        names
            .iter()
            .map(|n| match n {
                GeneralName::URI(u) => u.to_string(),
                other => panic!("not a URI: {other:?}"),
            })
            .collect()
    }

    /// Root, intermediate and OCSP responder meet RFC 5280 for CA and responder
    /// certificates; a leaf of the default `tls-server` profile has exactly the extensions
    /// of the Baseline Requirements' DV subscriber profile (§7.1.2.7), and each decodes to
    /// what the profile says.
    #[test]
    fn every_extension_of_root_intermediate_responder_and_leaf_matches_the_profile() {
        let dir = tempfile::tempdir().unwrap();
        let h = test_hierarchy(dir.path());
        let responder_pem = responder::load_or_create(
            &files::IssuerFiles::first(dir.path()),
            &h.intermediate,
            &keys::Pkcs11Settings::default(),
            1_800_000_000,
        )
        .unwrap();
        let root_der = h.root_der.clone();
        let intermediate_der = h.intermediate_der.clone();
        let (_, responder_der) =
            x509_parser::pem::parse_x509_pem(responder_pem.cert_pem.as_bytes()).unwrap();
        let ca = CertificateAuthority::new(
            h,
            IssuancePolicy {
                backdate_secs: 300,
                pki_base: Some("http://ca.test:14002".into()),
                ocsp: true,
            },
        )
        .unwrap();

        // The root: self-signed, SKI, no AKI (RFC 5280 §4.2.1.1 allows leaving it out).
        let (_, root) = X509Certificate::from_der(&root_der).unwrap();
        assert_extensions(
            "root",
            &root,
            &[(&OID_SKI, false), (&OID_BC, true), (&OID_KU, true)],
        );
        let bc = root.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca && bc.path_len_constraint.is_none());
        let ku = root.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());

        // The intermediate: AKI = the root's SKI, CA with pathLen 0, its own SKI.
        let (_, int) = X509Certificate::from_der(&intermediate_der).unwrap();
        assert_extensions(
            "intermediate",
            &int,
            &[
                (&OID_AKI, false),
                (&OID_SKI, false),
                (&OID_BC, true),
                (&OID_KU, true),
                (&OID_EKU, false),
            ],
        );
        assert_eq!(aki(&int), ski(&root));
        let bc = int.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca && bc.path_len_constraint == Some(0));
        let ku = int.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        let eku = int.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth && !eku.any);

        // The delegated OCSP responder: issued by the intermediate, OCSPSigning only,
        // nocheck, not a CA.
        let responder = responder_der.parse_x509().unwrap();
        assert_extensions(
            "OCSP responder",
            &responder,
            &[
                (&OID_AKI, false),
                (&OID_SKI, false),
                (&OID_BC, true),
                (&OID_KU, true),
                (&OID_EKU, false),
                (&oid_nocheck(), false),
            ],
        );
        assert_eq!(aki(&responder), ski(&int));
        assert!(!responder.basic_constraints().unwrap().unwrap().value.ca);
        let ku = responder.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_cert_sign());
        let eku = responder.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.ocsp_signing && !eku.server_auth && !eku.client_auth);

        // A leaf of the default profile, for an ECDSA key and for an RSA key.
        let profile = Profile::tls_server("tls-server", 90 * 86400);
        for rsa in [false, true] {
            let key = if rsa {
                rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                    .unwrap()
            } else {
                rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
            };
            let mut params = CertificateParams::new(vec!["www.example.test".to_string()]).unwrap();
            // The CSR asks for a common name; the profile leaves it out.
            params.distinguished_name = DistinguishedName::new();
            params
                .distinguished_name
                .push(DnType::CommonName, "www.example.test");
            let der = params.serialize_request(&key).unwrap().der().to_vec();
            let checked = parse_csr(&der, &KeyPolicy::default()).unwrap();
            let ids = vec![
                Identifier::dns("www.example.test"),
                Identifier::dns("example.test"),
            ];
            let issued = ca.issue(&checked, &ids, &profile, 1_800_000_000).unwrap();
            let (_, leaf) = X509Certificate::from_der(&issued.der).unwrap();
            // SAN is critical: the subject is empty (RFC 5280 §4.2.1.6).
            assert_extensions(
                "leaf",
                &leaf,
                &[
                    (&OID_AKI, false),
                    (&OID_SAN, true),
                    (&OID_KU, true),
                    (&OID_EKU, false),
                    (&OID_CRL_DP, false),
                    (&OID_BC, true),
                    (&OID_AIA, false),
                    (&OID_POLICIES, false),
                ],
            );
            assert!(leaf.subject().as_raw().len() <= 2, "the subject is empty");
            assert_eq!(leaf.subject().iter().count(), 0);
            assert_eq!(aki(&leaf), ski(&int));
            let san = leaf.subject_alternative_name().unwrap().unwrap().value;
            let names: Vec<String> = san
                .general_names
                .iter()
                .map(|n| match n {
                    GeneralName::DNSName(d) => d.to_string(),
                    other => panic!("SAN: {other:?}"),
                })
                .collect();
            assert_eq!(names, ["www.example.test", "example.test"]);
            let ku = leaf.key_usage().unwrap().unwrap().value;
            assert!(ku.digital_signature());
            assert_eq!(ku.key_encipherment(), rsa, "keyEncipherment for RSA only");
            assert!(!ku.key_cert_sign() && !ku.crl_sign() && !ku.key_agreement());
            let eku = leaf.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.server_auth && !eku.client_auth && !eku.any && eku.other.is_empty());
            let bc = leaf.basic_constraints().unwrap().unwrap().value;
            assert!(!bc.ca && bc.path_len_constraint.is_none());
            for ext in leaf.extensions() {
                match ext.parsed_extension() {
                    ParsedExtension::CRLDistributionPoints(cdp) => {
                        assert_eq!(cdp.points.len(), 1);
                        let point = &cdp.points[0];
                        assert!(point.reasons.is_none() && point.crl_issuer.is_none());
                        match &point.distribution_point {
                            Some(DistributionPointName::FullName(names)) => assert_eq!(
                                uris(names),
                                ["http://ca.test:14002/crl/intermediate.crl"]
                            ),
                            other => panic!("CRL DP: {other:?}"),
                        }
                    }
                    ParsedExtension::AuthorityInfoAccess(aia) => {
                        let got: Vec<(String, String)> = aia
                            .accessdescs
                            .iter()
                            .map(|d| {
                                (
                                    d.access_method.to_id_string(),
                                    uris(std::slice::from_ref(&d.access_location)).remove(0),
                                )
                            })
                            .collect();
                        assert_eq!(
                            got,
                            [
                                (
                                    "1.3.6.1.5.5.7.48.1".to_string(),
                                    "http://ca.test:14002/ocsp".to_string()
                                ),
                                (
                                    "1.3.6.1.5.5.7.48.2".to_string(),
                                    "http://ca.test:14002/ca/intermediate.der".to_string()
                                ),
                            ]
                        );
                    }
                    ParsedExtension::CertificatePolicies(policies) => {
                        let oids: Vec<String> = policies
                            .iter()
                            .map(|p| {
                                assert!(p.policy_qualifiers.is_none(), "no qualifiers");
                                p.policy_id.to_id_string()
                            })
                            .collect();
                        assert_eq!(oids, ["2.23.140.1.2.1"]);
                    }
                    _ => {}
                }
            }
            // The leaf verifies under the intermediate.
            leaf.verify_signature(Some(int.public_key())).unwrap();
        }

        // Several policy OIDs, in the order configured.
        let two = Profile {
            policy_oids: vec![
                DV_POLICY_OID,
                der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1"),
            ],
            ..Profile::tls_server("tls-server", 86400)
        };
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = CertificateParams::new(vec!["a.example.test".to_string()]).unwrap();
        let der = params.serialize_request(&key).unwrap().der().to_vec();
        let checked = parse_csr(&der, &KeyPolicy::default()).unwrap();
        let issued = ca
            .issue(
                &checked,
                &[Identifier::dns("a.example.test")],
                &two,
                1_800_000_000,
            )
            .unwrap();
        let (_, leaf) = X509Certificate::from_der(&issued.der).unwrap();
        let policies = leaf
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::CertificatePolicies(p) => Some(
                    p.iter()
                        .map(|p| p.policy_id.to_id_string())
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .unwrap();
        assert_eq!(policies, ["2.23.140.1.2.1", "1.3.6.1.4.1.99999.1"]);
    }
}
