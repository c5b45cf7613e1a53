//! No statement of the store scans a table that grows with use.
//!
//! Every SQL string literal in the store's source, and every statement built with the
//! statuses spliced in (`statuses`), is planned with `EXPLAIN QUERY PLAN` on a migrated
//! SQLite database. A full scan (`SCAN <table>`, with or without an index)
//! of a table that grows with issuance makes the cost of a request grow with the
//! database; such a bug once cut throughput from ~77 to ~6 issuances/s at a million
//! rows. Only the statements listed in `MAY_SCAN` (operator commands and background jobs
//! that read whole tables on purpose) may scan.

use super::Store;

/// Tables whose size grows with accounts, orders and certificates.
const GROWING: &[&str] = &[
    "accounts",
    "orders",
    "authorizations",
    "order_authorizations",
    "challenges",
    "certificates",
    "certificate_names",
    "audit_log",
    "rate_events",
    "nonces",
    "eab_keys",
    "operator_sessions",
    "operator_login_failures",
    "operator_login_links",
    "agent_tokens",
    "webhook_events",
    "webhook_deliveries",
    "webhook_at_risk",
    "renew_campaign_certificates",
];

/// Statements that read a whole table on purpose, by a prefix of their text (whitespace
/// collapsed), with the reason.
const MAY_SCAN: &[(&str, &str)] = &[
    (
        "INSERT INTO orders",
        "foreign-key bookkeeping: SQLite plans scans of certificates (order_id and \
         replaced_by_order point at orders) guarded by FkIfZero, which run only when the \
         insert already violates a foreign key",
    ),
    (
        "SELECT CAST(id AS TEXT), status",
        "snapshot(): whole-database comparison",
    ),
    (
        "SELECT serial, COALESCE(CAST(revoked_at",
        "snapshot(): whole-database comparison",
    ),
    (
        "SELECT kid, COALESCE(CAST(account_id",
        "snapshot(): whole-database comparison",
    ),
    (
        "SELECT * FROM eab_keys ORDER BY",
        "eab_keys(): the operator's list of EAB keys",
    ),
    (
        "SELECT kid, hmac_key FROM eab_keys WHERE kek_id IS NULL",
        "seal_legacy_eab_keys(): once per start, finds plaintext keys of older versions",
    ),
];

/// The statements built with statuses spliced in that only PostgreSQL runs, by name: a
/// form SQLite cannot plan (data-modifying CTEs), skipped by the SQLite test by name, not
/// by their form, and planned by the PostgreSQL one
/// (`no_store_statement_scans_a_growing_table_on_postgres`).
const POSTGRES_ONLY_BUILT: &[&str] = &["FINISH_IN_ONE"];

/// `POSTGRES_ONLY_BUILT` and the PostgreSQL-only statements built at run time
/// (`create_order` and `complete_order` in one statement each, in the shapes their files
/// list; the nonce's redemption with the account and a prefetched record).
fn postgres_only() -> Vec<(&'static str, String)> {
    built_statements()
        .into_iter()
        .filter(|(_, name, _)| POSTGRES_ONLY_BUILT.contains(name))
        .map(|(file, _, sql)| (file, sql.to_owned()))
        .chain(
            super::orders::create_order_examples()
                .into_iter()
                .chain(super::orders::complete_examples())
                .map(|sql| ("orders.rs", sql)),
        )
        .chain(
            super::nonces::redeeming_statements()
                .into_iter()
                .map(|sql| ("nonces.rs", sql)),
        )
        .map(|(file, sql)| (file, collapse(&sql)))
        .collect()
}

