//! One write transaction, the same to the store's operations on either engine.
//!
//! Every write operation is written once, against [`Tx`]: statements with `$1`, `$2`, …
//! placeholders, [`Param`] values and [`Row`] results read through [`Columns`]. On
//! PostgreSQL (and on an in-memory SQLite database) `Tx` is a sqlx connection inside a
//! transaction; on an SQLite file it is the rusqlite connection the writer thread owns
//! (`writer`), where every call completes at once, so a whole batch of operations runs
//! without a single thread hand-off.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rusqlite::types::{FromSql, ToSqlOutput, Value as SqliteValue, ValueRef};
use rusqlite::ToSql;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyConnection};

use super::columns::Columns;
use crate::store::{Result, StoreError};

/// A boxed future borrowing what it runs on.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A statement parameter. NULLs keep their type: PostgreSQL wants to know it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

macro_rules! param_from {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {$(
        impl From<$t> for Param {
            fn from($v: $t) -> Self {
                $e
            }
        }
    )*};
}

param_from!(
    i64 => |v| Param::Int(Some(v)),
    Option<i64> => |v| Param::Int(v),
    bool => |v| Param::Int(Some(i64::from(v))),
    &str => |v| Param::Text(Some(v.to_owned())),
    String => |v| Param::Text(Some(v)),
    &String => |v| Param::Text(Some(v.clone())),
    Option<String> => |v| Param::Text(v),
    Option<&str> => |v| Param::Text(v.map(str::to_owned)),
    &Option<String> => |v| Param::Text(v.clone()),
    &[u8] => |v| Param::Blob(Some(v.to_vec())),
    Vec<u8> => |v| Param::Blob(Some(v)),
    &Vec<u8> => |v| Param::Blob(Some(v.clone())),
    Option<Vec<u8>> => |v| Param::Blob(v),
);

/// `params![a, b, …]`: a `[Param; N]` for `$1`, `$2`, ….
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        [$($crate::store::engine::tx::Param::from($value)),*]
    };
}
pub(crate) use params;

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Param::Int(Some(v)) => ValueRef::Integer(*v),
            Param::Text(Some(v)) => ValueRef::Text(v.as_bytes()),
            Param::Blob(Some(v)) => ValueRef::Blob(v),
            Param::Int(None) | Param::Text(None) | Param::Blob(None) => ValueRef::Null,
        }))
    }
}

/// Binds `params` to a sqlx query, in order (`$1` first).
pub(crate) fn bind_sqlx<'q>(
    mut query: sqlx::query::Query<'q, Any, AnyArguments<'q>>,
    params: &'q [Param],
) -> sqlx::query::Query<'q, Any, AnyArguments<'q>> {
    for param in params {
        query = match param {
            Param::Int(v) => query.bind(*v),
            Param::Text(v) => query.bind(v.as_deref()),
            Param::Blob(v) => query.bind(v.as_deref()),
        };
    }
    query
}

/// Binds `params` to `$1`, `$2`, … of a rusqlite statement by name (a statement may use
/// them in any order, or one twice). A parameter the statement lacks is an error.
pub(crate) fn bind_sqlite<P: ToSql>(
    stmt: &mut rusqlite::Statement<'_>,
    sql: &str,
    params: &[P],
) -> Result<()> {
    const NAMES: [&str; 16] = [
        "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14",
        "$15", "$16",
    ];
    for (i, value) in params.iter().enumerate() {
        let name = match NAMES.get(i) {
            Some(name) => std::borrow::Cow::Borrowed(*name),
            None => std::borrow::Cow::Owned(format!("${}", i + 1)),
        };
        let index = stmt
            .parameter_index(&name)
            .map_err(sqlite_error)?
            .ok_or_else(|| StoreError::Corrupt(format!("no parameter {name} in {sql}")))?;
        stmt.raw_bind_parameter(index, value)
            .map_err(sqlite_error)?;
    }
    Ok(())
}

/// A rusqlite failure as a store error; uniqueness violations become `Unique`.
pub(crate) fn sqlite_error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi::{SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE};
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Unique(e.to_string())
        }
        _ => StoreError::Sqlite(e.to_string()),
    }
}

