//! The audit trail: an append-only table in which each entry carries the SHA-256 of the
//! entry before it, so that altering, inserting or deleting a past entry breaks the chain.
//!
//! Every change worth auditing appends its entry in the same transaction as the change,
//! and last in that transaction: the append updates the one-row `audit_head` table first,
//! which serializes appenders (on PostgreSQL, a row lock held to the commit) without
//! holding that lock while waiting for any other.

use serde::Serialize;
use serde_json::{json, Value};
use sqlx::Row;

use super::engine::columns::Columns;
use super::engine::tx::{params, Param, Tx};
use super::{AccountId, AuthzId, ChallengeId, OrderId, Result, Store};

/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Something that happened, to be appended to the trail.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// Who: `account:ID`, `certificate-key`, `admin` or `system`.
    pub actor: String,
    /// What, e.g. `account.create`, `validation`, `certificate.issue`.
    pub action: &'static str,
    /// The account it concerns.
    pub account: Option<AccountId>,
    /// The order it concerns.
    pub order: Option<OrderId>,
    /// The authorization it concerns.
    pub authz: Option<AuthzId>,
    /// The challenge it concerns.
    pub challenge: Option<ChallengeId>,
    /// Serial (hex) of the certificate it concerns.
    pub serial: Option<String>,
    /// Event-specific facts (never a key or a MAC secret).
    pub details: Value,
}

/// Who did something, as audit entries name them: the one place actor names are made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Actor {
    /// An ACME account (`account:ID`).
    Account(AccountId),
    /// Whoever holds a certificate's private key: a revocation signed with it
    /// (`certificate-key`).
    CertificateKey,
    /// The CA operator at the command line (`operator:NAME`, or `operator` when the name
    /// is unknown).
    Operator(Option<String>),
    /// The CA itself: validation outcomes, failed issuances, housekeeping (`system`).
    #[default]
    System,
}

impl Actor {
    /// The operator running this process, named by `SUDO_USER`, `USER` or `LOGNAME`.
    pub fn operator_from_env() -> Self {
        let name = ["SUDO_USER", "USER", "LOGNAME"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .find(|n| !n.is_empty() && n.len() <= 64 && !n.contains(char::is_whitespace));
        Self::Operator(name)
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Account(id) => write!(f, "account:{}", id.0),
            Self::CertificateKey => f.write_str("certificate-key"),
            Self::Operator(Some(name)) => write!(f, "operator:{name}"),
            Self::Operator(None) => f.write_str("operator"),
            Self::System => f.write_str("system"),
        }
    }
}

impl AuditEvent {
    /// An event by `actor` with no subjects yet.
    pub fn new(actor: &Actor, action: &'static str) -> Self {
        Self {
            actor: actor.to_string(),
            action,
            account: None,
            order: None,
            authz: None,
            challenge: None,
            serial: None,
            details: json!({}),
        }
    }

    /// An event done by an account, about that account.
    pub fn by_account(account: AccountId, action: &'static str) -> Self {
        Self::new(&Actor::Account(account), action).account(account)
    }

    /// The account the event is about (when the actor is someone else).
    pub fn account(mut self, account: AccountId) -> Self {
        self.account = Some(account);
        self
    }

    /// The order the event is about.
    pub fn order(mut self, order: OrderId) -> Self {
        self.order = Some(order);
        self
    }

    /// The authorization the event is about.
    pub fn authz(mut self, authz: AuthzId) -> Self {
        self.authz = Some(authz);
        self
    }

    /// The challenge the event is about.
    pub fn challenge(mut self, challenge: ChallengeId) -> Self {
        self.challenge = Some(challenge);
        self
    }

    /// The certificate (serial, hex) the event is about.
    pub fn serial(mut self, serial: &str) -> Self {
        self.serial = Some(serial.to_owned());
        self
    }

