//! The whole ACME flow against an in-process certwright-ca: directory, nonces, accounts,
//! orders, http-01 (real HTTP to a responder), finalize, download; restart and recovery.

mod harness;

use certwright_proto::types::Identifier;
use certwright_proto::{KeyType, ProblemType};
use harness::{csr, pem_chain, Answer, TestCa};
use serde_json::json;
use x509_parser::prelude::*;

#[tokio::test]
async fn directory_and_nonces() {
    let ca = TestCa::start_with(|c| {
        c.directory.terms_of_service = Some("https://ca.example/terms".into());
        c.directory.website = Some("https://ca.example/".into());
        c.directory.caa_identities = vec!["ca.example".into()];
    })
    .await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/directory", ca.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("replay-nonce"));
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert_eq!(link, format!("<{}/directory>;rel=\"index\"", ca.base));
    let dir: serde_json::Value = r.json().await.unwrap();
    for key in [
        "newNonce",
        "newAccount",
        "newOrder",
        "revokeCert",
        "keyChange",
    ] {
        assert!(dir[key].as_str().unwrap().starts_with(&ca.base), "{key}");
    }
    assert_eq!(dir["meta"]["termsOfService"], "https://ca.example/terms");
    assert_eq!(dir["meta"]["website"], "https://ca.example/");
    assert_eq!(dir["meta"]["caaIdentities"], json!(["ca.example"]));
    assert_eq!(dir["meta"]["externalAccountRequired"], false);

    let nonce_url = dir["newNonce"].as_str().unwrap();
    let head = http.head(nonce_url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["cache-control"], "no-store");
    let get = http.get(nonce_url).send().await.unwrap();
    assert_eq!(get.status(), 204);
    assert_eq!(get.headers()["cache-control"], "no-store");
    let (a, b) = (
        &head.headers()["replay-nonce"],
        &get.headers()["replay-nonce"],
    );
    assert_ne!(a, b, "nonces are fresh");
    assert!(get.headers()["link"]
        .to_str()
        .unwrap()
        .contains("rel=\"index\""));
}

#[tokio::test]
async fn terms_of_service_must_be_agreed_when_set() {
    let ca = TestCa::start_with(|c| {
        c.directory.terms_of_service = Some("https://ca.example/terms".into())
    })
    .await;
    let acme = ca.client(KeyType::EcP256).await;
    let url = acme.dir.new_account.clone();
    let before = ca.store.snapshot().await.unwrap();
    let r = acme.post(&url, Some(&json!({"contact": []}))).await;
    r.assert_problem(ProblemType::UserActionRequired, 403);
    assert_eq!(ca.store.snapshot().await.unwrap(), before);
}

#[tokio::test]
async fn issuance_with_every_account_key_type() {
    let ca = TestCa::start().await;
    for (i, kind) in [
        KeyType::EcP256,
        KeyType::EcP384,
        KeyType::Rsa2048,
        KeyType::Ed25519,
    ]
    .into_iter()
    .enumerate()
    {
        let mut acme = ca.client(kind).await;
        let r = acme.register().await;
        assert_eq!(r.status, 201, "{kind:?}");
        let name = format!("k{i}.example.test");
        let (_, order, chain) = acme.issue(&[&name], &ca.responder).await;
        assert_eq!(
            order["identifiers"],
            json!([{"type": "dns", "value": name}])
        );
        assert_eq!(pem_chain(&chain).len(), 2, "{kind:?}");
    }
}

