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

use super::{Result, Store};
use tx::{Param, Row};

impl Store {
    /// Every row of a read: on an SQLite file on the calling thread (`sqlite_reads`), else
    /// through the sqlx read pool.
    pub(crate) async fn read_all(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
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
