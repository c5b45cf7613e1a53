//! Webhooks end to end: a receiver on 127.0.0.1 checks every POST's signature and
//! timestamp and records the events it accepts. The CA issues and revokes through ACME;
//! the receiver sees `certificate.issued` then `certificate.revoked`. Then it answers 503
//! for a while, more events happen (an issuance, a failed validation, a revocation), and
//! once it is back it receives every event exactly once per event id, in order. A second
//! endpoint, where nothing listens, has its deliveries marked failed after `max_attempts`.
//!
//! The periodic audit verification: an entry altered in the database is reported once
//! as `audit.verification_failed` (not at every verification after), and the console's
//! dashboard and the metrics show the chain broken.

mod harness;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use certwright_proto::b64;
use certwright_server::config::WebhookSection;
use harness::{http01_challenge, leaf_serial, pem_chain, tamper, Answer, TestCa};
use serde_json::{json, Value};

const SECRET: &[u8] = b"webhook-test-secret-0123456789";

#[derive(Default)]
struct Receiver {
    /// Answer 503 to everything (and record nothing) while set.
    down: AtomicBool,
    /// Accepted events, in arrival order.
    events: Mutex<Vec<Value>>,
    /// POSTs refused while down.
    refused: AtomicUsize,
    /// POSTs whose signature, timestamp or headers were wrong.
    bad: Mutex<Vec<String>>,
}

