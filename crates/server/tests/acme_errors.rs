//! Every failure a client can cause answers an RFC 8555 problem document with the right
//! type and status, carries a fresh nonce, and changes nothing in the store.

mod harness;

use std::future::Future;
use std::pin::Pin;

use certwright_proto::jws::{sign, Signer};
use certwright_proto::{b64, AccountKey, FlattenedJws, KeyType, ProblemType};
use harness::{csr, Acme, Resp, TestCa};
use serde_json::{json, Value};

/// A JWS with a hand-made protected header (to build what a correct client never sends).
fn raw_jws(key: &AccountKey, header: Value, payload: &str) -> FlattenedJws {
    let protected = b64::encode(header.to_string());
    let payload = b64::encode(payload);
    let sig = key
        .sign(format!("{protected}.{payload}").as_bytes())
        .unwrap();
    FlattenedJws {
        protected,
        payload,
        signature: b64::encode(sig),
    }
}

struct Fixture {
    ca: TestCa,
    acme: Acme,
    other: Acme,
    deactivated: Acme,
    fresh: Acme,
    pending_order: Value,
    ready_order: Value,
    ready_two: Value,
    other_order_url: String,
    cert_url: String,
}

async fn fixture() -> Fixture {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let other = ca.account().await;
    let deactivated = ca.account().await;
    let kid = deactivated.kid.clone().unwrap();
    assert_eq!(
        deactivated
            .post(&kid, Some(&json!({"status": "deactivated"})))
            .await
            .status,
        200
    );
    let fresh = ca.client(KeyType::EcP256).await;

    let pending_order = acme.new_order(&["pending.example.test"]).await.json();
    let (_, _, _) = acme.issue(&["ready.example.test"], &ca.responder).await;
    let r = acme.new_order(&["ready.example.test"]).await;
    let ready_order = r.json();
    assert_eq!(ready_order["status"], "ready");
    let r = acme
        .new_order(&["two-a.example.test", "two-b.example.test"])
        .await;
    let url = r.location();
    acme.authorize(&r.json(), &ca.responder).await;
    let ready_two = acme.wait_order(&url).await;
    assert_eq!(ready_two["status"], "ready");
    let other_order_url = other.new_order(&["other.example.test"]).await.location();
    let (_, done, _) = acme.issue(&["cert.example.test"], &ca.responder).await;
    let cert_url = done["certificate"].as_str().unwrap().to_owned();
    Fixture {
        ca,
        acme,
        other,
        deactivated,
        fresh,
        pending_order,
        ready_order,
        ready_two,
        other_order_url,
        cert_url,
    }
}

type Case<'a> = (
    &'static str,
    ProblemType,
    u16,
    Pin<Box<dyn Future<Output = Resp> + 'a>>,
);

