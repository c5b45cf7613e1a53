//! Rate limits with real ACME requests and the CA's injected clock: each limit refuses
//! the request past its count with `rateLimited` (429), a `Retry-After` of the seconds
//! until the oldest counted event leaves the window, and a detail naming the limit; the
//! refusal changes nothing; the limit lets requests through again once the clock passes
//! the window; ARI renewals are exempt from the per-domain and duplicate limits; counts
//! survive a restart. Runs on SQLite, and on PostgreSQL with CERTWRIGHT_TEST_BACKEND.

mod harness;

use certwright_proto::{KeyType, ProblemType};
use certwright_server::config::{Config, WindowLimit};
use harness::{Answer, Resp, TestCa};
use serde_json::json;

fn window(count: u32, window_secs: i64) -> WindowLimit {
    WindowLimit { count, window_secs }
}

/// Checks a refusal by `limit` with this `Retry-After` (less the few seconds that may
/// pass between the counted request and this one), and that it changed nothing.
async fn assert_limited(ca: &TestCa, r: &Resp, limit: &str, retry_after: u64, before: &[String]) {
    let p = r.assert_problem(ProblemType::RateLimited, 429);
    assert!(p.detail.contains(limit), "{}", p.detail);
    assert!(p.detail.contains("resets"), "{}", p.detail);
    let header: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a numeric Retry-After: {:?}", r.header("retry-after")));
    assert!(
        header <= retry_after && header + 10 >= retry_after,
        "Retry-After {header}, expected {retry_after}: {}",
        p.detail
    );
    assert_eq!(
        ca.store.snapshot().await.unwrap(),
        before,
        "a refusal writes nothing"
    );
}

#[tokio::test]
async fn new_orders_per_account() {
    let ca = TestCa::start_with(|c| c.rate_limits.new_orders_per_account = window(2, 3600)).await;
    let acme = ca.account().await;
    for name in ["o1.example.test", "o2.example.test"] {
        assert_eq!(acme.new_order(&[name]).await.status, 201);
    }
    ca.clock.advance(600);
    let before = ca.store.snapshot().await.unwrap();
    let r = acme.new_order(&["o3.example.test"]).await;
    assert_limited(&ca, &r, "new_orders_per_account", 3000, &before).await;
    // Another account has its own count.
    let other = ca.account().await;
    assert_eq!(other.new_order(&["o3.example.test"]).await.status, 201);
    // The window slides past the first two orders.
    ca.clock.advance(3001);
    assert_eq!(acme.new_order(&["o3.example.test"]).await.status, 201);
}

#[tokio::test]
async fn new_accounts_per_ip() {
    let ca = TestCa::start_with(|c| c.rate_limits.new_accounts_per_ip = window(2, 10800)).await;
    let mut first = ca.account().await;
    ca.account().await;
    let before = ca.store.snapshot().await.unwrap();
    let mut third = ca.client(KeyType::EcP256).await;
    let new_account = third.dir.new_account.clone();
    let r = third
        .post(&new_account, Some(&json!({"termsOfServiceAgreed": true})))
        .await;
    assert_limited(&ca, &r, "new_accounts_per_ip", 10800, &before).await;
    // An existing account looking itself up is not a new account.
    first.kid = None;
    assert_eq!(first.register().await.status, 200);
    ca.clock.advance(10801);
    assert_eq!(third.register().await.status, 201);
}

#[tokio::test]
async fn certificates_per_registered_domain_with_the_ari_exemption() {
    let ca = TestCa::start_with(|c| {
        c.rate_limits.certificates_per_registered_domain = window(1, 604800)
    })
    .await;
    let acme = ca.account().await;
    let (_, _, chain) = acme.issue(&["www.shop.example.co.uk"], &ca.responder).await;
    let before = ca.store.snapshot().await.unwrap();
    // Another name under the same registered domain (public suffix list: co.uk).
    let r = acme.new_order(&["api.example.co.uk"]).await;
    assert_limited(
        &ca,
        &r,
        "certificates_per_registered_domain",
        604800,
        &before,
    )
    .await;
    assert!(r.problem().detail.contains("example.co.uk"));
    // Another registered domain is fine.
    assert_eq!(acme.new_order(&["www.other.co.uk"]).await.status, 201);
    // A renewal naming the certificate it replaces is exempt.
    let id = harness::ari_id(&harness::pem_chain(&chain).remove(0));
    let body = json!({
        "identifiers": [{"type": "dns", "value": "www.shop.example.co.uk"}],
        "replaces": id,
    });
    let r = acme.post(&acme.dir.new_order.clone(), Some(&body)).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test]
