//! The driver layer under the store's operations; nothing outside `store` sees it.
//!
//! - `tx`: one write transaction, the same to every operation on either engine (`Tx`),
//!   statement parameters (`Param`, `params!`) and result rows (`Row`).
//! - `writer`: `Store::write`, and group commit on the SQLite writer thread.
//! - `sqlite_reads`: request-path reads of an SQLite file on the calling thread.
//! - `columns`: typed, by-name access to a row's columns from either driver.
//!
//! The operations themselves (`accounts`, `orders`, …) call `Store::write` with a closure
//! over a `Tx`, and `Store::read_all`/`read_optional` for reads.

pub(crate) mod columns;
pub(crate) mod sqlite_reads;
pub(crate) mod tx;
pub(crate) mod writer;

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Result, Store};
use tx::{BoxFuture, Param, Row, Tx};

/// How many SQL statements and transactions this store has sent to its database (all
/// clones of a store share them). Counting is a relaxed atomic increment: cheap enough to
/// be always on; the counts are read by the statement-budget tests (`test-support`).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Statements of operations: reads, writes inside transactions, shared nonces.
    statements: AtomicU64,
    /// Write transactions (on PostgreSQL each is a `BEGIN` and a `COMMIT` more; on an
    /// SQLite file one per group-commit batch).
    transactions: AtomicU64,
}

impl Counters {
    /// One statement more.
    pub(crate) fn statement(&self) {
        self.statements.fetch_add(1, Ordering::Relaxed);
    }

    /// One write transaction more.
    pub(crate) fn transaction(&self) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    #[cfg_attr(not(any(test, feature = "test-support")), allow(dead_code))]
    pub(crate) fn snapshot(&self) -> super::StatementCounts {
        super::StatementCounts {
            statements: self.statements.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
        }
    }
}

/// A `Tx` that counts the statements run through it.
pub(crate) struct Counting<'a> {
    pub(crate) inner: &'a mut dyn Tx,
    pub(crate) counters: &'a Counters,
}

impl Tx for Counting<'_> {
    fn execute<'a>(&'a mut self, sql: &'a str, params: &'a [Param]) -> BoxFuture<'a, Result<u64>> {
        self.counters.statement();
        self.inner.execute(sql, params)
    }

    fn fetch_all<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Param],
    ) -> BoxFuture<'a, Result<Vec<Row>>> {
        self.counters.statement();
        self.inner.fetch_all(sql, params)
    }
}

impl Store {
    /// Every row of a read: on an SQLite file on the calling thread (`sqlite_reads`), else
    /// through the sqlx read pool.
    pub(crate) async fn read_all(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        self.counters.statement();
        match &self.reads {
            Some(reads) => reads.all(sql, params),
            None => tx::sqlx_fetch_all(&self.reader, sql, params).await,
        }
    }

    /// The first row of a read, if any (see `read_all`).
    pub(crate) async fn read_optional(&self, sql: &str, params: &[Param]) -> Result<Option<Row>> {
        Ok(self.read_all(sql, params).await?.into_iter().next())
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Store {
    /// How many statements and write transactions this store (and its clones) has sent to
    /// the database so far.
    pub fn statement_counts(&self) -> super::StatementCounts {
        self.counters.snapshot()
    }
}
