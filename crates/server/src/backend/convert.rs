//! What a backend returns, as a leaf-first chain: PEM (any number of certificates, or a
//! `PKCS7` block), one DER certificate, or a certs-only PKCS#7 `SignedData` in DER, as
//! CMC/EST-style CAs deliver. The certificates are put in order (the leaf, then each
//! one's issuer) whatever order they came in; a self-signed root is left out, as ACME
//! chains do, unless it signed the leaf itself (certbot wants at least two).

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::SignedData;
use der::{Decode, Encode};
use rustls::pki_types::pem::{self, PemObject, SectionKind};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// PKCS#7 `signedData` (RFC 5652).
const ID_SIGNED_DATA: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
#[cfg(test)]
/// PKCS#7 `data`.
const ID_DATA: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");

/// The most certificates one answer may hold.
const MAX_CERTIFICATES: usize = 16;

/// The certificates in `bytes`, leaf first, then each one's issuer up to (not including)
/// a self-signed root — included when it issued the leaf itself, so that the chain has
/// two certificates, as certbot requires. The error says what was wrong, for the log.
pub fn certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let found = if looks_like_pem(bytes) {
        from_pem(bytes)?
    } else if X509Certificate::from_der(bytes).is_ok_and(|(rest, _)| rest.is_empty()) {
        vec![CertificateDer::from(bytes.to_vec())]
    } else {
        from_pkcs7(bytes)?
    };
    if found.is_empty() {
        return Err("the backend returned no certificate".into());
    }
    if found.len() > MAX_CERTIFICATES {
        return Err(format!(
            "the backend returned {} certificates (at most {MAX_CERTIFICATES})",
            found.len()
        ));
    }
    order(found)
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]);
    text.contains("-----BEGIN ")
}

/// Every `CERTIFICATE` block, and the certificates of every `PKCS7` block.
fn from_pem(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut found = Vec::new();
    for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(bytes) {
        match section {
            Ok((SectionKind::Certificate, der)) => found.push(CertificateDer::from(der)),
            Ok(_) => {}
            Err(pem::Error::NoItemsFound) => break,
            Err(e) => return Err(format!("the PEM is malformed: {e:?}")),
        }
    }
    // rustls does not know PKCS7 blocks: find them by hand.
    let text = String::from_utf8_lossy(bytes);
    for block in pem_blocks(&text, "PKCS7") {
        found.extend(from_pkcs7(&block)?);
    }
    Ok(found)
}

/// The base64 bodies of the `-----BEGIN LABEL-----` blocks of `text`, decoded.
fn pem_blocks(text: &str, label: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    let (begin, end) = (
        format!("-----BEGIN {label}-----"),
        format!("-----END {label}-----"),
    );
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let body = &rest[start + begin.len()..];
        let Some(stop) = body.find(&end) else { break };
        let b64: String = body[..stop].split_whitespace().collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) {
            out.push(der);
        }
        rest = &body[stop + end.len()..];
    }
    out
}

/// The certificates of a PKCS#7 / CMS `ContentInfo` holding `SignedData`, DER.
fn from_pkcs7(der: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let info = ContentInfo::from_der(der)
        .map_err(|e| format!("neither a certificate nor PKCS#7 (DER): {e}"))?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(format!(
            "PKCS#7 content type {} is not signedData",
            info.content_type
        ));
    }
    let signed: SignedData = info
        .content
        .decode_as()
        .map_err(|e| format!("PKCS#7 signedData is malformed: {e}"))?;
    let mut found = Vec::new();
    for choice in signed.certificates.iter().flat_map(|set| set.0.iter()) {
        if let CertificateChoices::Certificate(cert) = choice {
            let der = cert
                .to_der()
                .map_err(|e| format!("PKCS#7 certificate does not re-encode: {e}"))?;
            found.push(CertificateDer::from(der));
        }
    }
    Ok(found)
}

