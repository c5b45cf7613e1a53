//! Several certwright-ca instances on one PostgreSQL database: requests alternate between
//! them, a nonce is good exactly once on any instance, and work abandoned by a dead
//! instance is taken over. Needs PostgreSQL (scripts/test makes sure one runs).

mod harness;

use std::time::Duration;

use certwright_proto::jws::sign;
use certwright_proto::{KeyType, ProblemType};
use certwright_server::clock::Clock;
use harness::{Answer, TestCa};
use serde_json::json;

/// Starts two instances on one fresh PostgreSQL database, sharing the CA keys and the
/// external base URL (as behind a load balancer).
async fn pair() -> (TestCa, TestCa, tempfile::TempDir) {
    std::env::set_var("CERTWRIGHT_TEST_BACKEND", "postgres");
    let first = TestCa::start().await;
    let second_dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&first.data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && !path.to_string_lossy().contains("certwright.db") {
            std::fs::copy(&path, second_dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let base = first.base.clone();
    let second = TestCa::start_in(
        second_dir.path().to_owned(),
        None,
        first.responder.clone(),
        Clock::system(),
        move |c| c.base_url = Some(base),
    )
    .await;
    (first, second, second_dir)
}

#[tokio::test]
async fn requests_alternate_between_instances() {
    let (first, second, _dir) = pair().await;
    assert_eq!(first.root_pem, second.root_pem);
    let mut acme = first.client(KeyType::EcP256).await;
    acme.routes = Some((
        first.base.clone(),
        vec![first.base.clone(), format!("http://{}", second.addr)],
    ));
    acme.register().await;
    // Orders made on one instance are validated, finalized and downloaded via the other.
    for i in 0..3 {
        let (_, order, chain) = acme
            .issue(&[&format!("lb{i}.example.test")], &first.responder)
            .await;
        assert_eq!(order["status"], "valid");
        assert_eq!(harness::pem_chain(&chain).len(), 2);
    }
    let snapshot_first = first.store.snapshot().await.unwrap();
    assert_eq!(
        snapshot_first,
        second.store.snapshot().await.unwrap(),
        "one database"
    );
}

#[tokio::test]
async fn a_nonce_is_good_once_on_any_instance() {
    let (first, second, _dir) = pair().await;
    let acme = first.account().await;
    let kid = acme.kid.clone().unwrap();
    // A nonce from the first instance, used on the second: accepted once.
    let nonce = acme.nonce().await;
    let jws = sign(&acme.key, &acme.signer(), Some(&nonce), &kid, b"").unwrap();
    let body = serde_json::to_vec(&jws).unwrap();
    let to_second = kid.replace(&first.base, &format!("http://{}", second.addr));
    let r = acme
        .send(&to_second, body.clone(), "application/jose+json")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Replayed on either instance: refused.
    acme.send(&kid, body.clone(), "application/jose+json")
        .await
        .assert_problem(ProblemType::BadNonce, 400);
    acme.send(&to_second, body, "application/jose+json")
        .await
        .assert_problem(ProblemType::BadNonce, 400);
}

#[tokio::test]
async fn work_of_a_dead_instance_is_taken_over() {
    let (first, second, _dir) = pair().await;
    let acme = first.account().await;
    let r = acme.new_order(&["takeover.example.test"]).await;
    let order_url = r.location();
    let authz_url = r.json()["authorizations"][0].as_str().unwrap().to_owned();
    let authz = acme.post(&authz_url, None).await.json();
    let token = authz["challenges"][0]["token"].as_str().unwrap().to_owned();
    first.responder.set(
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
    // An instance took the validation and died: its lease has run out.
    assert!(first
        .store
        .start_validation(chall_id, first.clock.now() - 1)
        .await
        .unwrap());
    // A live instance's sweeper finishes it (bounded wait).
    let mut status = String::new();
    for _ in 0..100 {
        status = acme.post(&authz_url, None).await.json()["status"]
            .as_str()
            .unwrap()
            .to_owned();
        if status != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, "valid");
    assert_eq!(acme.wait_order(&order_url).await["status"], "ready");
    assert_eq!(second.store.processing_counts().await.unwrap(), (0, 0));
}

#[tokio::test]
async fn crl_numbers_stay_monotonic_across_instances() {
    let (first, second, _dir) = pair().await;
    let mut acme = first.client(KeyType::EcP256).await;
    acme.routes = Some((
        first.base.clone(),
        vec![first.base.clone(), format!("http://{}", second.addr)],
    ));
    acme.register().await;
    let mut numbers = Vec::new();
    for i in 0..4 {
        let (_, _, chain) = acme
            .issue(&[&format!("crl{i}.example.test")], &first.responder)
            .await;
        let der = harness::pem_chain(&chain).remove(0);
        let revoke = acme.dir.revoke_cert.clone();
        let r = acme
            .post(
                &revoke,
                Some(&json!({"certificate": certwright_proto::b64::encode(&der)})),
            )
            .await;
        assert_eq!(r.status, 200);
        let ca = if i % 2 == 0 { &first } else { &second };
        numbers.push(
            ca.store
                .latest_crl("intermediate")
                .await
                .unwrap()
                .unwrap()
                .number,
        );
    }
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
}

/// Instances on one database share the key-encryption key (copied with the CA keys): an
/// EAB key created through one binds an account through the other.
#[tokio::test]
async fn an_eab_key_created_on_one_instance_binds_on_the_other() {
    let (first, second, _dir) = pair().await;
    let kek = |ca: &TestCa| ca.store.eab_kek().unwrap().id().to_owned();
    assert_eq!(kek(&first), kek(&second));
    let mac = b"a shared mac key for both instances";
    first
        .store
        .create_eab_key("kid-shared", "team", mac, first.clock.now())
        .await
        .unwrap();
    let acme = second.client(KeyType::EcP256).await;
    let url = acme.dir.new_account.clone();
    let binding = certwright_proto::jws::sign_eab(mac, "kid-shared", &url, &acme.key.jwk());
    let r = acme
        .post(
            &url,
            Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": binding})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}
