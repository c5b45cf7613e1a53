//! The certificate lifecycle against an in-process CA: EAB, key rollover, revocation with
//! the CRL (checked by openssl too), ARI and profiles.

mod harness;

use certwright_proto::jws::{sign, sign_eab, Signer};
use certwright_proto::{b64, AccountKey, KeyType, ProblemType};
use harness::{csr, pem_chain, Acme, TestCa};
use serde_json::{json, Value};
use x509_parser::prelude::*;

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

async fn get(url: &str) -> reqwest::Response {
    reqwest::Client::new().get(url).send().await.unwrap()
}

/// A renewalInfo answer's suggestedWindow as (start, end), Unix seconds.
fn window(info: &Value) -> (i64, i64) {
    let at = |k: &str| {
        certwright_server::clock::parse_rfc3339(info["suggestedWindow"][k].as_str().unwrap())
            .unwrap()
    };
    (at("start"), at("end"))
}

#[tokio::test]
async fn external_account_binding_is_required_and_checked() {
    let ca = TestCa::start_with(|c| c.directory.external_account_required = true).await;
    let dir: Value = get(&format!("{}/directory", ca.base))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dir["meta"]["externalAccountRequired"], true);
    ca.store
        .create_eab_key(
            "kid-1",
            "team-payments",
            b"0123456789abcdef0123456789abcdef",
            1,
        )
        .await
        .unwrap();
    ca.store
        .create_eab_key("kid-revoked", "old", b"k", 1)
        .await
        .unwrap();
    assert!(ca.store.revoke_eab_key("kid-revoked", 2).await.unwrap());

    let fresh = ca.client(KeyType::EcP256).await;
    let url = fresh.dir.new_account.clone();
    let jwk = fresh.key.jwk();
    let with_eab = |eab: certwright_proto::FlattenedJws| json!({"termsOfServiceAgreed": true, "externalAccountBinding": eab});
    let refusals = vec![
        (
            "no binding",
            json!({"termsOfServiceAgreed": true}),
            ProblemType::ExternalAccountRequired,
            400,
        ),
        (
            "wrong MAC key",
            with_eab(sign_eab(b"not-the-key", "kid-1", &url, &jwk)),
            ProblemType::Unauthorized,
            403,
        ),
        (
            "unknown kid",
            with_eab(sign_eab(b"k", "kid-404", &url, &jwk)),
            ProblemType::Unauthorized,
            403,
        ),
        (
            "revoked kid",
            with_eab(sign_eab(b"k", "kid-revoked", &url, &jwk)),
            ProblemType::Unauthorized,
            403,
        ),
        (
            "wrong url",
            with_eab(sign_eab(
                b"0123456789abcdef0123456789abcdef",
                "kid-1",
                "https://elsewhere/new-acct",
                &jwk,
            )),
            ProblemType::Malformed,
            400,
        ),
        (
            "binds another key",
            with_eab(sign_eab(
                b"0123456789abcdef0123456789abcdef",
                "kid-1",
                &url,
                &AccountKey::generate(KeyType::EcP256).unwrap().jwk(),
            )),
            ProblemType::Unauthorized,
            403,
        ),
    ];
    for (name, payload, kind, status) in refusals {
        let before = ca.store.snapshot().await.unwrap();
        let r = fresh.post(&url, Some(&payload)).await;
        let p = r.assert_problem(kind, status);
        assert_eq!(ca.store.snapshot().await.unwrap(), before, "{name}: {p}");
    }
    let good = sign_eab(b"0123456789abcdef0123456789abcdef", "kid-1", &url, &jwk);
    let r = fresh.post(&url, Some(&with_eab(good))).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let account = ca
        .store
        .account_by_thumbprint(&jwk.thumbprint())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.eab_label.as_deref(), Some("team-payments"));
    assert_eq!(
        ca.store.eab_key("kid-1").await.unwrap().unwrap().account_id,
        Some(account.id)
    );
    // The key binds exactly one account.
    let second = ca.client(KeyType::EcP256).await;
    let eab = sign_eab(
        b"0123456789abcdef0123456789abcdef",
        "kid-1",
        &url,
        &second.key.jwk(),
    );
    second
        .post(&url, Some(&with_eab(eab)))
        .await
        .assert_problem(ProblemType::Unauthorized, 403);
}