/// `certs` leaf first: the leaf is the one certificate that issued none of the others;
/// then each certificate's issuer, by name. Self-signed certificates are dropped once
/// the leaf is found.
fn order(certs: Vec<CertificateDer<'static>>) -> Result<Vec<CertificateDer<'static>>, String> {
    struct Parsed {
        der: CertificateDer<'static>,
        subject: Vec<u8>,
        issuer: Vec<u8>,
    }
    let mut parsed = Vec::with_capacity(certs.len());
    for der in certs {
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| format!("the backend returned a malformed certificate: {e}"))?;
        let (subject, issuer) = (
            cert.subject().as_raw().to_vec(),
            cert.issuer().as_raw().to_vec(),
        );
        parsed.push(Parsed {
            der,
            subject,
            issuer,
        });
    }
    parsed.dedup_by(|a, b| a.der == b.der);
    let self_signed = |p: &Parsed| p.subject == p.issuer;
    let issued_another = |p: &Parsed, all: &[Parsed]| {
        all.iter()
            .any(|o| o.der != p.der && !self_signed(o) && o.issuer == p.subject)
    };
    let leaves: Vec<usize> = (0..parsed.len())
        .filter(|&i| !self_signed(&parsed[i]) && !issued_another(&parsed[i], &parsed))
        .collect();
    let leaf = match leaves.as_slice() {
        [one] => *one,
        [] => return Err("the backend returned no end-entity certificate".into()),
        _ => {
            return Err(format!(
                "the backend returned {} unrelated end-entity certificates",
                leaves.len()
            ))
        }
    };
    let mut chain = vec![parsed.swap_remove(leaf)];
    loop {
        let last = chain.last().expect("the chain has its leaf");
        if self_signed(last) {
            break;
        }
        let Some(next) = parsed.iter().position(|p| p.subject == last.issuer) else {
            break;
        };
        let next = parsed.swap_remove(next);
        if self_signed(&next) {
            // A leaf the root signed directly (Easy-RSA's default) keeps the root: some
            // clients (certbot) refuse a chain of one certificate.
            if chain.len() == 1 {
                chain.push(next);
            }
            break;
        }
        chain.push(next);
    }
    Ok(chain.into_iter().map(|p| p.der).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    /// A root, an intermediate and a leaf, DER.
    fn hierarchy() -> [Vec<u8>; 3] {
        let root_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, "Root");
        let root = p.self_signed(&root_key).unwrap();
        let root_issuer = rcgen::Issuer::new(p, &root_key);
        let int_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Intermediate");
        let int = p.signed_by(&int_key, &root_issuer).unwrap();
        let int_issuer = rcgen::Issuer::new(p, &int_key);
        let leaf_key = KeyPair::generate().unwrap();
        let p = CertificateParams::new(vec!["a.example".to_string()]).unwrap();
        let leaf = p.signed_by(&leaf_key, &int_issuer).unwrap();
        [leaf.der().to_vec(), int.der().to_vec(), root.der().to_vec()]
    }

    fn pem(der: &[u8], label: &str) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    /// A certs-only PKCS#7 of `certs`, DER.
    fn pkcs7(certs: &[&Vec<u8>]) -> Vec<u8> {
        use cms::cert::x509::Certificate;
        use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignerInfos};
        let set: Vec<CertificateChoices> = certs
            .iter()
            .map(|d| CertificateChoices::Certificate(Certificate::from_der(d).unwrap()))
            .collect();
        let signed = SignedData {
            version: cms::content_info::CmsVersion::V1,
            digest_algorithms: Default::default(),
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: ID_DATA,
                econtent: None,
            },
            certificates: Some(CertificateSet(set.try_into().unwrap())),
            crls: None,
            signer_infos: SignerInfos(Default::default()),
        };
        ContentInfo {
            content_type: ID_SIGNED_DATA,
            content: der::Any::encode_from(&signed).unwrap(),
        }
        .to_der()
        .unwrap()
    }

    #[test]
    fn pem_in_any_order_comes_out_leaf_first_without_the_root() {
        let [leaf, int, root] = hierarchy();
        let text = format!(
            "{}{}{}",
            pem(&root, "CERTIFICATE"),
            pem(&int, "CERTIFICATE"),
            pem(&leaf, "CERTIFICATE")
        );
        let chain = certificates(text.as_bytes()).unwrap();
        assert_eq!(
            chain,
            vec![CertificateDer::from(leaf), CertificateDer::from(int)]
        );
    }

    #[test]
    fn a_root_that_signed_the_leaf_itself_stays_in_the_chain() {
        // The intermediate stands for a leaf that the root signed directly.
        let [_, int, root] = hierarchy();
        let text = format!("{}{}", pem(&root, "CERTIFICATE"), pem(&int, "CERTIFICATE"));
        assert_eq!(
            certificates(text.as_bytes()).unwrap(),
            vec![CertificateDer::from(int), CertificateDer::from(root)]
        );
    }

    #[test]
    fn one_der_certificate() {
        let [leaf, ..] = hierarchy();
        assert_eq!(
            certificates(&leaf).unwrap(),
            vec![CertificateDer::from(leaf)]
        );
    }

    #[test]
    fn pkcs7_der_and_pem() {
        let [leaf, int, root] = hierarchy();
        let p7 = pkcs7(&[&int, &root, &leaf]);
        let want = vec![
            CertificateDer::from(leaf.clone()),
            CertificateDer::from(int.clone()),
        ];
        assert_eq!(certificates(&p7).unwrap(), want);
        assert_eq!(certificates(pem(&p7, "PKCS7").as_bytes()).unwrap(), want);
    }

    #[test]
    fn garbage_two_leaves_and_nothing_are_refused() {
        assert!(certificates(b"hello").is_err());
        assert!(certificates(b"").is_err());
        assert!(
            certificates(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        let [a, ..] = hierarchy();
        let [b, ..] = hierarchy();
        let text = format!("{}{}", pem(&a, "CERTIFICATE"), pem(&b, "CERTIFICATE"));
        assert!(certificates(text.as_bytes())
            .unwrap_err()
            .contains("unrelated"));
        // Only a root: no end-entity certificate.
        let [_, _, root] = hierarchy();
        assert!(certificates(&root).is_err());
    }
}
