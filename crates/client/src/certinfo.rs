//! Certificate keys, CSRs and what the client needs to know about an issued certificate
//! (names, issuer, validity, ARI identifier); chain splitting and preferred-chain choice.

use certwright_proto::types::Identifier;
use certwright_proto::{AccountKey, KeyType};
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{Error, Result};

/// A freshly generated certificate key with its PKCS#8 PEM (secret).
pub struct CertKey {
    /// The rcgen key pair (signs the CSR).
    pub pair: rcgen::KeyPair,
    /// PKCS#8 PEM of the private key.
    pub pem: String,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertKey(<secret>)")
    }
}

impl CertKey {
    /// Generates a key of `kind` (EC P-256/P-384, RSA 2048/3072/4096, Ed25519).
    pub fn generate(kind: KeyType) -> Result<Self> {
        let der = AccountKey::generate(kind)?.to_pkcs8()?;
        Self::from_pkcs8_der(&der)
    }

    /// Loads a PKCS#8 DER key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let pkcs8 = rustls::pki_types::PrivatePkcs8KeyDer::from(der.to_vec());
        let pair = rcgen::KeyPair::try_from(&pkcs8)
            .map_err(|e| Error::Certificate(format!("unsupported certificate key: {e}")))?;
        let pem = pair.serialize_pem();
        Ok(Self { pair, pem })
    }

    /// Loads a PEM key (PKCS#8 "PRIVATE KEY").
    pub fn from_pem(pem: &str) -> Result<Self> {
        let pair = rcgen::KeyPair::from_pem(pem)
            .map_err(|e| Error::Certificate(format!("unsupported certificate key: {e}")))?;
        let pem = pair.serialize_pem();
        Ok(Self { pair, pem })
    }

    /// The key as an [`AccountKey`] (to sign a revocation by certificate key).
    pub fn to_signing_key(&self) -> Result<AccountKey> {
        Ok(AccountKey::from_pkcs8(&self.pair.serialize_der())?)
    }

    /// A PKCS#10 CSR (DER) for `names` (DNS names or IP addresses) signed by this key.
    pub fn csr(&self, names: &[String]) -> Result<Vec<u8>> {
        let mut params = rcgen::CertificateParams::new(names.to_vec())
            .map_err(|e| Error::Certificate(format!("CSR names: {e}")))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&self.pair)
            .map_err(|e| Error::Certificate(format!("CSR: {e}")))?;
        Ok(csr.der().to_vec())
    }
}

/// The identifier for a name as given on the command line (IP addresses become `ip`).
pub fn identifier_for(name: &str) -> Identifier {
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => Identifier::ip(ip.to_string()),
        Err(_) => Identifier::dns(name.to_ascii_lowercase()),
    }
}

/// Reads a CSR (PEM or DER) and returns its DER and the names it asks for.
pub fn read_csr(data: &[u8]) -> Result<(Vec<u8>, Vec<String>)> {
    let der = match x509_parser::pem::parse_x509_pem(data) {
        Ok((_, pem)) if pem.label.contains("CERTIFICATE REQUEST") => pem.contents,
        _ => data.to_vec(),
    };
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| Error::Certificate(format!("not a CSR: {e}")))?;
    let mut names = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                collect_names(&san.general_names, &mut names);
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = csr
            .certification_request_info
            .subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
        {
            names.push(cn.to_owned());
        }
    }
    if names.is_empty() {
        return Err(Error::Certificate("the CSR names no identifier".into()));
    }
    Ok((der, names))
}

fn collect_names(general_names: &[GeneralName<'_>], out: &mut Vec<String>) {
    for n in general_names {
        match n {
            GeneralName::DNSName(d) => out.push(d.to_string()),
            GeneralName::IPAddress(b) => {
                if let Ok(a) = <[u8; 4]>::try_from(*b) {
                    out.push(std::net::IpAddr::from(a).to_string());
                } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                    out.push(std::net::IpAddr::from(a).to_string());
                }
            }
            _ => {}
        }
    }
}

/// The PEM blocks of a chain, in order, each as its own PEM text.
pub fn split_pem_chain(chain: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = chain;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(end) = rest[start..].find(END) else {
            break;
        };
        let stop = start + end + END.len();
        out.push(format!("{}\n", &rest[start..stop]));
        rest = &rest[stop..];
    }
    out
}

/// DER of every certificate in a PEM chain.
pub fn chain_ders(chain: &str) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for block in split_pem_chain(chain) {
        let (_, pem) = x509_parser::pem::parse_x509_pem(block.as_bytes())
            .map_err(|e| Error::Certificate(format!("bad PEM: {e}")))?;
        out.push(pem.contents);
    }
    if out.is_empty() {
        return Err(Error::Certificate("no certificate in the chain".into()));
    }
    Ok(out)
}