#[tokio::test]
async fn key_rollover() {
    let ca = TestCa::start().await;
    let mut acme = ca.account().await;
    let other = ca.account().await;
    let kid = acme.kid.clone().unwrap();
    let url = acme.dir.key_change.clone();
    let new_key = AccountKey::generate(KeyType::EcP384).unwrap();
    let inner =
        |key: &AccountKey, nonce: Option<&str>, inner_url: &str, account: &str, old: Value| {
            let payload = json!({"account": account, "oldKey": old}).to_string();
            sign(
                key,
                &Signer::Jwk(key.jwk()),
                nonce,
                inner_url,
                payload.as_bytes(),
            )
            .unwrap()
        };
    let old = acme.key.jwk().to_value();
    let cases = vec![
        (
            "inner with a nonce",
            serde_json::to_value(inner(&new_key, Some("n"), &url, &kid, old.clone())).unwrap(),
            ProblemType::Malformed,
            400,
        ),
        (
            "inner url differs",
            serde_json::to_value(inner(&new_key, None, &format!("{url}x"), &kid, old.clone()))
                .unwrap(),
            ProblemType::Malformed,
            400,
        ),
        (
            "another account",
            serde_json::to_value(inner(
                &new_key,
                None,
                &url,
                &other.kid.clone().unwrap(),
                old.clone(),
            ))
            .unwrap(),
            ProblemType::Unauthorized,
            403,
        ),
        (
            "wrong oldKey",
            serde_json::to_value(inner(
                &new_key,
                None,
                &url,
                &kid,
                other.key.jwk().to_value(),
            ))
            .unwrap(),
            ProblemType::Unauthorized,
            403,
        ),
        (
            "inner signed by a kid",
            {
                let p = json!({"account": kid, "oldKey": old}).to_string();
                serde_json::to_value(
                    sign(
                        &new_key,
                        &Signer::Kid(kid.clone()),
                        None,
                        &url,
                        p.as_bytes(),
                    )
                    .unwrap(),
                )
                .unwrap()
            },
            ProblemType::Malformed,
            400,
        ),
    ];
    for (name, payload, kind, status) in cases {
        let before = ca.store.snapshot().await.unwrap();
        let p = acme
            .post(&url, Some(&payload))
            .await
            .assert_problem(kind, status);
        assert_eq!(ca.store.snapshot().await.unwrap(), before, "{name}: {p}");
    }
    // The key of another account: 409 with its Location.
    let taken = serde_json::to_value(inner(&other.key, None, &url, &kid, old.clone())).unwrap();
    let r = acme.post(&url, Some(&taken)).await;
    r.assert_problem(ProblemType::Malformed, 409);
    assert_eq!(r.location(), other.kid.clone().unwrap());

    let good = serde_json::to_value(inner(&new_key, None, &url, &kid, old)).unwrap();
    let r = acme.post(&url, Some(&good)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["key"].clone(), new_key.jwk().to_value());
    // The old key no longer works (P-256 against the account's P-384 key); the new one does.
    acme.post(&kid, None)
        .await
        .assert_problem(ProblemType::BadSignatureAlgorithm, 400);
    acme.key = new_key;
    assert_eq!(acme.post(&kid, None).await.status, 200);
    acme.issue(&["rolled.example.test"], &ca.responder).await;
}

