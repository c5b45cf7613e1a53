//! The storage authority: every durable piece of state, behind business-level operations.
//!
//! Each public method is one transaction. SQL lives here and nowhere else. Write
//! operations are written once against `tx::Tx` and run through `Store::write`. The
//! embedded backend is SQLite in WAL mode: on a file, writes go through the one connection
//! of the writer thread with group commit (`writer`; SQLite allows one writer at a time
//! anyway), request-path reads run on the calling thread (`sqlite_reads`), the rest
//! through a sqlx pool. Migrations, imports and the shared nonces of several instances use
//! sqlx directly.

pub mod audit;
mod columns;
mod export;
pub mod inventory;
mod ratelimit;
mod records;
mod sqlite_reads;
mod tx;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use certwright_proto::types::{AuthorizationStatus, ChallengeStatus, Identifier, IdentifierType};
use certwright_proto::{Jwk, Problem};
use serde_json::Value;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::AnyPool;
use sqlx::Row as _;

use crate::secrets::{Kek, SecretsError};
use columns::Columns;
use tx::{params, Param, Row};

pub use audit::{AuditEntry, AuditEvent, AuditVerdict};
pub use records::*;

/// Storage failures. `Conflict` is a uniqueness violation the caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("record already exists")]
    Conflict,
    #[error("the certificate was already replaced by another order")]
    AlreadyReplaced,
    #[error("the external account binding key is unknown, revoked or already bound")]
    EabUnavailable,
    #[error("record not found")]
    NotFound,
    #[error("corrupt record: {0}")]
    Corrupt(String),
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
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
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
    File { path: String, error: std::io::Error },
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
            };
            // The writer thread starts on the migrated schema.
            store.check_schema(options.auto_migrate).await?;
            let group = match &file {
                Some(path) => Some(writer::GroupCommit::start(
                    path,
                    options.sqlite_synchronous,
                )?),
                None => None,
            };
            return Ok(Self { group, ..store });
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = AnyPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect(url)
                .await?;
            Self {
                reader: pool.clone(),
                writer: pool,
                backend: Backend::Postgres,
                group: None,
                reads: None,
                eab_kek: None,
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

    /// This store with the key-encryption key that seals and opens EAB HMAC keys.
    pub fn with_eab_kek(self, kek: Arc<Kek>) -> Self {
        Self {
            eab_kek: Some(kek),
            ..self
        }
    }

    /// The key-encryption key, if one is attached.
    pub fn eab_kek(&self) -> Option<&Arc<Kek>> {
        self.eab_kek.as_ref()
    }

    fn require_kek(&self) -> Result<Arc<Kek>> {
        self.eab_kek
            .clone()
            .ok_or(StoreError::Secret(SecretsError::NoKek))
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

    // ---------------------------------------------------------------- reads

    /// Every row of a read: on an SQLite file on the calling thread (`sqlite_reads`), else
    /// through the sqlx read pool.
    async fn read_all(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        match &self.reads {
            Some(reads) => reads.all(sql, params),
            None => tx::sqlx_fetch_all(&self.reader, sql, params).await,
        }
    }

    /// The first row of a read, if any (see `read_all`).
    async fn read_optional(&self, sql: &str, params: &[Param]) -> Result<Option<Row>> {
        Ok(self.read_all(sql, params).await?.into_iter().next())
    }

    // ---------------------------------------------------------------- accounts

    /// Creates a valid account for `jwk`; `Conflict` if the key already has one.
    pub async fn create_account(
        &self,
        jwk: &Jwk,
        contact: &[String],
        tos_agreed: bool,
        now: i64,
    ) -> Result<AccountRecord> {
        let (jwk, contact) = (jwk.clone(), contact.to_vec());
        let id = self
            .write(move |tx| {
                Box::pin(async move {
                    let (jwk, contact) = (&jwk, &contact[..]);
                    let row = tx
                        .fetch_one(
                            "INSERT INTO accounts (key_thumbprint, jwk, contact, status, tos_agreed, created_at)
                             VALUES ($1, $2, $3, 'valid', $4, $5) RETURNING id",
                            &params![
                                jwk.thumbprint(),
                                jwk.to_value().to_string(),
                                serde_json::to_string(contact).expect("strings serialize"),
                                tos_agreed,
                                now,
                            ],
                        )
                        .await
                        .map_err(unique_is_conflict)?;
                    let id = AccountId(row.int("id")?);
                    let event = audit::account_created(id, jwk, contact, tos_agreed, None);
                    audit::append(tx, &event).await?;
                    Ok(id)
                })
            })
            .await?;
        self.account(id).await
    }

    /// The account with `id`.
    pub async fn account(&self, id: AccountId) -> Result<AccountRecord> {
        let row = self
            .read_optional("SELECT * FROM accounts WHERE id = $1", &params![id.0])
            .await?
            .ok_or(StoreError::NotFound)?;
        AccountRecord::from_row(&row)
    }

    /// The account whose key has this RFC 7638 thumbprint.
    pub async fn account_by_thumbprint(&self, thumbprint: &str) -> Result<Option<AccountRecord>> {
        let row = self
            .read_optional(
                "SELECT * FROM accounts WHERE key_thumbprint = $1",
                &params![thumbprint],
            )
            .await?;
        row.as_ref().map(AccountRecord::from_row).transpose()
    }

    /// Replaces an account's contact list.
    pub async fn update_account_contact(&self, id: AccountId, contact: &[String]) -> Result<()> {
        let contact = contact.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let contact = &contact[..];
                tx.execute(
                    "UPDATE accounts SET contact = $1 WHERE id = $2",
                    &params![
                        serde_json::to_string(contact).expect("strings serialize"),
                        id.0
                    ],
                )
                .await?;
                let event = AuditEvent::by_account(id, "account.update")
                    .details(serde_json::json!({ "contact": contact }));
                audit::append(tx, &event).await?;
                Ok(())
            })
        })
        .await
    }

    /// Records that the account agreed to the terms of service.
    pub async fn set_account_tos_agreed(&self, id: AccountId) -> Result<()> {
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "UPDATE accounts SET tos_agreed = 1 WHERE id = $1",
                    &params![id.0],
                )
                .await?;
                let event = AuditEvent::by_account(id, "account.update")
                    .details(serde_json::json!({ "terms_of_service_agreed": true }));
                audit::append(tx, &event).await?;
                Ok(())
            })
        })
        .await
    }

    /// Deactivates an account and its pending authorizations (§7.3.6).
    pub async fn deactivate_account(&self, id: AccountId) -> Result<()> {
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "UPDATE accounts SET status = 'deactivated' WHERE id = $1",
                    &params![id.0],
                )
                .await?;
                tx.execute(
                    "UPDATE authorizations SET status = 'deactivated'
                     WHERE account_id = $1 AND status IN ('pending', 'valid')",
                    &params![id.0],
                )
                .await?;
                audit::append(tx, &AuditEvent::by_account(id, "account.deactivate")).await?;
                Ok(())
            })
        })
        .await
    }

    // ---------------------------------------------------------------- orders

    /// A still-valid authorization of `account` for `identifier` that outlives `min_expires`.
    pub async fn find_reusable_authorization(
        &self,
        account: AccountId,
        identifier: &Identifier,
        wildcard: bool,
        min_expires: i64,
    ) -> Result<Option<AuthzId>> {
        let row = self
            .read_optional(
                "SELECT id FROM authorizations
                 WHERE account_id = $1 AND identifier_type = $2 AND identifier_value = $3 AND wildcard = $4
                   AND status = 'valid' AND expires > $5
                 ORDER BY expires DESC LIMIT 1",
                &params![
                    account.0,
                    identifier_type_name(identifier.kind),
                    &identifier.value,
                    wildcard,
                    min_expires,
                ],
            )
            .await?;
        row.map(|r| Ok(AuthzId(r.int("id")?))).transpose()
    }

    /// Creates an order with its authorizations (new ones with their challenges, or reused
    /// ones) in one transaction.
    pub async fn create_order(&self, new: &NewOrderRecord) -> Result<OrderRecord> {
        let new = new.clone();
        let order_id = self.write(move |tx| {
            Box::pin(async move {
                let new = &new;
                let order_id = tx
                    .fetch_one(
                        "INSERT INTO orders (account_id, status, identifiers, expires, not_before, not_after, created_at, profile, replaces)
                         VALUES ($1, 'pending', $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                        &params![
                            new.account_id.0,
                            serde_json::to_string(&new.identifiers).expect("identifiers serialize"),
                            new.expires,
                            new.not_before,
                            new.not_after,
                            new.now,
                            &new.profile,
                            new.replaces.as_ref().map(|r| r.0.clone()),
                        ],
                    )
                    .await?
                    .int("id")?;
                if let Some((_, serial)) = &new.replaces {
                    let marked = tx
                        .execute(
                            "UPDATE certificates SET replaced_by_order = $1 WHERE serial = $2 AND replaced_by_order IS NULL",
                            &params![order_id, serial],
                        )
                        .await?;
                    if marked != 1 {
                        return Err(StoreError::AlreadyReplaced);
                    }
                }
                for authz in &new.authorizations {
                    let authz_id = match authz {
                        NewAuthorization::Reuse(id) => id.0,
                        NewAuthorization::Create {
                            identifier,
                            wildcard,
                            expires,
                            challenges,
                        } => {
                            let id = tx
                                .fetch_one(
                                    "INSERT INTO authorizations
                                       (account_id, identifier_type, identifier_value, wildcard, status, expires, created_at)
                                     VALUES ($1, $2, $3, $4, 'pending', $5, $6) RETURNING id",
                                    &params![
                                        new.account_id.0,
                                        identifier_type_name(identifier.kind),
                                        &identifier.value,
                                        *wildcard,
                                        *expires,
                                        new.now,
                                    ],
                                )
                                .await?
                                .int("id")?;
                            // All of the authorization's challenges in one statement.
                            if !challenges.is_empty() {
                                let rows: Vec<String> = (0..challenges.len())
                                    .map(|i| format!("($1, ${}, ${}, 'pending')", 2 * i + 2, 2 * i + 3))
                                    .collect();
                                let sql = format!(
                                    "INSERT INTO challenges (authorization_id, type, token, status) VALUES {}",
                                    rows.join(", ")
                                );
                                let mut values = vec![Param::from(id)];
                                for (kind, token) in challenges {
                                    values.push(kind.as_str().into());
                                    values.push(token.into());
                                }
                                tx.execute(&sql, &values).await?;
                            }
                            id
                        }
                    };
                    tx.execute(
                        "INSERT INTO order_authorizations (order_id, authorization_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &params![order_id, authz_id],
                    )
                    .await?;
                }
                let event = AuditEvent::by_account(new.account_id, "order.create")
                    .order(OrderId(order_id))
                    .details(serde_json::json!({
                        "identifiers": new.identifiers,
                        "profile": new.profile,
                        "replaces": new.replaces.as_ref().map(|r| &r.1),
                        "not_before": new.not_before,
                        "not_after": new.not_after,
                    }));
                audit::append(tx, &event).await?;
                Ok(order_id)
            })
        })
        .await?;
        self.order(OrderId(order_id)).await
    }

    /// The order with `id`, with its authorization ids.
    pub async fn order(&self, id: OrderId) -> Result<OrderRecord> {
        let row = self
            .read_optional("SELECT * FROM orders WHERE id = $1", &params![id.0])
            .await?
            .ok_or(StoreError::NotFound)?;
        let authz_ids = self
            .read_all(
                "SELECT authorization_id FROM order_authorizations WHERE order_id = $1 ORDER BY authorization_id",
                &params![id.0],
            )
            .await?
            .iter()
            .map(|r| Ok(AuthzId(r.int("authorization_id")?)))
            .collect::<Result<_>>()?;
        OrderRecord::from_row(&row, authz_ids)
    }

    /// Statuses and expiry of an order's authorizations, for deriving the order's status.
    pub async fn order_authorization_states(
        &self,
        id: OrderId,
    ) -> Result<Vec<(AuthorizationStatus, i64)>> {
        self.read_all(
            "SELECT a.status, a.expires FROM authorizations a
             JOIN order_authorizations oa ON oa.authorization_id = a.id
             WHERE oa.order_id = $1",
            &params![id.0],
        )
        .await?
        .iter()
        .map(|r| {
            let status = parse_status(&r.text("status")?, AuthorizationStatus::parse)?;
            Ok((status, r.int("expires")?))
        })
        .collect()
    }

    /// A page of an account's order ids, oldest first, after `after` (exclusive).
    pub async fn account_order_ids(
        &self,
        account: AccountId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<OrderId>> {
        self.read_all(
            "SELECT id FROM orders WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            &params![account.0, after, i64::from(limit)],
        )
        .await?
        .iter()
        .map(|r| Ok(OrderId(r.int("id")?)))
        .collect()
    }

    /// The authorization with `id` and its challenges.
    pub async fn authorization(&self, id: AuthzId) -> Result<AuthzRecord> {
        let row = self
            .read_optional("SELECT * FROM authorizations WHERE id = $1", &params![id.0])
            .await?
            .ok_or(StoreError::NotFound)?;
        let challenges = self
            .read_all(
                "SELECT * FROM challenges WHERE authorization_id = $1 ORDER BY id",
                &params![id.0],
            )
            .await?
            .iter()
            .map(ChallengeRecord::from_row)
            .collect::<Result<Vec<_>>>()?;
        AuthzRecord::from_row(&row, challenges)
    }

    /// Deactivates an authorization that is pending or valid (§7.5.2); false if it was not.
    pub async fn deactivate_authorization(&self, id: AuthzId) -> Result<bool> {
        self.write(move |tx| {
            Box::pin(async move {
                let done = tx
                    .fetch_optional(
                        "UPDATE authorizations SET status = 'deactivated' WHERE id = $1 AND status IN ('pending', 'valid')
                         RETURNING account_id, identifier_type, identifier_value",
                        &params![id.0],
                    )
                    .await?;
                let Some(row) = done else {
                    return Ok(false);
                };
                let event = AuditEvent::by_account(AccountId(row.int("account_id")?), "authorization.deactivate")
                    .authz(id)
                    .details(serde_json::json!({
                        "identifier": {"type": row.text("identifier_type")?, "value": row.text("identifier_value")?},
                    }));
                audit::append(tx, &event).await?;
                Ok(true)
            })
        })
        .await
    }

    // ---------------------------------------------------------------- validation

    /// Moves a pending challenge of a pending authorization to `processing`. Returns false
    /// when it was not pending (someone else started it, or it already finished).
    pub async fn start_validation(&self, challenge: ChallengeId, lease_until: i64) -> Result<bool> {
        self.write(move |tx| {
            Box::pin(async move {
                let done = tx
                    .execute(
                        "UPDATE challenges SET status = 'processing', lease_expires = $1
                         WHERE id = $2 AND status = 'pending'
                           AND (SELECT status FROM authorizations WHERE id = challenges.authorization_id) = 'pending'",
                        &params![lease_until, challenge.0],
                    )
                    .await?;
                Ok(done == 1)
            })
        })
        .await
    }

    /// Records a validation outcome on the challenge and its authorization, atomically.
    /// `error` is `None` for success; `record` is stored on the challenge (clients see it),
    /// `diagnostic` (what the VA read) goes only into the audit entry. Returns false if
    /// the challenge was not processing.
    pub async fn finish_validation(
        &self,
        challenge: ChallengeId,
        error: Option<&Problem>,
        record: &Value,
        diagnostic: &Value,
        now: i64,
    ) -> Result<bool> {
        let (error, record, diagnostic) = (error.cloned(), record.clone(), diagnostic.clone());
        self.write(move |tx| {
            Box::pin(async move {
                let (error, record) = (error.as_ref(), &record);
                let (status, validated) = match error {
                    None => (ChallengeStatus::Valid, Some(now)),
                    Some(_) => (ChallengeStatus::Invalid, None),
                };
                let done = tx
                    .fetch_optional(
                        "UPDATE challenges SET status = $1, validated = $2, error = $3, record = $4
                         WHERE id = $5 AND status = 'processing'
                         RETURNING authorization_id, type",
                        &params![
                            status.as_str(),
                            validated,
                            error.map(|p| serde_json::to_string(p).expect("problems serialize")),
                            record.to_string(),
                            challenge.0,
                        ],
                    )
                    .await?;
                let Some(done) = done else {
                    return Ok(false);
                };
                let (authz_id, method) = (AuthzId(done.int("authorization_id")?), done.text("type")?);
                let authz_status = if error.is_none() { "valid" } else { "invalid" };
                // Only a pending authorization changes; the row comes back either way (for
                // the audit entry), which saves a separate lookup.
                let subject = tx
                    .fetch_one(
                        "UPDATE authorizations SET status = CASE WHEN status = 'pending' THEN $1 ELSE status END
                         WHERE id = $2
                         RETURNING account_id, identifier_type, identifier_value, wildcard",
                        &params![authz_status, authz_id.0],
                    )
                    .await?;
                let event = AuditEvent::new("system", "validation")
                    .account(AccountId(subject.int("account_id")?))
                    .challenge(challenge)
                    .authz(authz_id)
                    .details(serde_json::json!({
                    "identifier": {"type": subject.text("identifier_type")?, "value": subject.text("identifier_value")?},
                    "wildcard": subject.flag("wildcard")?,
                    "method": method,
                    "outcome": authz_status,
                    "problem": error,
                    "record": record,
                    "diagnostic": diagnostic,
                }));
                audit::append(tx, &event).await?;
                Ok(true)
            })
        })
        .await
    }

    /// The challenge with `id`.
    pub async fn challenge(&self, id: ChallengeId) -> Result<ChallengeRecord> {
        let row = self
            .read_optional("SELECT * FROM challenges WHERE id = $1", &params![id.0])
            .await?
            .ok_or(StoreError::NotFound)?;
        ChallengeRecord::from_row(&row)
    }

    // ---------------------------------------------------------------- finalize

    /// Moves a `pending`-stored order (whose authorizations the RA found all valid) to
    /// `processing` and keeps its CSR. False if another finalize got there first.
    pub async fn begin_finalize(
        &self,
        order: OrderId,
        csr_der: &[u8],
        lease_until: i64,
    ) -> Result<bool> {
        let csr_der = csr_der.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let done = tx
                    .execute(
                        "UPDATE orders SET status = 'processing', csr = $1, lease_expires = $2
                         WHERE id = $3 AND status = 'pending'",
                        &params![csr_der, lease_until, order.0],
                    )
                    .await?;
                Ok(done == 1)
            })
        })
        .await
    }

    /// Stores the issued certificate and marks the order valid, atomically. `Conflict` if
    /// the serial is already taken (the caller issues again with a fresh serial).
    pub async fn complete_order(&self, order: OrderId, cert: &NewCertificate) -> Result<()> {
        let cert = cert.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let cert = &cert;
                tx.execute(
                    "INSERT INTO certificates (serial, account_id, order_id, der, chain_pem, names, not_before, not_after, created_at, profile)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    &params![
                        &cert.serial,
                        cert.account_id.0,
                        order.0,
                        &cert.der,
                        &cert.chain_pem,
                        serde_json::to_string(&cert.names).expect("identifiers serialize"),
                        cert.not_before,
                        cert.not_after,
                        cert.created_at,
                        &cert.profile,
                    ],
                )
                .await
                .map_err(unique_is_conflict)?;
                // The account's EAB label (for the audit entry) comes back with the update.
                let done = tx
                    .fetch_optional(
                        "UPDATE orders SET status = 'valid', certificate_serial = $1, csr = NULL
                         WHERE id = $2 AND status = 'processing'
                         RETURNING (SELECT eab_label FROM accounts WHERE id = orders.account_id) AS eab_label",
                        &params![&cert.serial, order.0],
                    )
                    .await?;
                let Some(done) = done else {
                    return Err(StoreError::NotFound);
                };
                let eab_label = done.opt_text("eab_label")?;
                let event = AuditEvent::by_account(cert.account_id, "certificate.issue")
                    .order(order)
                    .serial(&cert.serial)
                    .details(serde_json::json!({
                        "names": cert.names,
                        "profile": cert.profile,
                        "key_type": cert.key_type,
                        "not_before": cert.not_before,
                        "not_after": cert.not_after,
                        "eab_label": eab_label,
                    }));
                audit::append(tx, &event).await?;
                Ok(())
            })
        })
        .await
    }

    /// Marks an order invalid with `problem`.
    pub async fn fail_order(&self, order: OrderId, problem: &Problem) -> Result<bool> {
        let problem = problem.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let problem = &problem;
                // Only an order still being issued: a run whose lease ran out must not
                // turn the order another run completed meanwhile invalid.
                let row = tx
                    .fetch_optional(
                        "UPDATE orders SET status = 'invalid', error = $1, csr = NULL
                         WHERE id = $2 AND status = 'processing'
                         RETURNING account_id",
                        &params![
                            serde_json::to_string(problem).expect("problems serialize"),
                            order.0
                        ],
                    )
                    .await?;
                let failed = row.is_some();
                if let Some(row) = row {
                    let event = AuditEvent::new("system", "order.fail")
                        .account(AccountId(row.int("account_id")?))
                        .order(order)
                        .details(serde_json::json!({ "problem": problem }));
                    audit::append(tx, &event).await?;
                }
                Ok(failed)
            })
        })
        .await
    }

    /// Orders and challenges in `processing` (for invariant checks).
    pub async fn processing_counts(&self) -> Result<(i64, i64)> {
        let c: i64 = sqlx::query("SELECT COUNT(*) FROM challenges WHERE status = 'processing'")
            .fetch_one(&self.reader)
            .await?
            .get(0);
        let o: i64 = sqlx::query("SELECT COUNT(*) FROM orders WHERE status = 'processing'")
            .fetch_one(&self.reader)
            .await?
            .get(0);
        Ok((c, o))
    }

    /// The certificate with this serial (lower-case hex).
    pub async fn certificate(&self, serial: &str) -> Result<CertificateRecord> {
        let row = self
            .read_optional(
                "SELECT * FROM certificates WHERE serial = $1",
                &params![serial],
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        CertificateRecord::from_row(&row)
    }

    // ---------------------------------------------------------------- lifecycle

    /// Creates an account bound to an External Account Binding key, atomically: the key
    /// must exist, not be revoked and not be bound yet (`EabUnavailable` otherwise).
    pub async fn create_account_with_eab(
        &self,
        jwk: &Jwk,
        contact: &[String],
        tos_agreed: bool,
        now: i64,
        eab_kid: &str,
    ) -> Result<AccountRecord> {
        let (jwk, contact, eab_kid) = (jwk.clone(), contact.to_vec(), eab_kid.to_owned());
        let id = self.write(move |tx| {
            Box::pin(async move {
                let (jwk, contact, eab_kid) = (&jwk, &contact[..], eab_kid.as_str());
                let key = tx
                    .fetch_optional(
                        "SELECT label FROM eab_keys WHERE kid = $1 AND revoked_at IS NULL AND account_id IS NULL",
                        &params![eab_kid],
                    )
                    .await?;
                let Some(key) = key else {
                    return Err(StoreError::EabUnavailable);
                };
                let label = key.text("label")?;
                let id = tx
                    .fetch_one(
                        "INSERT INTO accounts (key_thumbprint, jwk, contact, status, tos_agreed, created_at, eab_kid, eab_label)
                         VALUES ($1, $2, $3, 'valid', $4, $5, $6, $7) RETURNING id",
                        &params![
                            jwk.thumbprint(),
                            jwk.to_value().to_string(),
                            serde_json::to_string(contact).expect("strings serialize"),
                            tos_agreed,
                            now,
                            eab_kid,
                            &label,
                        ],
                    )
                    .await
                    .map_err(unique_is_conflict)?
                    .int("id")?;
                tx.execute(
                    "UPDATE eab_keys SET account_id = $1 WHERE kid = $2",
                    &params![id, eab_kid],
                )
                .await?;
                let event = audit::account_created(
                    AccountId(id),
                    jwk,
                    contact,
                    tos_agreed,
                    Some((eab_kid, &label)),
                );
                audit::append(tx, &event).await?;
                Ok(id)
            })
        })
        .await?;
        self.account(AccountId(id)).await
    }

    /// Stores a new EAB key, its HMAC key sealed with the key-encryption key (which must
    /// be attached: `with_eab_kek`).
    pub async fn create_eab_key(
        &self,
        kid: &str,
        label: &str,
        hmac_key: &[u8],
        now: i64,
    ) -> Result<()> {
        let kek = self.require_kek()?;
        let sealed = kek.seal(kid, hmac_key)?;
        let kek_id = kek.id().to_owned();
        let (kid, label) = (kid.to_owned(), label.to_owned());
        self.write(move |tx| {
            Box::pin(async move {
                let (kid, label) = (kid.as_str(), label.as_str());
                tx.execute(
                    "INSERT INTO eab_keys (kid, label, hmac_key, kek_id, created_at) VALUES ($1, $2, $3, $4, $5)",
                    &params![kid, label, sealed, kek_id, now],
                )
                .await
                .map_err(unique_is_conflict)?;
                // The MAC key itself never enters the trail.
                let event = AuditEvent::new("admin", "eab.create")
                    .details(serde_json::json!({ "kid": kid, "label": label }));
                audit::append(tx, &event).await?;
                Ok(())
            })
        })
        .await
    }

    /// One EAB key.
    pub async fn eab_key(&self, kid: &str) -> Result<Option<EabKeyRecord>> {
        let row = self
            .read_optional("SELECT * FROM eab_keys WHERE kid = $1", &params![kid])
            .await?;
        row.as_ref().map(EabKeyRecord::from_row).transpose()
    }

    /// Every EAB key, oldest first.
    pub async fn eab_keys(&self) -> Result<Vec<EabKeyRecord>> {
        self.read_all("SELECT * FROM eab_keys ORDER BY created_at, kid", &[])
            .await?
            .iter()
            .map(EabKeyRecord::from_row)
            .collect()
    }

    /// The HMAC key of an EAB key, opened with the key-encryption key. A key sealed with
    /// another KEK, altered, or still in plaintext is an error (`StoreError::Secret`).
    pub fn eab_hmac_key(&self, key: &EabKeyRecord) -> Result<Vec<u8>> {
        Ok(self
            .require_kek()?
            .open(&key.kid, key.kek_id.as_deref(), key.stored_key.as_bytes())?)
    }

    /// Seals every EAB key an older version stored in plaintext (rows without a KEK id),
    /// in one transaction with one audit entry; returns how many.
    pub async fn seal_legacy_eab_keys(&self) -> Result<usize> {
        let kek = self.require_kek()?;
        self.write(move |tx| {
            Box::pin(async move {
                let legacy = tx
                    .fetch_all(
                        "SELECT kid, hmac_key FROM eab_keys WHERE kek_id IS NULL",
                        &params![],
                    )
                    .await?;
                for row in &legacy {
                    let kid = row.text("kid")?;
                    let sealed = kek.seal(&kid, &row.blob("hmac_key")?)?;
                    tx.execute(
                        "UPDATE eab_keys SET hmac_key = $1, kek_id = $2 WHERE kid = $3 AND kek_id IS NULL",
                        &params![sealed, kek.id(), kid],
                    )
                    .await?;
                }
                if !legacy.is_empty() {
                    let event = AuditEvent::new("system", "eab.encrypt_legacy").details(
                        serde_json::json!({ "count": legacy.len(), "kek_id": kek.id() }),
                    );
                    audit::append(tx, &event).await?;
                }
                Ok(legacy.len())
            })
        })
        .await
    }

    /// Revokes an EAB key (unused ones can no longer bind); false if unknown or revoked.
    pub async fn revoke_eab_key(&self, kid: &str, now: i64) -> Result<bool> {
        let kid = kid.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let kid = kid.as_str();
                let done = tx
                    .execute(
                        "UPDATE eab_keys SET revoked_at = $1 WHERE kid = $2 AND revoked_at IS NULL",
                        &params![now, kid],
                    )
                    .await?;
                if done != 1 {
                    return Ok(false);
                }
                let event = AuditEvent::new("admin", "eab.revoke")
                    .details(serde_json::json!({ "kid": kid }));
                audit::append(tx, &event).await?;
                Ok(true)
            })
        })
        .await
    }

    /// Replaces an account's key (§7.3.5); `Conflict` if another account has the new key.
    pub async fn change_account_key(&self, id: AccountId, new_key: &Jwk) -> Result<()> {
        let new_key = new_key.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let new_key = &new_key;
                let old = tx
                    .fetch_one(
                        "SELECT key_thumbprint FROM accounts WHERE id = $1",
                        &params![id.0],
                    )
                    .await?
                    .text("key_thumbprint")?;
                tx.execute(
                    "UPDATE accounts SET key_thumbprint = $1, jwk = $2 WHERE id = $3",
                    &params![new_key.thumbprint(), new_key.to_value().to_string(), id.0],
                )
                .await
                .map_err(unique_is_conflict)?;
                let event =
                    AuditEvent::by_account(id, "account.key_change").details(serde_json::json!({
                        "old_key_thumbprint": old,
                        "new_key_thumbprint": new_key.thumbprint(),
                    }));
                audit::append(tx, &event).await?;
                Ok(())
            })
        })
        .await
    }

    /// Whether `account` holds valid, unexpired authorizations for every identifier.
    pub async fn has_valid_authorizations(
        &self,
        account: AccountId,
        identifiers: &[Identifier],
        now: i64,
    ) -> Result<bool> {
        for id in identifiers {
            let (value, wildcard) = match id.value.strip_prefix("*.") {
                Some(base) => (base, true),
                None => (id.value.as_str(), false),
            };
            let found = self
                .read_optional(
                    "SELECT 1 FROM authorizations
                     WHERE account_id = $1 AND identifier_type = $2 AND identifier_value = $3 AND wildcard = $4
                       AND status = 'valid' AND expires > $5 LIMIT 1",
                    &params![
                        account.0,
                        identifier_type_name(id.kind),
                        value,
                        wildcard,
                        now
                    ],
                )
                .await?;
            if found.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Revokes a certificate; false if it was already revoked. `by` says who asked
    /// (`account:ID`, `certificate-key` or `admin`) for the audit trail.
    pub async fn revoke_certificate(
        &self,
        serial: &str,
        reason: u8,
        now: i64,
        by: &str,
    ) -> Result<bool> {
        let (serial, by) = (serial.to_owned(), by.to_owned());
        self.write(move |tx| {
            Box::pin(async move {
                let (serial, by) = (serial.as_str(), by.as_str());
                let done = tx
                    .fetch_optional(
                        "UPDATE certificates SET revoked_at = $1, revocation_reason = $2 WHERE serial = $3 AND revoked_at IS NULL
                         RETURNING account_id",
                        &params![now, i64::from(reason), serial],
                    )
                    .await?;
                let Some(row) = done else {
                    return Ok(false);
                };
                let event = AuditEvent::new(by, "certificate.revoke")
                    .account(AccountId(row.int("account_id")?))
                    .serial(serial)
                    .details(serde_json::json!({ "reason": reason }));
                audit::append(tx, &event).await?;
                Ok(true)
            })
        })
        .await
    }

    /// Every revoked certificate that has not expired by `now` (a CRL's entries).
    pub async fn revoked_certificates(&self, now: i64) -> Result<Vec<RevokedEntry>> {
        self.read_all(
            "SELECT serial, revoked_at, revocation_reason FROM certificates
             WHERE revoked_at IS NOT NULL AND not_after > $1 ORDER BY revoked_at, serial",
            &params![now],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(RevokedEntry {
                serial: r.text("serial")?,
                revoked_at: r.int("revoked_at")?,
                reason: r.int("revocation_reason")? as u8,
            })
        })
        .collect()
    }

    /// Asks clients to renew a certificate now (ARI); false if the serial is unknown.
    pub async fn mark_renew_early(&self, serial: &str) -> Result<bool> {
        let serial = serial.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let serial = serial.as_str();
                let done = tx
                    .execute(
                        "UPDATE certificates SET renew_early = 1 WHERE serial = $1",
                        &params![serial],
                    )
                    .await?;
                if done != 1 {
                    return Ok(false);
                }
                audit::append(
                    tx,
                    &AuditEvent::new("admin", "certificate.renew_early").serial(serial),
                )
                .await?;
                Ok(true)
            })
        })
        .await
    }

    /// Allocates the next CRL number of `issuer` (monotonic, never reused).
    pub async fn allocate_crl_number(&self, issuer: &str) -> Result<i64> {
        let issuer = issuer.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                tx.fetch_one(
                    "INSERT INTO crl_state (issuer, number, der, this_update, next_update) VALUES ($1, 1, $2, 0, 0)
                     ON CONFLICT (issuer) DO UPDATE SET number = crl_state.number + 1
                     RETURNING number",
                    &params![issuer, Vec::<u8>::new()],
                )
                .await?
                .int("number")
            })
        })
        .await
    }

    /// Saves the CRL built with `number`, unless a newer number was allocated meanwhile.
    pub async fn save_crl(&self, issuer: &str, crl: &CrlRecord) -> Result<bool> {
        let (issuer, crl) = (issuer.to_owned(), crl.clone());
        self.write(move |tx| {
            Box::pin(async move {
                let done = tx
                    .execute(
                        "UPDATE crl_state SET der = $1, this_update = $2, next_update = $3 WHERE issuer = $4 AND number = $5",
                        &params![crl.der, crl.this_update, crl.next_update, issuer, crl.number],
                    )
                    .await?;
                Ok(done == 1)
            })
        })
        .await
    }

    /// The latest saved CRL of `issuer`.
    pub async fn latest_crl(&self, issuer: &str) -> Result<Option<CrlRecord>> {
        let row = self
            .read_optional(
                "SELECT number, der, this_update, next_update FROM crl_state WHERE issuer = $1",
                &params![issuer],
            )
            .await?;
        let crl = row
            .map(|r| -> Result<CrlRecord> {
                Ok(CrlRecord {
                    number: r.int("number")?,
                    der: r.blob("der")?,
                    this_update: r.int("this_update")?,
                    next_update: r.int("next_update")?,
                })
            })
            .transpose()?;
        Ok(crl.filter(|c| !c.der.is_empty()))
    }

    // ---------------------------------------------------------------- several instances

    // Shared nonces are for several instances on PostgreSQL, where one autocommit
    // statement per nonce is the cheapest write; they bypass `write`.

    /// Records a nonce this instance issued (shared nonces: any instance redeems it).
    pub async fn insert_nonce(&self, nonce: &str, expires: i64) -> Result<()> {
        sqlx::query("INSERT INTO nonces (nonce, expires) VALUES ($1, $2)")
            .bind(nonce)
            .bind(expires)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Redeems a nonce: true exactly once, and only before it expires.
    pub async fn redeem_nonce(&self, nonce: &str, now: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM nonces WHERE nonce = $1 AND expires > $2")
            .bind(nonce)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Drops expired nonces; returns how many.
    pub async fn purge_nonces(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM nonces WHERE expires <= $1")
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }

    /// Takes over validations whose lease ran out (their instance died, or this is a
    /// restart): each returned challenge is now leased to the caller until `lease_until`.
    pub async fn claim_stale_validations(
        &self,
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<ChallengeId>> {
        Ok(self
            .claim_stale("challenges", now, lease_until)
            .await?
            .into_iter()
            .map(ChallengeId)
            .collect())
    }

    /// Takes over issuances whose lease ran out, like `claim_stale_validations`.
    pub async fn claim_stale_issuances(&self, now: i64, lease_until: i64) -> Result<Vec<OrderId>> {
        Ok(self
            .claim_stale("orders", now, lease_until)
            .await?
            .into_iter()
            .map(OrderId)
            .collect())
    }

    /// Claims `processing` rows of `table` whose lease ran out; a conditional update per
    /// row, so two instances never claim the same one.
    async fn claim_stale(
        &self,
        table: &'static str,
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<i64>> {
        self.write(move |tx| {
            Box::pin(async move {
                let candidates = tx
                    .fetch_all(
                        &format!(
                            "SELECT id FROM {table} WHERE status = 'processing' AND (lease_expires IS NULL OR lease_expires <= $1)"
                        ),
                        &params![now],
                    )
                    .await?;
                let claim = format!(
                    "UPDATE {table} SET lease_expires = $1
                     WHERE id = $2 AND status = 'processing' AND (lease_expires IS NULL OR lease_expires <= $3)"
                );
                let mut claimed = Vec::new();
                for row in candidates {
                    let id = row.int("id")?;
                    if tx.execute(&claim, &params![lease_until, id, now]).await? == 1 {
                        claimed.push(id);
                    }
                }
                Ok(claimed)
            })
        })
        .await
    }

    /// Invariants over the whole store that no crash may break; one line per violation
    /// (empty when all hold): work left `processing` (call after the sweeper ran), a
    /// `valid` order without its certificate, a certificate whose order is not `valid` or
    /// does not name it.
    pub async fn integrity_violations(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (what, query) in [
            (
                "challenges stuck processing",
                "SELECT CAST(id AS TEXT) FROM challenges WHERE status = 'processing'",
            ),
            (
                "orders stuck processing",
                "SELECT CAST(id AS TEXT) FROM orders WHERE status = 'processing'",
            ),
            (
                "valid orders without a certificate",
                "SELECT CAST(o.id AS TEXT) FROM orders o WHERE o.status = 'valid' AND NOT EXISTS
                   (SELECT 1 FROM certificates c WHERE c.order_id = o.id)",
            ),
            (
                "certificates whose order is not valid or names another serial",
                "SELECT c.serial FROM certificates c JOIN orders o ON o.id = c.order_id
                 WHERE o.status <> 'valid' OR o.certificate_serial IS NULL
                    OR o.certificate_serial <> c.serial",
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

    /// Row counts and statuses per table: a fingerprint that tests use to assert that a
    /// refused request changed nothing.
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
