//! Reading a row's columns by name, the same way from sqlx's `AnyRow` (PostgreSQL, and
//! SQLite off the hot path) and from rusqlite's `Row` (SQLite reads on the request path,
//! see `sqlite_reads`), so each record is decoded by one function.
//!
//! A column of the wrong type or a missing column is `StoreError::Corrupt`, not a panic.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Result, StoreError};

/// Typed access to the columns of one result row.
pub(super) trait Columns {
    fn int(&self, column: &str) -> Result<i64>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;
    fn text(&self, column: &str) -> Result<String>;
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    fn opt_blob(&self, column: &str) -> Result<Option<Vec<u8>>>;

    fn blob(&self, column: &str) -> Result<Vec<u8>> {
        self.opt_blob(column)?
            .ok_or_else(|| corrupt(column, "is NULL"))
    }

    fn flag(&self, column: &str) -> Result<bool> {
        Ok(self.int(column)? != 0)
    }

    /// A column holding JSON text.
    fn json<T: serde::de::DeserializeOwned>(&self, column: &str) -> Result<T> {
        let text = self.text(column)?;
        serde_json::from_str(&text).map_err(|e| corrupt(column, e))
    }

    /// A nullable column holding JSON text.
    fn opt_json<T: serde::de::DeserializeOwned>(&self, column: &str) -> Result<Option<T>> {
        self.opt_text(column)?
            .map(|t| serde_json::from_str(&t).map_err(|e| corrupt(column, e)))
            .transpose()
    }
}

fn corrupt(column: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{column}: {e}"))
}

impl Columns for AnyRow {
    fn int(&self, column: &str) -> Result<i64> {
        self.try_get(column).map_err(|e| corrupt(column, e))
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        self.try_get(column).map_err(|e| corrupt(column, e))
    }
    fn text(&self, column: &str) -> Result<String> {
        self.try_get(column).map_err(|e| corrupt(column, e))
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        self.try_get(column).map_err(|e| corrupt(column, e))
    }
    fn opt_blob(&self, column: &str) -> Result<Option<Vec<u8>>> {
        self.try_get(column).map_err(|e| corrupt(column, e))
    }
}

impl Columns for rusqlite::Row<'_> {
    fn int(&self, column: &str) -> Result<i64> {
        self.get(column).map_err(|e| corrupt(column, e))
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        self.get(column).map_err(|e| corrupt(column, e))
    }
    fn text(&self, column: &str) -> Result<String> {
        self.get(column).map_err(|e| corrupt(column, e))
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        self.get(column).map_err(|e| corrupt(column, e))
    }
    fn opt_blob(&self, column: &str) -> Result<Option<Vec<u8>>> {
        self.get(column).map_err(|e| corrupt(column, e))
    }
}