/// `sql` with its whitespace collapsed to single spaces.
fn collapse(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The store's source files that hold SQL.
pub(super) const SOURCES: &[(&str, &str)] = &[
    ("mod.rs", include_str!("mod.rs")),
    ("accounts.rs", include_str!("accounts.rs")),
    ("orders.rs", include_str!("orders.rs")),
    ("authorizations.rs", include_str!("authorizations.rs")),
    ("certificates.rs", include_str!("certificates.rs")),
    ("issuers.rs", include_str!("issuers.rs")),
    ("eab.rs", include_str!("eab.rs")),
    ("crl.rs", include_str!("crl.rs")),
    ("nonces.rs", include_str!("nonces.rs")),
    ("leases.rs", include_str!("leases.rs")),
    ("backend_jobs.rs", include_str!("backend_jobs.rs")),
    ("inspect.rs", include_str!("inspect.rs")),
    ("audit.rs", include_str!("audit.rs")),
    ("export.rs", include_str!("export.rs")),
    ("inventory.rs", include_str!("inventory.rs")),
    ("ratelimit.rs", include_str!("ratelimit.rs")),
    ("operators.rs", include_str!("operators.rs")),
    ("console.rs", include_str!("console.rs")),
    ("dashboard.rs", include_str!("dashboard.rs")),
    ("troubleshoot.rs", include_str!("troubleshoot.rs")),
    ("agents.rs", include_str!("agents.rs")),
    ("webhooks.rs", include_str!("webhooks.rs")),
    ("certificate_names.rs", include_str!("certificate_names.rs")),
    ("campaigns.rs", include_str!("campaigns.rs")),
];

/// The statements built with statuses spliced in (no literal in the source holds them
/// whole): file, name, statement.
pub(super) fn built_statements() -> Vec<(&'static str, &'static str, &'static str)> {
    let files = [
        ("accounts.rs", super::accounts::status_statements()),
        ("orders.rs", super::orders::status_statements()),
        (
            "authorizations.rs",
            super::authorizations::status_statements(),
        ),
        ("leases.rs", super::leases::status_statements()),
        ("inspect.rs", super::inspect::status_statements()),
        ("ratelimit.rs", super::ratelimit::status_statements()),
        ("console.rs", super::console::status_statements()),
    ];
    let challenges = super::orders::INSERT_CHALLENGES.iter();
    files
        .into_iter()
        .flat_map(|(file, list)| list.into_iter().map(move |(name, sql)| (file, name, sql)))
        .chain(challenges.map(|sql| ("orders.rs", "INSERT_CHALLENGES", sql.as_str())))
        .collect()
}

/// The string literals of `source` that are SQL statements (format strings excluded).
pub(super) fn statements(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut literal = String::new();
        let mut escaped = false;
        for c in chars.by_ref() {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => break,
                (true, 'n') => {
                    literal.push('\n');
                    escaped = false
                }
                (true, '\n') => escaped = false,
                (_, c) => {
                    literal.push(c);
                    escaped = false
                }
            }
        }
        let sql = literal.split_whitespace().collect::<Vec<_>>().join(" ");
        let verb = sql.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let is_sql = ["SELECT", "INSERT", "UPDATE", "DELETE", "WITH"].contains(&verb.as_str())
            && sql.contains(' ')
            && !sql.contains('{');
        if is_sql {
            out.push(sql);
        }
    }
    out
}

/// The tables of `GROWING` that the plan of `sql` scans.
fn scanned(conn: &rusqlite::Connection, sql: &str) -> Result<Vec<String>, String> {
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .map_err(|e| format!("does not prepare: {e}"))?;
    // Parameters stay unbound (NULL): the plan does not depend on their values.
    let mut rows = stmt.raw_query();
    let mut details = Vec::new();
    while let Some(row) = rows.next().map_err(|e| format!("does not plan: {e}"))? {
        details.push(row.get::<_, String>(3).map_err(|e| e.to_string())?);
    }
    Ok(details
        .iter()
        .filter_map(|d| {
            let table = d.strip_prefix("SCAN ")?.split(' ').next()?;
            GROWING.contains(&table).then(|| d.clone())
        })
        .collect())
}

