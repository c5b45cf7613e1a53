//! SQLite reads of the request path, run on the calling thread.
//!
//! sqlx runs every SQLite connection on a thread of its own and hands each statement to it
//! over a channel: two thread switches per statement, which made context switching the
//! largest cost of an issuance (docs/performance.md). The reads a request makes (its
//! account, order, authorization, challenge, certificate) are index lookups that take a few
//! microseconds, so here they run directly on the tokio worker that needs them, on a
//! read-only connection taken from a small idle list.
//!
//! In WAL mode readers never wait for the writer, so such a read does not block on the
//! group-commit batch in progress. It sees every transaction committed before it started,
//! as the sqlx read pool did. The statements are the same text as on PostgreSQL (`$1`,
//! `$2`, … are bound by name).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::tx::{sqlite_error, sqlite_fetch_all, Param, Row};
use crate::store::Result;

/// How many idle read connections are kept (more are opened while busier).
const MAX_IDLE: usize = 8;
/// Prepared statements cached per connection.
const STATEMENT_CACHE: usize = 32;

/// Read-only connections to one SQLite database file.
pub(crate) struct SqliteReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteReads {
    /// Reads for the database at `path` (connections are opened when first needed).
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Waits only in rare cases in WAL mode (recovery of the WAL index after a crash).
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => self.open().map_err(sqlite_error)?,
        };
        let result = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        result
    }

    /// Every row of `sql` with `params` bound to `$1`, `$2`, ….
    pub(crate) fn all(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        self.with(|conn| sqlite_fetch_all(conn, sql, params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::columns::Columns;
    use crate::store::engine::tx::params;
    use crate::store::StoreError;

    fn database() -> (tempfile::TempDir, SqliteReads) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER);
             INSERT INTO t VALUES (1, 'one', 10), (2, 'two', 20), (3, 'three', NULL);",
        )
        .unwrap();
        (dir, SqliteReads::new(path))
    }

    fn names(rows: Vec<Row>) -> Vec<String> {
        rows.iter().map(|r| r.text("name").unwrap()).collect()
    }

    #[test]
    fn parameters_are_bound_by_their_number_not_their_position() {
        let (_dir, reads) = database();
        let rows = reads
            .all(
                "SELECT name FROM t WHERE n > $2 AND id <= $1 ORDER BY id",
                &params![3, 10],
            )
            .unwrap();
        assert_eq!(names(rows), ["two"]);
    }

    #[test]
    fn a_missing_row_is_none_and_connections_are_reused() {
        let (_dir, reads) = database();
        for _ in 0..3 {
            let rows = reads
                .all("SELECT name FROM t WHERE id = $1", &params![9])
                .unwrap();
            assert!(rows.is_empty());
        }
        assert_eq!(reads.idle.lock().unwrap().len(), 1);
    }

    #[test]
    fn reads_refuse_to_write_and_bad_sql_is_an_error_not_a_panic() {
        let (_dir, reads) = database();
        let write = reads.all("DELETE FROM t WHERE id = $1", &params![1]);
        assert!(
            matches!(write, Err(StoreError::Sqlite(_))),
            "{:?}",
            write.err()
        );
        let bad = reads.all("SELECT nope FROM t", &[]);
        assert!(matches!(bad, Err(StoreError::Sqlite(_))), "{:?}", bad.err());
        let extra = reads.all("SELECT 1", &params![1]);
        assert!(
            matches!(extra, Err(StoreError::Corrupt(_))),
            "{:?}",
            extra.err()
        );
        let count = reads.all("SELECT COUNT(*) AS n FROM t", &[]).unwrap();
        assert_eq!(count[0].int("n").unwrap(), 3);
    }
}
