//! The console's operators (`certwright-ca operator`), their sessions and the failed
//! sign-ins that throttle password guessing (docs/console.md). Passwords arrive here
//! already hashed (argon2id, `console::password`); a session is stored under the SHA-256
//! of its token, never the token itself.

use super::audit::{self, Actor, AuditEvent};
use super::engine::columns::Columns;
use super::engine::tx::params;
use super::{unique_is_conflict, Result, Store, StoreError};

/// What an operator may do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorRole {
    /// Reads every page; acts on nothing.
    Viewer,
    /// Reads, and acts (revoke, renew early, EAB keys).
    Admin,
}

impl OperatorRole {
    /// The stored (and command-line) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Admin => "admin",
        }
    }

    /// The role named `text` (`viewer` or `admin`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "viewer" => Some(Self::Viewer),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// One operator (without the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    /// The sign-in name.
    pub name: String,
    /// What the operator may do.
    pub role: OperatorRole,
    /// When the operator was added (Unix seconds).
    pub created_at: i64,
    /// A disabled operator cannot sign in.
    pub disabled: bool,
}

/// A signed-in operator, as a session cookie's token finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSession {
    /// Who signed in.
    pub operator: String,
    /// Their role now (a role changed later applies to open sessions).
    pub role: OperatorRole,
    /// The session's CSRF token, which every form carries back.
    pub csrf: String,
    /// When the session ends (Unix seconds).
    pub expires_at: i64,
}

/// The longest operator name accepted.
pub const MAX_OPERATOR_NAME: usize = 64;

/// Whether `name` may name an operator: 1 to 64 characters, letters, digits, `.`, `_`,
/// `-` and `@` (it becomes part of the audit actor `operator:NAME`).
pub fn valid_operator_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_OPERATOR_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

fn operator_from_row(row: &impl Columns) -> Result<OperatorRecord> {
    let role = row.text("role")?;
    Ok(OperatorRecord {
        name: row.text("name")?,
        role: OperatorRole::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown operator role {role:?}")))?,
        created_at: row.int("created_at")?,
        disabled: row.int("disabled")? != 0,
    })
}

