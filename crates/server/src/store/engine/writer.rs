//! Write transactions, and group commit for SQLite.
//!
//! Every write operation of the store is a closure over one [`Tx`] inside a transaction
//! ([`Store::write`]). On PostgreSQL (and an in-memory SQLite database) each runs in a
//! transaction of its own from the sqlx pool.
//!
//! On an SQLite file, where there is one writer and every commit waits for an fsync, a
//! thread of its own owns the write connection (rusqlite). It takes all operations waiting
//! at that moment (up to [`MAX_BATCH`]), runs each inside a savepoint of one transaction,
//! commits once, and only then answers every caller. An operation that fails rolls back to
//! its savepoint and gets its own error; the others are unaffected. If the commit fails,
//! every operation of the batch gets that failure and none of them happened. No caller is
//! answered before its change is durable, so the durability promise is the same as one
//! commit per operation — with one fsync per batch instead of one per operation.
//!
//! The thread runs every statement itself (no hand-off per statement, as sqlx's SQLite
//! driver makes): a batch costs one wake-up of the thread and one answer per caller.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use super::tx::{sqlite_error, sqlx_execute, BoxFuture, Param, SqliteTx, Tx};
use super::{Counters, Counting};
use crate::store::{Backend, Result, SqliteSynchronous, Store, StoreError};

/// Most operations committed together.
pub(crate) const MAX_BATCH: usize = 128;

/// How many operations may wait for the writer before callers are held back.
const QUEUE: usize = 4096;

/// Prepared statements kept by the write connection (every write statement of the store
/// fits).
const STATEMENT_CACHE: usize = 96;

/// Answers a caller once the fate of its batch is known (`Some(reason)`: the commit
/// failed).
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

/// One queued operation: runs on the batch's transaction, says whether it succeeded (so
/// its savepoint is released or rolled back) and how to answer its caller.
type Job = Box<dyn for<'c> FnOnce(&'c mut dyn Tx) -> BoxFuture<'c, (bool, Answer)> + Send>;

/// The queue in front of the SQLite writer thread.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    jobs: mpsc::Sender<Job>,
    /// Transactions committed by the writer thread so far (read by tests only:
    /// `Store::group_commits`).
    #[cfg_attr(not(any(test, feature = "test-support")), allow(dead_code))]
    commits: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Opens the write connection to the database file at `path` and starts the writer
    /// thread on it. The thread ends when the last store clone is dropped.
    pub(crate) fn start(
        path: &Path,
        synchronous: SqliteSynchronous,
        counters: Arc<Counters>,
    ) -> Result<Self> {
        let conn = open(path, synchronous)?;
        let (jobs, rx) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, rx, counter, counters))
            .map_err(|e| StoreError::Sqlite(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { jobs, commits })
    }

    /// Transactions the writer thread has committed so far.
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

/// The write connection: WAL, the configured durability, foreign keys enforced, statement
/// journals in memory.
fn open(path: &Path, synchronous: SqliteSynchronous) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_error)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sqlite_error)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // `journal_mode` answers with a row, so it is read rather than executed.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(sqlite_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Sqlite(format!(
            "the database refused WAL mode (it is in {mode} mode)"
        )));
    }
    conn.execute_batch(synchronous.pragma())
        .map_err(sqlite_error)?;
    conn.execute_batch("PRAGMA foreign_keys = ON")
        .map_err(sqlite_error)?;
    // Each operation of a batch runs in a savepoint, whose statement journal (the pages'
    // contents before the operation, to roll back to) would otherwise spill past 64 KiB
    // into a temporary file created, written and deleted for every batch. That journal
    // only serves `ROLLBACK TO` within the open transaction and never crash recovery (the
    // WAL does that), so keeping it in memory changes nothing about durability; released
    // savepoints truncate it, so it holds one operation's pages at most.
    conn.execute_batch("PRAGMA temp_store = MEMORY")
        .map_err(sqlite_error)?;
    Ok(conn)
}

