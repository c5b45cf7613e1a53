//! Failures inside the CA — its database refusing a write, an issuance that cannot be
//! stored — answer a fixed `serverInternal` sentence. The cause goes to the operator's
//! log on a line with the request id; nothing of it reaches the client, and nothing is
//! left half-written.
//!
//! The failures are provoked for real: a trigger in the CA's own database (SQLite or
//! PostgreSQL) refuses inserts into one table with an error text that must never be
//! shown to a client.

mod harness;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use certwright_proto::ProblemType;
use harness::{csr, Acme, Resp, TestCa};
use serde_json::{json, Value};

/// The database's error text: what a client must never read.
const CAUSE: &str = "cw-injected-fault in /var/lib/certwright/certwright.db";

/// Everything this test binary logs (a global subscriber; tests tell their lines apart
/// by request id).
fn log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber per binary");
        buffer
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log lines that mention `needle`.
fn log_lines_with(needle: &str) -> Vec<String> {
    let log = log();
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Makes the CA's database refuse every insert into `table` with [`CAUSE`], until
/// [`clear_fault`].
async fn inject_fault(ca: &TestCa, table: &str) {
    match harness::database_url_for(&ca.data_dir).await {
        None => {
            let db = rusqlite::Connection::open(ca.data_dir.join("certwright.db")).unwrap();
            db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
            db.execute_batch(&format!(
                "CREATE TRIGGER cw_fault BEFORE INSERT ON {table} \
                 BEGIN SELECT RAISE(ABORT, '{CAUSE}'); END;"
            ))
            .unwrap();
        }
        Some(url) => {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query(&format!(
                "CREATE OR REPLACE FUNCTION cw_fault() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION '{CAUSE}'; END $$"
            ))
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(&format!(
                "CREATE TRIGGER cw_fault BEFORE INSERT ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION cw_fault()"
            ))
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
    }
}

/// Removes the trigger of [`inject_fault`].
async fn clear_fault(ca: &TestCa, table: &str) {
    match harness::database_url_for(&ca.data_dir).await {
        None => {
            let db = rusqlite::Connection::open(ca.data_dir.join("certwright.db")).unwrap();
            db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
            db.execute_batch("DROP TRIGGER cw_fault").unwrap();
        }
        Some(url) => {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query(&format!("DROP TRIGGER cw_fault ON {table}"))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

/// POSTs a signed request carrying `X-Request-Id: request_id`.
async fn post_with_id(acme: &Acme, url: &str, payload: Option<&Value>, request_id: &str) -> Resp {
    let jws = acme.jws(url, payload).await;
    let r = acme
        .http
        .post(acme.route(url))
        .header("content-type", "application/jose+json")
        .header("x-request-id", request_id)
        .body(serde_json::to_vec(&jws).unwrap())
        .send()
        .await
        .unwrap();
    Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

/// Nothing of the cause in what the client read.
fn assert_no_internal_text(body: &[u8]) {
    let body = String::from_utf8_lossy(body);
    for leak in [
        "cw-injected-fault",
        "certwright.db",
        "/var/lib",
        "database error",
        "trigger",
        "sqlite",
        "postgres",
    ] {
        assert!(
            !body.to_ascii_lowercase().contains(leak),
            "{leak:?} reached the client: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_failure_answers_a_fixed_sentence_and_logs_the_cause() {
    log();
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let orders_url = format!("{}/orders", acme.kid.as_deref().unwrap());
    let before = acme.post(&orders_url, None).await.json();

    inject_fault(&ca, "orders").await;
    let url = acme.dir.new_order.clone();
    let payload = json!({"identifiers": [{"type": "dns", "value": "fault.example"}]});
    let r = post_with_id(&acme, &url, Some(&payload), "internal-store-1").await;
    clear_fault(&ca, "orders").await;

    let problem = r.assert_problem(ProblemType::ServerInternal, 500);
    assert_eq!(problem.detail, certwright_server::ra::DATABASE_FAILED);
    assert!(problem.subproblems.is_empty());
    assert_eq!(r.header("retry-after").as_deref(), Some("5"));
    assert_eq!(
        r.header("x-request-id").as_deref(),
        Some("internal-store-1")
    );
    assert_no_internal_text(&r.body);

    // The operator's log has the cause, on a line of that request.
    let lines = log_lines_with("internal-store-1");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(CAUSE) && l.contains("ERROR")),
        "no error line with the cause and the request id: {lines:#?}"
    );

    // Nothing was created, and the CA works again once the database does.
    assert_eq!(acme.post(&orders_url, None).await.json(), before);
    let r = acme.new_order(&["fault.example"]).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_issuance_shows_the_fixed_sentence_on_the_order() {
    log();
    let ca = TestCa::start().await;
    let acme = ca.account().await;
    let r = acme.new_order(&["issue-fault.example"]).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let order_url = r.location();
    for a in acme.authorize(&r.json(), &ca.responder).await {
        assert_eq!(a["status"], "valid", "{a}");
    }
    let ready = acme.wait_order(&order_url).await;
    assert_eq!(ready["status"], "ready", "{ready}");

    // The certificate is signed but cannot be stored: the issuance fails inside the CA.
    inject_fault(&ca, "certificates").await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let payload =
        json!({"csr": certwright_proto::b64::encode(csr(&["issue-fault.example"], &key))});
    let r = post_with_id(
        &acme,
        ready["finalize"].as_str().unwrap(),
        Some(&payload),
        "internal-issuance-1",
    )
    .await;
    clear_fault(&ca, "certificates").await;

    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_no_internal_text(&r.body);
    let order = acme.wait_order(&order_url).await;
    assert_eq!(order["status"], "invalid", "{order}");
    assert_eq!(
        order["error"]["type"],
        "urn:ietf:params:acme:error:serverInternal"
    );
    assert_eq!(
        order["error"]["detail"],
        certwright_server::ra::ISSUANCE_FAILED
    );
    assert!(order.get("certificate").is_none(), "{order}");
    assert_no_internal_text(order.to_string().as_bytes());

    let lines = log_lines_with("internal-issuance-1");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(CAUSE) && l.contains("ERROR")),
        "no error line with the cause and the request id: {lines:#?}"
    );
}