#[test]
fn the_scanner_finds_sql_literals_and_skips_the_rest() {
    let source = r#"let a = "not sql"; sqlx::query("SELECT id FROM t
        WHERE x = $1").bind(format!("INSERT {}", 1)); let b = "UPDATE t SET \"q\" = 1";"#;
    assert_eq!(
        statements(source),
        ["SELECT id FROM t WHERE x = $1", "UPDATE t SET \"q\" = 1"]
    );
}

/// Every statement of the store both engines run, with its file: the SQL literals of
/// `SOURCES` and the statements built at run time, whitespace collapsed.
fn shared_statements() -> Vec<(&'static str, String)> {
    let literals = SOURCES
        .iter()
        .flat_map(|(file, source)| statements(source).into_iter().map(move |sql| (*file, sql)));
    // Built statements without a status in them (`built_statements` holds those with).
    let names = super::certificate_names::INSERT_NAMES.iter();
    let unspliced = [
        ("nonces.rs", super::nonces::INSERT_NONCES.as_str()),
        ("campaigns.rs", super::campaigns::INSERT_MARKED.as_str()),
        ("campaigns.rs", super::campaigns::MARK.as_str()),
    ]
    .into_iter()
    .chain(names.map(|sql| ("certificate_names.rs", sql.as_str())));
    let built = built_statements()
        .into_iter()
        .filter(|(_, name, _)| !POSTGRES_ONLY_BUILT.contains(name))
        .map(|(file, _, sql)| (file, sql))
        .chain(unspliced)
        .map(|(file, sql)| (file, collapse(sql)));
    literals.chain(built).collect()
}