impl Store {
    /// Runs `op` as (part of) one committed transaction and returns its result once the
    /// change is durable. See the module documentation.
    pub(crate) async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut dyn Tx) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let Some(group) = &self.group else {
            let mut tx = self.writer.begin().await?;
            self.counters.transaction();
            let value = op(&mut Counting {
                inner: &mut *tx,
                counters: &self.counters,
            })
            .await?;
            tx.commit().await?;
            return Ok(value);
        };
        let (reply, answer) = oneshot::channel::<Result<T>>();
        let counters = self.counters.clone();
        let job: Job = Box::new(move |tx| {
            Box::pin(async move {
                let outcome = op(&mut Counting {
                    inner: tx,
                    counters: &counters,
                })
                .await;
                let ok = outcome.is_ok();
                let answer: Answer = Box::new(move |commit_failure| {
                    let result = match (outcome, commit_failure) {
                        (Err(e), _) => Err(e),
                        (Ok(_), Some(reason)) => Err(StoreError::Commit(reason.to_owned())),
                        (Ok(value), None) => Ok(value),
                    };
                    let _ = reply.send(result);
                });
                (ok, answer)
            })
        });
        group
            .jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Commit("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Commit("the writer dropped the operation".into()))?
    }
}

impl Store {
    /// A write operation that is one statement: how many rows it changed. On PostgreSQL it
    /// runs alone, in autocommit: the statement is its own transaction, committed (and
    /// durable, as `synchronous_commit` makes every commit) before the answer comes back,
    /// in one round trip instead of `BEGIN`, the statement and `COMMIT`. Elsewhere it is
    /// an ordinary `write` (on an SQLite file, part of a group commit).
    pub(crate) async fn write_one(&self, sql: &'static str, params: Vec<Param>) -> Result<u64> {
        if self.group.is_none() && self.backend == Backend::Postgres {
            self.counters.statement();
            return sqlx_execute(&self.writer, sql, &params).await;
        }
        self.write(move |tx| Box::pin(async move { tx.execute(sql, &params).await }))
            .await
    }
}

/// The writer thread: batches until the store (and with it the queue's senders) is gone.
/// An operation that panics costs its batch (rolled back; its callers get an error), not
/// the writer.
fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    commits: Arc<AtomicU64>,
    counters: Arc<Counters>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let size = batch.len();
        counters.transaction();
        let mut answers = Vec::with_capacity(size);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run_batch(&mut conn, batch, &mut answers)
        }));
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("an operation in the same write batch panicked".to_owned()),
        };
        match &failure {
            None => {
                commits.fetch_add(1, Ordering::Relaxed);
            }
            Some(reason) => {
                tracing::error!(error = %reason, operations = size, "a write batch failed; rolled back");
                if !conn.is_autocommit() {
                    if let Err(e) = conn.execute_batch("ROLLBACK") {
                        tracing::error!(error = %e, "rolling back the failed write batch failed");
                    }
                }
            }
        }
        metrics::histogram!("certwright_store_write_batch_size").record(size as f64);
        for answer in answers {
            answer(failure.as_deref());
        }
    }
}

/// Runs `batch` in one transaction and commits it. Jobs never run (the batch failed
/// before them) are dropped: their callers learn it from the closed reply channel.
fn run_batch(conn: &mut Connection, batch: Vec<Job>, answers: &mut Vec<Answer>) -> Result<()> {
    exec(conn, "BEGIN IMMEDIATE")?;
    for job in batch {
        exec(conn, "SAVEPOINT op")?;
        let ok = match run_now(job(&mut SqliteTx(conn))) {
            Some((ok, answer)) => {
                answers.push(answer);
                ok
            }
            None => {
                // Only statements are awaited in an operation, and they are ready at
                // once; anything else is a bug. The caller's reply is dropped with it.
                tracing::error!("a write operation waited on something other than the database");
                false
            }
        };
        if !ok {
            exec(conn, "ROLLBACK TO op")?;
        }
        exec(conn, "RELEASE op")?;
    }
    exec(conn, "COMMIT")
}

fn exec(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.raw_execute())
        .map(drop)
        .map_err(sqlite_error)
}

/// Polls `future` once: its value if it completed.
fn run_now<T>(mut future: BoxFuture<'_, T>) -> Option<T> {
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_connection_keeps_statement_journals_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("w.db"), SqliteSynchronous::Full).unwrap();
        let temp_store: i64 = conn
            .query_row("PRAGMA temp_store", [], |r| r.get(0))
            .unwrap();
        assert_eq!(temp_store, 2, "2 is MEMORY");
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