#[tokio::test]
async fn full_flow_issues_a_verifiable_certificate() {
    let ca = TestCa::start().await;
    let mut acme = ca.client(KeyType::EcP256).await;
    let created = acme.register().await;
    assert_eq!(created.status, 201);
    let account = created.json();
    assert_eq!(account["status"], "valid");
    assert_eq!(account["contact"], json!(["mailto:ops@example.com"]));

    // The same key again: 200 and the same Location.
    let mut again = harness::Acme::new(
        &ca.base,
        certwright_proto::AccountKey::from_pkcs8(&acme.key.to_pkcs8().unwrap()).unwrap(),
    )
    .await;
    let r = again.register().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.location(), acme.kid.clone().unwrap());
    // onlyReturnExisting finds it too.
    again.kid = None;
    let url = again.dir.new_account.clone();
    let r = again
        .post(&url, Some(&json!({"onlyReturnExisting": true})))
        .await;
    assert_eq!((r.status, r.location()), (200, acme.kid.clone().unwrap()));

    // Mixed-case and IDN names are normalized.
    let r = acme
        .new_order(&["WWW.Flow.Example.TEST", "bücher.flow.example.test"])
        .await;
    assert_eq!(r.status, 201);
    let order_url = r.location();
    let order = r.json();
    assert_eq!(order["status"], "pending");
    let ids: Vec<Identifier> = serde_json::from_value(order["identifiers"].clone()).unwrap();
    assert_eq!(
        ids,
        vec![
            Identifier::dns("www.flow.example.test"),
            Identifier::dns("xn--bcher-kva.flow.example.test")
        ]
    );
    assert_eq!(order["authorizations"].as_array().unwrap().len(), 2);
    assert!(order["expires"].is_string());

    // Authorization and challenge objects.
    let authz = acme
        .post(order["authorizations"][0].as_str().unwrap(), None)
        .await
        .json();
    assert_eq!(authz["status"], "pending");
    let chall = &authz["challenges"][0];
    assert_eq!(chall["type"], "http-01");
    assert_eq!(chall["status"], "pending");
    assert!(chall["token"].as_str().unwrap().len() >= 22);

    // Answering a challenge returns at once with processing (or already valid).
    let token = chall["token"].as_str().unwrap();
    let thumb = acme.key.jwk().thumbprint();
    ca.responder
        .set(token, Answer::Body(format!("{token}.{thumb}\n")));
    let r = acme
        .post(chall["url"].as_str().unwrap(), Some(&json!({})))
        .await;
    assert_eq!(r.status, 200);
    let up = r.header("link").unwrap();
    assert!(
        up.contains(order["authorizations"][0].as_str().unwrap()) && up.contains("rel=\"up\""),
        "{up}"
    );
    let status = r.json()["status"].as_str().unwrap().to_owned();
    assert!(status == "processing" || status == "valid", "{status}");
    let validated = acme
        .wait_authz(order["authorizations"][0].as_str().unwrap())
        .await;
    assert_eq!(validated["status"], "valid");
    assert!(validated["challenges"][0]["validated"].is_string());
    // The VA recorded what it saw.
    let authz_id = certwright_server::store::AuthzId(
        order["authorizations"][0]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .parse()
            .unwrap(),
    );
    let record = ca.store.authorization(authz_id).await.unwrap().challenges[0]
        .record
        .clone()
        .unwrap();
    assert_eq!(record["method"], "http-01");
    let hop = &record["hops"][0];
    assert_eq!(hop["addressUsed"], "127.0.0.1", "{record}");
    assert_eq!(hop["addressesResolved"], json!(["127.0.0.1"]), "{record}");
    assert_eq!(hop["port"], ca.responder.port, "{record}");
    assert_eq!(hop["status"], 200, "{record}");
    assert!(
        hop["hostname"]
            .as_str()
            .unwrap()
            .ends_with("flow.example.test"),
        "{record}"
    );

    for a in acme.authorize(&order, &ca.responder).await {
        assert_eq!(a["status"], "valid");
    }
    let ready = acme.wait_order(&order_url).await;
    assert_eq!(ready["status"], "ready");

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let r = acme
        .finalize(
            &ready,
            &csr(
                &["xn--bcher-kva.flow.example.test", "www.flow.example.test"],
                &key,
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let done = acme.wait_order(&order_url).await;
    assert_eq!(done["status"], "valid");
    let cert_url = done["certificate"].as_str().unwrap();
    let r = acme.post(cert_url, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").unwrap(),
        "application/pem-certificate-chain"
    );
    let chain = pem_chain(std::str::from_utf8(&r.body).unwrap());
    assert_eq!(chain.len(), 2, "leaf then intermediate");

    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    let (_, inter) = X509Certificate::from_der(&chain[1]).unwrap();
    let root_der = pem_chain(&ca.root_pem).remove(0);
    let (_, root) = X509Certificate::from_der(&root_der).unwrap();
    leaf.verify_signature(Some(inter.public_key())).unwrap();
    inter.verify_signature(Some(root.public_key())).unwrap();
    assert_eq!(leaf.issuer(), inter.subject());
    let sans: Vec<String> = harness::san_strings(&leaf);
    assert_eq!(
        sans,
        vec![
            "dns:www.flow.example.test",
            "dns:xn--bcher-kva.flow.example.test"
        ]
    );
    assert_eq!(
        leaf.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    let lifetime = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    assert!(
        (89 * 86400..=90 * 86400 + 600).contains(&lifetime),
        "{lifetime}"
    );

    // The account's orders list has the order.
    let orders = acme
        .post(account["orders"].as_str().unwrap(), None)
        .await
        .json();
    assert_eq!(orders["orders"], json!([order_url]));

    // A second order for a validated name reuses the valid authorization: ready at once.
    let r = acme.new_order(&["www.flow.example.test"]).await;
    let second = r.json();
    assert_eq!(second["status"], "ready", "{second}");
    assert_eq!(second["authorizations"][0], order["authorizations"][0]);
    // Another account does not get to reuse it.
    let other = ca.account().await;
    let r = other.new_order(&["www.flow.example.test"]).await;
    assert_eq!(r.json()["status"], "pending");
}

#[tokio::test]
async fn rsa_csr_gets_key_encipherment_and_no_common_name_by_default() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let r = acme.new_order(&["rsa.example.test"]).await;
    let order_url = r.location();
    acme.authorize(&r.json(), &ca.responder).await;
    let ready = acme.wait_order(&order_url).await;
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["rsa.example.test".to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rsa.example.test");
    let der = params.serialize_request(&key).unwrap().der().to_vec();
    assert_eq!(acme.finalize(&ready, &der).await.status, 200);
    let done = acme.wait_order(&order_url).await;
    let pem = acme
        .post(done["certificate"].as_str().unwrap(), None)
        .await
        .body;
    let chain = pem_chain(std::str::from_utf8(&pem).unwrap());
    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment());
    // The CSR asked for a common name; `tls-server` leaves it out (NOT RECOMMENDED by the
    // Baseline Requirements), the name is in the SAN.
    assert!(leaf.subject().iter_common_name().next().is_none());
    assert_eq!(harness::san_strings(&leaf), ["dns:rsa.example.test"]);
}

#[tokio::test]
async fn validation_failures_are_reported_per_cause() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let port = ca.responder.port;
    type Responds = Box<dyn Fn(&str) -> Option<Answer>>;
    let cases: Vec<(&str, Responds, ProblemType)> = vec![
        (
            "wrong.test",
            Box::new(|_| Some(Answer::Body("not-the-key-authorization".into()))),
            ProblemType::IncorrectResponse,
        ),
        (
            "missing.test",
            Box::new(|_| Some(Answer::Status(404))),
            ProblemType::Unauthorized,
        ),
        ("refused.test", Box::new(|_| None), ProblemType::Connection),
        (
            "redirect-bad-port.test",
            Box::new(|t| {
                Some(Answer::Redirect(format!(
                    "http://elsewhere.test:8081/.well-known/acme-challenge/{t}"
                )))
            }),
            ProblemType::Connection,
        ),
        (
            "redirect-ftp.test",
            Box::new(|_| Some(Answer::Redirect("ftp://elsewhere.test/x".into()))),
            ProblemType::Connection,
        ),
        (
            "loop.test",
            Box::new(|t| Some(Answer::Redirect(format!("/.well-known/acme-challenge/{t}")))),
            ProblemType::Connection,
        ),
    ];
    for (name, answer, want) in cases {
        let r = acme.new_order(&[name]).await;
        let order_url = r.location();
        let order = r.json();
        let authz_url = order["authorizations"][0].as_str().unwrap();
        let authz = acme.post(authz_url, None).await.json();
        let chall = &authz["challenges"][0];
        let token = chall["token"].as_str().unwrap();
        if let Some(a) = answer(token) {
            ca.responder.set(token, a);
        }
        acme.post(chall["url"].as_str().unwrap(), Some(&json!({})))
            .await;
        let settled = acme.wait_authz(authz_url).await;
        assert_eq!(settled["status"], "invalid", "{name}: {settled}");
        let err = &settled["challenges"][0]["error"];
        assert_eq!(err["type"], want.uri(), "{name}: {err}");
        let detail = err["detail"].as_str().unwrap();
        assert!(!detail.is_empty());
        // Fixed sentences: neither what the server sent nor the socket's own words.
        assert!(
            !detail.contains("not-the-key-authorization"),
            "{name}: {detail}"
        );
        assert!(!detail.contains("os error"), "{name}: {detail}");
        assert!(
            !settled.to_string().contains("not-the-key-authorization"),
            "{settled}"
        );
        let order = acme.wait_order(&order_url).await;
        assert_eq!(order["status"], "invalid", "{name}");
        // An invalid authorization cannot be retried.
        let r = acme
            .post(chall["url"].as_str().unwrap(), Some(&json!({})))
            .await;
        assert_eq!(r.json()["status"], "invalid");
    }
    // A redirect to the test port on another allowed name is followed.
    let r = acme.new_order(&["redirect-ok.test"]).await;
    let order = r.json();
    let authz_url = order["authorizations"][0].as_str().unwrap();
    let authz = acme.post(authz_url, None).await.json();
    let chall = &authz["challenges"][0];
    let token = chall["token"].as_str().unwrap().to_owned();
    ca.responder.set(
        &token,
        Answer::Redirect(format!(
            "http://target.test:{port}/.well-known/acme-challenge/{token}-next"
        )),
    );
    ca.responder.set(
        &format!("{token}-next"),
        Answer::Body(format!("{token}.{}", acme.key.jwk().thumbprint())),
    );
    acme.post(chall["url"].as_str().unwrap(), Some(&json!({})))
        .await;
    assert_eq!(acme.wait_authz(authz_url).await["status"], "valid");
}

