//! The console's reads on a million certificates (docs/performance.md, "The console at a
//! million certificates"). Ignored by default; run it with
//!
//! ```sh
//! CERTWRIGHT_CONSOLE_BENCH_DB=/tmp/console-1m.db \
//!   cargo test -p certwright-server --lib console_scale -- --ignored --nocapture
//! ```
//!
//! The first run builds the database (an SQLite file, `CERTWRIGHT_CONSOLE_BENCH_N`
//! certificates, 1,000,000 by default) with SQL, as `scripts/bench-growth` seeds its
//! own: 1,000 accounts (a third with one of 30 EAB labels); per certificate an order and
//! an authorization; certificates in pairs of one account, the second expiring 60 days
//! after the first and, in every other pair, for the same name (a successor: half of the
//! soon-expiring certificates are renewed); every tenth pair also names
//! `www.teamN.example.com` (N < 1000, 100 certificates each). Expiries spread over
//! [now − 10 days, now + 110 days]. The name index is then emptied and rebuilt with migration 0016's backfill,
//! which is timed too. Later runs reuse the file.

use std::time::{Duration, Instant};

use super::console::InventoryQuery;
use super::Store;

const DAY: i64 = 86_400;

/// Builds the database at `path` with `n` certificates.
async fn build(path: &str, n: i64, now: i64) {
    let store = Store::open(&format!("sqlite://{path}")).await.unwrap();
    let jwk = certwright_proto::AccountKey::generate(certwright_proto::KeyType::EcP256)
        .unwrap()
        .jwk();
    let first = store
        .create_account(&jwk, &["mailto:ops@example.com".into()], true, now)
        .await
        .unwrap()
        .id
        .0;
    drop(store);
    let conn = rusqlite::Connection::open(path).unwrap();
    let sql = format!(
        "PRAGMA synchronous = OFF;
         BEGIN;
         INSERT INTO accounts (id, key_thumbprint, jwk, contact, status, tos_agreed, created_at, eab_label)
           WITH RECURSIVE k(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM k WHERE i < 1000)
           SELECT i, 'seed' || i, a.jwk, a.contact, a.status, 1, a.created_at,
                  CASE WHEN i % 3 = 0 THEN 'team' || (i % 30) END
           FROM k, accounts a WHERE a.id = {first};
         CREATE TEMP TABLE n AS
           WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {n} - 1)
           SELECT i, i / 2 AS p,
                  {now} - 10 * {DAY} + ((i / 2) * 7919) % (60 * {DAY}) + (i % 2) * 60 * {DAY} AS not_after,
                  '[{{\"type\":\"dns\",\"value\":\"' ||
                  CASE WHEN i % 2 = 1 AND (i / 2) % 2 = 1 THEN 'r' ELSE 's' END || (i / 2) || '.seed.test\"}}' ||
                  CASE WHEN (i / 2) % 10 = 0
                       THEN ',{{\"type\":\"dns\",\"value\":\"www.team' || ((i / 20) % 1000) || '.example.com\"}}'
                       ELSE '' END || ']' AS names
           FROM n;
         INSERT INTO orders (id, account_id, status, identifiers, expires, certificate_serial, created_at)
           SELECT i + 1, p % 1000 + 1, 'valid', names, {now}, printf('%032x', i), not_after - 90 * {DAY} FROM n;
         INSERT INTO authorizations (id, account_id, identifier_type, identifier_value, wildcard, status, expires, created_at)
           SELECT i + 1, p % 1000 + 1, 'dns', 's' || p || '.seed.test', 0,
                  CASE WHEN i % 7 = 0 THEN 'invalid' ELSE 'valid' END, {now}, not_after - 90 * {DAY} FROM n;
         INSERT INTO order_authorizations (order_id, authorization_id) SELECT i + 1, i + 1 FROM n;
         INSERT INTO certificates (serial, account_id, order_id, der, chain_pem, names, not_before, not_after, created_at, issuer)
           SELECT printf('%032x', i), p % 1000 + 1, i + 1, randomblob(600), 'chain', names,
                  not_after - 90 * {DAY}, not_after, not_after - 90 * {DAY}, 'intermediate'
           FROM n;
         DELETE FROM certificate_names;
         COMMIT;"
    );
    conn.execute_batch(&sql).unwrap();
    // Migration 0016's backfill, as an upgraded database runs it.
    let migration = include_str!("../../migrations/sqlite/0016_certificate_names.sql");
    let backfill = &migration[migration
        .find("INSERT OR IGNORE INTO certificate_names")
        .unwrap()..];
    let started = Instant::now();
    conn.execute_batch(&format!("BEGIN; {backfill} COMMIT;"))
        .unwrap();
    println!(
        "migration 0016 backfill of {n} certificates: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    conn.execute_batch("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
}

