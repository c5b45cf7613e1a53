//! Certificates: reading what a CA issued (PEM chains, SANs, serials, the PKI URLs in a
//! certificate, the ARI identifier), making CSRs, and a TLS identity for a test server.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// The URLs a certificate names for relying parties: (CRL Distribution Points, AIA OCSP,
/// AIA caIssuers).
pub fn pki_urls(der: &[u8]) -> (Vec<String>, Vec<String>, Vec<String>) {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let uri = |n: &GeneralName<'_>| match n {
        GeneralName::URI(u) => u.to_string(),
        other => panic!("not a URI: {other:?}"),
    };
    let (mut crl, mut ocsp, mut issuers) = (Vec::new(), Vec::new(), Vec::new());
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(cdp) => {
                for point in cdp.iter() {
                    if let Some(DistributionPointName::FullName(names)) = &point.distribution_point
                    {
                        crl.extend(names.iter().map(uri));
                    }
                }
            }
            ParsedExtension::AuthorityInfoAccess(aia) => {
                for d in &aia.accessdescs {
                    match d.access_method.to_id_string().as_str() {
                        "1.3.6.1.5.5.7.48.1" => ocsp.push(uri(&d.access_location)),
                        "1.3.6.1.5.5.7.48.2" => issuers.push(uri(&d.access_location)),
                        other => panic!("unexpected AIA method {other}"),
                    }
                }
            }
            _ => {}
        }
    }
    (crl, ocsp, issuers)
}

/// A CSR (DER) for `names` with no subject, signed by `key`.
pub fn csr(names: &[&str], key: &rcgen::KeyPair) -> Vec<u8> {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.serialize_request(key).unwrap().der().to_vec()
}

/// Splits a PEM chain into DER certificates.
pub fn pem_chain(pem: &str) -> Vec<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap().to_vec())
        .collect()
}

/// The ARI certificate identifier of a certificate.
pub fn ari_id(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let aki = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .unwrap();
    certwright_proto::ari::cert_id(&aki, cert.raw_serial())
}

/// The lower-case hex serial of the leaf of a PEM chain, as the store keys it.
pub fn leaf_serial(chain: &str) -> String {
    let der = pem_chain(chain).remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.raw_serial_as_string().replace(':', "").to_lowercase()
}

/// The subjectAltNames of `cert` as `dns:NAME` and `ip:ADDRESS` (anything else in
/// x509-parser's debug form).
pub fn san_strings(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    cert.subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => format!("dns:{d}"),
            GeneralName::IPAddress(o) if o.len() == 4 => {
                format!("ip:{}", std::net::Ipv4Addr::new(o[0], o[1], o[2], o[3]))
            }
            other => format!("{other:?}"),
        })
        .collect()
}

/// The DER certificates in a PEM file, in order.
pub fn pem_certs(path: &Path) -> Vec<Vec<u8>> {
    let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let certs: Vec<Vec<u8>> = x509_parser::pem::Pem::iter_from_buffer(&data)
        .map(|p| p.unwrap_or_else(|e| panic!("bad PEM in {}: {e}", path.display())))
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
        .collect();
    assert!(!certs.is_empty(), "no certificate in {}", path.display());
    certs
}

/// What a test checks about a leaf certificate.
#[derive(Debug)]
pub struct Leaf {
    /// The serial number, lower-case hex.
    pub serial_hex: String,
    /// The subjectAltName DNS names.
    pub dns_names: Vec<String>,
    /// Whether the extended key usage includes serverAuth.
    pub server_auth: bool,
}

/// Serial, DNS SANs and serverAuth EKU of the first certificate in `path`.
pub fn leaf(path: &Path) -> Leaf {
    let der = pem_certs(path).remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()));
    let mut dns_names: Vec<String> = cert
        .subject_alternative_name()
        .expect("well-formed SAN extension")
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    dns_names.sort();
    let server_auth = cert
        .extended_key_usage()
        .ok()
        .flatten()
        .map(|eku| eku.value.server_auth)
        .unwrap_or(false);
    let serial_hex = cert.raw_serial().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    Leaf {
        serial_hex,
        dns_names,
        server_auth,
    }
}

/// Writes the first certificate of `bundle` to `out` (openssl verify reads one per file).
pub fn write_first_cert(bundle: &Path, out: &Path) {
    let der = pem_certs(bundle).remove(0);
    fs::write(out, pem_encode(&der)).unwrap();
}

/// One DER certificate as PEM.
pub fn pem_encode(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// A CA certificate and a localhost leaf for a test server's HTTPS listener.
/// Returns (root, certificate, key) paths in `dir`.
pub fn tls_identity(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (ca, ca_key, ca_cert) = self_signed_ca("certwright test listener CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (root, cert, keyp) = (
        dir.join("listener-root.pem"),
        dir.join("listener.pem"),
        dir.join("listener.key"),
    );
    std::fs::write(&root, ca_cert.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&keyp, key.serialize_pem()).unwrap();
    (root, cert, keyp)
}

/// A fresh self-signed, unconstrained CA certificate named `common_name`: its parameters,
/// key and certificate.
pub fn self_signed_ca(
    common_name: &str,
) -> (rcgen::CertificateParams, rcgen::KeyPair, rcgen::Certificate) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let cert = params.self_signed(&key).unwrap();
    (params, key, cert)
}