#[tokio::test]
async fn revocation_by_each_authority_with_crl_and_openssl() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let revoke_url = acme.dir.revoke_cert.clone();
    let (_, _, chain1) = acme.issue(&["r1.example.test"], &ca.responder).await;
    let leaf1 = leaf_der(&chain1);

    let payload = |der: &[u8], reason: Option<u8>| match reason {
        Some(r) => json!({"certificate": b64::encode(der), "reason": r}),
        None => json!({"certificate": b64::encode(der)}),
    };
    // Refusals change nothing.
    let stranger = ca.account().await;
    for (name, who, body, kind, status) in [
        (
            "reason 7",
            &acme,
            payload(&leaf1, Some(7)),
            ProblemType::BadRevocationReason,
            400,
        ),
        (
            "reason 11",
            &acme,
            payload(&leaf1, Some(11)),
            ProblemType::BadRevocationReason,
            400,
        ),
        (
            "stranger",
            &stranger,
            payload(&leaf1, Some(1)),
            ProblemType::Unauthorized,
            403,
        ),
        (
            "not ours",
            &acme,
            payload(&pem_chain(&ca.root_pem)[0], None),
            ProblemType::Malformed,
            404,
        ),
        (
            "garbage",
            &acme,
            json!({"certificate": "AAAA"}),
            ProblemType::Malformed,
            400,
        ),
    ] {
        let before = ca.store.snapshot().await.unwrap();
        let p = who
            .post(&revoke_url, Some(&body))
            .await
            .assert_problem(kind, status);
        assert_eq!(ca.store.snapshot().await.unwrap(), before, "{name}: {p}");
    }

    // 1. By the account that got it.
    let crl_before = get(&format!("{}/crl/intermediate.crl", ca.base))
        .await
        .bytes()
        .await
        .unwrap();
    let r = acme
        .post(&revoke_url, Some(&payload(&leaf1, Some(4))))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    acme.post(&revoke_url, Some(&payload(&leaf1, Some(4))))
        .await
        .assert_problem(ProblemType::AlreadyRevoked, 400);

    // 2. By another account holding valid authorizations for every name.
    let (_, _, chain2) = acme.issue(&["r2.example.test"], &ca.responder).await;
    let leaf2 = leaf_der(&chain2);
    let holder = ca.account().await;
    holder.issue(&["r2.example.test"], &ca.responder).await;
    assert_eq!(
        holder
            .post(&revoke_url, Some(&payload(&leaf2, None)))
            .await
            .status,
        200
    );

    // 3. Signed with the certificate's own key (jwk), keyCompromise.
    let cert_key = AccountKey::generate(KeyType::EcP256).unwrap();
    let rc_key = rcgen::KeyPair::try_from(cert_key.to_pkcs8().unwrap().as_slice()).unwrap();
    let r = acme.new_order(&["r3.example.test"]).await;
    let order_url = r.location();
    acme.authorize(&r.json(), &ca.responder).await;
    let ready = acme.wait_order(&order_url).await;
    assert_eq!(
        acme.finalize(&ready, &csr(&["r3.example.test"], &rc_key))
            .await
            .status,
        200
    );
    let done = acme.wait_order(&order_url).await;
    let chain3 = String::from_utf8(
        acme.post(done["certificate"].as_str().unwrap(), None)
            .await
            .body,
    )
    .unwrap();
    let leaf3 = leaf_der(&chain3);
    let by_key = acme.rekeyed(cert_key);
    assert_eq!(
        by_key
            .post(&revoke_url, Some(&payload(&leaf3, Some(1))))
            .await
            .status,
        200
    );

    // The CRL lists all three with their reasons, has a higher number, and verifies.
    let crl_der = get(&format!("{}/crl/intermediate.crl", ca.base))
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let (_, crl) = CertificateRevocationList::from_der(&crl_der).unwrap();
    let (_, before) = CertificateRevocationList::from_der(&crl_before).unwrap();
    assert!(crl.crl_number().unwrap() > before.crl_number().unwrap());
    let listed: Vec<(String, Option<u8>)> = crl
        .iter_revoked_certificates()
        .map(|r| {
            (
                r.raw_serial().iter().map(|b| format!("{b:02x}")).collect(),
                r.reason_code().map(|c| c.1 .0),
            )
        })
        .collect();
    assert!(
        listed.contains(&(serial_hex(&leaf1), Some(4))),
        "{listed:?}"
    );
    assert!(listed.contains(&(serial_hex(&leaf2), None)), "{listed:?}");
    assert!(
        listed.contains(&(serial_hex(&leaf3), Some(1))),
        "{listed:?}"
    );

    // openssl agrees: the CRL verifies and the revoked certificate fails a CRL check,
    // while a good one passes.
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n);
    std::fs::write(path("crl.der"), &crl_der).unwrap();
    std::fs::write(path("root.pem"), &ca.root_pem).unwrap();
    let inter_pem = std::fs::read_to_string(ca.data_dir.join("intermediate.pem")).unwrap();
    std::fs::write(path("inter.pem"), &inter_pem).unwrap();
    let openssl = |args: &[&str]| certwright_testkit::peers::openssl::openssl(dir.path(), args);
    let (ok, text) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        "crl.der",
        "-CAfile",
        "inter.pem",
        "-noout",
        "-verify",
        "-text",
    ]);
    assert!(ok && text.contains("verify OK"), "{text}");
    assert!(
        text.contains("Key Compromise") && text.contains("Superseded"),
        "{text}"
    );
    let (ok, _) = openssl(&["crl", "-inform", "DER", "-in", "crl.der", "-out", "crl.pem"]);
    assert!(ok);
    std::fs::write(path("revoked.pem"), pem_of(&leaf1)).unwrap();
    let (ok, text) = openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "inter.pem",
        "-CRLfile",
        "crl.pem",
        "revoked.pem",
    ]);
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    let (_, _, good_chain) = acme.issue(&["good.example.test"], &ca.responder).await;
    std::fs::write(path("good.pem"), pem_of(&leaf_der(&good_chain))).unwrap();
    let (ok, text) = openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "inter.pem",
        "-CRLfile",
        "crl.pem",
        "good.pem",
    ]);
    assert!(ok, "{text}");
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