/// The best of five runs of `f` (after one warm-up), and what it returned the last time.
async fn timed<T, F, Fut>(label: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut out = f().await;
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        out = f().await;
        best = best.min(started.elapsed());
    }
    println!("{label:<58} {:>9.2} ms", best.as_secs_f64() * 1000.0);
    out
}

#[tokio::test]
#[ignore = "builds a million-certificate database; see the module's documentation"]
async fn console_scale() {
    let path = std::env::var("CERTWRIGHT_CONSOLE_BENCH_DB")
        .unwrap_or_else(|_| "/tmp/certwright-console-1m.db".into());
    let n: i64 = std::env::var("CERTWRIGHT_CONSOLE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // The database is built relative to a fixed "now", kept in the file's name… and
    // measured at that instant, so that a reused file gives the same figures.
    let now = 1_800_000_000;
    if !std::path::Path::new(&path).exists() {
        let started = Instant::now();
        build(&path, n, now).await;
        println!(
            "built {path} ({n} certificates) in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    let s = Store::open(&format!("sqlite://{path}")).await.unwrap();
    let page = |f: fn(&mut InventoryQuery)| {
        let mut q = InventoryQuery {
            limit: 50,
            now,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let run = |q: InventoryQuery| {
        let s = s.clone();
        async move { s.inventory_page(&q).await.unwrap() }
    };
    let p = timed("inventory, first page (no filter)", || run(page(|_| {}))).await;
    assert_eq!(p.items.len(), 50);
    // The keyset of the 900,000th certificate, found once (not timed).
    let deep = {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.query_row(
            "SELECT not_after, serial FROM certificates ORDER BY not_after, serial LIMIT 1 OFFSET ?1",
            [n * 9 / 10],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .unwrap()
    };
    let p = timed("inventory, deep keyset page (after the 900,000th)", || {
        let mut q = page(|_| {});
        q.after = Some(deep.clone());
        run(q)
    })
    .await;
    assert_eq!(p.items.len(), 50);
    let p = timed("inventory, by serial", || {
        run(page(|q| q.serial = Some(format!("{:032x}", 123_457))))
    })
    .await;
    assert_eq!(p.items.len(), 1);
    let p = timed("inventory, exact name (2 certificates)", || {
        run(page(|q| q.name = Some("s61728.seed.test".into())))
    })
    .await;
    assert_eq!(p.items.len(), 2);
    let p = timed("inventory, exact name (100 certificates, first 50)", || {
        run(page(|q| q.name = Some("www.team7.example.com".into())))
    })
    .await;
    assert_eq!(p.items.len(), 50);
    let p = timed("inventory, suffix .team7.example.com (100)", || {
        run(page(|q| q.name = Some(".team7.example.com".into())))
    })
    .await;
    assert_eq!(p.items.len(), 50);
    let p = timed("inventory, suffix .example.com (100,000, first 50)", || {
        run(page(|q| q.name = Some(".example.com".into())))
    })
    .await;
    assert_eq!(p.items.len(), 50);
    let p = timed("inventory, suffix .seed.test (every certificate)", || {
        run(page(|q| q.name = Some(".seed.test".into())))
    })
    .await;
    assert_eq!(p.items.len(), 50);
    let p = timed("inventory, exact name + state valid", || {
        run(page(|q| {
            q.name = Some("www.team7.example.com".into());
            q.state = Some(super::console::CertificateState::Valid);
        }))
    })
    .await;
    assert!(!p.items.is_empty());
    let at_risk = timed("renewal health: at risk within 30 days (first 200)", || {
        let s = s.clone();
        async move { s.renewal_at_risk(now, now + 30 * DAY, 200).await.unwrap() }
    })
    .await;
    assert_eq!(at_risk.len(), 200);
    let unrenewed = timed("renewal health: ARI candidates (1,000 examined)", || {
        let s = s.clone();
        async move { s.unrenewed_certificates(now, None, 1000).await.unwrap() }
    })
    .await;
    assert!(!unrenewed.items.is_empty());
    let attempts = timed("renewal health: last attempts for one name", || {
        let s = s.clone();
        async move {
            s.recent_attempts_for_name("s61728.seed.test", 3)
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(attempts.len(), 2);
}
