//! PostgreSQL: a database of a test's own on the server `scripts/test` makes sure runs.

use sqlx::Connection;

/// The server tests create their databases on: `CERTWRIGHT_TEST_POSTGRES_URL`, by default
/// postgres on 127.0.0.1:5432 (which `scripts/test` makes sure runs).
pub fn admin_url() -> String {
    std::env::var("CERTWRIGHT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Test databases older than this are dropped by the next test that creates one.
const STALE_AFTER_SECS: u64 = 6 * 3600;

/// Creates a fresh, empty database with a random name; returns its URL.
///
/// Tests that start CA processes cannot drop their database when they end (the processes
/// may still hold it), so the name carries its creation time and every creation first
/// drops the test databases older than [`STALE_AFTER_SECS`]: no run leaves more than a few
/// hours of databases behind on the server.
pub async fn create_database() -> String {
    let admin = admin_url();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut bytes = [0u8; 6];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    let name = format!(
        "cw_test_{now}_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let mut conn = sqlx::postgres::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (scripts/test starts one): {e}"));
    drop_stale(&mut conn, now).await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

/// Whether a test database called `name` is stale at `now`: made by [`create_database`]
/// more than [`STALE_AFTER_SECS`] ago, or named in its older scheme without a time
/// (`cw_test_` and 12 hex digits). Other names, such as databases a test manages itself,
/// are never touched.
fn is_stale(name: &str, now: u64) -> bool {
    let Some(rest) = name.strip_prefix("cw_test_") else {
        return false;
    };
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    match rest.split_once('_') {
        Some((time, random)) if hex(random) => match time.parse::<u64>() {
            Ok(created) => now.saturating_sub(created) > STALE_AFTER_SECS,
            Err(_) => false,
        },
        Some(_) => false,
        None => rest.len() == 12 && hex(rest),
    }
}

/// [`create_database`] for code outside an async runtime (a test that starts CA
/// processes); returns the URL.
pub fn create_database_blocking() -> String {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(create_database())
}

async fn drop_stale(conn: &mut sqlx::postgres::PgConnection, now: u64) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'cw\\_test\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for name in names.iter().filter(|n| is_stale(n, now)) {
        // Best effort: another run may be dropping it at the same moment.
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut *conn)
            .await;
    }
}

#[test]
fn test_databases_go_stale_after_hours_or_when_named_the_old_way() {
    let now = 1_800_000_000;
    assert!(!is_stale(&format!("cw_test_{}_00ff", now - 60), now));
    assert!(is_stale(
        &format!("cw_test_{}_00ff", now - STALE_AFTER_SECS - 1),
        now
    ));
    assert!(is_stale("cw_test_a1b2c3d4e5f6", now));
    // A test's own database (observability's readyz test drops it mid-test itself).
    assert!(!is_stale("cw_test_ready_a1b2c3d4e5f6", now));
    assert!(!is_stale("cw_test_", now));
    assert!(!is_stale("certwright", now));
    assert!(!is_stale("postgres", now));
}
