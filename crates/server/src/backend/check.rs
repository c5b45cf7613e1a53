//! The check before delivery: a certificate a backend returned is stored only if its key
//! is the CSR's, it names exactly the order's identifiers, it is an end-entity
//! certificate valid now, and its chain links (up to a configured trust anchor, when
//! there is one). Anything else fails the order; a client never receives a certificate
//! that does not match its order.

use std::collections::BTreeSet;
use std::net::IpAddr;

use certwright_proto::types::{Identifier, IdentifierType};
use rustls::pki_types::CertificateDer;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::encoding::{hex, pem_certificate};

/// How far in the future a backend's notBefore may be (clock skew between the CAs).
const NOT_BEFORE_SKEW_SECS: i64 = 300;

/// A delivered certificate that passed the checks, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The leaf, DER.
    pub der: Vec<u8>,
    /// The leaf and its chain, PEM, leaf first.
    pub chain_pem: String,
    /// The leaf's serial, lowercase hex.
    pub serial_hex: String,
    /// Its validity, Unix seconds.
    pub not_before: i64,
    /// See `not_before`.
    pub not_after: i64,
}

/// Why a delivered certificate was refused (for the log and the audit trail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Mismatch(pub String);

/// Checks `chain` (leaf first, from `convert::certificates`) against the order: the CSR
/// `csr_der`, the `identifiers`, the time `now`, and the backend's `anchors` (empty: the
/// chain must only link).
pub fn check(
    chain: &[CertificateDer<'_>],
    csr_der: &[u8],
    identifiers: &[Identifier],
    now: i64,
    anchors: &[CertificateDer<'_>],
) -> Result<Delivered, Mismatch> {
    let bad = |why: String| Err(Mismatch(why));
    let Some(leaf_der) = chain.first() else {
        return bad("no certificate".into());
    };
    let parsed: Vec<X509Certificate<'_>> = chain
        .iter()
        .map(|d| {
            X509Certificate::from_der(d)
                .map(|(_, c)| c)
                .map_err(|e| Mismatch(format!("a malformed certificate: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let leaf = &parsed[0];
    let (_, csr) = X509CertificationRequest::from_der(csr_der)
        .map_err(|e| Mismatch(format!("the order's CSR does not parse: {e}")))?;
    if leaf.public_key().raw != csr.certification_request_info.subject_pki.raw {
        return bad("the certificate's public key is not the CSR's".into());
    }
    if leaf.is_ca() {
        return bad("the certificate is a CA certificate".into());
    }
    check_names(leaf, identifiers)?;
    let (not_before, not_after) = (
        leaf.validity().not_before.timestamp(),
        leaf.validity().not_after.timestamp(),
    );
    if not_before > now + NOT_BEFORE_SKEW_SECS || not_after <= now {
        return bad(format!(
            "the certificate is not valid now (notBefore {not_before}, notAfter {not_after}, now {now})"
        ));
    }
    for (i, pair) in parsed.windows(2).enumerate() {
        if pair[0].issuer() != pair[1].subject() {
            return bad(format!(
                "certificate {i} of the chain is not issued by certificate {}",
                i + 1
            ));
        }
        pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .map_err(|_| {
                Mismatch(format!(
                    "the signature of certificate {i} of the chain does not verify with certificate {}'s key",
                    i + 1
                ))
            })?;
    }
    if !anchors.is_empty() {
        let last = parsed.last().expect("the chain has a leaf");
        let anchored = anchors.iter().any(|a| {
            X509Certificate::from_der(a).is_ok_and(|(_, anchor)| {
                a.as_ref() == chain.last().expect("non-empty").as_ref()
                    || (anchor.subject() == last.issuer()
                        && last.verify_signature(Some(anchor.public_key())).is_ok())
            })
        });
        if !anchored {
            return bad("the chain does not lead to the backend's trust anchor".into());
        }
    }
    Ok(Delivered {
        der: leaf_der.to_vec(),
        chain_pem: chain.iter().map(|c| pem_certificate(c)).collect(),
        serial_hex: hex(leaf.raw_serial()),
        not_before,
        not_after,
    })
}

/// The leaf names exactly the order's identifiers (subjectAltName; a commonName, if
/// any, must be one of them).
fn check_names(leaf: &X509Certificate<'_>, identifiers: &[Identifier]) -> Result<(), Mismatch> {
    let wanted: BTreeSet<(IdentifierType, String)> = identifiers
        .iter()
        .map(|i| (i.kind, normal(i.kind, &i.value)))
        .collect();
    let mut named = BTreeSet::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    named.insert((IdentifierType::Dns, d.to_ascii_lowercase()));
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).expect("4 bytes")),
                        16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).expect("16 bytes")),
                        _ => return Err(Mismatch("a malformed IP address name".into())),
                    };
                    named.insert((IdentifierType::Ip, ip.to_string()));
                }
                other => {
                    return Err(Mismatch(format!(
                        "the certificate names something the order does not: {other:?}"
                    )))
                }
            }
        }
    }
    if named != wanted {
        let extra: Vec<_> = named.difference(&wanted).map(|(_, v)| v).collect();
        let missing: Vec<_> = wanted.difference(&named).map(|(_, v)| v).collect();
        return Err(Mismatch(format!(
            "the certificate's names are not the order's: extra {extra:?}, missing {missing:?}"
        )));
    }
    for cn in leaf.subject().iter_common_name() {
        let cn = cn.as_str().unwrap_or_default();
        let as_ip = cn
            .parse::<IpAddr>()
            .ok()
            .map(|ip| (IdentifierType::Ip, ip.to_string()));
        let as_dns = (IdentifierType::Dns, cn.to_ascii_lowercase());
        if !wanted.contains(&as_dns) && !as_ip.is_some_and(|ip| wanted.contains(&ip)) {
            return Err(Mismatch(format!(
                "the certificate's commonName {cn:?} is not one of the order's identifiers"
            )));
        }
    }
    Ok(())
}

