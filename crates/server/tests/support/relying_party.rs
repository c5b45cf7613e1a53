//! A relying party's checks of an issued certificate, using only the URLs inside it.

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::{ocsp_query_args, openssl, pem_certs, write_first_cert, x509::pki_urls, CaProcess};

/// GET over plain HTTP (no TLS, no proxy): status and body.
pub(crate) fn plain_get(url: &str) -> (u16, Vec<u8>) {
    assert!(url.starts_with("http://"), "{url}");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let r = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap()
                .get(url)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
        })
}

/// Checks a client's certificate the way a relying party would, using only the URLs inside
/// it: they are http:// URLs on the CA's plain-HTTP PKI listener, those of `issuer`; the
/// caIssuers URL serves
/// the issuer the client got; `openssl crl -CAfile` verifies the CRL from the CRL DP;
/// `openssl verify -crl_check` accepts (or, when `revoked`, refuses) the chain with that
/// CRL and with the CRL openssl downloads itself; `openssl ocsp -url <AIA>` says good or
/// revoked.
pub(crate) fn check_as_relying_party(
    ca: &CaProcess,
    issuer: &str,
    bundle: &Path,
    work: &Path,
    revoked: bool,
) {
    let pki = format!(
        "http://localhost:{}",
        ca.pki_http_listen.expect("the PKI listener is on").port()
    );
    fs::create_dir_all(work).unwrap();
    let certs = pem_certs(bundle);
    write_first_cert(bundle, &work.join("leaf.pem"));
    fs::copy(ca.root_path(), work.join("root.pem")).unwrap();
    let (crl, ocsp, issuers) = pki_urls(&certs[0]);
    assert_eq!(crl, [format!("{pki}/crl/{issuer}.crl")]);
    assert_eq!(ocsp, [format!("{pki}/ocsp")]);
    assert_eq!(issuers, [format!("{pki}/ca/{issuer}.der")]);

    let (status, issuer) = plain_get(&issuers[0]);
    assert_eq!(status, 200);
    assert_eq!(
        issuer, certs[1],
        "caIssuers serves the issuer the client got"
    );
    fs::write(work.join("issuer.der"), &issuer).unwrap();
    let (ok, text) = openssl(
        work,
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            "issuer.der",
            "-out",
            "issuer.pem",
        ],
    );
    assert!(ok, "{text}");

    let (status, crl_der) = plain_get(&crl[0]);
    assert_eq!(status, 200);
    fs::write(work.join("crl.der"), crl_der).unwrap();
    let (ok, text) = openssl(
        work,
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            "crl.der",
            "-CAfile",
            "issuer.pem",
            "-noout",
            "-verify",
        ],
    );
    assert!(ok && text.contains("verify OK"), "{text}");
    let (ok, text) = openssl(
        work,
        &["crl", "-inform", "DER", "-in", "crl.der", "-out", "crl.pem"],
    );
    assert!(ok, "{text}");
    for download in [false, true] {
        let mut args = vec![
            "verify",
            "-purpose",
            "sslserver",
            "-crl_check",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "issuer.pem",
        ];
        if download {
            args.push("-crl_download");
        } else {
            args.extend(["-CRLfile", "crl.pem"]);
        }
        args.push("leaf.pem");
        let (ok, text) = openssl(work, &args);
        if revoked {
            assert!(
                !ok && text.contains("certificate revoked"),
                "{args:?}: {text}"
            );
        } else {
            assert!(ok && text.contains("leaf.pem: OK"), "{args:?}: {text}");
        }
    }
    let (ok, text) = openssl(work, &ocsp_query_args("issuer.pem", &ocsp[0], &[]));
    assert!(ok && text.contains("Response verify OK"), "{text}");
    let want = if revoked {
        "leaf.pem: revoked"
    } else {
        "leaf.pem: good"
    };
    assert!(text.contains(want), "{text}");
}