#[tokio::test]
async fn hostile_and_malformed_requests_get_problem_documents_and_change_nothing() {
    let f = fixture().await;
    let acme = &f.acme;
    let dir = &acme.dir;
    let kid = acme.kid.clone().unwrap();
    let base = f.ca.base.clone();
    let key_pem_der = acme.key.to_pkcs8().unwrap();
    let account_key_as_rcgen = rcgen::KeyPair::try_from(key_pem_der.as_slice()).unwrap();
    let cert_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ed_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let finalize_ready = f.ready_order["finalize"].as_str().unwrap().to_owned();
    let finalize_two = f.ready_two["finalize"].as_str().unwrap().to_owned();
    let finalize_pending = f.pending_order["finalize"].as_str().unwrap().to_owned();
    let csr_payload = |der: Vec<u8>| json!({"csr": b64::encode(der)});
    let new_order = dir.new_order.clone();
    let new_account = dir.new_account.clone();

    let cases: Vec<Case> = vec![
        (
            "tampered signature",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                let mut jws = acme
                    .jws(
                        &new_order,
                        Some(&json!({"identifiers": [{"type": "dns", "value": "x.example.test"}]})),
                    )
                    .await;
                let mut sig = b64::decode(&jws.signature).unwrap();
                sig[5] ^= 0x55;
                jws.signature = b64::encode(sig);
                acme.send_jws(&new_order, &jws).await
            }),
        ),
        (
            "payload swapped after signing",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                let mut jws = acme
                    .jws(
                        &new_order,
                        Some(&json!({"identifiers": [{"type": "dns", "value": "x.example.test"}]})),
                    )
                    .await;
                jws.payload = b64::encode(
                    json!({"identifiers": [{"type": "dns", "value": "evil.example.test"}]})
                        .to_string(),
                );
                acme.send_jws(&new_order, &jws).await
            }),
        ),
        (
            "replayed nonce",
            ProblemType::BadNonce,
            400,
            Box::pin(async {
                let jws = acme.jws(&kid, None).await;
                assert_eq!(acme.send_jws(&kid, &jws).await.status, 200);
                acme.send_jws(&kid, &jws).await
            }),
        ),
        (
            "nonce never issued",
            ProblemType::BadNonce,
            400,
            Box::pin(async {
                let jws = sign(
                    &acme.key,
                    &acme.signer(),
                    Some("bm9uY2UtbmV2ZXItaXNzdWVk"),
                    &kid,
                    b"",
                )
                .unwrap();
                acme.send_jws(&kid, &jws).await
            }),
        ),
        (
            "no nonce",
            ProblemType::BadNonce,
            400,
            Box::pin(async {
                let jws = sign(&acme.key, &acme.signer(), None, &kid, b"").unwrap();
                acme.send_jws(&kid, &jws).await
            }),
        ),
        (
            "url of another resource",
            ProblemType::Unauthorized,
            403,
            Box::pin(async {
                let jws = acme.jws(&kid, None).await;
                acme.send_jws(&format!("{kid}/orders"), &jws).await
            }),
        ),
        (
            "jwk and kid together",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                let h = json!({"alg": "ES256", "jwk": acme.key.jwk().to_value(), "kid": kid, "nonce": acme.nonce().await, "url": kid});
                acme.send_jws(&kid, &raw_jws(&acme.key, h, "")).await
            }),
        ),
        (
            "neither jwk nor kid",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                let h = json!({"alg": "ES256", "nonce": acme.nonce().await, "url": kid});
                acme.send_jws(&kid, &raw_jws(&acme.key, h, "")).await
            }),
        ),
        (
            "unknown kid",
            ProblemType::AccountDoesNotExist,
            400,
            Box::pin(async {
                let h = json!({"alg": "ES256", "kid": format!("{base}/acme/acct/999999"), "nonce": acme.nonce().await, "url": new_order});
                acme.send_jws(&new_order, &raw_jws(&acme.key, h, "{}"))
                    .await
            }),
        ),
        (
            "the account's own kid with a leading zero (signed by its key)",
            ProblemType::AccountDoesNotExist,
            400,
            Box::pin(async {
                let padded = kid.replace("/acme/acct/", "/acme/acct/0");
                let h = json!({"alg": "ES256", "kid": padded, "nonce": acme.nonce().await, "url": new_order});
                acme.send_jws(
                    &new_order,
                    &raw_jws(
                        &acme.key,
                        h,
                        "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"zero.example.test\"}]}",
                    ),
                )
                .await
            }),
        ),
        (
            "kid that is not an account URL",
            ProblemType::AccountDoesNotExist,
            400,
            Box::pin(async {
                let h = json!({"alg": "ES256", "kid": "account-1", "nonce": acme.nonce().await, "url": new_order});
                acme.send_jws(&new_order, &raw_jws(&acme.key, h, "{}"))
                    .await
            }),
        ),
        (
            "kid of another account",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                let h = json!({"alg": "ES256", "kid": f.other.kid.clone().unwrap(), "nonce": acme.nonce().await, "url": kid});
                acme.send_jws(&kid, &raw_jws(&acme.key, h, "")).await
            }),
        ),
        (
            "deactivated account",
            ProblemType::Unauthorized,
            403,
            Box::pin(async { f.deactivated.new_order(&["after.example.test"]).await }),
        ),
        (
            "alg none",
            ProblemType::BadSignatureAlgorithm,
            400,
            Box::pin(async {
                let h = json!({"alg": "none", "kid": kid, "nonce": acme.nonce().await, "url": kid});
                let mut jws = raw_jws(&acme.key, h, "");
                jws.signature = String::new();
                acme.send_jws(&kid, &jws).await
            }),
        ),
        (
            "MAC algorithm HS256",
            ProblemType::BadSignatureAlgorithm,
            400,
            Box::pin(async {
                let h =
                    json!({"alg": "HS256", "kid": kid, "nonce": acme.nonce().await, "url": kid});
                acme.send_jws(&kid, &raw_jws(&acme.key, h, "")).await
            }),
        ),
        (
            "alg does not fit the key",
            ProblemType::BadSignatureAlgorithm,
            400,
            Box::pin(async {
                let h =
                    json!({"alg": "ES384", "kid": kid, "nonce": acme.nonce().await, "url": kid});
                acme.send_jws(&kid, &raw_jws(&acme.key, h, "")).await
            }),
        ),
        (
            "b64 header",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                let h = json!({"alg": "ES256", "kid": kid, "nonce": acme.nonce().await, "url": kid, "b64": false});
                acme.send_jws(&kid, &raw_jws(&acme.key, h, "")).await
            }),
        ),
        (
            "crit header",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                let h = json!({"alg": "ES256", "kid": kid, "nonce": acme.nonce().await, "url": kid, "crit": ["exp"]});
                acme.send_jws(&kid, &raw_jws(&acme.key, h, "")).await
            }),
        ),
        (
            "unprotected header present",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                let jws = acme.jws(&kid, None).await;
                let mut v = serde_json::to_value(&jws).unwrap();
                v["header"] = json!({"kid": "x"});
                acme.send(&kid, v.to_string().into_bytes(), "application/jose+json")
                    .await
            }),
        ),
        (
            "wrong content type",
            ProblemType::Malformed,
            415,
            Box::pin(async {
                let jws = acme.jws(&kid, None).await;
                acme.send(&kid, serde_json::to_vec(&jws).unwrap(), "application/json")
                    .await
            }),
        ),
        (
            "body is not JSON",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                acme.send(&kid, b"\xff\xfe not json".to_vec(), "application/jose+json")
                    .await
            }),
        ),
        (
            "deeply nested JSON",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                let body = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
                acme.send(&kid, body.into_bytes(), "application/jose+json")
                    .await
            }),
        ),
        (
            "body over the size limit",
            ProblemType::Malformed,
            413,
            Box::pin(async {
                acme.send(&kid, vec![b' '; 200 * 1024], "application/jose+json")
                    .await
            }),
        ),
        (
            "newAccount signed with kid",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                acme.post(&new_account, Some(&json!({"termsOfServiceAgreed": true})))
                    .await
            }),
        ),
        (
            "newOrder signed with a bare jwk",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                f.fresh
                    .post(
                        &new_order,
                        Some(&json!({"identifiers": [{"type": "dns", "value": "x.example.test"}]})),
                    )
                    .await
            }),
        ),
        (
            "RSA key of 1024 bits",
            ProblemType::BadPublicKey,
            400,
            Box::pin(async {
                let n = b64::encode([0xc3u8; 128]);
                let h = json!({"alg": "RS256", "jwk": {"kty": "RSA", "n": n, "e": "AQAB"}, "nonce": acme.nonce().await, "url": new_account});
                acme.send_jws(&new_account, &raw_jws(&f.fresh.key, h, "{}"))
                    .await
            }),
        ),
        (
            "contact with tel: scheme",
            ProblemType::UnsupportedContact,
            400,
            Box::pin(async {
                f.fresh
                    .post(
                        &new_account,
                        Some(
                            &json!({"termsOfServiceAgreed": true, "contact": ["tel:+15555550100"]}),
                        ),
                    )
                    .await
            }),
        ),
        (
            "contact that is not an address",
            ProblemType::InvalidContact,
            400,
            Box::pin(async {
                f.fresh
                    .post(
                        &new_account,
                        Some(&json!({"termsOfServiceAgreed": true, "contact": ["mailto:nobody"]})),
                    )
                    .await
            }),
        ),
        (
            "onlyReturnExisting for an unknown key",
            ProblemType::AccountDoesNotExist,
            400,
            Box::pin(async {
                f.fresh
                    .post(&new_account, Some(&json!({"onlyReturnExisting": true})))
                    .await
            }),
        ),
        (
            "external account binding with an unknown key id",
            ProblemType::Unauthorized,
            403,
            Box::pin(async {
                let eab =
                    certwright_proto::jws::sign_eab(b"k", "kid", &new_account, &f.fresh.key.jwk());
                f.fresh
                    .post(
                        &new_account,
                        Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": eab})),
                    )
                    .await
            }),
        ),
        (
            "account status set to valid",
            ProblemType::Malformed,
            400,
            Box::pin(async { acme.post(&kid, Some(&json!({"status": "valid"}))).await }),
        ),
        (
            "order without identifiers",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                acme.post(&new_order, Some(&json!({"identifiers": []})))
                    .await
            }),
        ),
        (
            "identifiers of the wrong shape",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                acme.post(&new_order, Some(&json!({"identifiers": "x.example.test"})))
                    .await
            }),
        ),
        (
            "unknown identifier type",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                acme.post(
                    &new_order,
                    Some(&json!({"identifiers": [{"type": "email", "value": "a@b.c"}]})),
                )
                .await
            }),
        ),
        (
            "invalid DNS name",
            ProblemType::RejectedIdentifier,
            400,
            Box::pin(async { acme.new_order(&["bad_name.example.test"]).await }),
        ),
        (
            "wildcard not the whole leftmost label",
            ProblemType::RejectedIdentifier,
            400,
            Box::pin(async { acme.new_order(&["www.*.example.test"]).await }),
        ),
        (
            "IP identifier that is not a unicast address",
            ProblemType::RejectedIdentifier,
            400,
            Box::pin(async {
                acme.post(
                    &new_order,
                    Some(&json!({"identifiers": [{"type": "ip", "value": "224.0.0.1"}]})),
                )
                .await
            }),
        ),
        (
            "too many identifiers",
            ProblemType::RejectedIdentifier,
            400,
            Box::pin(async {
                let names: Vec<String> = (0..101).map(|i| format!("n{i}.example.test")).collect();
                acme.new_order(&names.iter().map(String::as_str).collect::<Vec<_>>())
                    .await
            }),
        ),
        (
            "notBefore in the order",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                acme.post(&new_order, Some(&json!({"identifiers": [{"type": "dns", "value": "x.example.test"}], "notBefore": "2030-01-01T00:00:00Z"}))).await
            }),
        ),
        (
            "unknown profile",
            ProblemType::InvalidProfile,
            400,
            Box::pin(async {
                acme.post(&new_order, Some(&json!({"identifiers": [{"type": "dns", "value": "x.example.test"}], "profile": "nope"}))).await
            }),
        ),
        (
            "POST-as-GET to newOrder",
            ProblemType::Malformed,
            400,
            Box::pin(async { acme.post(&new_order, None).await }),
        ),
        (
            "finalize before the order is ready",
            ProblemType::OrderNotReady,
            403,
            Box::pin(async {
                acme.post(
                    &finalize_pending,
                    Some(&csr_payload(csr(&["pending.example.test"], &cert_key))),
                )
                .await
            }),
        ),
        (
            "CSR with an extra name",
            ProblemType::BadCsr,
            400,
            Box::pin(async {
                acme.post(
                    &finalize_ready,
                    Some(&csr_payload(csr(
                        &["ready.example.test", "extra.example.test"],
                        &cert_key,
                    ))),
                )
                .await
            }),
        ),
        (
            "CSR missing a name",
            ProblemType::BadCsr,
            400,
            Box::pin(async {
                acme.post(
                    &finalize_two,
                    Some(&csr_payload(csr(&["two-a.example.test"], &cert_key))),
                )
                .await
            }),
        ),
        (
            "CSR with the account key",
            ProblemType::BadCsr,
            400,
            Box::pin(async {
                acme.post(
                    &finalize_ready,
                    Some(&csr_payload(csr(
                        &["ready.example.test"],
                        &account_key_as_rcgen,
                    ))),
                )
                .await
            }),
        ),
        (
            "CSR with an Ed25519 key (not allowed by default)",
            ProblemType::BadCsr,
            400,
            Box::pin(async {
                acme.post(
                    &finalize_ready,
                    Some(&csr_payload(csr(&["ready.example.test"], &ed_key))),
                )
                .await
            }),
        ),
        (
            "CSR that is garbage",
            ProblemType::BadCsr,
            400,
            Box::pin(async {
                acme.post(
                    &finalize_ready,
                    Some(&csr_payload(b"\x30\x03\x02\x01\x00".to_vec())),
                )
                .await
            }),
        ),
        (
            "CSR that is not base64url",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                acme.post(&finalize_ready, Some(&json!({"csr": "***"})))
                    .await
            }),
        ),
        (
            "another account's order",
            ProblemType::Malformed,
            404,
            Box::pin(async { acme.post(&f.other_order_url, None).await }),
        ),
        (
            // On PostgreSQL the order is read with the nonce and the account: the check
            // that it is the signer's still applies.
            "another account's order finalized",
            ProblemType::Malformed,
            404,
            Box::pin(async {
                f.other
                    .post(
                        &finalize_pending,
                        Some(&csr_payload(csr(&["pending.example.test"], &cert_key))),
                    )
                    .await
            }),
        ),
        (
            "another account's authorization",
            ProblemType::Malformed,
            404,
            Box::pin(async {
                f.other
                    .post(f.pending_order["authorizations"][0].as_str().unwrap(), None)
                    .await
            }),
        ),
        (
            "another account's challenge answered",
            ProblemType::Malformed,
            404,
            Box::pin(async {
                let authz = acme
                    .post(f.pending_order["authorizations"][0].as_str().unwrap(), None)
                    .await
                    .json();
                f.other
                    .post(
                        authz["challenges"][0]["url"].as_str().unwrap(),
                        Some(&json!({})),
                    )
                    .await
            }),
        ),
        (
            "certificate fetched with a payload",
            ProblemType::Malformed,
            400,
            Box::pin(async { acme.post(&f.cert_url, Some(&json!({}))).await }),
        ),
        (
            "another account's certificate",
            ProblemType::Malformed,
            404,
            Box::pin(async { f.other.post(&f.cert_url, None).await }),
        ),
        (
            "an alternate chain that does not exist",
            ProblemType::Malformed,
            404,
            Box::pin(async { acme.post(&format!("{}/1", f.cert_url), None).await }),
        ),
        (
            "an alternate chain number that is not one",
            ProblemType::Malformed,
            404,
            Box::pin(async { acme.post(&format!("{}/-1", f.cert_url), None).await }),
        ),
        (
            "another account's alternate chain",
            ProblemType::Malformed,
            404,
            Box::pin(async { f.other.post(&format!("{}/1", f.cert_url), None).await }),
        ),
        (
            "challenge answered with a non-object",
            ProblemType::Malformed,
            400,
            Box::pin(async {
                let authz = acme
                    .post(f.pending_order["authorizations"][0].as_str().unwrap(), None)
                    .await
                    .json();
                acme.post(
                    authz["challenges"][0]["url"].as_str().unwrap(),
                    Some(&json!([1])),
                )
                .await
            }),
        ),
        (
            "order id that is not a number",
            ProblemType::Malformed,
            404,
            Box::pin(async { acme.post(&format!("{base}/acme/order/abc"), None).await }),
        ),
        (
            "keyChange whose payload is not a JWS",
            ProblemType::Malformed,
            400,
            Box::pin(async { acme.post(&dir.key_change, Some(&json!({}))).await }),
        ),
        (
            "GET on newAccount",
            ProblemType::Malformed,
            405,
            Box::pin(async {
                let r = acme.http.get(&new_account).send().await.unwrap();
                Resp {
                    status: r.status().as_u16(),
                    headers: r.headers().clone(),
                    body: r.bytes().await.unwrap().to_vec(),
                }
            }),
        ),
        (
            "unknown path",
            ProblemType::AboutBlank,
            404,
            Box::pin(async { acme.post(&format!("{base}/acme/nowhere"), None).await }),
        ),
    ];
    assert!(cases.len() >= 25);
    let mut seen = std::collections::HashSet::new();
    for (name, kind, status, request) in cases {
        assert!(seen.insert(name), "duplicate case name {name}");
        let before = f.ca.store.snapshot().await.unwrap();
        let resp = request.await;
        let problem = resp.assert_problem(kind, status);
        assert!(
            resp.header("replay-nonce").is_some(),
            "{name}: every answer carries a fresh nonce"
        );
        assert_eq!(
            f.ca.store.snapshot().await.unwrap(),
            before,
            "{name}: the store changed"
        );
        eprintln!("ok: {name}: {problem}");
    }
}

