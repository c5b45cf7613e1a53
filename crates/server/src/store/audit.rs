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

/// Now, in unix seconds: an entry's `at`.
pub(super) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// An audit entry appended by the very statement that makes its change (PostgreSQL, in
/// data-modifying CTEs): the change, the head and the entry are one statement, run in
/// autocommit, so one round trip instead of `BEGIN`, the change, the entry and `COMMIT`,
/// and the head's row lock is held for that statement's execution and commit only.
///
/// The fields are SQL expressions (a parameter, a column of the change's CTEs, or
/// `NULL`). The head is taken only when `changed` has a row, so an operation whose guard
/// refuses the change appends nothing and leaves the head as it was. The database computes
/// the entry's hash over the same canonical form as [`AuditEntry::compute_hash`]
/// (PostgreSQL's JSON string escaping is serde_json's; a test holds the two equal), and
/// `audit verify` checks it in Rust as it checks every entry.
pub(super) struct InlineEntry<'a> {
    /// The change's CTEs, comma-separated, whose join is exactly one row when the change
    /// was made and none when it was refused.
    pub changed: &'a str,
    /// The entry's `at` (unix seconds).
    pub at: &'a str,
    /// Its `actor`.
    pub actor: &'a str,
    /// Its `action`.
    pub action: &'a str,
    /// Its `account_id`.
    pub account: &'a str,
    /// Its `order_id`.
    pub order: &'a str,
    /// Its `authz_id`.
    pub authz: &'a str,
    /// Its `challenge_id`.
    pub challenge: &'a str,
    /// Its `serial`.
    pub serial: &'a str,
    /// Its `details` (JSON text, stored and hashed as given).
    pub details: &'a str,
}

impl InlineEntry<'_> {
    /// The CTEs that take the head and append the entry (`audit_h`, `audit_v`,
    /// `audit_e`), to follow the change's own in a `WITH` list.
    pub(super) fn ctes(&self) -> String {
        let changed = self.changed;
        format!(
            "audit_h AS (UPDATE audit_head SET seq = seq + 1
                         WHERE id = 1 AND EXISTS (SELECT 1 FROM {changed})
                         RETURNING seq, hash),
              audit_v AS (SELECT audit_h.seq, ({at})::BIGINT AS at, ({actor})::TEXT AS actor,
                                 ({action})::TEXT AS action, ({account})::BIGINT AS account_id,
                                 ({order})::BIGINT AS order_id, ({authz})::BIGINT AS authz_id,
                                 ({challenge})::BIGINT AS challenge_id, ({serial})::TEXT AS serial,
                                 ({details})::TEXT AS details, audit_h.hash AS prev_hash
                          FROM audit_h, {changed}),
              audit_e AS (INSERT INTO audit_log (seq, at, actor, action, account_id, order_id,
                                                 authz_id, challenge_id, serial, details,
                                                 prev_hash, hash)
                          SELECT v.*, {hash} FROM audit_v AS v)",
            at = self.at,
            actor = self.actor,
            action = self.action,
            account = self.account,
            order = self.order,
            authz = self.authz,
            challenge = self.challenge,
            serial = self.serial,
            details = self.details,
            hash = sql_hash("v"),
        )
    }
}

/// `sql` without the CTEs of an [`InlineEntry`], whose quoted literals are JSON
/// punctuation, `null` and the like, none of them a status (for the status tests).
#[cfg(test)]
pub(super) fn without_inline_entry(sql: &str) -> String {
    let (Some(start), Some(last)) = (sql.find("audit_h AS ("), sql.find("audit_e AS (")) else {
        return sql.to_owned();
    };
    let (mut depth, mut quoted) = (0, false);
    for (at, c) in sql[last..].char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return format!("{}{}", &sql[..start], &sql[last + at + 1..]);
                }
            }
            _ => {}
        }
    }
    panic!("an inline entry's CTEs do not close: {sql}");
}

/// PostgreSQL's [`AuditEntry::compute_hash`] of the row `alias`, which has the entry's
/// columns but `hash`: the lower-case hex SHA-256 of the compact JSON array of those
/// columns in table order (numbers as integers, absent values as `null`, text as JSON
/// strings, which `to_json` escapes exactly as serde_json does).
pub(super) fn sql_hash(alias: &str) -> String {
    let int = |c: &str| format!("coalesce({alias}.{c}::TEXT, 'null')");
    let text = |c: &str| format!("coalesce(to_json({alias}.{c})::TEXT, 'null')");
    let parts = [
        format!("{alias}.seq::TEXT"),
        format!("{alias}.at::TEXT"),
        text("actor"),
        text("action"),
        int("account_id"),
        int("order_id"),
        int("authz_id"),
        int("challenge_id"),
        text("serial"),
        text("details"),
        text("prev_hash"),
    ];
    format!(
        "encode(sha256(convert_to('[' || {} || ']', 'UTF8')), 'hex')",
        parts.join(" || ',' || ")
    )
}

