//! The storage authority: every durable piece of state, behind business-level operations.
//!
//! Each public method of [`Store`] is one transaction, and SQL lives here and nowhere else.
//! This file holds the `Store` type: opening a database (SQLite or PostgreSQL), checking
//! and applying migrations, the options, the errors, and the re-exports of the records.
//! The operations are grouped by aggregate, one `impl Store` block per file:
//!
//! - `accounts`: creating accounts (alone, or bound to an External Account Binding key in
//!   the same transaction), reading them by id or key thumbprint, contact and
//!   terms-of-service updates, key change, and deactivation (with the account's
//!   authorizations).
//! - `orders`: creating an order with its new or reused authorizations and their
//!   challenges in one transaction, the reads that render orders, and finalization:
//!   `begin_finalize`, then `complete_order` (storing the certificate) or `fail_order`.
//! - `authorizations`: authorizations and their challenges: lookups, reuse, the
//!   "valid authorizations for these identifiers" check, deactivation, and validation
//!   (`start_validation`, then `finish_validation` on the challenge and its authorization
//!   at once).
//! - `certificates`: a certificate by serial, revocation, the revoked entries of a CRL and
//!   the ARI "renew early" mark. The operator's inventory is `inventory`.
//! - `campaigns`: renew-early campaigns: the ARI mark on every certificate matching a
//!   filter, in bounded set-based batches, with the set kept for the progress view.
//! - `agents`: remote validation agents, their enrolment tokens and the agent CA.
//! - `eab`: External Account Binding keys, their HMAC keys sealed with the
//!   key-encryption key (`secrets`).
//! - `crl`: per issuer, monotonic CRL numbers and the latest CRL.
//! - `nonces`: the nonces several instances share on PostgreSQL (autocommit statements,
//!   outside `write`).
//! - `leases`: claiming validations and issuances whose lease ran out, so that nothing
//!   stays `processing` after a crash or restart.
//! - `ratelimit`, `audit`, `inventory`, `export`: rate-limit events, the hash-chained
//!   audit trail, the certificate inventory, and moving a CA between backends.
//! - `webhooks`: the webhook outbox: events appended in the transaction of their change
//!   (after its audit entry), one delivery per subscribed endpoint, the worker's claim
//!   with a lease and its outcomes, the console's lists and retry.
//! - `inspect`: `integrity_violations`, and the fingerprints tests compare (feature
//!   `test-support`). `reader`: [`StoreReader`], the read-only view the front end gets.
//!
//! Every status the SQL names comes from the RA's transition table
//! (`status::transitions`) through `statuses`, which builds each such statement once;
//! its tests check the SQL against the table.
//!
//! `engine` is the private driver layer under all of it. Write operations are written once
//! against its `Tx` and run through `Store::write`. On an SQLite file (WAL mode), writes go
//! through the one connection of the writer thread with group commit (SQLite allows one
//! writer at a time anyway) and request-path reads run on the calling thread; in-memory
//! SQLite and PostgreSQL use sqlx transactions and pools. Migrations, imports, exports and
//! the shared nonces use sqlx directly.

mod accounts;
pub mod agents;
pub mod audit;
mod authorizations;
mod backend_jobs;
pub mod campaigns;
mod certificate_names;
mod certificates;
pub mod console;
#[cfg(test)]
mod console_scale;
mod crl;
pub mod dashboard;
mod eab;
mod engine;
mod export;
mod inspect;
pub mod inventory;
mod issuers;
mod leases;
mod nonces;
pub mod operators;
mod orders;
mod ratelimit;
mod reader;
mod records;
mod statuses;
pub mod troubleshoot;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use certwright_proto::types::IdentifierType;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::AnyPool;
use sqlx::Row as _;

use crate::secrets::Kek;
use engine::{sqlite_reads, writer};

pub use audit::{Actor, AuditEntry, AuditEvent, AuditVerdict};
pub use backend_jobs::{BackendJob, NewBackendJob};
pub use nonces::{Prefetch, Prefetched, Redeemed, NONCE_BATCH};
pub use reader::StoreReader;
pub use records::*;
pub use webhooks::WebhookRoutes;

/// Storage failures. `Conflict` is a uniqueness violation the caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record with the same key already exists.
    #[error("record already exists")]
    Conflict,
    /// The certificate named by `replaces` was already replaced by another order.
    #[error("the certificate was already replaced by another order")]
    AlreadyReplaced,
    /// The EAB key is unknown, revoked or already bound.
    #[error("the external account binding key is unknown, revoked or already bound")]
    EabUnavailable,
    /// No such record.
    #[error("record not found")]
    NotFound,
    /// A stored value does not parse.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A database error from sqlx.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A uniqueness constraint refused a write (operations that expect it turn it into
    /// `Conflict`).
    #[error("database error: {0}")]
    Unique(String),
    /// An SQLite statement run through rusqlite (the request-path reads and the writer
    /// thread) failed.
    #[error("database error: {0}")]
    Sqlite(String),
    /// Applying or checking migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database cannot be used as it is: a newer schema, pending migrations, or (on
    /// import) a target that is not empty or an export sealed with another KEK.
    #[error("{0}")]
    Schema(String),
    /// The transaction (or the write batch it was part of) did not commit.
    #[error("database error: the write was not committed: {0}")]
    Commit(String),
    /// Sealing or opening an EAB key with the key-encryption key failed (`secrets`).
    #[error("{0}")]
    Secret(#[from] crate::secrets::SecretsError),
    /// The database file could not be created.
    #[error("cannot create the database file {path}: {error}")]
    File {
        /// The database file.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
}

/// A uniqueness violation as `Conflict`, for the operations where it means "already
/// exists".
fn unique_is_conflict(e: StoreError) -> StoreError {
    match e {
        StoreError::Unique(_) => StoreError::Conflict,
        other => other,
    }
}

pub(crate) type Result<T> = std::result::Result<T, StoreError>;

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (WAL, synchronous=FULL): one instance.
    Sqlite,
    /// PostgreSQL: several instances may share it.
    Postgres,
}