/// Leeway for the CA's and this host's clocks when checking a new certificate's validity.
const CLOCK_SKEW_SECS: i64 = 600;

/// Checks what a CA handed back before it replaces anything on disk: the leaf carries the
/// CSR's public key, covers every requested name and is valid at `now` (give or take
/// ten minutes of clock skew), and each certificate of the chain is signed by the next.
/// Returns the leaf's facts.
pub fn verify_issued(
    fullchain: &str,
    csr_der: &[u8],
    names: &[String],
    now: i64,
) -> Result<CertInfo> {
    use x509_parser::prelude::X509CertificationRequest;
    let bad = |what: String| -> Result<CertInfo> {
        Err(Error::Certificate(format!("the CA's certificate {what}")))
    };
    let ders = chain_ders(fullchain)?;
    let certs = ders
        .iter()
        .map(|d| {
            X509Certificate::from_der(d)
                .map(|(_, c)| c)
                .map_err(|e| Error::Certificate(format!("not an X.509 certificate: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let (_, csr) = X509CertificationRequest::from_der(csr_der)
        .map_err(|e| Error::Certificate(format!("our own CSR does not parse: {e}")))?;
    let leaf = &certs[0];
    if leaf.public_key().raw != csr.certification_request_info.subject_pki.raw {
        return bad("is not for our key (its public key differs from the CSR's)".into());
    }
    let info = CertInfo::from_der(&ders[0])?;
    for name in names {
        let covered = match name.parse::<std::net::IpAddr>() {
            Ok(ip) => info.names.iter().any(|n| n.parse() == Ok(ip)),
            Err(_) => info.names.iter().any(|n| n.eq_ignore_ascii_case(name)),
        };
        if !covered {
            return bad(format!("does not cover {name} (it names {:?})", info.names));
        }
    }
    let (from, until) = (
        info.not_before.unix_timestamp(),
        info.not_after.unix_timestamp(),
    );
    if now + CLOCK_SKEW_SECS < from || now > until {
        return bad(format!(
            "is not valid now (valid from {} until {})",
            info.not_before, info.not_after
        ));
    }
    for (i, pair) in certs.windows(2).enumerate() {
        if pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .is_err()
        {
            return bad(format!(
                "chain is broken: certificate {i} is not signed by certificate {}",
                i + 1
            ));
        }
    }
    Ok(info)
}

/// What the client keeps about an issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject alternative names.
    pub names: Vec<String>,
    /// Issuer common name (or the whole DN when it has none).
    pub issuer: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Serial as lower-case hex.
    pub serial_hex: String,
    /// The ARI certificate identifier, when the certificate has an AKI.
    pub ari_id: Option<String>,
    /// The leaf's DER.
    pub der: Vec<u8>,
}

impl CertInfo {
    /// Parses the leaf (first certificate) of a PEM chain.
    pub fn from_chain_pem(chain: &str) -> Result<Self> {
        let der = chain_ders(chain)?.swap_remove(0);
        Self::from_der(&der)
    }

    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| Error::Certificate(format!("not an X.509 certificate: {e}")))?;
        let mut names = Vec::new();
        let mut aki = None;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    collect_names(&san.general_names, &mut names)
                }
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    aki = a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => {}
            }
        }
        let serial = cert.tbs_certificate.raw_serial();
        Ok(Self {
            names,
            issuer: issuer_name(&cert),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            serial_hex: serial.iter().map(|b| format!("{b:02x}")).collect(),
            ari_id: aki.map(|aki| certwright_proto::ari::cert_id(&aki, serial)),
            der: der.to_vec(),
        })
    }

    /// Validity length.
    pub fn lifetime(&self) -> time::Duration {
        self.not_after - self.not_before
    }
}

fn issuer_name(cert: &X509Certificate<'_>) -> String {
    cert.issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| cert.issuer().to_string())
}

/// Common names of the issuers along a chain (leaf's issuer first).
pub fn chain_issuers(chain: &str) -> Vec<String> {
    chain_ders(chain)
        .unwrap_or_default()
        .iter()
        .filter_map(|der| {
            X509Certificate::from_der(der)
                .ok()
                .map(|(_, c)| issuer_name(&c))
        })
        .collect()
}