#[tokio::test]
async fn renewal_information_and_replacement() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let dir: Value = get(&format!("{}/directory", ca.base))
        .await
        .json()
        .await
        .unwrap();
    let ari = dir["renewalInfo"].as_str().unwrap().to_owned();
    let (_, _, chain) = acme.issue(&["ari.example.test"], &ca.responder).await;
    let der = leaf_der(&chain);
    let id = harness::ari_id(&der);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let (nb, na) = (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    );

    let r = get(&format!("{ari}/{id}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["retry-after"], "21600");
    let info: Value = r.json().await.unwrap();
    let (start, end) = window(&info);
    // Around two thirds of the lifetime, with a good margin before expiry.
    let (lifetime, centre) = (na - nb, nb + (na - nb) * 2 / 3);
    assert!(start < centre && centre < end, "{info}");
    assert!(
        na - end > lifetime / 4,
        "the window ends well before expiry: {info}"
    );
    assert_eq!(get(&format!("{ari}/AAAA.BBBB")).await.status(), 404);
    assert_eq!(get(&format!("{ari}/not-an-id")).await.status(), 400);

    // Marked by the operator: a window in the past.
    assert!(ca.store.mark_renew_early(&serial_hex(&der)).await.unwrap());
    let info: Value = get(&format!("{ari}/{id}")).await.json().await.unwrap();
    let (_, end) = window(&info);
    assert!(end < ca.clock.now());

    // replaces: refused for another account and for no shared name; accepted once.
    let other = ca.account().await;
    async fn order(who: &Acme, name: &str, id: &str) -> harness::Resp {
        let body = json!({"identifiers": [{"type": "dns", "value": name}], "replaces": id});
        who.post(&who.dir.new_order.clone(), Some(&body)).await
    }
    other.issue(&["ari.example.test"], &ca.responder).await;
    order(&other, "ari.example.test", &id)
        .await
        .assert_problem(ProblemType::Unauthorized, 403);
    order(&acme, "unrelated.example.test", &id)
        .await
        .assert_problem(ProblemType::Malformed, 400);
    let r = order(&acme, "ari.example.test", &id).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["replaces"], id, "the order echoes replaces");
    let before = ca.store.snapshot().await.unwrap();
    order(&acme, "ari.example.test", &id)
        .await
        .assert_problem(ProblemType::AlreadyReplaced, 409);
    assert_eq!(ca.store.snapshot().await.unwrap(), before);

    // A revoked certificate: renew now.
    let (_, _, chain2) = acme.issue(&["ari2.example.test"], &ca.responder).await;
    let der2 = leaf_der(&chain2);
    acme.post(
        &acme.dir.revoke_cert.clone(),
        Some(&json!({"certificate": b64::encode(&der2)})),
    )
    .await;
    let info: Value = get(&format!("{ari}/{}", harness::ari_id(&der2)))
        .await
        .json()
        .await
        .unwrap();
    let (_, end) = window(&info);
    assert!(end < ca.clock.now());
}