fn normal(kind: IdentifierType, value: &str) -> String {
    match kind {
        IdentifierType::Dns => value.to_ascii_lowercase(),
        IdentifierType::Ip => value
            .parse::<IpAddr>()
            .map_or_else(|_| value.to_owned(), |ip| ip.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    struct Ca {
        cert: rcgen::Certificate,
        issuer: rcgen::Issuer<'static, KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        Ca {
            cert,
            issuer: rcgen::Issuer::new(p, key),
        }
    }

    fn csr(key: &KeyPair, names: &[&str]) -> Vec<u8> {
        let p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.serialize_request(key).unwrap().der().to_vec()
    }

    fn leaf(ca: &Ca, key: &KeyPair, names: &[&str], cn: Option<&str>) -> CertificateDer<'static> {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.not_before = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
        p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(1);
        if let Some(cn) = cn {
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        }
        p.signed_by(key, &ca.issuer).unwrap().der().clone()
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    fn ids(names: &[&str]) -> Vec<Identifier> {
        names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(_) => Identifier {
                    kind: IdentifierType::Ip,
                    value: (*n).into(),
                },
                Err(_) => Identifier::dns(*n),
            })
            .collect()
    }

    #[test]
    fn a_matching_certificate_passes_with_its_serial_and_pem() {
        let (ca, key) = (ca("Backend CA"), KeyPair::generate().unwrap());
        let names = ["a.example", "B.example", "192.0.2.7"];
        let cert = leaf(&ca, &key, &names, Some("a.example"));
        let chain = [cert.clone(), ca.cert.der().clone()];
        let anchors = [ca.cert.der().clone()];
        let d = check(
            &chain,
            &csr(&key, &names),
            &ids(&["b.example", "a.example", "192.0.2.7"]),
            now(),
            &anchors,
        )
        .unwrap();
        assert_eq!(d.der, cert.to_vec());
        assert_eq!(d.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
        let (_, parsed) = X509Certificate::from_der(&cert).unwrap();
        assert_eq!(d.serial_hex, hex(parsed.raw_serial()));
        // Without the CA in the chain, the anchor still vouches for the leaf.
        check(
            &chain[..1],
            &csr(&key, &names),
            &ids(&names),
            now(),
            &anchors,
        )
        .unwrap();
    }

    #[test]
    fn another_key_other_names_and_other_anchors_are_refused() {
        let (ca1, key) = (ca("Backend CA"), KeyPair::generate().unwrap());
        let names = ["a.example"];
        let request = csr(&key, &names);
        let other_key = KeyPair::generate().unwrap();
        let wrong_key = [leaf(&ca1, &other_key, &names, None)];
        let e = check(&wrong_key, &request, &ids(&names), now(), &[]).unwrap_err();
        assert!(e.0.contains("public key"), "{e}");
        let more_names = [leaf(&ca1, &key, &["a.example", "evil.example"], None)];
        let e = check(&more_names, &request, &ids(&names), now(), &[]).unwrap_err();
        assert!(e.0.contains("evil.example"), "{e}");
        let fewer = [leaf(&ca1, &key, &["a.example"], None)];
        let e = check(
            &fewer,
            &request,
            &ids(&["a.example", "b.example"]),
            now(),
            &[],
        )
        .unwrap_err();
        assert!(e.0.contains("missing"), "{e}");
        let bad_cn = [leaf(&ca1, &key, &names, Some("evil.example"))];
        assert!(check(&bad_cn, &request, &ids(&names), now(), &[]).is_err());
        let ca2 = ca("Someone else");
        let good = leaf(&ca1, &key, &names, None);
        let e = check(
            std::slice::from_ref(&good),
            &request,
            &ids(&names),
            now(),
            &[ca2.cert.der().clone()],
        )
        .unwrap_err();
        assert!(e.0.contains("trust anchor"), "{e}");
        // A chain whose second certificate did not issue the first.
        let e = check(
            &[good.clone(), ca2.cert.der().clone()],
            &request,
            &ids(&names),
            now(),
            &[],
        )
        .unwrap_err();
        assert!(e.0.contains("not issued by"), "{e}");
        // Expired by now.
        let e = check(&[good], &request, &ids(&names), now() + 2 * 86400, &[]).unwrap_err();
        assert!(e.0.contains("not valid now"), "{e}");
    }
}