/// Every row of `sql` run through sqlx, on a pool or on one connection.
pub(crate) async fn sqlx_fetch_all<'c, E>(
    executor: E,
    sql: &str,
    params: &[Param],
) -> Result<Vec<Row>>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let rows = bind_sqlx(sqlx::query(sql), params)
        .fetch_all(executor)
        .await
        .map_err(sqlx_error)?;
    Ok(rows.into_iter().map(Row::Sqlx).collect())
}

/// Runs `sql` through sqlx (on a pool: in autocommit) and returns how many rows it changed.
pub(crate) async fn sqlx_execute<'c, E>(executor: E, sql: &str, params: &[Param]) -> Result<u64>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let done = bind_sqlx(sqlx::query(sql), params)
        .execute(executor)
        .await
        .map_err(sqlx_error)?;
    Ok(done.rows_affected())
}

/// `sql` prepared (cached) on a rusqlite connection with `params` bound.
fn sqlite_statement<'c>(
    conn: &'c rusqlite::Connection,
    sql: &str,
    params: &[Param],
) -> Result<rusqlite::CachedStatement<'c>> {
    let mut stmt = conn.prepare_cached(sql).map_err(sqlite_error)?;
    bind_sqlite(&mut stmt, sql, params)?;
    Ok(stmt)
}

/// Every row of `sql` on a rusqlite connection (the writer thread's or a reader's).
pub(crate) fn sqlite_fetch_all(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[Param],
) -> Result<Vec<Row>> {
    let mut stmt = sqlite_statement(conn, sql, params)?;
    let names: Arc<[String]> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        out.push(Row::Owned(OwnedRow::copy(&names, row)?));
    }
    Ok(out)
}

/// A sqlx failure as a store error; uniqueness violations become `Unique`.
fn sqlx_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Unique(e.to_string()),
        _ => StoreError::Database(e),
    }
}

/// A result row of either engine.
pub(crate) enum Row {
    Sqlx(AnyRow),
    Owned(OwnedRow),
}

/// A row copied out of a rusqlite statement (whose rows borrow it).
pub(crate) struct OwnedRow {
    /// The statement's column names, shared by all its rows.
    names: Arc<[String]>,
    /// The values, in the order of `names`.
    values: Vec<SqliteValue>,
}

impl OwnedRow {
    /// Copies the current row of a rusqlite query whose columns are `names`.
    pub(crate) fn copy(names: &Arc<[String]>, row: &rusqlite::Row<'_>) -> Result<Self> {
        let values = (0..names.len())
            .map(|i| row.get::<_, SqliteValue>(i).map_err(sqlite_error))
            .collect::<Result<_>>()?;
        Ok(Self {
            names: names.clone(),
            values,
        })
    }

    /// The column `name` converted as rusqlite's `Row::get` converts it.
    fn get<T: FromSql>(&self, name: &str) -> std::result::Result<T, String> {
        let value = self
            .names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| "no such column".to_owned())?;
        T::column_result(ValueRef::from(value)).map_err(|e| e.to_string())
    }
}

super::columns::columns_via!(OwnedRow, get);

impl Columns for Row {
    fn int(&self, column: &str) -> Result<i64> {
        match self {
            Row::Sqlx(r) => r.int(column),
            Row::Owned(r) => r.int(column),
        }
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        match self {
            Row::Sqlx(r) => r.opt_int(column),
            Row::Owned(r) => r.opt_int(column),
        }
    }
    fn text(&self, column: &str) -> Result<String> {
        match self {
            Row::Sqlx(r) => r.text(column),
            Row::Owned(r) => r.text(column),
        }
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        match self {
            Row::Sqlx(r) => r.opt_text(column),
            Row::Owned(r) => r.opt_text(column),
        }
    }
    fn opt_blob(&self, column: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Row::Sqlx(r) => r.opt_blob(column),
            Row::Owned(r) => r.opt_blob(column),
        }
    }
}

/// The statements of one write transaction.
pub(crate) trait Tx: Send {
    /// Runs a statement that returns no rows; how many rows it changed.
    fn execute<'a>(&'a mut self, sql: &'a str, params: &'a [Param]) -> BoxFuture<'a, Result<u64>>;

    /// Runs a statement to its end and returns every row.
    fn fetch_all<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Param],
    ) -> BoxFuture<'a, Result<Vec<Row>>>;

    /// The first row, if any (the statement still runs to its end).
    fn fetch_optional<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Param],
    ) -> BoxFuture<'a, Result<Option<Row>>> {
        Box::pin(async move { Ok(self.fetch_all(sql, params).await?.into_iter().next()) })
    }

    /// The first row; `NotFound` if there is none.
    fn fetch_one<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Param],
    ) -> BoxFuture<'a, Result<Row>> {
        Box::pin(async move {
            self.fetch_optional(sql, params)
                .await?
                .ok_or(StoreError::NotFound)
        })
    }
}

