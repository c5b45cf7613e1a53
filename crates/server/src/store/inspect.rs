//! Whole-store inspections: the invariants no crash may break (`integrity_violations`),
//! and fingerprints that tests compare (`snapshot`, `processing_counts`, `group_commits`:
//! feature `test-support`).

use sqlx::Row as _;

use super::statuses::{quoted, status_sql};
use super::{Result, Store};
use crate::status::transitions::{CHALLENGE_START, ORDER_BEGIN_FINALIZE, ORDER_COMPLETE};

status_sql! {
    /// Challenges left `processing` (after the sweeper ran: their validation was lost).
    static STUCK_CHALLENGES = (
        "SELECT CAST(id AS TEXT) FROM challenges WHERE status = {processing}",
        processing = quoted(CHALLENGE_START.to)
    );
    /// Orders left `processing` (an order forwarded to a backend CA waits for it: its
    /// job says until when).
    static STUCK_ORDERS = (
        "SELECT CAST(id AS TEXT) FROM orders WHERE status = {processing}
           AND NOT EXISTS (SELECT 1 FROM backend_jobs j WHERE j.order_id = orders.id)",
        processing = quoted(ORDER_BEGIN_FINALIZE.to)
    );
    /// Backend jobs whose order is not `processing`.
    static ORPHAN_JOBS = (
        "SELECT CAST(j.order_id AS TEXT) FROM backend_jobs j JOIN orders o ON o.id = j.order_id
         WHERE o.status <> {processing}",
        processing = quoted(ORDER_BEGIN_FINALIZE.to)
    );
    /// Valid orders without their certificate.
    static VALID_WITHOUT_CERTIFICATE = (
        "SELECT CAST(o.id AS TEXT) FROM orders o WHERE o.status = {valid} AND NOT EXISTS
           (SELECT 1 FROM certificates c WHERE c.order_id = o.id)",
        valid = quoted(ORDER_COMPLETE.to)
    );
    /// Certificates whose order is not valid or names another serial.
    static CERTIFICATE_WITHOUT_VALID_ORDER = (
        "SELECT c.serial FROM certificates c JOIN orders o ON o.id = c.order_id
         WHERE o.status <> {valid} OR o.certificate_serial IS NULL
            OR o.certificate_serial <> c.serial",
        valid = quoted(ORDER_COMPLETE.to)
    );
}

impl Store {
    /// Invariants over the whole store that no crash may break; one line per violation
    /// (empty when all hold): work left `processing` (call after the sweeper ran; orders
    /// waiting for a backend CA are not stuck), a backend job whose order is not, a
    /// `valid` order without its certificate, a certificate whose order is not `valid` or
    /// does not name it.
    pub async fn integrity_violations(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (what, query) in [
            ("challenges stuck processing", STUCK_CHALLENGES.as_str()),
            ("orders stuck processing", STUCK_ORDERS.as_str()),
            (
                "backend jobs whose order is not processing",
                ORPHAN_JOBS.as_str(),
            ),
            (
                "valid orders without a certificate",
                VALID_WITHOUT_CERTIFICATE.as_str(),
            ),
            (
                "certificates whose order is not valid or names another serial",
                CERTIFICATE_WITHOUT_VALID_ORDER.as_str(),
            ),
        ] {
            let rows = sqlx::query(query).fetch_all(&self.reader).await?;
            if !rows.is_empty() {
                let ids: Vec<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
                out.push(format!("{what}: {}", ids.join(", ")));
            }
        }
        Ok(out)
    }

    /// Challenges and orders in `processing` (for invariant checks).
    #[cfg(any(test, feature = "test-support"))]
    pub async fn processing_counts(&self) -> Result<(i64, i64)> {
        let mut counts = [0; 2];
        for (count, query) in counts.iter_mut().zip([&STUCK_CHALLENGES, &STUCK_ORDERS]) {
            *count = sqlx::query(query).fetch_all(&self.reader).await?.len() as i64;
        }
        Ok((counts[0], counts[1]))
    }

    /// Row counts and statuses per table: a fingerprint that tests use to assert that a
    /// refused request changed nothing.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn snapshot(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (table, query) in [
            ("accounts", "SELECT CAST(id AS TEXT), status, contact, key_thumbprint FROM accounts ORDER BY id"),
            ("orders", "SELECT CAST(id AS TEXT), status, COALESCE(profile, '-') FROM orders ORDER BY id"),
            ("authorizations", "SELECT CAST(id AS TEXT), status FROM authorizations ORDER BY id"),
            ("challenges", "SELECT CAST(id AS TEXT), status FROM challenges ORDER BY id"),
            (
                "certificates",
                "SELECT serial, COALESCE(CAST(revoked_at AS TEXT), '-'), COALESCE(CAST(replaced_by_order AS TEXT), '-')
                 FROM certificates ORDER BY serial",
            ),
            (
                "eab_keys",
                "SELECT kid, COALESCE(CAST(account_id AS TEXT), '-'), COALESCE(CAST(revoked_at AS TEXT), '-')
                 FROM eab_keys ORDER BY kid",
            ),
        ] {
            let rows = sqlx::query(query).fetch_all(&self.reader).await?;
            let text: Vec<String> = rows
                .iter()
                .map(|r| (0..r.len()).map(|c| r.get::<String, _>(c)).collect::<Vec<_>>().join("|"))
                .collect();
            out.push(format!("{table}={}", text.join(",")));
        }
        Ok(out)
    }

    /// How many group-commit transactions the SQLite writer has committed (`None` where
    /// each write commits on its own: PostgreSQL, in-memory SQLite).
    #[cfg(any(test, feature = "test-support"))]
    pub fn group_commits(&self) -> Option<u64> {
        self.group.as_ref().map(|g| g.commits())
    }
}