#[tokio::test]
async fn deactivations_and_account_updates() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let kid = acme.kid.clone().unwrap();

    // Contact update.
    let r = acme
        .post(&kid, Some(&json!({"contact": ["mailto:new@example.com"]})))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["contact"], json!(["mailto:new@example.com"]));
    let fetched = acme.post(&kid, None).await.json();
    assert_eq!(fetched["contact"], json!(["mailto:new@example.com"]));

    // Authorization deactivation makes the order invalid.
    let r = acme.new_order(&["deact.example.test"]).await;
    let order_url = r.location();
    let authz_url = r.json()["authorizations"][0].as_str().unwrap().to_owned();
    let r = acme
        .post(&authz_url, Some(&json!({"status": "deactivated"})))
        .await;
    assert_eq!(r.json()["status"], "deactivated");
    assert_eq!(
        acme.post(&order_url, None).await.json()["status"],
        "invalid"
    );
    let r = acme
        .post(&authz_url, Some(&json!({"status": "deactivated"})))
        .await;
    r.assert_problem(ProblemType::Malformed, 400);

    // Account deactivation: afterwards every request by it is unauthorized.
    let r = acme
        .post(&kid, Some(&json!({"status": "deactivated"})))
        .await;
    assert_eq!(r.json()["status"], "deactivated");
    acme.post(&kid, None)
        .await
        .assert_problem(ProblemType::Unauthorized, 403);
    acme.new_order(&["after.example.test"])
        .await
        .assert_problem(ProblemType::Unauthorized, 403);
    // And its key cannot register again.
    let mut again = harness::Acme::new(
        &ca.base,
        certwright_proto::AccountKey::from_pkcs8(&acme.key.to_pkcs8().unwrap()).unwrap(),
    )
    .await;
    let url = again.dir.new_account.clone();
    again.kid = None;
    again
        .post(&url, Some(&json!({"termsOfServiceAgreed": true})))
        .await
        .assert_problem(ProblemType::Unauthorized, 403);
}

