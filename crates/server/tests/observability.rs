//! The admin listener against an in-process CA: a scrape after an issuance and a
//! revocation shows the counters moved (labelled by route template, not raw path);
//! `X-Request-Id`; `/healthz` and `/readyz`, which fails when the database is unreachable.
//!
//! The metrics recorder is process-global and tests in this file run concurrently, so
//! assertions are on deltas between two scrapes, and at least the expected amount.

mod harness;

use harness::{pem_chain, TestCa};
use serde_json::{json, Value};

async fn scrape(ca: &TestCa) -> String {
    let r = reqwest::get(format!("{}/metrics", ca.admin_base))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The value of the sample `series` (name and labels exactly as rendered); 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_scrape_after_an_issuance_shows_the_counters_moved() {
    let ca = TestCa::start().await;
    let before = scrape(&ca).await;
    let acme = ca.account().await;
    let (_, _, chain) = acme
        .issue(
            &["metrics.example.com", "www.metrics.example.com"],
            &ca.responder,
        )
        .await;
    let der = pem_chain(&chain).remove(0);
    let url = acme.dir.revoke_cert.clone();
    let r = acme
        .post(
            &url,
            Some(&json!({"certificate": certwright_proto::b64::encode(&der), "reason": 4})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let after = scrape(&ca).await;

    let moved = |series: &str| sample(&after, series) - sample(&before, series);
    let expectations = [
        (r#"certwright_issuances_total{profile="tls-server"}"#, 1.0),
        (
            r#"certwright_validations_total{method="http-01",outcome="valid"}"#,
            2.0,
        ),
        (r#"certwright_revocations_total{reason="superseded"}"#, 1.0),
        (
            r#"certwright_http_requests_total{endpoint="/acme/new-order",method="POST",status="201"}"#,
            1.0,
        ),
        (
            r#"certwright_http_requests_total{endpoint="/acme/order/{id}/finalize",method="POST",status="200"}"#,
            1.0,
        ),
        (
            r#"certwright_http_requests_total{endpoint="/acme/revoke-cert",method="POST",status="200"}"#,
            1.0,
        ),
        (
            r#"certwright_http_request_duration_seconds_count{endpoint="/acme/new-order",method="POST"}"#,
            1.0,
        ),
        (
            r#"certwright_validation_duration_seconds_count{method="http-01"}"#,
            2.0,
        ),
    ];
    for (series, at_least) in expectations {
        assert!(
            moved(series) >= at_least,
            "{series} moved by {} (expected at least {at_least})",
            moved(series)
        );
    }
    // Labels are route templates: no raw ids in endpoint labels.
    for line in after.lines().filter(|l| l.contains("endpoint=")) {
        assert!(
            !line.contains("endpoint=\"/acme/order/1") && !line.contains("endpoint=\"/acme/acct/1"),
            "{line}"
        );
    }
    // Histograms have buckets; the nonce pool and database gauges are present.
    assert!(after.contains(r#"certwright_http_request_duration_seconds_bucket{endpoint="/acme/new-order",method="POST",le="0.005"}"#));
    assert!(after.contains("certwright_nonce_pool_size "), "{after}");
    assert!(!after.contains("hmac") && !after.contains("\"kty\""));
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let ca = TestCa::start().await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/directory", ca.base))
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 16, "{id}");
    let r = client
        .get(format!("{}/directory", ca.base))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    let r = client
        .get(format!("{}/nowhere", ca.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));
}

async fn get_json(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn healthz_and_readyz_on_a_healthy_ca() {
    let ca = TestCa::start().await;
    let r = reqwest::get(format!("{}/healthz", ca.admin_base))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, body) = get_json(&format!("{}/readyz", ca.admin_base)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"ready": true, "database": "ok", "ca_key": "ok"})
    );
}

#[tokio::test]
async fn readyz_fails_when_the_database_is_unreachable() {
    use sqlx::Connection;
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    // A database of this test's own, so it can be made unreachable without touching
    // anything else.
    let (admin, url) = (
        harness::pg::admin_url(),
        harness::pg::create_database().await,
    );
    let name = url.rsplit('/').next().unwrap().to_owned();
    let db = url.clone();
    let ca = TestCa::start_with(move |c| {
        c.database_url = Some(db);
    })
    .await;
    let (status, body) = get_json(&format!("{}/readyz", ca.admin_base)).await;
    assert_eq!(status, 200, "{body}");

    // The database goes away (every connection is terminated, none can be made).
    let mut conn = sqlx::postgres::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();

    let (status, body) = get_json(&format!("{}/readyz", ca.admin_base)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_ne!(body["database"], "ok", "{body}");
    assert_ne!(
        body["database"], "unavailable",
        "loopback sees the cause: {body}"
    );
    assert_eq!(body["ca_key"], "ok");
    // Asked from another address, the answer says what is down but not why.
    let (status, remote) = admin_request(&ca, "/readyz", "10.0.0.5:40000", None).await;
    assert_eq!(status, 503);
    let remote: Value = serde_json::from_str(&remote).unwrap();
    assert_eq!(
        remote,
        json!({"ready": false, "database": "unavailable", "ca_key": "ok"})
    );
    // Alive all the same: a restart would not help.
    let r = reqwest::get(format!("{}/healthz", ca.admin_base))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A request to the admin router as if from `peer` (no network: the connection's address
/// is what the listener would record), with an optional bearer token.
async fn admin_request(ca: &TestCa, path: &str, peer: &str, token: Option<&str>) -> (u16, String) {
    use tower::ServiceExt;
    let mut request = axum::http::Request::builder().uri(path);
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let mut request = request.body(axum::body::Body::empty()).unwrap();
    let peer: std::net::SocketAddr = peer.parse().unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let response = certwright_server::admin::admin_router(ca.admin.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// With `admin_token_file`, `/metrics` and `/readyz` need the bearer token (a missing or
/// wrong one gets 401 and no data); `/healthz` stays open for probes.
#[tokio::test]
async fn the_admin_listener_requires_its_bearer_token_when_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let token = "s3cret-admin-token-0123456789";
    let file = dir.path().join("admin-token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let path = file.clone();
    let ca = TestCa::start_with(move |c| c.admin_token_file = Some(path)).await;
    let client = reqwest::Client::new();
    for (path, auth, want) in [
        ("/metrics", None, 401),
        ("/metrics", Some("wrong-token-wrong-token"), 401),
        ("/metrics", Some(&token[..token.len() - 1]), 401),
        ("/readyz", None, 401),
        ("/metrics", Some(token), 200),
        ("/readyz", Some(token), 200),
        ("/healthz", None, 200),
    ] {
        let mut request = client.get(format!("{}{path}", ca.admin_base));
        if let Some(t) = auth {
            request = request.bearer_auth(t);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{path} with {auth:?}");
        let body = r.text().await.unwrap();
        if want == 401 {
            assert!(
                !body.contains("certwright_"),
                "{path}: metrics leaked: {body}"
            );
            assert!(!body.contains("ready"), "{path}: readiness leaked: {body}");
        }
    }
    // Remote or local, the token is what counts.
    let (status, _) = admin_request(&ca, "/metrics", "10.0.0.5:40000", None).await;
    assert_eq!(status, 401);
    let (status, _) = admin_request(&ca, "/metrics", "10.0.0.5:40000", Some(token)).await;
    assert_eq!(status, 200);
    // The scheme name in any case; a path that only looks like /healthz is not exempt.
    let r = client
        .get(format!("{}/metrics", ca.admin_base))
        .header("authorization", format!("bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for path in [
        "/healthz/../metrics",
        "//metrics",
        "/Metrics",
        "/healthz%2f..%2fmetrics",
    ] {
        let r = client
            .get(format!("{}{path}", ca.admin_base))
            .send()
            .await
            .unwrap();
        assert!(
            r.status() == 401 || r.status() == 404,
            "{path}: {}",
            r.status()
        );
        assert!(!r.text().await.unwrap().contains("certwright_"), "{path}");
    }
}