/// Appends `event` in `tx`. Call it last in the transaction (see the module doc).
pub(super) async fn append(tx: &mut dyn Tx, event: &AuditEvent) -> Result<()> {
    let head = tx
        .fetch_one(
            "UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash",
            &[],
        )
        .await?;
    let mut entry = AuditEntry {
        seq: head.int("seq")?,
        at: unix_now(),
        actor: event.actor.clone(),
        action: event.action.to_owned(),
        account_id: event.account.map(|a| a.0),
        order_id: event.order.map(|o| o.0),
        authz_id: event.authz.map(|a| a.0),
        challenge_id: event.challenge.map(|c| c.0),
        serial: event.serial.clone(),
        details: event.details.to_string(),
        prev_hash: head.text("hash")?,
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
    use crate::store::console::tests::postgres_store;

    /// Every character a JSON string may need escaped, and some that need none.
    fn awkward() -> String {
        let mut text: String = (1u8..0x80).map(char::from).collect();
        text.push_str("\u{2028}\u{2029}é€😀\"\\/");
        text
    }

    /// PostgreSQL's `sql_hash` is `compute_hash`, for every kind of value an entry holds:
    /// absent and extreme numbers, and text with every ASCII control character, quotes,
    /// backslashes and characters outside ASCII.
    #[tokio::test]
    async fn postgres_hashes_an_entry_exactly_as_compute_hash_does() {
        let Some(s) = postgres_store().await else {
            return;
        };
        let plain = AuditEntry {
            seq: 1,
            at: 0,
            actor: "system".into(),
            action: "test.event".into(),
            account_id: None,
            order_id: None,
            authz_id: None,
            challenge_id: None,
            serial: None,
            details: "{}".into(),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        };
        let awkward_entry = AuditEntry {
            seq: i64::MAX,
            at: -5,
            actor: awkward(),
            action: awkward(),
            account_id: Some(7),
            order_id: Some(-1),
            authz_id: Some(0),
            challenge_id: Some(i64::MIN),
            serial: Some(awkward()),
            details: json!({"text": awkward(), "none": null}).to_string(),
            prev_hash: awkward(),
            hash: String::new(),
        };
        let sql = format!(
            "SELECT {} AS hash FROM (SELECT $1::BIGINT AS seq, $2::BIGINT AS at,
                    $3::TEXT AS actor, $4::TEXT AS action, $5::BIGINT AS account_id,
                    $6::BIGINT AS order_id, $7::BIGINT AS authz_id, $8::BIGINT AS challenge_id,
                    $9::TEXT AS serial, $10::TEXT AS details, $11::TEXT AS prev_hash) AS e",
            sql_hash("e")
        );
        for e in [plain, awkward_entry] {
            let values = params![
                e.seq,
                e.at,
                &e.actor,
                &e.action,
                e.account_id,
                e.order_id,
                e.authz_id,
                e.challenge_id,
                &e.serial,
                &e.details,
                &e.prev_hash,
            ];
            let rows = super::super::engine::tx::sqlx_fetch_all(&s.writer, &sql, &values)
                .await
                .unwrap();
            assert_eq!(rows[0].text("hash").unwrap(), e.compute_hash(), "{e:?}");
        }
    }

    /// The three operations that append their entry in their own statement on PostgreSQL
    /// (a new order, a validation's outcome, an issued certificate) write the entry
    /// SQLite's statement-by-statement path writes, details byte for byte, into a chain
    /// that verifies; and an operation whose guard refuses it appends nothing and leaves
    /// the head where it was.
    #[tokio::test]
    async fn inline_entries_are_the_statement_by_statement_entries_on_postgres() {
        use super::super::{NewAuthorization, NewCertificate, NewOrderRecord};
        use certwright_proto::types::{ChallengeType, Identifier};
        use certwright_proto::{Problem, ProblemType};

        let Some(s) = postgres_store().await else {
            return;
        };
        let account = crate::store::console::tests::account(&s, &[]).await;
        let new_order = |name: &str| NewOrderRecord {
            account_id: account,
            identifiers: vec![Identifier::dns(name)],
            expires: 100,
            not_before: None,
            not_after: None,
            authorizations: vec![NewAuthorization::Create {
                identifier: Identifier::dns(name),
                wildcard: true,
                expires: 100,
                challenges: vec![(ChallengeType::Dns01, format!("token-{name}"))],
            }],
            now: 1,
            profile: Some("short\u{7}\"lived".into()),
            replaces: None,
        };
        let head = || async {
            let rows = super::super::engine::tx::sqlx_fetch_all(
                &s.reader,
                "SELECT seq, hash FROM audit_head WHERE id = 1",
                &[],
            )
            .await
            .unwrap();
            (rows[0].int("seq").unwrap(), rows[0].text("hash").unwrap())
        };
        let mut expected = Vec::new();

        // Two orders: one whose validation fails, one whose validation succeeds.
        let mut challenges = Vec::new();
        for name in ["fails.example", "passes.example"] {
            let order = s.create_order(&new_order(name)).await.unwrap();
            expected.push((
                "order.create",
                json!({"identifiers": [{"type": "dns", "value": name}],
                       "profile": "short\u{7}\"lived", "replaces": null,
                       "not_before": null, "not_after": null}),
            ));
            let authz = s.authorization(order.authorization_ids[0]).await.unwrap();
            let challenge = authz.challenges[0].id;
            assert!(s.start_validation(challenge, 50).await.unwrap());
            challenges.push((order.id, challenge));
        }
        let problem = Problem::new(ProblemType::Dns, format!("no TXT record {}", awkward()));
        let record = json!({"hostname": awkward(), "resolved": ["127.0.0.1"]});
        let diagnostic = json!({"read": awkward(), "n": 3});
        let (failed, passed) = (challenges[0], challenges[1]);
        assert!(s
            .finish_validation(failed.1, Some(&problem), &record, &diagnostic, 10)
            .await
            .unwrap());
        assert!(s
            .finish_validation(passed.1, None, &record, &diagnostic, 10)
            .await
            .unwrap());
        for (name, outcome, problem) in [
            (
                "fails.example",
                "invalid",
                serde_json::to_value(&problem).unwrap(),
            ),
            ("passes.example", "valid", Value::Null),
        ] {
            expected.push((
                "validation",
                json!({"identifier": {"type": "dns", "value": name}, "wildcard": true,
                       "method": "dns-01", "outcome": outcome, "problem": problem,
                       "record": record, "diagnostic": diagnostic}),
            ));
        }

        // Refused: the challenge is no longer processing; nothing appended.
        let before = head().await;
        assert!(!s
            .finish_validation(passed.1, None, &record, &diagnostic, 11)
            .await
            .unwrap());
        assert_eq!(head().await, before);

        assert!(s.begin_finalize(passed.0, &[0x30, 0], 50).await.unwrap());
        let cert = NewCertificate {
            serial: "0a".into(),
            account_id: account,
            der: vec![0x30, 0x00],
            chain_pem: "-----BEGIN CERTIFICATE-----\n".into(),
            names: vec![Identifier::dns("passes.example")],
            not_before: 1,
            not_after: 99,
            created_at: 2,
            profile: Some("short\u{7}\"lived".into()),
            key_type: "ECDSA P-256".into(),
            issuer: awkward(),
        };
        s.complete_order(passed.0, &cert).await.unwrap();
        expected.push((
            "certificate.issue",
            json!({"names": [{"type": "dns", "value": "passes.example"}],
                   "profile": "short\u{7}\"lived", "issuer": awkward(),
                   "key_type": "ECDSA P-256", "not_before": 1, "not_after": 99,
                   "eab_label": null}),
        ));
        // Refused: the order is valid already; nothing appended, the head unchanged.
        let before = head().await;
        let again = NewCertificate {
            serial: "0b".into(),
            ..cert
        };
        assert!(matches!(
            s.complete_order(passed.0, &again).await,
            Err(crate::store::StoreError::NotFound)
        ));
        assert_eq!(head().await, before);

        let entries = s.audit_entries(0, i64::MIN, 100).await.unwrap();
        let written: Vec<(&str, &str)> = entries
            .iter()
            .filter(|e| e.action != "account.create")
            .map(|e| (e.action.as_str(), e.details.as_str()))
            .collect();
        let wanted: Vec<(&str, String)> = expected
            .iter()
            .map(|(action, details)| (*action, details.to_string()))
            .collect();
        let wanted: Vec<(&str, &str)> = wanted.iter().map(|(a, d)| (*a, d.as_str())).collect();
        assert_eq!(written, wanted);
        let issued = entries.last().unwrap();
        assert_eq!(
            (issued.account_id, issued.order_id, issued.serial.as_deref()),
            (Some(account.0), Some(passed.0 .0), Some("0a"))
        );
        assert!(matches!(
            s.verify_audit().await.unwrap(),
            AuditVerdict::Intact { entries: 6, .. }
        ));
    }

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
