//! The OCSP responder against an in-process CA, checked by the real `openssl ocsp`: good,
//! then revoked with the reason; with and without a nonce; GET and POST; unknown serials,
//! foreign issuers and garbage; the caIssuers URL; OCSP turned off.

mod harness;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use certwright_server::store::Actor;
use der::Decode;
use harness::{ocsp_query_args, pem_chain, TestCa};
use x509_ocsp::{OcspResponse, OcspResponseStatus};
use x509_parser::prelude::*;

/// Files openssl reads: the leaf, the intermediate (issuer) and the root.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(ca: &TestCa, chain_pem: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let end = "-----END CERTIFICATE-----";
        let leaf = &chain_pem[..chain_pem.find(end).unwrap() + end.len()];
        std::fs::write(dir.path().join("leaf.pem"), format!("{leaf}\n")).unwrap();
        std::fs::copy(
            ca.data_dir.join("intermediate.pem"),
            dir.path().join("intermediate.pem"),
        )
        .unwrap();
        std::fs::copy(ca.data_dir.join("root.pem"), dir.path().join("root.pem")).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs openssl in the directory (bounded in time); returns (success, stdout+stderr).
    async fn openssl(&self, args: &[&str]) -> (bool, String) {
        harness::openssl(self.dir.path(), args).await
    }
}

fn leaf_der(chain_pem: &str) -> Vec<u8> {
    pem_chain(chain_pem).remove(0)
}