    /// Sets the event-specific facts.
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// An account was created for `jwk` (with its External Account Binding, if any).
pub(super) fn account_created(
    id: AccountId,
    jwk: &certwright_proto::Jwk,
    contact: &[String],
    tos_agreed: bool,
    eab: Option<(&str, &str)>,
) -> AuditEvent {
    let mut details = json!({
        "key_thumbprint": jwk.thumbprint(),
        "contact": contact,
        "terms_of_service_agreed": tos_agreed,
    });
    if let Some((kid, label)) = eab {
        details["eab_kid"] = json!(kid);
        details["eab_label"] = json!(label);
    }
    AuditEvent::by_account(id, "account.create").details(details)
}

/// A recorded entry, as stored and exported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// Unix seconds when the entry was written.
    pub at: i64,
    /// See `AuditEvent::actor`.
    pub actor: String,
    /// See `AuditEvent::action`.
    pub action: String,
    /// The account it concerns.
    pub account_id: Option<i64>,
    /// The order it concerns.
    pub order_id: Option<i64>,
    /// The authorization it concerns.
    pub authz_id: Option<i64>,
    /// The challenge it concerns.
    pub challenge_id: Option<i64>,
    /// Serial (hex) of the certificate it concerns.
    pub serial: Option<String>,
    /// The details exactly as hashed (a JSON object in text form).
    pub details: String,
    /// `hash` of the entry before ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// SHA-256 (lower-case hex) of the entry (`compute_hash`).
    pub hash: String,
}

impl AuditEntry {
    /// The SHA-256 (lower-case hex) of the entry's canonical form: a JSON array of every
    /// field but `hash`, in table order.
    pub fn compute_hash(&self) -> String {
        let canonical = json!([
            self.seq,
            self.at,
            self.actor,
            self.action,
            self.account_id,
            self.order_id,
            self.authz_id,
            self.challenge_id,
            self.serial,
            self.details,
            self.prev_hash,
        ])
        .to_string();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        crate::encoding::hex(digest.as_ref())
    }

    fn from_row(row: &sqlx::any::AnyRow) -> Self {
        Self {
            seq: row.get("seq"),
            at: row.get("at"),
            actor: row.get("actor"),
            action: row.get("action"),
            account_id: row.get("account_id"),
            order_id: row.get("order_id"),
            authz_id: row.get("authz_id"),
            challenge_id: row.get("challenge_id"),
            serial: row.get("serial"),
            details: row.get("details"),
            prev_hash: row.get("prev_hash"),
            hash: row.get("hash"),
        }
    }
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditVerdict {
    /// Every entry hashes right and links to the one before; the head agrees.
    Intact {
        /// How many entries there are.
        entries: i64,
        /// The hash of the last entry.
        head: String,
    },
    /// The first bad place in the chain.
    Broken {
        /// The entry where the chain breaks.
        seq: i64,
        /// What is wrong there.
        reason: String,
    },
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The statement that takes the next seq of the trail and the hash of the entry before
/// (its row lock serialises writers until the transaction ends).
pub(super) const TAKE_HEAD: &str =
    "UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash";

/// Appends `event` in `tx`. Call it last in the transaction (see the module doc).
pub(super) async fn append(tx: &mut dyn Tx, event: &AuditEvent) -> Result<()> {
    let head = tx.fetch_one(TAKE_HEAD, &[]).await?;
    append_after_head(tx, event, head.int("seq")?, head.text("hash")?).await
}

/// Appends `event` in `tx` as entry `seq` after the entry whose hash is `prev_hash`,
/// both taken from the head in the same transaction (`TAKE_HEAD`, which a statement on
/// PostgreSQL may run as a CTE of its own: one round trip fewer).
pub(super) async fn append_after_head(
    tx: &mut dyn Tx,
    event: &AuditEvent,
    seq: i64,
    prev_hash: String,
) -> Result<()> {
    let mut entry = AuditEntry {
        seq,
        at: unix_now(),
        actor: event.actor.clone(),
        action: event.action.to_owned(),
        account_id: event.account.map(|a| a.0),
        order_id: event.order.map(|o| o.0),
        authz_id: event.authz.map(|a| a.0),
        challenge_id: event.challenge.map(|c| c.0),
        serial: event.serial.clone(),
        details: event.details.to_string(),
        prev_hash,
        hash: String::new(),
    };
    entry.hash = entry.compute_hash();
    tx.execute(
        "INSERT INTO audit_log (seq, at, actor, action, account_id, order_id, authz_id,
                                challenge_id, serial, details, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &params![
            entry.seq,
            entry.at,
            &entry.actor,
            &entry.action,
            entry.account_id,
            entry.order_id,
            entry.authz_id,
            entry.challenge_id,
            &entry.serial,
            &entry.details,
            &entry.prev_hash,
            &entry.hash,
        ],
    )
    .await?;
    // The head's hash follows in the INSERT (trigger audit_head_follows, migration 0019).
    Ok(())
}

/// Entries read per query when walking or exporting the trail.
pub const PAGE: i64 = 1000;

impl Store {
    /// Appends an event that changes nothing else (an admin action, for instance).
    #[cfg(any(test, feature = "test-support"))]
    pub async fn record_audit_event(&self, event: &AuditEvent) -> Result<()> {
        let event = event.clone();
        self.write(move |tx| Box::pin(async move { append(tx, &event).await }))
            .await
    }

    /// Runs `sql`, which changes one row at most, and if it changed one appends `event`
    /// in the same transaction; whether it did.
    pub(super) async fn change_one_audited(
        &self,
        sql: &'static str,
        params: Vec<Param>,
        event: AuditEvent,
    ) -> Result<bool> {
        self.write(move |tx| {
            Box::pin(async move {
                if tx.execute(sql, &params).await? != 1 {
                    return Ok(false);
                }
                append(tx, &event).await?;
                Ok(true)
            })
        })
        .await
    }

    /// Up to `limit` entries with `seq > after` and `at >= since`, in order.
    pub async fn audit_entries(
        &self,
        after: i64,
        since: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE seq > $1 AND at >= $2 ORDER BY seq LIMIT $3",
        )
        .bind(after)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(AuditEntry::from_row).collect())
    }