#[tokio::test]
async fn several_refused_identifiers_each_get_a_subproblem() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let r = acme
        .new_order(&[
            "ok.example.test",
            "bad_one.example.test",
            "-bad.example.test",
        ])
        .await;
    let p = r.assert_problem(ProblemType::RejectedIdentifier, 400);
    assert_eq!(p.subproblems.len(), 2, "{p}");
    let values: Vec<String> = p
        .subproblems
        .iter()
        .map(|s| s.identifier.clone().unwrap().value)
        .collect();
    assert_eq!(values, vec!["bad_one.example.test", "-bad.example.test"]);
    assert!(p
        .subproblems
        .iter()
        .all(|s| s.kind == ProblemType::RejectedIdentifier));
}

#[tokio::test]
async fn a_bad_nonce_answer_carries_a_nonce_that_works() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let kid = acme.kid.clone().unwrap();
    let jws = sign(
        &acme.key,
        &Signer::Kid(kid.clone()),
        Some("c3RhbGUtbm9uY2UtdmFsdWU"),
        &kid,
        b"",
    )
    .unwrap();
    let r = acme.send_jws(&kid, &jws).await;
    r.assert_problem(ProblemType::BadNonce, 400);
    let fresh = r.header("replay-nonce").unwrap();
    let jws = sign(
        &acme.key,
        &Signer::Kid(kid.clone()),
        Some(&fresh),
        &kid,
        b"",
    )
    .unwrap();
    assert_eq!(acme.send_jws(&kid, &jws).await.status, 200);
}

#[tokio::test]
async fn ip_identifiers_are_refused_when_the_policy_says_so() {
    let ca = TestCa::start_with(|c| c.validation.allow_ip_identifiers = false).await;
    let acme = ca.account().await;
    let before = ca.store.snapshot().await.unwrap();
    let new_order = acme.dir.new_order.clone();
    let r = acme
        .post(
            &new_order,
            Some(&json!({"identifiers": [{"type": "ip", "value": "192.0.2.1"}]})),
        )
        .await;
    let p = r.assert_problem(ProblemType::RejectedIdentifier, 400);
    assert!(p.detail.contains("allow_ip_identifiers"), "{p}");
    assert_eq!(ca.store.snapshot().await.unwrap(), before);
}