async fn duplicate_certificates() {
    let ca = TestCa::start_with(|c| c.rate_limits.duplicate_certificates = window(1, 604800)).await;
    let acme = ca.account().await;
    acme.issue(&["a.dup.test", "b.dup.test"], &ca.responder)
        .await;
    ca.clock.advance(100);
    let before = ca.store.snapshot().await.unwrap();
    // The same set of names, in another order.
    let r = acme.new_order(&["b.dup.test", "a.dup.test"]).await;
    assert_limited(&ca, &r, "duplicate_certificates", 604700, &before).await;
    // A different set is not a duplicate.
    assert_eq!(acme.new_order(&["a.dup.test"]).await.status, 201);
}

#[tokio::test]
async fn failed_validations_per_account_identifier() {
    let ca = TestCa::start_with(|c| {
        c.rate_limits.failed_validations_per_account_identifier = window(1, 3600)
    })
    .await;
    let acme = ca.account().await;
    // A validation that fails: the responder answers with the wrong content.
    let order = acme.new_order(&["fail.example.test"]).await.json();
    let authz_url = order["authorizations"][0].as_str().unwrap().to_owned();
    let authz = acme.post(&authz_url, None).await.json();
    let chall = harness::http01_challenge(&authz);
    ca.responder.set(
        chall["token"].as_str().unwrap(),
        Answer::Body("wrong".into()),
    );
    let r = acme
        .post(chall["url"].as_str().unwrap(), Some(&json!({})))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(acme.wait_authz(&authz_url).await["status"], "invalid");
    // The failure is counted once the VA recorded it.
    let before = ca.store.snapshot().await.unwrap();
    let r = acme.new_order(&["fail.example.test"]).await;
    assert_limited(
        &ca,
        &r,
        "failed_validations_per_account_identifier",
        3600,
        &before,
    )
    .await;
    assert_eq!(acme.new_order(&["ok.example.test"]).await.status, 201);
    ca.clock.advance(3601);
    assert_eq!(acme.new_order(&["fail.example.test"]).await.status, 201);
}

#[tokio::test]
async fn pending_authorizations_per_account() {
    let ca = TestCa::start_with(|c| c.rate_limits.pending_authorizations_per_account = 2).await;
    let acme = ca.account().await;
    let first = acme
        .new_order(&["p1.example.test", "p2.example.test"])
        .await;
    assert_eq!(first.status, 201);
    let before = ca.store.snapshot().await.unwrap();
    let r = acme.new_order(&["p3.example.test"]).await;
    assert_limited(&ca, &r, "pending_authorizations_per_account", 60, &before).await;
    // Completing them frees the slots.
    for authz in acme.authorize(&first.json(), &ca.responder).await {
        assert_eq!(authz["status"], "valid");
    }
    assert_eq!(acme.new_order(&["p3.example.test"]).await.status, 201);
}

#[tokio::test]
async fn counts_survive_a_restart() {
    let tweak = |c: &mut Config| c.rate_limits.new_orders_per_account = window(1, 3600);
    let ca = TestCa::start_with(tweak).await;
    let acme = ca.account().await;
    assert_eq!(acme.new_order(&["r1.example.test"]).await.status, 201);
    let clock = ca.clock.clone();
    let (tmp, dir, addr, responder) = ca.stop().await;
    let mut ca = TestCa::start_in(dir, Some(addr), responder, clock, tweak).await;
    ca.adopt(tmp);
    let before = ca.store.snapshot().await.unwrap();
    let r = acme.new_order(&["r2.example.test"]).await;
    assert_limited(&ca, &r, "new_orders_per_account", 3600, &before).await;
    // Defaults (all off) never limit.
    let free = TestCa::start().await;
    let acme = free.account().await;
    for i in 0..5 {
        assert_eq!(
            acme.new_order(&[&format!("free{i}.example.test")])
                .await
                .status,
            201
        );
    }
}