#[tokio::test]
async fn expiry_follows_the_injected_clock() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let r = acme.new_order(&["expire.example.test"]).await;
    let order_url = r.location();
    let authz_url = r.json()["authorizations"][0].as_str().unwrap().to_owned();
    ca.clock.advance(8 * 24 * 3600);
    assert_eq!(
        acme.post(&order_url, None).await.json()["status"],
        "invalid"
    );
    assert_eq!(
        acme.post(&authz_url, None).await.json()["status"],
        "expired"
    );
}

#[tokio::test]
async fn orders_list_is_paginated() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let mut urls = Vec::new();
    for i in 0..101 {
        urls.push(
            acme.new_order(&[&format!("p{i}.example.test")])
                .await
                .location(),
        );
    }
    let list_url = format!("{}/orders", acme.kid.clone().unwrap());
    let first = acme.post(&list_url, None).await;
    let page1: Vec<String> = serde_json::from_value(first.json()["orders"].clone()).unwrap();
    assert_eq!(page1.len(), 100);
    let link = first.header("link").unwrap();
    let next = link
        .split(',')
        .find(|l| l.contains("rel=\"next\""))
        .map(|l| {
            l.trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap()
                .to_owned()
        })
        .expect("a next link");
    let second = acme.post(&next, None).await;
    let page2: Vec<String> = serde_json::from_value(second.json()["orders"].clone()).unwrap();
    assert_eq!(page2.len(), 1);
    assert!(!second
        .header("link")
        .unwrap_or_default()
        .contains("rel=\"next\""));
    assert_eq!([page1, page2].concat(), urls);
}