impl Tx for AnyConnection {
    fn execute<'a>(&'a mut self, sql: &'a str, params: &'a [Param]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(sqlx_execute(self, sql, params))
    }

    fn fetch_all<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Param],
    ) -> BoxFuture<'a, Result<Vec<Row>>> {
        Box::pin(sqlx_fetch_all(self, sql, params))
    }
}

/// The SQLite writer's connection inside its batch transaction. Every call runs to its
/// end before it returns its (ready) future.
pub(crate) struct SqliteTx<'c>(pub(crate) &'c mut rusqlite::Connection);

impl SqliteTx<'_> {
    fn run_execute(&self, sql: &str, params: &[Param]) -> Result<u64> {
        let mut stmt = sqlite_statement(self.0, sql, params)?;
        Ok(stmt.raw_execute().map_err(sqlite_error)? as u64)
    }
}

impl Tx for SqliteTx<'_> {
    fn execute<'a>(&'a mut self, sql: &'a str, params: &'a [Param]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(std::future::ready(self.run_execute(sql, params)))
    }

    fn fetch_all<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Param],
    ) -> BoxFuture<'a, Result<Vec<Row>>> {
        Box::pin(std::future::ready(sqlite_fetch_all(self.0, sql, params)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str =
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, data BLOB, n INTEGER)";
    const INSERT: &str = "INSERT INTO t (name, data, n) VALUES ($1, $2, $3) RETURNING id";

    /// The same operation gives the same results and errors on both implementations.
    async fn exercise(tx: &mut dyn Tx) {
        tx.execute(SCHEMA, &[]).await.unwrap();
        let id = tx
            .fetch_one(INSERT, &params!["a", vec![1_u8, 2], None::<i64>])
            .await
            .unwrap()
            .int("id")
            .unwrap();
        assert_eq!(id, 1);
        let again = tx
            .fetch_one(INSERT, &params!["a", None::<Vec<u8>>, 5])
            .await;
        assert!(
            matches!(again, Err(StoreError::Unique(_))),
            "{:?}",
            again.err()
        );
        // $2 before $1, and $1 twice.
        let row = tx
            .fetch_one(
                "SELECT name, data, n FROM t WHERE id = $2 AND name = $1 AND $1 = 'a'",
                &params!["a", id],
            )
            .await
            .unwrap();
        assert_eq!(row.text("name").unwrap(), "a");
        assert_eq!(row.blob("data").unwrap(), [1, 2]);
        assert_eq!(row.opt_int("n").unwrap(), None);
        assert!(matches!(row.int("name"), Err(StoreError::Corrupt(_))));
        let changed = tx
            .execute("UPDATE t SET n = $1 WHERE n IS NULL", &params![7])
            .await
            .unwrap();
        assert_eq!(changed, 1);
        let none = tx
            .fetch_optional("SELECT id FROM t WHERE id = $1", &params![99])
            .await
            .unwrap();
        assert!(none.is_none());
        let missing = tx
            .fetch_one("SELECT id FROM t WHERE id = $1", &params![99])
            .await;
        assert!(matches!(missing, Err(StoreError::NotFound)));
    }

    #[tokio::test]
    async fn sqlite_writer_connection() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        exercise(&mut SqliteTx(&mut conn)).await;
        let mut tx = SqliteTx(&mut conn);
        // Past the table of ready-made parameter names.
        let many: Vec<Param> = (1..=17).map(Param::from).collect();
        let sql = (1..=17)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(" + ");
        let sum = tx.fetch_one(&format!("SELECT {sql} AS s"), &many).await;
        assert_eq!(sum.unwrap().int("s").unwrap(), 153);
        let extra = tx.execute("SELECT 1", &params![1]).await;
        assert!(
            matches!(extra, Err(StoreError::Corrupt(_))),
            "{:?}",
            extra.err()
        );
    }

    #[tokio::test]
    async fn sqlx_connection() {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect("sqlite::memory:").await.unwrap();
        exercise(&mut conn).await;
    }
}
