//! The plain-HTTP PKI listener (`pki_http_listen`) of an in-process CA: certificates name
//! http:// URLs on it for the CRL, OCSP and the issuer certificate; the real `openssl`
//! fetches and checks what those URLs serve; the listener serves nothing of ACME.

mod harness;

use std::path::Path;

use certwright_proto::b64;
use harness::x509::pki_urls;
use harness::{ocsp_query_args, openssl, pem_chain, TestCa};
use serde_json::json;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .no_proxy()
        .build()
        .unwrap()
}

async fn get(url: &str) -> reqwest::Response {
    http().get(url).send().await.unwrap()
}

fn write_pem(path: &Path, der: &[u8]) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    std::fs::write(
        path,
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        ),
    )
    .unwrap();
}

/// The CRL, OCSP and caIssuers URLs inside an issued certificate point at the plain-HTTP
/// listener; what they serve is what openssl needs: `openssl crl -CAfile` verifies the
/// CRL, `openssl verify -crl_check` (with the CRL fetched, and with `-crl_download`,
/// where openssl fetches it from the CRL DP itself) accepts the leaf, `openssl ocsp -url
/// <the AIA URL>` says good — and after a revocation, all of them say revoked.
#[tokio::test]
async fn openssl_checks_what_the_urls_in_a_certificate_serve_over_plain_http() {
    let ca = TestCa::start().await;
    assert!(
        ca.pki_base.starts_with("http://127.0.0.1:"),
        "{}",
        ca.pki_base
    );
    assert_ne!(ca.pki_base, ca.base);
    let acme = ca.account().await;
    let (_, _, chain) = acme.issue(&["pki.example.test"], &ca.responder).await;
    let certs = pem_chain(&chain);
    let leaf = &certs[0];

    let (crl_urls, ocsp_urls, issuer_urls) = pki_urls(leaf);
    assert_eq!(crl_urls, [format!("{}/crl/intermediate.crl", ca.pki_base)]);
    assert_eq!(ocsp_urls, [format!("{}/ocsp", ca.pki_base)]);
    assert_eq!(
        issuer_urls,
        [format!("{}/ca/intermediate.der", ca.pki_base)]
    );

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pem(&d.join("leaf.pem"), leaf);
    std::fs::write(d.join("root.pem"), &ca.root_pem).unwrap();

    // The issuer, from the caIssuers URL.
    let r = get(&issuer_urls[0]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pkix-cert");
    let issuer = r.bytes().await.unwrap().to_vec();
    assert_eq!(
        issuer, certs[1],
        "caIssuers serves the certificate's issuer"
    );
    write_pem(&d.join("issuer.pem"), &issuer);

    // The CRL, from the CRL Distribution Point.
    let fetch_crl = |url: String| async move {
        let r = get(&url).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/pkix-crl");
        r.bytes().await.unwrap().to_vec()
    };
    std::fs::write(d.join("crl.der"), fetch_crl(crl_urls[0].clone()).await).unwrap();
    let (ok, text) = openssl(
        d,
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
    )
    .await;
    assert!(ok && text.contains("verify OK"), "{text}");
    let (ok, text) = openssl(
        d,
        &["crl", "-inform", "DER", "-in", "crl.der", "-out", "crl.pem"],
    )
    .await;
    assert!(ok, "{text}");
    let verify = [
        "verify",
        "-crl_check",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "issuer.pem",
        "-CRLfile",
        "crl.pem",
        "leaf.pem",
    ];
    let (ok, text) = openssl(d, &verify).await;
    assert!(ok && text.contains("leaf.pem: OK"), "{text}");
    // openssl fetches the CRL from the URL in the certificate itself (plain HTTP only).
    let download = [
        "verify",
        "-crl_check",
        "-crl_download",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "issuer.pem",
        "leaf.pem",
    ];
    let (ok, text) = openssl(d, &download).await;
    assert!(ok && text.contains("leaf.pem: OK"), "{text}");

    // OCSP, at the URL of the AIA.
    let ocsp = ocsp_query_args("issuer.pem", &ocsp_urls[0], &[]);
    let (ok, text) = openssl(d, &ocsp).await;
    assert!(ok, "{text}");
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(text.contains("leaf.pem: good"), "{text}");

    // Revoked (by its account, over ACME on the main listener): every check says so.
    let r = acme
        .post(
            &acme.dir.revoke_cert.clone(),
            Some(&json!({"certificate": b64::encode(leaf), "reason": 1})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    std::fs::write(d.join("crl.der"), fetch_crl(crl_urls[0].clone()).await).unwrap();
    let (ok, text) = openssl(
        d,
        &["crl", "-inform", "DER", "-in", "crl.der", "-out", "crl.pem"],
    )
    .await;
    assert!(ok, "{text}");
    let (ok, text) = openssl(d, &verify).await;
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    let (ok, text) = openssl(d, &download).await;
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    let (ok, text) = openssl(d, &ocsp).await;
    assert!(ok, "{text}");
    assert!(text.contains("leaf.pem: revoked"), "{text}");
    assert!(text.contains("Reason: keyCompromise"), "{text}");
}

/// The plain listener serves the PKI resources (the same bytes as the ACME listener) and
/// nothing else: the directory, newNonce, newAccount, newOrder, revokeCert and ARI are
/// 404 there, without nonces, and a request refused there changed nothing — the very
/// JWS it refused is then accepted by the ACME listener (its nonce was never used).
#[tokio::test]
async fn the_plain_listener_serves_only_the_pki_resources() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let (_, _, chain) = acme.issue(&["only.example.test"], &ca.responder).await;
    let leaf = pem_chain(&chain).remove(0);
    let pki = &ca.pki_base;

    // Signed requests for the main listener's URLs, prepared before the snapshot.
    let order_payload = json!({"identifiers": [{"type": "dns", "value": "plain.example.test"}]});
    let new_order = acme.jws(&acme.dir.new_order, Some(&order_payload)).await;
    let revoke = acme
        .jws(
            &acme.dir.revoke_cert,
            Some(&json!({"certificate": b64::encode(&leaf)})),
        )
        .await;
    let before = ca.store.snapshot().await.unwrap();

    for path in [
        "/directory",
        "/acme/new-nonce",
        "/acme/renewal-info/x.y",
        "/acme/acct/1",
        "/",
    ] {
        let r = get(&format!("{pki}{path}")).await;
        assert_eq!(r.status(), 404, "GET {path}");
        assert!(r.headers().get("replay-nonce").is_none(), "{path}");
        assert!(r.headers().get("link").is_none(), "{path}");
    }
    let r = http()
        .head(format!("{pki}/acme/new-nonce"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("replay-nonce").is_none());
    for (path, jws) in [
        ("/acme/new-order", &new_order),
        ("/acme/revoke-cert", &revoke),
        ("/acme/new-account", &new_order),
        ("/acme/key-change", &new_order),
    ] {
        let r = acme.send_jws(&format!("{pki}{path}"), jws).await;
        assert_eq!(r.status, 404, "POST {path}");
        assert!(r.headers.get("replay-nonce").is_none(), "{path}");
    }
    assert_eq!(
        ca.store.snapshot().await.unwrap(),
        before,
        "nothing changed"
    );
    // The same signed newOrder, sent where it belongs, is accepted: its nonce is unused.
    let r = acme.send_jws(&acme.dir.new_order, &new_order).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    // The PKI resources, the same as on the ACME listener.
    for path in ["/crl/intermediate.crl", "/ca/intermediate.der"] {
        let plain = get(&format!("{pki}{path}")).await;
        assert_eq!(plain.status(), 200, "{path}");
        assert!(plain.headers().get("replay-nonce").is_none(), "{path}");
        let main = get(&format!("{}{path}", ca.base)).await;
        assert_eq!(main.status(), 200, "{path}");
        assert_eq!(
            plain.headers()["content-type"],
            main.headers()["content-type"]
        );
        assert_eq!(
            plain.bytes().await.unwrap(),
            main.bytes().await.unwrap(),
            "{path}"
        );
    }
    // OCSP by POST: garbage is an OCSP malformedRequest; a body over the limit too
    // (refused unread beyond 4096 bytes).
    for body in [vec![0x30, 0x00], vec![0x30; 64 * 1024]] {
        let r = http()
            .post(format!("{pki}/ocsp"))
            .header("content-type", "application/ocsp-request")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/ocsp-response");
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            [0x30, 0x03, 0x0a, 0x01, 0x01]
        );
    }
    // A PKI resource with another method.
    let r = http()
        .post(format!("{pki}/crl/intermediate.crl"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

/// With `pki_http_listen = "off"` there is no plain listener; certificates name the base
/// URL (the operator serves the PKI resources some other way).
#[tokio::test]
async fn the_plain_listener_can_be_turned_off() {
    let ca = TestCa::start_with(|c| {
        c.pki_http_listen = certwright_server::config::PkiHttpListen(None);
    })
    .await;
    assert_eq!(ca.pki_base, ca.base);
    let acme = ca.account().await;
    let (_, _, chain) = acme.issue(&["off.example.test"], &ca.responder).await;
    let (crl, ocsp, issuers) = pki_urls(&pem_chain(&chain)[0]);
    assert_eq!(crl, [format!("{}/crl/intermediate.crl", ca.base)]);
    assert_eq!(ocsp, [format!("{}/ocsp", ca.base)]);
    assert_eq!(issuers, [format!("{}/ca/intermediate.der", ca.base)]);
}