#[tokio::test]
async fn no_store_statement_scans_a_growing_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plans.db");
    Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();

    let mut checked = 0;
    let mut allowed = [false; MAY_SCAN.len()];
    let mut failures = Vec::new();
    for (file, sql) in shared_statements() {
        checked += 1;
        match scanned(&conn, &sql) {
            Ok(scans) if scans.is_empty() => {}
            Ok(scans) => match MAY_SCAN.iter().position(|(p, _)| sql.starts_with(p)) {
                Some(i) => allowed[i] = true,
                None => failures.push(format!("{file}: {sql}\n    plan: {}", scans.join("; "))),
            },
            Err(e) => failures.push(format!("{file}: {sql}\n    {e}")),
        }
    }
    for (used, (prefix, _)) in allowed.iter().zip(MAY_SCAN) {
        if !used {
            failures.push(format!(
                "MAY_SCAN entry {prefix:?} matches no scanning statement"
            ));
        }
    }
    assert!(
        checked > 60,
        "only {checked} statements found in the store's source"
    );
    assert!(
        failures.is_empty(),
        "{} statement(s) scan a growing table or do not plan:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The tables of `GROWING` that a PostgreSQL plan (`EXPLAIN`'s text) reads with a
/// sequential scan.
fn seq_scanned(plan: &[String]) -> Vec<String> {
    plan.iter()
        .filter_map(|line| {
            let table = line.split("Seq Scan on ").nth(1)?.split(' ').next()?;
            GROWING.contains(&table).then(|| line.trim().to_owned())
        })
        .collect()
}

/// The highest `$n` of `sql` (0 without parameters).
fn parameters(sql: &str) -> usize {
    sql.split('$')
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

/// Statements that may scan on PostgreSQL only, by a prefix of their text (whitespace
/// collapsed), with the reason (`MAY_SCAN` holds those of both engines).
const MAY_SCAN_ON_POSTGRES: &[(&str, &str)] = &[
    (
        "SELECT CAST(o.id AS TEXT) FROM orders o WHERE o.status = 'valid' AND NOT EXISTS",
        "integrity_violations(): the crash tests' whole-database check (PostgreSQL has no \
         index on certificates.order_id; the request path never looks certificates up by \
         order)",
    ),
    (
        "SELECT c.serial FROM certificates c JOIN orders o ON o.id = c.order_id",
        "integrity_violations(): the crash tests' whole-database check",
    ),
];

/// The PostgreSQL counterpart of `no_store_statement_scans_a_growing_table`, when the
/// suite runs on PostgreSQL (`CERTWRIGHT_TEST_BACKEND=postgres`): every statement that
/// test plans, and those only PostgreSQL runs (`postgres_only`), on a migrated database.
/// PostgreSQL 15 has no `EXPLAIN (GENERIC_PLAN)`, so each statement is `PREPARE`d (which
/// infers its parameters' types) and explained with `EXECUTE` and NULL parameters under
/// `plan_cache_mode = force_generic_plan`: the plan a pooled connection reuses for every
/// execution. With `enable_seqscan = off` a `Seq Scan` that remains is one no index can
/// replace.
#[tokio::test]
async fn no_store_statement_scans_a_growing_table_on_postgres() {
    use sqlx::{Connection as _, Row as _};
    if std::env::var("CERTWRIGHT_TEST_BACKEND").as_deref() != Ok("postgres") {
        return;
    }
    let url = certwright_testkit::peers::postgres::create_database().await;
    Store::open(&url).await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off")
        .execute(&mut conn)
        .await
        .unwrap();

    let statements: Vec<(&str, String)> = shared_statements()
        .into_iter()
        .chain(postgres_only())
        .collect();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut allowed = [false; MAY_SCAN_ON_POSTGRES.len()];
    for (file, sql) in &statements {
        checked += 1;
        if let Err(e) = sqlx::raw_sql(&format!("PREPARE plan_check AS {sql}"))
            .execute(&mut conn)
            .await
        {
            failures.push(format!("{file}: {sql}\n    does not prepare: {e}"));
            continue;
        }
        let nulls = vec!["NULL"; parameters(sql)].join(", ");
        let explain = if nulls.is_empty() {
            "EXPLAIN EXECUTE plan_check".to_owned()
        } else {
            format!("EXPLAIN EXECUTE plan_check({nulls})")
        };
        match sqlx::raw_sql(&explain).fetch_all(&mut conn).await {
            Ok(rows) => {
                let plan: Vec<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
                let scans = seq_scanned(&plan);
                let on_postgres = MAY_SCAN_ON_POSTGRES
                    .iter()
                    .position(|(p, _)| sql.starts_with(p));
                if let (false, Some(i)) = (scans.is_empty(), on_postgres) {
                    allowed[i] = true;
                } else if !scans.is_empty() && !MAY_SCAN.iter().any(|(p, _)| sql.starts_with(p)) {
                    failures.push(format!("{file}: {sql}\n    plan: {}", scans.join("; ")));
                }
            }
            Err(e) => failures.push(format!("{file}: {sql}\n    does not plan: {e}")),
        }
        sqlx::raw_sql("DEALLOCATE plan_check")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    for (used, (prefix, _)) in allowed.iter().zip(MAY_SCAN_ON_POSTGRES) {
        if !used {
            failures.push(format!(
                "MAY_SCAN_ON_POSTGRES entry {prefix:?} matches no scanning statement"
            ));
        }
    }
    assert!(
        checked > 61,
        "only {checked} statements found in the store's source"
    );
    assert!(
        failures.is_empty(),
        "{} statement(s) scan a growing table or do not plan on PostgreSQL:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_postgres_plan_check_finds_sequential_scans_and_parameters() {
    let plan = [
        "Nested Loop  (cost=0.29..16.34 rows=1 width=8)".to_owned(),
        "  ->  Seq Scan on orders o  (cost=10000000000.00..1 rows=1 width=8)".to_owned(),
        "  ->  Seq Scan on audit_head  (cost=10000000000.00..1 rows=1 width=8)".to_owned(),
        "  ->  Index Scan using certificates_pkey on certificates".to_owned(),
    ];
    assert_eq!(
        seq_scanned(&plan),
        ["->  Seq Scan on orders o  (cost=10000000000.00..1 rows=1 width=8)"]
    );
    assert_eq!(
        parameters("SELECT 1 FROM t WHERE a = $2 AND b = $10 OR c = $9"),
        10
    );
    assert_eq!(parameters("SELECT 1"), 0);
}