fn serial_hex(der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    cert.raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The (method OID, URI) pairs of a certificate's Authority Information Access.
fn aia(der: &[u8]) -> Vec<(String, String)> {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityInfoAccess(a) => Some(
                a.accessdescs
                    .iter()
                    .map(|d| match d.access_location {
                        GeneralName::URI(u) => (d.access_method.to_id_string(), u.to_string()),
                        _ => panic!("AIA locations are URIs"),
                    })
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .no_proxy()
        .build()
        .unwrap()
}

/// The response status of an OCSP response body.
fn ocsp_status(body: &[u8]) -> OcspResponseStatus {
    OcspResponse::from_der(body).unwrap().response_status
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn openssl_sees_good_then_revoked_with_the_reason() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let (_, _, chain) = acme.issue(&["a.example.test"], &ca.responder).await;
    let leaf = leaf_der(&chain);
    // The responder URL in the certificate is on the plain-HTTP PKI listener; openssl
    // asks there.
    let url = format!("{}/ocsp", ca.pki_base);
    assert!(url.starts_with("http://") && ca.pki_base != ca.base);

    // The certificate names the responder and its issuer's certificate, which is served
    // on both listeners.
    assert_eq!(
        aia(&leaf),
        [
            ("1.3.6.1.5.5.7.48.1".to_string(), url.clone()),
            (
                "1.3.6.1.5.5.7.48.2".to_string(),
                format!("{}/ca/intermediate.der", ca.pki_base)
            ),
        ]
    );
    for base in [&ca.pki_base, &ca.base] {
        let r = http()
            .get(format!("{base}/ca/intermediate.der"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/pkix-cert");
        assert_eq!(r.bytes().await.unwrap().to_vec(), pem_chain(&chain)[1]);
    }

    let files = Files::new(&ca, &chain);
    let ask = |extra: &'static [&'static str]| {
        let extra = [&["-resp_text"][..], extra].concat();
        ocsp_query_args("intermediate.pem", &url, &extra)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let files = &files;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            files.openssl(&args).await
        }
    };

    // With a nonce (openssl's default): verified, good, nonce echoed.
    let (ok, text) = run(ask(&[])).await;
    assert!(ok, "{text}");
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(text.contains("leaf.pem: good"), "{text}");
    assert!(text.contains("OCSP Nonce"), "{text}");
    assert!(!text.contains("WARNING"), "{text}");
    assert!(text.contains("Responder Id:"), "{text}");
    assert!(text.contains("Next Update:"), "{text}");
    // Without one.
    let (ok, text) = run(ask(&["-no_nonce"])).await;
    assert!(ok, "{text}");
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(text.contains("leaf.pem: good"), "{text}");
    assert!(!text.contains("OCSP Nonce"), "{text}");

    // Revoked for key compromise: openssl sees it at once, with time and reason.
    assert!(ca
        .store
        .revoke_certificate(&serial_hex(&leaf), 1, now(), &Actor::Operator(None))
        .await
        .unwrap());
    for extra in [&[][..], &["-no_nonce"][..]] {
        let (ok, text) = run(ask(extra)).await;
        assert!(ok, "{text}");
        assert!(text.contains("Response verify OK"), "{text}");
        assert!(text.contains("leaf.pem: revoked"), "{text}");
        assert!(text.contains("Reason: keyCompromise"), "{text}");
        assert!(text.contains("Revocation Time:"), "{text}");
    }
}

#[tokio::test]
async fn get_requests_unknown_serials_foreign_issuers_and_garbage() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let (_, _, chain) = acme.issue(&["b.example.test"], &ca.responder).await;
    let files = Files::new(&ca, &chain);
    let url = format!("{}/ocsp", ca.base);

    // A DER request from openssl, sent by GET as base64 in the path: raw and
    // percent-encoded.
    let (ok, text) = files
        .openssl(&[
            "ocsp",
            "-issuer",
            "intermediate.pem",
            "-cert",
            "leaf.pem",
            "-no_nonce",
            "-reqout",
            "req.der",
        ])
        .await;
    assert!(ok, "{text}");
    let req = std::fs::read(files.path("req.der")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&req);
    let encoded = b64
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    for path in [&b64, &encoded] {
        let r = http().get(format!("{url}/{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "application/ocsp-response");
        let cache = h["cache-control"].to_str().unwrap();
        assert_eq!(
            cache, "max-age=86400, public, no-transform, must-revalidate",
            "{cache}"
        );
        let last_modified = h["last-modified"].to_str().unwrap().to_owned();
        let expires = h["expires"].to_str().unwrap().to_owned();
        assert!(last_modified.ends_with(" GMT") && expires.ends_with(" GMT"));
        assert_ne!(last_modified, expires);
        assert!(h.contains_key("etag"));
        // openssl reads the response it got by GET: verified and good.
        std::fs::write(files.path("resp.der"), r.bytes().await.unwrap()).unwrap();
        let (ok, text) = files
            .openssl(&[
                "ocsp",
                "-respin",
                "resp.der",
                "-issuer",
                "intermediate.pem",
                "-cert",
                "leaf.pem",
                "-CAfile",
                "root.pem",
                "-no_nonce",
            ])
            .await;
        assert!(ok, "{text}");
        assert!(text.contains("Response verify OK"), "{text}");
        assert!(text.contains("leaf.pem: good"), "{text}");
    }

    // A serial this CA never issued: unknown.
    let (ok, text) = files
        .openssl(&[
            "ocsp",
            "-issuer",
            "intermediate.pem",
            "-serial",
            "0x7f0123456789",
            "-CAfile",
            "root.pem",
            "-timeout",
            "10",
            "-url",
            &url,
        ])
        .await;
    assert!(ok, "{text}");
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(text.contains("0x7f0123456789: unknown"), "{text}");

    // Asking about the leaf as if the root had issued it: not ours to answer.
    let (_, text) = files
        .openssl(&[
            "ocsp", "-issuer", "root.pem", "-cert", "leaf.pem", "-CAfile", "root.pem", "-timeout",
            "10", "-url", &url,
        ])
        .await;
    assert!(text.contains("unauthorized"), "{text}");

    // Garbage, empty and oversized requests: malformedRequest, HTTP 200, never cached.
    let client = http();
    let posts = [
        b"garbage".to_vec(),
        Vec::new(),
        vec![0x30; 5000],
        req[..req.len() - 1].to_vec(),
    ];
    for body in posts {
        let r = client
            .post(&url)
            .header("content-type", "application/ocsp-request")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/ocsp-response");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let bytes = r.bytes().await.unwrap();
        assert_eq!(
            ocsp_status(&bytes),
            OcspResponseStatus::MalformedRequest,
            "{} bytes",
            body.len()
        );
    }
    for path in [
        "/ocsp",
        "/ocsp/!!!!",
        "/ocsp/bm90IGFuIG9jc3AgcmVxdWVzdA==",
        "/ocsp/%FF%FE",
    ] {
        let r = client
            .get(format!("{}{path}", ca.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let bytes = r.bytes().await.unwrap();
        assert_eq!(
            ocsp_status(&bytes),
            OcspResponseStatus::MalformedRequest,
            "{path}"
        );
    }

    // The POSTed request gets the same answer as the GET.
    let r = client
        .post(&url)
        .header("content-type", "application/ocsp-request")
        .body(req)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        ocsp_status(&r.bytes().await.unwrap()),
        OcspResponseStatus::Successful
    );
}

#[tokio::test]
async fn ocsp_can_be_turned_off() {
    let ca = TestCa::start_with(|c| c.ocsp.enabled = false).await;
    let acme = ca.account().await;
    let (_, _, chain) = acme.issue(&["c.example.test"], &ca.responder).await;
    // No responder URL in the certificate; the issuer's certificate is still named and
    // served.
    assert_eq!(
        aia(&leaf_der(&chain)),
        [(
            "1.3.6.1.5.5.7.48.2".to_string(),
            format!("{}/ca/intermediate.der", ca.pki_base)
        )]
    );
    for base in [&ca.pki_base, &ca.base] {
        let r = http()
            .get(format!("{base}/ca/intermediate.der"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = http()
            .post(format!("{base}/ocsp"))
            .body(vec![0x30, 0x00])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    assert!(!ca.data_dir.join("ocsp.key").exists());
}