fn hmac_hex(key: &[u8], message: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::sign(&key, message)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The receiver's check, as docs/console.md tells receivers to do it.
fn verify(headers: &HeaderMap, body: &[u8]) -> Result<Value, String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(format!("no {name}"))
    };
    let (id, timestamp, signature) = (
        header("webhook-id")?,
        header("webhook-timestamp")?,
        header("webhook-signature")?,
    );
    let mut message = format!("{id}.{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    let want = format!("v1={}", hmac_hex(SECRET, &message));
    // (A real receiver compares in constant time.)
    if signature != want {
        return Err(format!("bad signature {signature}"));
    }
    let ts: i64 = timestamp.parse().map_err(|_| "bad timestamp".to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - ts).abs() > 300 {
        return Err(format!("stale timestamp {ts}"));
    }
    let event: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if event["id"] != id.as_str() {
        return Err(format!(
            "Webhook-Id {id} is not the body's id {}",
            event["id"]
        ));
    }
    if header("content-type")? != "application/json" {
        return Err("not JSON".into());
    }
    Ok(event)
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    if r.down.load(Ordering::SeqCst) {
        r.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match verify(&headers, &body) {
        Ok(event) => {
            r.events.lock().unwrap().push(event);
            StatusCode::NO_CONTENT
        }
        Err(why) => {
            r.bad.lock().unwrap().push(why);
            StatusCode::BAD_REQUEST
        }
    }
}

async fn start_receiver() -> (Arc<Receiver>, String) {
    let r = Arc::new(Receiver::default());
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (r, url)
}

/// Waits (at most 20 s) until `done` holds.
async fn wait_until(what: &str, r: &Receiver, done: impl Fn(&Receiver) -> bool) {
    let start = Instant::now();
    while !done(r) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: timed out; received {:?}, bad {:?}",
            r.events.lock().unwrap(),
            r.bad.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn types(r: &Receiver) -> Vec<String> {
    r.events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_receiver_gets_every_event_signed_once_and_in_order() {
    let (receiver, url) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("hook.secret");
    std::fs::write(&secret_file, [SECRET, b"\n"].concat()).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ca = TestCa::start_with(|c| {
        c.webhooks.insert(
            "ops".into(),
            WebhookSection {
                retry_initial_secs: 1,
                retry_max_secs: 1,
                max_attempts: 1000,
                timeout_secs: 5,
                ..WebhookSection::new(url.clone(), secret_file.clone())
            },
        );
        // Nothing listens on port 1: every attempt is refused; after two, it fails.
        c.webhooks.insert(
            "dead".into(),
            WebhookSection {
                retry_initial_secs: 1,
                retry_max_secs: 1,
                max_attempts: 2,
                timeout_secs: 2,
                events: vec!["certificate.issued".into()],
                ..WebhookSection::new("http://127.0.0.1:1/hook", secret_file.clone())
            },
        );
    })
    .await;
    let acme = ca.account().await;
    let revoke = |chain: &str, reason: u8| json!({"certificate": b64::encode(&pem_chain(chain)[0]), "reason": reason});

    // Issued, then revoked: in that order.
    let (_, _, chain1) = acme.issue(&["hook1.example.test"], &ca.responder).await;
    let serial1 = leaf_serial(&chain1);
    let r = acme
        .post(&acme.dir.revoke_cert.clone(), Some(&revoke(&chain1, 4)))
        .await;
    assert_eq!(r.status, 200);
    wait_until("issued and revoked", &receiver, |r| types(r).len() >= 2).await;
    assert_eq!(
        types(&receiver),
        ["certificate.issued", "certificate.revoked"]
    );
    {
        let events = receiver.events.lock().unwrap();
        let issued = &events[0]["data"];
        assert_eq!(issued["serial"], serial1.as_str());
        assert_eq!(issued["names"][0]["value"], "hook1.example.test");
        assert!(issued["account_id"].is_i64() && issued["not_after"].is_string());
        let revoked = &events[1]["data"];
        assert_eq!(revoked["serial"], serial1.as_str());
        assert_eq!(revoked["reason"], 4);
    }

    // Down: more events happen meanwhile.
    receiver.down.store(true, Ordering::SeqCst);
    let (_, _, chain2) = acme.issue(&["hook2.example.test"], &ca.responder).await;
    // A validation that fails: the responder answers the wrong key authorization.
    let order = acme.new_order(&["hook3.example.test"]).await.json();
    let authz_url = order["authorizations"][0].as_str().unwrap().to_owned();
    let authz = acme.post(&authz_url, None).await.json();
    let chall = http01_challenge(&authz);
    let token = chall["token"].as_str().unwrap();
    ca.responder
        .set(token, Answer::Body("not-the-key-authorization".into()));
    acme.post(chall["url"].as_str().unwrap(), Some(&json!({})))
        .await;
    let failed = acme.wait_authz(&authz_url).await;
    assert_eq!(failed["status"], "invalid", "{failed}");
    let r = acme
        .post(&acme.dir.revoke_cert.clone(), Some(&revoke(&chain2, 1)))
        .await;
    assert_eq!(r.status, 200);
    // The receiver refuses a few attempts (retries every second), accepts nothing.
    wait_until("refused attempts", &receiver, |r| {
        r.refused.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert_eq!(types(&receiver).len(), 2);

    // Back: everything arrives, exactly once per id, in order.
    receiver.down.store(false, Ordering::SeqCst);
    wait_until("everything after the outage", &receiver, |r| {
        types(r).len() >= 5
    })
    .await;
    // Nothing more comes (no duplicates) while the queue is idle.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        types(&receiver),
        [
            "certificate.issued",
            "certificate.revoked",
            "certificate.issued",
            "validation.failed",
            "certificate.revoked",
        ]
    );
    assert!(
        receiver.bad.lock().unwrap().is_empty(),
        "{:?}",
        receiver.bad.lock().unwrap()
    );
    let events = receiver.events.lock().unwrap().clone();
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "an event arrived twice");
    // The store's queue order is the arrival order, and all are delivered.
    let queue = ca.store.webhook_queue_states("ops").await.unwrap();
    let arrived: Vec<(String, String)> = events
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_owned(), "delivered".to_owned()))
        .collect();
    assert_eq!(queue, arrived);
    let serial2 = leaf_serial(&chain2);
    assert_eq!(events[2]["data"]["serial"], serial2.as_str());
    assert_eq!(events[4]["data"]["serial"], serial2.as_str());
    assert_eq!(events[4]["data"]["reason"], 1);
    // The failed validation carries the client-facing problem, never what the VA read.
    let failed = &events[3]["data"];
    assert_eq!(failed["identifier"]["value"], "hook3.example.test");
    assert_eq!(failed["method"], "http-01");
    assert!(failed["problem"]["type"]
        .as_str()
        .unwrap()
        .starts_with("urn:ietf:params:acme:error:"));
    let text = events[3].to_string();
    assert!(!text.contains("not-the-key-authorization"), "{text}");
    assert!(failed.get("diagnostic").is_none() && failed.get("record").is_none());

    // The endpoint that never answers: its first delivery was given up after two
    // attempts, visibly, and did not hold up the other endpoint.
    let start = Instant::now();
    let dead = loop {
        let d = ca.store.webhook_deliveries("dead", 10).await.unwrap();
        if !d.failed.is_empty() {
            break d;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{d:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let first = dead.failed.last().unwrap();
    assert_eq!(first.event_type, "certificate.issued");
    assert_eq!(first.attempts, 2);
    assert_eq!(first.last_status.as_deref(), Some("connection failed"));
    assert!(first.failed_at.is_some() && first.delivered_at.is_none());
}

/// A hook's secret file (mode 0600) in `dir`.
fn secret_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("hook.secret");
    std::fs::write(&path, [SECRET, b"\n"].concat()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[tokio::test]
async fn a_broken_audit_chain_is_reported_once_and_shown_on_the_dashboard() {
    use certwright_server::store::operators::OperatorRole;
    let (receiver, url) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let ca = TestCa::start_with(|c| {
        c.audit.verify_interval_secs = 1;
        c.webhooks.insert(
            "ops".into(),
            WebhookSection {
                retry_initial_secs: 1,
                retry_max_secs: 1,
                events: vec!["audit.verification_failed".into()],
                ..WebhookSection::new(url.clone(), secret.clone())
            },
        );
    })
    .await;
    let acme = ca.account().await;
    acme.issue(&["audit-hook.example.test"], &ca.responder)
        .await;
    // The intact chain is verified (every second), and nothing is sent.
    let start = Instant::now();
    loop {
        let last = ca.store.last_audit_check().await.unwrap();
        if last.as_ref().is_some_and(|l| l.intact && l.entries >= 4) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{last:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(types(&receiver).is_empty());

    // Someone with database access rewrites entry 2.
    tamper(
        &ca,
        r#"UPDATE audit_log SET details = '{"forged":true}' WHERE seq = 2"#,
    )
    .await;
    wait_until("the report", &receiver, |r| !types(r).is_empty()).await;
    let reported_at = Instant::now();
    // Three more verifications find the same break: nothing more is sent.
    let checked = ca
        .store
        .last_audit_check()
        .await
        .unwrap()
        .unwrap()
        .checked_at;
    loop {
        let last = ca.store.last_audit_check().await.unwrap().unwrap();
        if last.checked_at >= checked + 3 {
            assert!(!last.intact && last.broken_seq == Some(2), "{last:?}");
            break;
        }
        assert!(reported_at.elapsed() < Duration::from_secs(20), "{last:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(types(&receiver), ["audit.verification_failed"]);
    assert!(receiver.bad.lock().unwrap().is_empty());
    let event = receiver.events.lock().unwrap()[0].clone();
    assert_eq!(event["data"]["broken_seq"], 2, "{event}");
    assert_eq!(event["data"]["entries_verified"], 1, "{event}");
    assert!(
        event["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("altered"),
        "{event}"
    );

    // The dashboard: sign-in first, then the broken chain.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let dashboard = format!("{}/console/dashboard", ca.admin_base);
    let r = http.get(&dashboard).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/console/sign-in");
    ca.store
        .add_operator("vera", OperatorRole::Viewer, "$argon2id$none", 1)
        .await
        .unwrap();
    let token = "dashboard-test-token";
    let hash: String = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let now = certwright_server::clock::Clock::system().now();
    ca.store
        .create_operator_session(&hash, "vera", "csrf", now, now + 600)
        .await
        .unwrap();
    let r = http
        .get(&dashboard)
        .header("cookie", format!("certwright_console={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("BROKEN") && page.contains("at entry 2") && page.contains("altered"),
        "{page}"
    );
    // One issuance today, on the chart and in its table.
    assert!(page.contains(": 1 certificates issued</title>"), "{page}");

    // The metrics say so too (other tests' CAs in this process may set the gauge to 1
    // when they start: this one sets it to 0 every second).
    let start = Instant::now();
    loop {
        let metrics = http
            .get(format!("{}/metrics", ca.admin_base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("certwright_audit_chain_ok 0") {
            assert!(metrics.contains("certwright_audit_last_verified_timestamp_seconds"));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