/// Connection settings beyond the URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Apply pending migrations when opening (else refuse to run on an old schema).
    pub auto_migrate: bool,
    /// Most connections to PostgreSQL (SQLite uses one writer and a small read pool).
    pub max_connections: u32,
    /// How long a request waits for a connection before failing (fast failure when the
    /// database is unreachable).
    pub acquire_timeout: Duration,
    /// SQLite's `synchronous` setting for the writer (ignored on PostgreSQL).
    pub sqlite_synchronous: SqliteSynchronous,
}

/// SQLite durability: when a commit waits for the disk (`PRAGMA synchronous`, WAL mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// Every commit is fsynced before it is answered: survives power loss (the default).
    #[default]
    Full,
    /// Commits are fsynced only at WAL checkpoints: survives a process crash, but the last
    /// commits before a power loss or kernel crash may be lost (already answered to clients).
    Normal,
}

impl SqliteSynchronous {
    fn pragma(self) -> &'static str {
        match self {
            Self::Full => "PRAGMA synchronous = FULL",
            Self::Normal => "PRAGMA synchronous = NORMAL",
        }
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            auto_migrate: true,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            sqlite_synchronous: SqliteSynchronous::Full,
        }
    }
}

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    reader: AnyPool,
    writer: AnyPool,
    backend: Backend,
    /// Group commit on the SQLite writer thread (`None` on PostgreSQL and in-memory
    /// SQLite, where each write is a sqlx transaction of its own).
    group: Option<writer::GroupCommit>,
    /// Request-path reads on the calling thread (SQLite files only).
    reads: Option<Arc<sqlite_reads::SqliteReads>>,
    /// Seals and opens EAB HMAC keys (`secrets`); attached with `with_eab_kek`.
    eab_kek: Option<Arc<Kek>>,
    /// Who the operator's changes (EAB keys, revocations, renew-early marks, imports)
    /// are audited as; set with `acting_as`.
    operator: audit::Actor,
    /// Statements and transactions sent to the database (`engine::Counters`).
    counters: Arc<engine::Counters>,
    /// The webhook endpoints events fan out to; set with `with_webhooks`.
    webhooks: Arc<webhooks::WebhookRoutes>,
}

/// How many statements and write transactions a store has sent to its database
/// (`Store::statement_counts`, feature `test-support`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatementCounts {
    /// SQL statements of operations (reads, writes, shared nonces), not counting the
    /// transaction control around writes.
    pub statements: u64,
    /// Write transactions: on PostgreSQL each adds a `BEGIN` and a `COMMIT` round trip; on
    /// an SQLite file, one per group-commit batch.
    pub transactions: u64,
}

impl StatementCounts {
    /// Round trips to a database server: each statement, and `BEGIN` + `COMMIT` per
    /// transaction.
    pub fn round_trips(&self) -> u64 {
        self.statements + 2 * self.transactions
    }
}

impl std::ops::Sub for StatementCounts {
    type Output = Self;
    fn sub(self, earlier: Self) -> Self {
        Self {
            statements: self.statements - earlier.statements,
            transactions: self.transactions - earlier.transactions,
        }
    }
}

fn sqlite_url(url: &str, mode: &str) -> String {
    if url.contains(":memory:") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}mode={mode}")
}

