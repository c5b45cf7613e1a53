//! Certificate reading shared by the in-process (`harness`) and process (`support`) kits.

#![allow(dead_code)]

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
