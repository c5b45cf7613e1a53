//! A PostgreSQL database of a test's own. Included by `harness` (in-process CAs) and by
//! `support` (CA processes and real clients).

use sqlx::Connection;

/// The server tests create their databases on: `CERTWRIGHT_TEST_POSTGRES_URL`, by default
/// postgres on 127.0.0.1:5432 (which `scripts/test` makes sure runs).
pub fn admin_url() -> String {
    std::env::var("CERTWRIGHT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Creates a fresh, empty database with a random name; returns its URL.
pub async fn create_database() -> String {
    let admin = admin_url();
    let mut bytes = [0u8; 6];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    let name = format!(
        "cw_test_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let mut conn = sqlx::postgres::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (scripts/test starts one): {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}