impl Store {
    /// Opens the database at `url` (`sqlite://PATH`, `sqlite::memory:` or
    /// `postgres://…`) and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, &StoreOptions::default()).await
    }

    /// Opens the database with explicit options.
    pub async fn open_with(url: &str, options: &StoreOptions) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let store = if url.starts_with("sqlite:") {
            // The database file is private from its creation (SQLite gives its -wal and
            // -shm files the database file's mode).
            if let Some(path) = Self::sqlite_file(url) {
                crate::fsutil::create_private_file(&path).map_err(|error| StoreError::File {
                    path: path.display().to_string(),
                    error,
                })?;
            }
            let synchronous = options.sqlite_synchronous.pragma();
            let writer = AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(options.acquire_timeout)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            // FULL (default): a committed transaction survives power loss,
                            // not just a crash.
                            synchronous,
                            "PRAGMA foreign_keys = ON",
                            "PRAGMA busy_timeout = 10000",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                        Ok(())
                    })
                })
                .connect(&sqlite_url(url, "rwc"))
                .await?;
            // An in-memory database exists once per connection: share the writer for reads.
            let file = if url.contains(":memory:") {
                None
            } else {
                let options: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
                Some(options.get_filename().to_owned())
            };
            let reader = match &file {
                None => writer.clone(),
                Some(_) => AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(options.acquire_timeout)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::query("PRAGMA busy_timeout = 10000")
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_lazy(&sqlite_url(url, "ro"))?,
            };
            let store = Self {
                reader,
                writer,
                backend: Backend::Sqlite,
                group: None,
                reads: file
                    .as_ref()
                    .map(|path| Arc::new(sqlite_reads::SqliteReads::new(path.clone()))),
                eab_kek: None,
                operator: audit::Actor::Operator(None),
                counters: Arc::default(),
                webhooks: Arc::default(),
            };
            // The writer thread starts on the migrated schema.
            store.check_schema(options.auto_migrate).await?;
            let group = match &file {
                Some(path) => Some(writer::GroupCommit::start(
                    path,
                    options.sqlite_synchronous,
                    store.counters.clone(),
                )?),
                None => None,
            };
            return Ok(Self { group, ..store });
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = AnyPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // Every statement is prepared once per connection; with the default
                        // plan_cache_mode (auto) a connection whose first executions saw a
                        // young table's statistics may settle on a custom plan and plan that
                        // statement again on every execution (measured: a fifth of the
                        // authorization reads, 4% of PostgreSQL's CPU). The generic plan
                        // of every statement is an index plan (`query_plans`).
                        sqlx::query("SET plan_cache_mode = force_generic_plan")
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await?;
            Self {
                reader: pool.clone(),
                writer: pool,
                backend: Backend::Postgres,
                group: None,
                reads: None,
                eab_kek: None,
                operator: audit::Actor::Operator(None),
                counters: Arc::default(),
                webhooks: Arc::default(),
            }
        } else {
            return Err(StoreError::Corrupt(format!(
                "unsupported database URL {url:?} (use sqlite://PATH or postgres://…)"
            )));
        };
        store.check_schema(options.auto_migrate).await?;
        Ok(store)
    }

    /// The engine this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The file of an `sqlite://PATH` URL (None for PostgreSQL and in-memory SQLite).
    pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
        if !url.starts_with("sqlite:") || url.contains(":memory:") {
            return None;
        }
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse().ok()?;
        Some(options.get_filename().to_owned())
    }

    /// This store with the operator its operator changes are audited as.
    pub fn acting_as(self, operator: audit::Actor) -> Self {
        Self { operator, ..self }
    }

    /// The actor the operator's changes are audited as.
    pub fn operator(&self) -> &audit::Actor {
        &self.operator
    }

    /// This store with the key-encryption key that seals and opens EAB HMAC keys.
    pub fn with_eab_kek(self, kek: Arc<Kek>) -> Self {
        Self {
            eab_kek: Some(kek),
            ..self
        }
    }

    /// The key-encryption key, if one is attached.
    #[cfg(any(test, feature = "test-support"))]
    pub fn eab_kek(&self) -> Option<&Arc<Kek>> {
        self.eab_kek.as_ref()
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Refuses a schema newer than this binary knows; applies pending migrations when
    /// `migrate` is set, else refuses a schema that lacks them.
    async fn check_schema(&self, migrate: bool) -> Result<()> {
        let known: Vec<i64> = self.migrator().iter().map(|m| m.version).collect();
        let applied = self.applied_migrations().await?;
        if let Some(newer) = applied.iter().find(|v| !known.contains(v)) {
            return Err(StoreError::Schema(format!(
                "the database has schema version {newer}, newer than this certwright-ca knows ({:?}); upgrade certwright-ca",
                known.last()
            )));
        }
        let pending = known.iter().filter(|v| !applied.contains(v)).count();
        if pending > 0 {
            if !migrate {
                return Err(StoreError::Schema(format!(
                    "{pending} migration(s) are pending; run `certwright-ca migrate` first"
                )));
            }
            self.migrate().await?;
        }
        Ok(())
    }

    async fn applied_migrations(&self) -> Result<Vec<i64>> {
        let rows = match sqlx::query(
            "SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version",
        )
        .fetch_all(&self.writer)
        .await
        {
            Ok(rows) => rows,
            // No migrations table yet: a fresh database.
            Err(sqlx::Error::Database(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        Ok(rows.iter().map(|r| r.get::<i64, _>(0)).collect())
    }

    /// Applies pending migrations; returns how many were applied.
    pub async fn migrate(&self) -> Result<usize> {
        let before = self.applied_migrations().await?.len();
        self.migrator().run(&self.writer).await?;
        Ok(self.applied_migrations().await?.len() - before)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }
}

fn identifier_type_name(kind: IdentifierType) -> &'static str {
    match kind {
        IdentifierType::Dns => "dns",
        IdentifierType::Ip => "ip",
    }
}

/// Parses a stored status column.
fn parse_status<T>(text: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown status {text:?}")))
}

#[cfg(test)]
mod query_plans;
#[cfg(test)]
mod tests;
