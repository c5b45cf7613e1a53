//! The console's operators (`certwright-ca operator`), their sessions and the failed
//! sign-ins that throttle password guessing (docs/console.md). Passwords arrive here
//! already hashed (argon2id, `console::password`); a session is stored under the SHA-256
//! of its token, never the token itself.

use super::audit::{self, Actor, AuditEvent};
use super::engine::columns::Columns;
use super::engine::tx::{params, Tx};
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

/// In `tx`: ends every session of `operator` and voids their sign-in link.
async fn end_operator_access(tx: &mut dyn Tx, operator: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM operator_sessions WHERE operator = $1",
        &params![operator],
    )
    .await?;
    tx.execute(
        "DELETE FROM operator_login_links WHERE operator = $1",
        &params![operator],
    )
    .await?;
    Ok(())
}

/// In `tx`: opens a session for `operator` stored under `token_hash`, and forgets the
/// operator's failed sign-ins. The caller audits it (`operator.sign_in`), last.
async fn open_session(
    tx: &mut dyn Tx,
    token_hash: &str,
    operator: &str,
    csrf: &str,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    tx.execute(
        "DELETE FROM operator_login_failures WHERE name = $1",
        &params![operator],
    )
    .await?;
    tx.execute(
        "INSERT INTO operator_sessions (token_hash, operator, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        &params![token_hash, operator, csrf, now, expires_at],
    )
    .await?;
    Ok(())
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
                end_operator_access(tx, &name).await?;
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

    /// Disables (`disabled`) or enables an operator; false if unknown. Disabling ends
    /// their sessions and voids their sign-in link at once. Audited as `operator.disable`
    /// or `operator.enable` by the acting operator.
    pub async fn set_operator_disabled(&self, name: &str, disabled: bool) -> Result<bool> {
        let (name, by) = (name.to_owned(), self.operator.clone());
        self.write(move |tx| {
            Box::pin(async move {
                if tx
                    .execute(
                        "UPDATE operators SET disabled = $1 WHERE name = $2",
                        &params![i64::from(disabled), &name],
                    )
                    .await?
                    != 1
                {
                    return Ok(false);
                }
                if disabled {
                    end_operator_access(tx, &name).await?;
                }
                let action = if disabled {
                    "operator.disable"
                } else {
                    "operator.enable"
                };
                let event =
                    AuditEvent::new(&by, action).details(serde_json::json!({ "name": name }));
                audit::append(tx, &event).await?;
                Ok(true)
            })
        })
        .await
    }

    /// Stores a one-time sign-in link for `operator` under `token_hash` (the hex SHA-256
    /// of its token), valid until `expires_at`; it replaces the operator's earlier link,
    /// and expired links are forgotten. False if the operator is unknown or disabled.
    /// Audited as `operator.link` by the acting operator.
    pub async fn create_login_link(
        &self,
        operator: &str,
        token_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool> {
        let (operator, hash, by) = (
            operator.to_owned(),
            token_hash.to_owned(),
            self.operator.clone(),
        );
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "DELETE FROM operator_login_links WHERE expires_at <= $1",
                    &params![now],
                )
                .await?;
                tx.execute(
                    "DELETE FROM operator_login_links WHERE operator = $1",
                    &params![&operator],
                )
                .await?;
                if tx
                    .execute(
                        "INSERT INTO operator_login_links (token_hash, operator, created_at, expires_at)
                         SELECT $1, name, $2, $3 FROM operators WHERE name = $4 AND disabled = 0",
                        &params![&hash, now, expires_at, &operator],
                    )
                    .await?
                    != 1
                {
                    return Ok(false);
                }
                let event = AuditEvent::new(&by, "operator.link").details(
                    serde_json::json!({ "name": operator, "expires_at": expires_at }),
                );
                audit::append(tx, &event).await?;
                Ok(true)
            })
        })
        .await
    }

    /// The operator whose unexpired link is stored under `token_hash` (an operator who
    /// exists and is not disabled).
    pub async fn login_link_operator(&self, token_hash: &str, now: i64) -> Result<Option<String>> {
        self.read_optional(
            "SELECT l.operator FROM operator_login_links l
             JOIN operators o ON o.name = l.operator
             WHERE l.token_hash = $1 AND l.expires_at > $2 AND o.disabled = 0",
            &params![token_hash, now],
        )
        .await?
        .map(|r| r.text("operator"))
        .transpose()
    }

    /// Uses the link stored under `token_hash`, in one transaction: deletes it, sets the
    /// operator's password hash, ends their other sessions and opens a new one (as
    /// [`Store::create_operator_session`]). None (and no change) if the link is unknown,
    /// used, expired, or its operator disabled. Audited as `operator.password_set` and
    /// `operator.sign_in` by the operator.
    pub async fn use_login_link(
        &self,
        token_hash: &str,
        password_hash: &str,
        session_hash: &str,
        csrf: &str,
        now: i64,
        session_expires_at: i64,
    ) -> Result<Option<String>> {
        let (link, password, session, csrf) = (
            token_hash.to_owned(),
            password_hash.to_owned(),
            session_hash.to_owned(),
            csrf.to_owned(),
        );
        self.write(move |tx| {
            Box::pin(async move {
                let Some(row) = tx
                    .fetch_optional(
                        "SELECT l.operator FROM operator_login_links l
                         JOIN operators o ON o.name = l.operator
                         WHERE l.token_hash = $1 AND l.expires_at > $2 AND o.disabled = 0",
                        &params![&link, now],
                    )
                    .await?
                else {
                    return Ok(None);
                };
                let operator = row.text("operator")?;
                // Single use, even against a concurrent request with the same link.
                if tx
                    .execute(
                        "DELETE FROM operator_login_links WHERE token_hash = $1",
                        &params![&link],
                    )
                    .await?
                    != 1
                {
                    return Ok(None);
                }
                tx.execute(
                    "UPDATE operators SET password_hash = $1 WHERE name = $2",
                    &params![&password, &operator],
                )
                .await?;
                tx.execute(
                    "DELETE FROM operator_sessions WHERE operator = $1",
                    &params![&operator],
                )
                .await?;
                open_session(tx, &session, &operator, &csrf, now, session_expires_at).await?;
                let actor = Actor::Operator(Some(operator.clone()));
                let event = AuditEvent::new(&actor, "operator.password_set")
                    .details(serde_json::json!({ "via": "login link" }));
                audit::append(tx, &event).await?;
                audit::append(tx, &AuditEvent::new(&actor, "operator.sign_in")).await?;
                Ok(Some(operator))
            })
        })
        .await
    }

    /// Audits a refused sign-in link (unknown, used or expired: the same to the visitor)
    /// as `operator.link_refused`, with the client's address.
    pub async fn login_link_refused(&self, address: &str) -> Result<()> {
        let event = AuditEvent::new(&Actor::Operator(None), "operator.link_refused")
            .details(serde_json::json!({ "address": address }));
        self.write(move |tx| Box::pin(async move { audit::append(tx, &event).await }))
            .await
    }

    /// Sets the password hash of `operator` (who gave their current password) and ends
    /// their other sessions (all but `keep_session_hash`); false if unknown. Audited as
    /// `operator.password_change` by the operator.
    pub async fn change_operator_password(
        &self,
        operator: &str,
        password_hash: &str,
        keep_session_hash: &str,
    ) -> Result<bool> {
        let (operator, password, keep) = (
            operator.to_owned(),
            password_hash.to_owned(),
            keep_session_hash.to_owned(),
        );
        self.write(move |tx| {
            Box::pin(async move {
                if tx
                    .execute(
                        "UPDATE operators SET password_hash = $1 WHERE name = $2",
                        &params![&password, &operator],
                    )
                    .await?
                    != 1
                {
                    return Ok(false);
                }
                tx.execute(
                    "DELETE FROM operator_sessions WHERE operator = $1 AND token_hash <> $2",
                    &params![&operator, &keep],
                )
                .await?;
                let actor = Actor::Operator(Some(operator));
                audit::append(tx, &AuditEvent::new(&actor, "operator.password_change")).await?;
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
                open_session(tx, &hash, &operator, &csrf, now, expires_at).await?;
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

    #[tokio::test]
    async fn a_login_link_works_once_before_it_expires() {
        let store = store().await;
        store
            .add_operator("alice", OperatorRole::Admin, "$argon2id$old", 10)
            .await
            .unwrap();
        store
            .create_operator_session("s-old", "alice", "c", 100, 10_000)
            .await
            .unwrap();
        let password =
            |s: Store| async move { s.operator_credentials("alice").await.unwrap().unwrap().1 };
        assert!(!store
            .create_login_link("nobody", "l0", 100, 200)
            .await
            .unwrap());
        assert!(store
            .create_login_link("alice", "l1", 100, 200)
            .await
            .unwrap());
        // A new link replaces the old one.
        assert!(store
            .create_login_link("alice", "l2", 100, 200)
            .await
            .unwrap());
        assert_eq!(store.login_link_operator("l1", 150).await.unwrap(), None);
        assert_eq!(
            store
                .login_link_operator("l2", 150)
                .await
                .unwrap()
                .as_deref(),
            Some("alice")
        );
        // Expired, unknown: nothing changes.
        for (link, now) in [("l2", 200), ("l1", 150), ("x", 150)] {
            assert_eq!(
                store
                    .use_login_link(link, "$argon2id$new", "s-new", "c2", now, now + 100)
                    .await
                    .unwrap(),
                None,
                "{link} at {now}"
            );
            assert_eq!(password(store.clone()).await, "$argon2id$old");
            assert!(store
                .operator_session("s-old", now)
                .await
                .unwrap()
                .is_some());
            assert!(store
                .operator_session("s-new", now)
                .await
                .unwrap()
                .is_none());
        }
        assert_eq!(
            store
                .use_login_link("l2", "$argon2id$new", "s-new", "c2", 150, 250)
                .await
                .unwrap()
                .as_deref(),
            Some("alice")
        );
        assert_eq!(password(store.clone()).await, "$argon2id$new");
        assert!(
            store
                .operator_session("s-old", 150)
                .await
                .unwrap()
                .is_none(),
            "other sessions end"
        );
        let s = store.operator_session("s-new", 150).await.unwrap().unwrap();
        assert_eq!((s.operator.as_str(), s.expires_at), ("alice", 250));
        // Used: refused, nothing changes.
        assert_eq!(
            store
                .use_login_link("l2", "$argon2id$again", "s-3", "c3", 160, 260)
                .await
                .unwrap(),
            None
        );
        assert_eq!(password(store.clone()).await, "$argon2id$new");
        assert!(store.operator_session("s-3", 160).await.unwrap().is_none());

        // Changing the password keeps only the session that did it.
        store
            .create_operator_session("s-other", "alice", "c", 170, 10_000)
            .await
            .unwrap();
        assert!(store
            .change_operator_password("alice", "$argon2id$changed", "s-new")
            .await
            .unwrap());
        assert_eq!(password(store.clone()).await, "$argon2id$changed");
        assert!(store
            .operator_session("s-new", 180)
            .await
            .unwrap()
            .is_some());
        assert!(store
            .operator_session("s-other", 180)
            .await
            .unwrap()
            .is_none());
        assert!(!store
            .change_operator_password("nobody", "$argon2id$x", "s-new")
            .await
            .unwrap());

        store.login_link_refused("10.0.0.9").await.unwrap();
        let actions: Vec<String> = store
            .audit_entries(0, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {}", e.actor, e.action))
            .collect();
        for wanted in [
            "operator:alice operator.password_set",
            "operator:alice operator.password_change",
            "operator operator.link_refused",
        ] {
            assert!(
                actions.contains(&wanted.to_owned()),
                "{wanted}: {actions:?}"
            );
        }
        assert_eq!(
            actions
                .iter()
                .filter(|a| a.ends_with(" operator.link"))
                .count(),
            2,
            "{actions:?}"
        );
    }

    #[tokio::test]
    async fn disabling_ends_sessions_and_links_and_enabling_restores_sign_in() {
        let store = store().await;
        store
            .add_operator("bob", OperatorRole::Viewer, "$argon2id$x", 10)
            .await
            .unwrap();
        store
            .create_operator_session("s1", "bob", "c", 100, 10_000)
            .await
            .unwrap();
        assert!(store
            .create_login_link("bob", "l1", 100, 10_000)
            .await
            .unwrap());
        assert!(store.set_operator_disabled("bob", true).await.unwrap());
        assert!(!store.set_operator_disabled("nobody", true).await.unwrap());
        let (op, _) = store.operator_credentials("bob").await.unwrap().unwrap();
        assert!(op.disabled);
        assert!(store.operator_session("s1", 150).await.unwrap().is_none());
        assert_eq!(store.login_link_operator("l1", 150).await.unwrap(), None);
        assert!(
            !store
                .create_login_link("bob", "l2", 150, 10_000)
                .await
                .unwrap(),
            "no link for a disabled operator"
        );
        assert_eq!(
            store
                .use_login_link("l1", "$argon2id$y", "s2", "c", 150, 250)
                .await
                .unwrap(),
            None
        );
        assert!(store.set_operator_disabled("bob", false).await.unwrap());
        assert!(!store.operators().await.unwrap()[0].disabled);
        assert!(
            store.operator_session("s1", 150).await.unwrap().is_none(),
            "ended sessions stay ended"
        );
        let actions: Vec<String> = store
            .audit_entries(0, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert!(
            actions.contains(&"operator.disable".to_owned()),
            "{actions:?}"
        );
        assert!(
            actions.contains(&"operator.enable".to_owned()),
            "{actions:?}"
        );
    }
}
