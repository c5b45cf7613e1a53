//! Reading a row's columns by name, the same way from sqlx's `AnyRow` (PostgreSQL, and
//! SQLite off the hot path) and from rusqlite's `Row` (SQLite reads on the request path,
//! see `sqlite_reads`), so each record is decoded by one function.
//!
//! A column of the wrong type or a missing column is `StoreError::Corrupt`, not a panic.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::store::{Result, StoreError};

/// Typed access to the columns of one result row.
pub(crate) trait Columns {
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

pub(crate) fn corrupt(column: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{column}: {e}"))
}

/// Implements `Columns` for a row type through its by-name getter (`try_get` for sqlx,
/// `get` for rusqlite), which decodes any requested Rust type.
macro_rules! columns_via {
    ($row:ty, $getter:ident) => {
        impl $crate::store::engine::columns::Columns for $row {
            fn int(&self, column: &str) -> $crate::store::Result<i64> {
                self.$getter(column)
                    .map_err(|e| $crate::store::engine::columns::corrupt(column, e))
            }
            fn opt_int(&self, column: &str) -> $crate::store::Result<Option<i64>> {
                self.$getter(column)
                    .map_err(|e| $crate::store::engine::columns::corrupt(column, e))
            }
            fn text(&self, column: &str) -> $crate::store::Result<String> {
                self.$getter(column)
                    .map_err(|e| $crate::store::engine::columns::corrupt(column, e))
            }
            fn opt_text(&self, column: &str) -> $crate::store::Result<Option<String>> {
                self.$getter(column)
                    .map_err(|e| $crate::store::engine::columns::corrupt(column, e))
            }
            fn opt_blob(&self, column: &str) -> $crate::store::Result<Option<Vec<u8>>> {
                self.$getter(column)
                    .map_err(|e| $crate::store::engine::columns::corrupt(column, e))
            }
        }
    };
}
pub(crate) use columns_via;

/// The columns of `row` named `prefix` + name: the aliased columns of a joined read (the
/// challenges of `Store::authorization`, for instance), decoded by the joined table's own
/// `from_row`.
pub(crate) struct Prefixed<'r, R> {
    /// What each column name is prefixed with (`c_`).
    pub prefix: &'static str,
    /// The row.
    pub row: &'r R,
}

impl<R: Columns> Prefixed<'_, R> {
    fn name(&self, column: &str) -> String {
        format!("{}{column}", self.prefix)
    }
}

impl<R: Columns> Columns for Prefixed<'_, R> {
    fn int(&self, column: &str) -> Result<i64> {
        self.row.int(&self.name(column))
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        self.row.opt_int(&self.name(column))
    }
    fn text(&self, column: &str) -> Result<String> {
        self.row.text(&self.name(column))
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        self.row.opt_text(&self.name(column))
    }
    fn opt_blob(&self, column: &str) -> Result<Option<Vec<u8>>> {
        self.row.opt_blob(&self.name(column))
    }
}

columns_via!(AnyRow, try_get);
columns_via!(rusqlite::Row<'_>, get);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(row: &impl Columns) {
        assert_eq!(row.int("n").unwrap(), 7);
        assert_eq!(row.opt_int("missing_value").unwrap(), None);
        assert_eq!(row.text("t").unwrap(), "x");
        assert_eq!(row.json::<Vec<i64>>("j").unwrap(), [1, 2]);
        assert!(row.flag("n").unwrap());
        // A text column read as a number, an absent column, bad JSON: errors, no panic.
        assert!(matches!(row.int("t"), Err(StoreError::Corrupt(e)) if e.starts_with("t:")));
        assert!(matches!(row.text("nope"), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            row.json::<Vec<i64>>("t"),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            row.blob("missing_value"),
            Err(StoreError::Corrupt(_))
        ));
    }

    const ROW: &str = "SELECT 7 AS n, 'x' AS t, '[1,2]' AS j, NULL AS missing_value";

    #[test]
    fn rusqlite_rows_decode_and_refuse_wrong_types() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.query_row(ROW, [], |row| {
            check(row);
            Ok(())
        })
        .unwrap();
    }

    #[tokio::test]
    async fn sqlx_rows_decode_and_refuse_wrong_types() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect("sqlite::memory:").await.unwrap();
        let row = sqlx::query(ROW).fetch_one(&pool).await.unwrap();
        check(&row);
    }
}