/// Picks the chain whose top-most issuer is `preferred` (else any chain naming it as an
/// issuer), falling back to the default chain (the first).
pub fn choose_chain<'a>(chains: &[&'a str], preferred: Option<&str>) -> &'a str {
    let Some(want) = preferred else {
        return chains[0];
    };
    let top = chains.iter().find(|c| {
        chain_issuers(c)
            .last()
            .is_some_and(|i| i.eq_ignore_ascii_case(want))
    });
    let any = || {
        chains.iter().find(|c| {
            chain_issuers(c)
                .iter()
                .any(|i| i.eq_ignore_ascii_case(want))
        })
    };
    top.or_else(any).copied().unwrap_or(chains[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(cn: &str) -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.key_identifier_method = rcgen::KeyIdMethod::Sha256;
        let cert = p.self_signed(&key).unwrap();
        (cert, rcgen::Issuer::new(p, key))
    }

    fn leaf(issuer: &rcgen::Issuer<'_, rcgen::KeyPair>) -> rcgen::Certificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p =
            rcgen::CertificateParams::new(vec!["a.test".to_string(), "10.0.0.1".into()]).unwrap();
        p.use_authority_key_identifier_extension = true;
        p.signed_by(&key, issuer).unwrap()
    }

    #[test]
    fn csr_round_trip_for_each_key_type() {
        for kt in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
            let key = CertKey::generate(kt).unwrap();
            let der = key.csr(&["a.test".into(), "*.b.test".into()]).unwrap();
            let (again, names) = read_csr(&der).unwrap();
            assert_eq!(again, der);
            assert_eq!(names, ["a.test", "*.b.test"]);
            assert!(key.pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            CertKey::from_pem(&key.pem).unwrap();
        }
        assert!(read_csr(b"garbage").is_err());
    }

    #[test]
    fn cert_info_and_chain_choice() {
        let (root_a, issuer_a) = ca("Root A");
        let (root_b, issuer_b) = ca("Root B");
        let chain_a = format!("{}{}", leaf(&issuer_a).pem(), root_a.pem());
        let chain_b = format!("{}{}", leaf(&issuer_b).pem(), root_b.pem());
        let info = CertInfo::from_chain_pem(&chain_a).unwrap();
        assert_eq!(info.names, ["a.test", "10.0.0.1"]);
        assert_eq!(info.issuer, "Root A");
        assert!(info.ari_id.is_some());
        assert!(info.lifetime() > time::Duration::ZERO);
        assert_eq!(split_pem_chain(&chain_a).len(), 2);
        let chains = [chain_a.as_str(), chain_b.as_str()];
        assert_eq!(choose_chain(&chains, Some("root b")), chain_b);
        assert_eq!(choose_chain(&chains, Some("Root A")), chain_a);
        assert_eq!(choose_chain(&chains, Some("Nobody")), chain_a);
        assert_eq!(choose_chain(&chains, None), chain_a);
    }

    #[test]
    fn an_issued_certificate_is_checked_before_use() {
        let (root, issuer) = ca("Root A");
        let (other_root, _) = ca("Root B");
        let key = CertKey::generate(KeyType::EcP256).unwrap();
        let names: Vec<String> = vec!["a.test".into(), "10.0.0.1".into()];
        let csr = key.csr(&names).unwrap();
        let mut p = rcgen::CertificateParams::new(names.clone()).unwrap();
        p.use_authority_key_identifier_extension = true;
        p.not_before = OffsetDateTime::now_utc() - time::Duration::hours(1);
        p.not_after = OffsetDateTime::now_utc() + time::Duration::days(90);
        let good = p.signed_by(&key.pair, &issuer).unwrap();
        let chain = format!("{}{}", good.pem(), root.pem());
        let now = OffsetDateTime::now_utc().unix_timestamp();
        verify_issued(&chain, &csr, &names, now).unwrap();

        let err = |chain: &str, csr: &[u8], names: &[String], now: i64| {
            verify_issued(chain, csr, names, now)
                .unwrap_err()
                .to_string()
        };
        // Another key than the CSR's.
        let stranger = format!("{}{}", leaf(&issuer).pem(), root.pem());
        assert!(err(&stranger, &csr, &names, now).contains("not for our key"));
        // A name missing.
        let more = vec!["a.test".to_string(), "b.test".into()];
        assert!(err(&chain, &csr, &more, now).contains("does not cover b.test"));
        // Expired (seen from far in the future).
        assert!(err(&chain, &csr, &names, now + 91 * 86400).contains("not valid now"));
        assert!(err(&chain, &csr, &names, now - 2 * 3600).contains("not valid now"));
        // An intermediate that did not sign the leaf.
        let broken = format!("{}{}", good.pem(), other_root.pem());
        assert!(err(&broken, &csr, &names, now).contains("chain is broken"));
        // Not a certificate at all.
        assert!(verify_issued("garbage", &csr, &names, now).is_err());
    }
}