#[tokio::test]
async fn profiles_shape_the_certificate() {
    let ca = TestCa::start().await;
    let dir: Value = get(&format!("{}/directory", ca.base))
        .await
        .json()
        .await
        .unwrap();
    let profiles = dir["meta"]["profiles"].as_object().unwrap();
    assert!(profiles.contains_key("tls-server") && profiles.contains_key("shortlived"));
    let acme = ca.account().await;
    let url = acme.dir.new_order.clone();
    let before = ca.store.snapshot().await.unwrap();
    acme.post(&url, Some(&json!({"identifiers": [{"type": "dns", "value": "p.example.test"}], "profile": "gold"})))
        .await
        .assert_problem(ProblemType::InvalidProfile, 400);
    assert_eq!(ca.store.snapshot().await.unwrap(), before);

    let r = acme.post(&url, Some(&json!({"identifiers": [{"type": "dns", "value": "short.example.test"}], "profile": "shortlived"}))).await;
    assert_eq!(r.status, 201);
    let order_url = r.location();
    let order = r.json();
    assert_eq!(order["profile"], "shortlived");
    acme.authorize(&order, &ca.responder).await;
    let ready = acme.wait_order(&order_url).await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    assert_eq!(
        acme.finalize(&ready, &csr(&["short.example.test"], &key))
            .await
            .status,
        200
    );
    let done = acme.wait_order(&order_url).await;
    let chain = String::from_utf8(
        acme.post(done["certificate"].as_str().unwrap(), None)
            .await
            .body,
    )
    .unwrap();
    let der = leaf_der(&chain);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(
        (7 * 86400..=7 * 86400 + 600).contains(&lifetime),
        "{lifetime}"
    );
    assert!(cert.subject().iter_common_name().next().is_none());

    // The default profile: 90 days, the DV policy, no CN, no SKI (BR §7.1.2.7).
    let (_, order, chain) = acme.issue(&["default.example.test"], &ca.responder).await;
    assert_eq!(order["profile"], "tls-server");
    let der = leaf_der(&chain);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert!(cert.subject().iter_common_name().next().is_none());
    assert!(!has_ski(&cert));
    assert_eq!(policies(&cert), ["2.23.140.1.2.1"]);
}