#[tokio::test]
async fn state_survives_a_restart_and_in_flight_work_is_resumed() {
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let kid = acme.kid.clone().unwrap();
    let (order_url, done, chain) = acme.issue(&["restart.example.test"], &ca.responder).await;
    let root = ca.root_pem.clone();

    // On SQLite a restart takes over everything, even work whose lease is still held; on
    // a shared database only work whose lease ran out (its instance is gone).
    let held_until = if harness::on_postgres() {
        ca.clock.now() - 1
    } else {
        ca.clock.now() + 3600
    };
    // Leave work in flight: a challenge processing and an order processing with its CSR.
    let r = acme.new_order(&["inflight.example.test"]).await;
    let pending_order_url = r.location();
    let authz_url = r.json()["authorizations"][0].as_str().unwrap().to_owned();
    let authz = acme.post(&authz_url, None).await.json();
    let token = authz["challenges"][0]["token"].as_str().unwrap().to_owned();
    ca.responder.set(
        &token,
        Answer::Body(format!("{token}.{}", acme.key.jwk().thumbprint())),
    );
    let chall_id = certwright_server::store::ChallengeId(
        authz["challenges"][0]["url"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .parse()
            .unwrap(),
    );
    assert!(ca
        .store
        .start_validation(chall_id, held_until)
        .await
        .unwrap());

    let r = acme.new_order(&["restart.example.test"]).await; // reuses the valid authz: ready
    let ready_url = r.location();
    let ready = r.json();
    assert_eq!(ready["status"], "ready");
    let order_id =
        certwright_server::store::OrderId(ready_url.rsplit('/').next().unwrap().parse().unwrap());
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    assert!(ca
        .store
        .begin_finalize(order_id, &csr(&["restart.example.test"], &key), held_until)
        .await
        .unwrap());

    let (tmp, dir, addr, responder) = ca.stop().await;
    let mut ca = TestCa::start_in(
        dir,
        Some(addr),
        responder,
        certwright_server::clock::Clock::system(),
        |_| {},
    )
    .await;
    ca.adopt(tmp);
    assert_eq!(ca.root_pem, root, "the CA keeps its root");

    // The account, order and certificate are still there.
    let account = acme.post(&kid, None).await;
    assert_eq!(account.status, 200);
    assert_eq!(acme.post(&order_url, None).await.json()["status"], "valid");
    let again = acme.post(done["certificate"].as_str().unwrap(), None).await;
    assert_eq!(String::from_utf8(again.body).unwrap(), chain);
    // In-flight work finished: the validation was run again, the issuance completed.
    assert_eq!(acme.wait_authz(&authz_url).await["status"], "valid");
    assert_eq!(acme.wait_order(&pending_order_url).await["status"], "ready");
    let finished = acme.wait_order(&ready_url).await;
    assert_eq!(finished["status"], "valid", "{finished}");
    assert_eq!(ca.store.processing_counts().await.unwrap(), (0, 0));
    // And a new order works.
    acme.issue(&["after-restart.example.test"], &ca.responder)
        .await;
}