    /// Walks the whole chain, a page at a time: each entry's hash, its link to the entry
    /// before, gaps in the sequence (a deleted entry), and the head against the last entry
    /// (a deleted tail). The head is read first and the walk stops there, so entries
    /// appended meanwhile (a running CA) are left for the next verification instead of
    /// looking like a tail the head does not know.
    pub async fn verify_audit(&self) -> Result<AuditVerdict> {
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.reader)
            .await?;
        self.verify_audit_to(head.get(0), head.get(1)).await
    }

    /// `verify_audit` against a head read before: entries after `head_seq` are not looked at.
    async fn verify_audit_to(&self, head_seq: i64, head_hash: String) -> Result<AuditVerdict> {
        let mut expected_seq = 1;
        let mut prev_hash = GENESIS_HASH.to_owned();
        'walk: loop {
            let page = self.audit_entries(expected_seq - 1, i64::MIN, PAGE).await?;
            if page.is_empty() {
                break;
            }
            for e in &page {
                if e.seq > head_seq {
                    break 'walk;
                }
                let broken = |reason: String| Ok(AuditVerdict::Broken { seq: e.seq, reason });
                if e.seq != expected_seq {
                    return Ok(AuditVerdict::Broken {
                        seq: expected_seq,
                        reason: format!(
                            "entry {expected_seq} is missing (the next one is {}): deleted",
                            e.seq
                        ),
                    });
                }
                if e.prev_hash != prev_hash {
                    return broken(format!(
                        "its prev_hash {} is not the hash of entry {} ({prev_hash}): the chain was cut or rewritten",
                        e.prev_hash,
                        e.seq - 1
                    ));
                }
                let computed = e.compute_hash();
                if computed != e.hash {
                    return broken(format!(
                        "its content does not match its hash (stored {}, computed {computed}): the entry was altered",
                        e.hash
                    ));
                }
                prev_hash = e.hash.clone();
                expected_seq += 1;
            }
        }
        let last = expected_seq - 1;
        if head_seq != last || head_hash != prev_hash {
            return Ok(AuditVerdict::Broken {
                seq: last + 1,
                reason: format!(
                    "the chain ends at entry {last} but its head records entry {head_seq} ({head_hash}): entries at the end were deleted"
                ),
            });
        }
        Ok(AuditVerdict::Intact {
            entries: last,
            head: prev_hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries appended while a verification walks the chain (after it read the head)
    /// are not a tail the head does not know: the chain up to that head is intact.
    #[tokio::test]
    async fn entries_appended_during_a_verification_are_not_a_break() {
        let s = crate::store::console::tests::test_store().await;
        let event = AuditEvent::new(&Actor::System, "test.event");
        for _ in 0..3 {
            s.record_audit_event(&event).await.unwrap();
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&s.reader)
            .await
            .unwrap();
        let (seq, hash): (i64, String) = (head.get(0), head.get(1));
        for _ in 0..2 {
            s.record_audit_event(&event).await.unwrap();
        }
        let verdict = s.verify_audit_to(seq, hash.clone()).await.unwrap();
        assert_eq!(
            verdict,
            AuditVerdict::Intact {
                entries: 3,
                head: hash
            }
        );
        assert!(matches!(
            s.verify_audit().await.unwrap(),
            AuditVerdict::Intact { entries: 5, .. }
        ));
        // A head that records more than the table holds is still a deleted tail.
        assert!(matches!(
            s.verify_audit_to(9, "x".into()).await.unwrap(),
            AuditVerdict::Broken { seq: 6, .. }
        ));
    }
}