fn has_ski(cert: &X509Certificate<'_>) -> bool {
    cert.get_extension_unique(&oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
        .unwrap()
        .is_some()
}

/// The Certificate Policies OIDs of a certificate (empty: no extension).
fn policies(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::CertificatePolicies(p) => {
                Some(p.iter().map(|p| p.policy_id.to_id_string()).collect())
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// A configured profile may put back what the default leaves out: the common name (the
/// CSR's), the Subject Key Identifier, other policies or none.
#[tokio::test]
async fn a_profile_may_set_the_common_name_the_ski_and_its_policies() {
    let ca = TestCa::start_with(|c| {
        let legacy = toml::from_str(
            "description = \"legacy\"\ncommon_name = true\nsubject_key_identifier = true\npolicy_oids = [\"2.23.140.1.2.2\", \"1.3.6.1.4.1.99999.1\"]\n",
        )
        .unwrap();
        c.profiles.insert("legacy".into(), legacy);
        c.default_profile = Some("legacy".into());
    })
    .await;
    let acme = ca.account().await;
    let mut params = rcgen::CertificateParams::new(vec!["cn.example.test".to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cn.example.test");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr_der = params.serialize_request(&key).unwrap().der().to_vec();
    let r = acme.new_order(&["cn.example.test"]).await;
    let order_url = r.location();
    assert_eq!(r.json()["profile"], "legacy");
    acme.authorize(&r.json(), &ca.responder).await;
    let ready = acme.wait_order(&order_url).await;
    assert_eq!(acme.finalize(&ready, &csr_der).await.status, 200);
    let done = acme.wait_order(&order_url).await;
    let chain = String::from_utf8(
        acme.post(done["certificate"].as_str().unwrap(), None)
            .await
            .body,
    )
    .unwrap();
    let der = leaf_der(&chain);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(
        cert.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "cn.example.test"
    );
    assert!(has_ski(&cert));
    assert_eq!(policies(&cert), ["2.23.140.1.2.2", "1.3.6.1.4.1.99999.1"]);
    // With a subject, the SAN need not be critical.
    assert!(!cert.subject_alternative_name().unwrap().unwrap().critical);
}

/// An issuer's state lives in the store (both backends): retiring the only issuer stops
/// issuance (the order fails with the fixed sentence, nothing half-stored) and moves its
/// certificates' ARI window before the date; making it active again restores issuance;
/// the usage counts follow.
#[tokio::test]
async fn a_retired_issuer_issues_nothing_and_its_certificates_renew_before_the_date() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let dir: Value = get(&format!("{}/directory", ca.base))
        .await
        .json()
        .await
        .unwrap();
    let ari = dir["renewalInfo"].as_str().unwrap().to_owned();
    let (_, _, chain) = acme.issue(&["retire.example.test"], &ca.responder).await;
    let id = harness::ari_id(&leaf_der(&chain));
    let now = ca.clock.now();
    let usage = ca.store.issuer_usage("intermediate", now).await.unwrap();
    assert_eq!((usage.valid, usage.revoked), (1, 0));

    let by = now + 10 * 86400;
    assert!(ca
        .store
        .retire_issuer("intermediate", by, now)
        .await
        .unwrap());
    assert!(
        !ca.store
            .retire_issuer("intermediate", by, now)
            .await
            .unwrap(),
        "the same state again changes nothing"
    );
    let states = ca.store.issuer_states().await.unwrap();
    assert_eq!(states.len(), 1);
    assert!(states[0].retired && states[0].retire_by == Some(by));
    // Running instances apply it within a few seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let info: Value = get(&format!("{ari}/{id}")).await.json().await.unwrap();
        let (_, end) = window(&info);
        if end == by - 3600 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "ARI kept {info}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // No active issuer: the order fails cleanly, no certificate is stored.
    let done = finalized(&acme, "after.example.test", &ca.responder).await;
    assert_eq!(done["status"], "invalid", "{done}");
    assert_eq!(
        done["error"]["type"],
        "urn:ietf:params:acme:error:serverInternal"
    );
    assert!(done.get("certificate").is_none());
    assert_eq!(
        ca.store
            .issuer_usage("intermediate", now)
            .await
            .unwrap()
            .valid,
        1
    );

    // Active again: issuance works.
    assert!(ca.store.activate_issuer("intermediate", now).await.unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let done = finalized(&acme, "again.example.test", &ca.responder).await;
        if done["status"] == "valid" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still refused: {done}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(
        ca.store
            .issuer_usage("intermediate", now)
            .await
            .unwrap()
            .valid,
        2
    );
}

/// Orders `name`, answers its challenge, finalizes, and returns the order once it is no
/// longer processing (valid or invalid).
async fn finalized(acme: &Acme, name: &str, responder: &harness::Responder) -> Value {
    let r = acme.new_order(&[name]).await;
    assert_eq!(r.status, 201);
    let url = r.location();
    acme.authorize(&r.json(), responder).await;
    let ready = acme.wait_order(&url).await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let r = acme.finalize(&ready, &csr(&[name], &key)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    acme.wait_order(&url).await
}