impl Store {
    /// Adds an operator with an argon2 password hash (`StoreError::Conflict` if the name
    /// is taken). Audited as `operator.add` by the acting operator.
    pub async fn add_operator(
        &self,
        name: &str,
        role: OperatorRole,
        password_hash: &str,
        now: i64,
    ) -> Result<()> {
        if !valid_operator_name(name) {
            return Err(StoreError::Corrupt(format!(
                "an operator name is 1 to {MAX_OPERATOR_NAME} letters, digits, '.', '_', '-' or '@'"
            )));
        }
        let (name, hash, by) = (
            name.to_owned(),
            password_hash.to_owned(),
            self.operator.clone(),
        );
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO operators (name, role, password_hash, created_at, disabled) VALUES ($1, $2, $3, $4, 0)",
                    &params![&name, role.as_str(), &hash, now],
                )
                .await
                .map_err(unique_is_conflict)?;
                let event = AuditEvent::new(&by, "operator.add")
                    .details(serde_json::json!({ "name": name, "role": role.as_str() }));
                audit::append(tx, &event).await?;
                Ok(())
            })
        })
        .await
    }

    /// Every operator, by name.
    pub async fn operators(&self) -> Result<Vec<OperatorRecord>> {
        self.read_all(
            "SELECT name, role, created_at, disabled FROM operators ORDER BY name",
            &[],
        )
        .await?
        .iter()
        .map(operator_from_row)
        .collect()
    }

    /// Removes an operator and ends their sessions; false if unknown. Audited as
    /// `operator.remove`.
    pub async fn remove_operator(&self, name: &str) -> Result<bool> {
        let (name, by) = (name.to_owned(), self.operator.clone());
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "DELETE FROM operator_sessions WHERE operator = $1",
                    &params![&name],
                )
                .await?;
                if tx
                    .execute("DELETE FROM operators WHERE name = $1", &params![&name])
                    .await?
                    != 1
                {
                    return Ok(false);
                }
                let event = AuditEvent::new(&by, "operator.remove")
                    .details(serde_json::json!({ "name": name }));
                audit::append(tx, &event).await?;
                Ok(true)
            })
        })
        .await
    }

    /// An operator and their password hash, to check a sign-in.
    pub async fn operator_credentials(
        &self,
        name: &str,
    ) -> Result<Option<(OperatorRecord, String)>> {
        let row = self
            .read_optional(
                "SELECT name, role, created_at, disabled, password_hash FROM operators WHERE name = $1",
                &params![name],
            )
            .await?;
        row.map(|r| Ok((operator_from_row(&r)?, r.text("password_hash")?)))
            .transpose()
    }

    /// How many sign-ins failed since `since` for `name`, and from `address`.
    pub async fn login_failures(
        &self,
        name: &str,
        address: &str,
        since: i64,
    ) -> Result<(i64, i64)> {
        let by_name = self
            .read_optional(
                "SELECT COUNT(*) AS n FROM operator_login_failures WHERE name = $1 AND at >= $2",
                &params![name, since],
            )
            .await?
            .map_or(Ok(0), |r| r.int("n"))?;
        let by_address = self
            .read_optional(
                "SELECT COUNT(*) AS n FROM operator_login_failures WHERE address = $1 AND at >= $2",
                &params![address, since],
            )
            .await?
            .map_or(Ok(0), |r| r.int("n"))?;
        Ok((by_name, by_address))
    }

    /// Records a failed sign-in for `name` from `address`, and forgets the failures of
    /// both older than `forget_before`. Not audited: the names are whatever was typed.
    pub async fn record_login_failure(
        &self,
        name: &str,
        address: &str,
        now: i64,
        forget_before: i64,
    ) -> Result<()> {
        let (name, address) = (name.to_owned(), address.to_owned());
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "DELETE FROM operator_login_failures WHERE name = $1 AND at < $2",
                    &params![&name, forget_before],
                )
                .await?;
                tx.execute(
                    "DELETE FROM operator_login_failures WHERE address = $1 AND at < $2",
                    &params![&address, forget_before],
                )
                .await?;
                tx.execute(
                    "INSERT INTO operator_login_failures (name, address, at) VALUES ($1, $2, $3)",
                    &params![&name, &address, now],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Opens a session for `operator` (stored under `token_hash`, the hex SHA-256 of the
    /// cookie's token), forgets expired sessions and the operator's failed sign-ins.
    /// Audited as `operator.sign_in` by the operator.
    pub async fn create_operator_session(
        &self,
        token_hash: &str,
        operator: &str,
        csrf: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        let (hash, operator, csrf) = (token_hash.to_owned(), operator.to_owned(), csrf.to_owned());
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "DELETE FROM operator_sessions WHERE expires_at <= $1",
                    &params![now],
                )
                .await?;
                tx.execute(
                    "DELETE FROM operator_login_failures WHERE name = $1",
                    &params![&operator],
                )
                .await?;
                tx.execute(
                    "INSERT INTO operator_sessions (token_hash, operator, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
                    &params![&hash, &operator, &csrf, now, expires_at],
                )
                .await?;
                let actor = Actor::Operator(Some(operator));
                audit::append(tx, &AuditEvent::new(&actor, "operator.sign_in")).await?;
                Ok(())
            })
        })
        .await
    }

    /// The unexpired session stored under `token_hash`, of an operator who exists and is
    /// not disabled.
    pub async fn operator_session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<OperatorSession>> {
        let row = self
            .read_optional(
                "SELECT s.operator, s.csrf, s.expires_at, o.role FROM operator_sessions s
                 JOIN operators o ON o.name = s.operator
                 WHERE s.token_hash = $1 AND s.expires_at > $2 AND o.disabled = 0",
                &params![token_hash, now],
            )
            .await?;
        row.map(|r| {
            let role = r.text("role")?;
            Ok(OperatorSession {
                operator: r.text("operator")?,
                role: OperatorRole::parse(&role).ok_or_else(|| {
                    StoreError::Corrupt(format!("unknown operator role {role:?}"))
                })?,
                csrf: r.text("csrf")?,
                expires_at: r.int("expires_at")?,
            })
        })
        .transpose()
    }

    /// Ends the session stored under `token_hash`; false if there was none. Audited as
    /// `operator.sign_out` by the operator.
    pub async fn delete_operator_session(&self, token_hash: &str, operator: &str) -> Result<bool> {
        self.change_one_audited(
            "DELETE FROM operator_sessions WHERE token_hash = $1 AND operator = $2",
            params![token_hash, operator].into(),
            AuditEvent::new(
                &Actor::Operator(Some(operator.to_owned())),
                "operator.sign_out",
            ),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> Store {
        crate::store::console::tests::test_store().await
    }

    #[test]
    fn names_and_roles() {
        assert!(valid_operator_name("alice@example.com"));
        assert!(!valid_operator_name(""));
        assert!(!valid_operator_name("<script>"));
        assert!(!valid_operator_name(&"a".repeat(65)));
        assert_eq!(OperatorRole::parse("admin"), Some(OperatorRole::Admin));
        assert_eq!(OperatorRole::parse("root"), None);
    }

    #[tokio::test]
    async fn operators_sessions_and_failures() {
        let store = store().await;
        store
            .add_operator("alice", OperatorRole::Admin, "$argon2id$x", 10)
            .await
            .unwrap();
        assert!(matches!(
            store
                .add_operator("alice", OperatorRole::Viewer, "$argon2id$y", 11)
                .await,
            Err(StoreError::Conflict)
        ));
        let (op, hash) = store.operator_credentials("alice").await.unwrap().unwrap();
        assert_eq!(
            (op.role, hash.as_str()),
            (OperatorRole::Admin, "$argon2id$x")
        );
        assert_eq!(store.operators().await.unwrap().len(), 1);

        store
            .create_operator_session("h1", "alice", "csrf1", 100, 200)
            .await
            .unwrap();
        let s = store.operator_session("h1", 150).await.unwrap().unwrap();
        assert_eq!((s.operator.as_str(), s.csrf.as_str()), ("alice", "csrf1"));
        assert!(
            store.operator_session("h1", 200).await.unwrap().is_none(),
            "expired"
        );
        assert!(store.operator_session("h2", 150).await.unwrap().is_none());
        assert!(store.delete_operator_session("h1", "alice").await.unwrap());
        assert!(store.operator_session("h1", 150).await.unwrap().is_none());

        for at in [1, 2, 3] {
            store
                .record_login_failure("alice", "10.0.0.1", at, 0)
                .await
                .unwrap();
        }
        store
            .record_login_failure("bob", "10.0.0.1", 4, 0)
            .await
            .unwrap();
        assert_eq!(
            store.login_failures("alice", "10.0.0.1", 2).await.unwrap(),
            (2, 3)
        );
        // Old failures are forgotten as new ones arrive.
        store
            .record_login_failure("alice", "::1", 50, 3)
            .await
            .unwrap();
        assert_eq!(
            store.login_failures("alice", "10.0.0.1", 0).await.unwrap(),
            (2, 2)
        );

        store
            .create_operator_session("h3", "alice", "c", 100, 200)
            .await
            .unwrap();
        assert!(store.remove_operator("alice").await.unwrap());
        assert!(!store.remove_operator("alice").await.unwrap());
        assert!(store.operator_session("h3", 150).await.unwrap().is_none());
        let actions: Vec<String> = store
            .audit_entries(0, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {}", e.actor, e.action))
            .collect();
        assert!(
            actions.contains(&"operator:alice operator.sign_in".to_owned()),
            "{actions:?}"
        );
        assert!(
            actions.contains(&"operator:alice operator.sign_out".to_owned()),
            "{actions:?}"
        );
        assert!(
            actions.iter().any(|a| a.ends_with("operator.add")),
            "{actions:?}"
        );
        assert!(
            actions.iter().any(|a| a.ends_with("operator.remove")),
            "{actions:?}"
        );
    }
}
