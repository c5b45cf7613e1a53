//! Remote validation agents (docs/remote-validation.md): the agents enrolled per segment,
//! their one-time enrolment tokens (only the SHA-256 of a token's secret is stored) and
//! the agent CA, whose private key is sealed with the key-encryption key (`secrets`).
//!
//! An agent is known by the SHA-256 of its current client certificate. Redeeming a token
//! is one guarded `UPDATE` (a token works once, even when two redemptions race); it makes
//! the new certificate the agent's current one, in the same transaction.

use super::audit::{self, Actor, AuditEvent};
use super::engine::columns::Columns;
use super::engine::tx::params;
use super::{unique_is_conflict, Result, Store, StoreError};

/// The additional data the agent CA's key is sealed under (the KEK's `kid` argument).
const AGENT_CA_SEAL_ID: &str = "agent-ca";

/// One enrolled agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// The agent's name (its certificate's CN).
    pub name: String,
    /// The segment it validates in.
    pub segment: String,
    /// Hex SHA-256 of its current client certificate.
    pub cert_sha256: String,
    /// Hex SHA-256 of the certificate the last renewal replaced, still accepted until the
    /// agent first presents the current one (its renewal answer may have been lost).
    pub previous_cert_sha256: Option<String>,
    /// When that certificate expires (Unix seconds).
    pub not_after: i64,
    /// When it (last) enrolled.
    pub enrolled_at: i64,
    /// When it was last heard from (throttled; `None`: never since enrolment).
    pub last_contact: Option<i64>,
    /// Jobs it answered.
    pub jobs_done: i64,
    /// Jobs it took and did not answer in time.
    pub jobs_failed: i64,
}

fn agent_from_row(row: &impl Columns) -> Result<AgentRecord> {
    Ok(AgentRecord {
        name: row.text("name")?,
        segment: row.text("segment")?,
        cert_sha256: row.text("cert_sha256")?,
        previous_cert_sha256: row.opt_text("previous_cert_sha256")?,
        not_after: row.int("not_after")?,
        enrolled_at: row.int("enrolled_at")?,
        last_contact: row.opt_int("last_contact")?,
        jobs_done: row.int("jobs_done")?,
        jobs_failed: row.int("jobs_failed")?,
    })
}

/// An unused, unexpired enrolment token, as its id and secret find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTokenRecord {
    /// The token's id.
    pub id: String,
    /// The agent it enrols.
    pub agent: String,
    /// That agent's segment.
    pub segment: String,
    /// When it stops working (Unix seconds).
    pub expires_at: i64,
}

/// A new enrolment token (`create_agent_token`).
#[derive(Debug, Clone)]
pub struct NewAgentToken<'a> {
    /// The token's id (not secret).
    pub id: &'a str,
    /// The agent it enrols.
    pub agent: &'a str,
    /// The agent's segment.
    pub segment: &'a str,
    /// Hex SHA-256 of the token's secret (the secret itself is never stored).
    pub secret_sha256: &'a str,
    /// Now (Unix seconds).
    pub now: i64,
    /// When the token stops working.
    pub expires_at: i64,
    /// Whether an agent already enrolled under this name may be replaced by the token's
    /// redemption (else `StoreError::Conflict`).
    pub replace: bool,
}

/// The agent CA as stored: its certificate and its sealed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCaRecord {
    /// The CA certificate (DER).
    pub certificate: Vec<u8>,
    /// The PKCS#8 private key sealed with the KEK (`Store::agent_ca_key` opens it).
    sealed_key: String,
    /// The KEK that sealed it.
    kek_id: String,
}

impl Store {
    /// Stores an enrolment token for `agent` in `segment` (only the hash of its secret),
    /// forgetting tokens that expired before `now`. `StoreError::Conflict` when an agent
    /// is enrolled under that name and `replace` is not set, or the id is taken. Audited
    /// as `agent.token_create`.
    pub async fn create_agent_token(&self, token: &NewAgentToken<'_>) -> Result<()> {
        let (id, agent, segment, hash) = (
            token.id.to_owned(),
            token.agent.to_owned(),
            token.segment.to_owned(),
            token.secret_sha256.to_owned(),
        );
        let (now, expires_at, replace) = (token.now, token.expires_at, token.replace);
        let actor = self.operator.clone();
        self.write(move |tx| {
            Box::pin(async move {
                if !replace
                    && tx
                        .fetch_optional(
                            "SELECT name FROM agents WHERE name = $1",
                            &params![&agent],
                        )
                        .await?
                        .is_some()
                {
                    return Err(StoreError::Conflict);
                }
                tx.execute(
                    "DELETE FROM agent_tokens WHERE expires_at < $1",
                    &params![now],
                )
                .await?;
                tx.execute(
                    "INSERT INTO agent_tokens (id, agent, segment, secret_sha256, created_at, expires_at, replace_agent) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &params![&id, &agent, &segment, &hash, now, expires_at, i64::from(replace)],
                )
                .await
                .map_err(unique_is_conflict)?;
                let event = AuditEvent::new(&actor, "agent.token_create").details(
                    serde_json::json!({ "token": id, "agent": agent, "segment": segment, "expires_at": expires_at, "replace": replace }),
                );
                audit::append(tx, &event).await?;
                Ok(())
            })
        })
        .await
    }

    /// The token `id` if its secret hashes to `secret_sha256` and it is unused and
    /// unexpired at `now` (a check before issuing; `redeem_agent_token` decides).
    pub async fn agent_token(
        &self,
        id: &str,
        secret_sha256: &str,
        now: i64,
    ) -> Result<Option<AgentTokenRecord>> {
        let row = self
            .read_optional(
                "SELECT id, agent, segment, expires_at FROM agent_tokens WHERE id = $1 AND secret_sha256 = $2 AND used_at IS NULL AND expires_at > $3",
                &params![id, secret_sha256, now],
            )
            .await?;
        row.map(|r| {
            Ok(AgentTokenRecord {
                id: r.text("id")?,
                agent: r.text("agent")?,
                segment: r.text("segment")?,
                expires_at: r.int("expires_at")?,
            })
        })
        .transpose()
    }

    /// Redeems token `id` (its secret hashing to `secret_sha256`, unused, unexpired at
    /// `now`) and makes the certificate with SHA-256 `cert_sha256` the current one of the
    /// token's agent (enrolling it, or replacing it), in one transaction. `None` when the
    /// token does not work (unknown, wrong secret, used — also by a concurrent redemption —
    /// or expired): nothing changed. Audited as `agent.enroll`.
    pub async fn redeem_agent_token(
        &self,
        id: &str,
        secret_sha256: &str,
        cert_sha256: &str,
        not_after: i64,
        now: i64,
    ) -> Result<Option<AgentRecord>> {
        let (id, hash, cert) = (
            id.to_owned(),
            secret_sha256.to_owned(),
            cert_sha256.to_owned(),
        );
        self.write(move |tx| {
            Box::pin(async move {
                // The guard is the redemption: of two concurrent ones, one updates the row.
                let used = tx
                    .execute(
                        "UPDATE agent_tokens SET used_at = $1 WHERE id = $2 AND secret_sha256 = $3 AND used_at IS NULL AND expires_at > $1",
                        &params![now, &id, &hash],
                    )
                    .await?;
                if used != 1 {
                    return Ok(None);
                }
                let token = tx
                    .fetch_one(
                        "SELECT agent, segment, replace_agent FROM agent_tokens WHERE id = $1",
                        &params![&id],
                    )
                    .await?;
                let (agent, segment) = (token.text("agent")?, token.text("segment")?);
                if token.flag("replace_agent")? {
                    tx.execute(
                        "INSERT INTO agents (name, segment, cert_sha256, not_after, enrolled_at, last_contact, jobs_done, jobs_failed) VALUES ($1, $2, $3, $4, $5, NULL, 0, 0)
                         ON CONFLICT (name) DO UPDATE SET segment = excluded.segment, cert_sha256 = excluded.cert_sha256, previous_cert_sha256 = NULL, not_after = excluded.not_after, enrolled_at = excluded.enrolled_at, last_contact = NULL, jobs_done = 0, jobs_failed = 0",
                        &params![&agent, &segment, &cert, not_after, now],
                    )
                    .await
                    .map_err(unique_is_conflict)?;
                } else {
                    // A token made without --replace never takes over an agent enrolled
                    // since (nor one a second token for the same name enrolled first).
                    let inserted = tx
                        .execute(
                            "INSERT INTO agents (name, segment, cert_sha256, not_after, enrolled_at, last_contact, jobs_done, jobs_failed) VALUES ($1, $2, $3, $4, $5, NULL, 0, 0)
                             ON CONFLICT (name) DO NOTHING",
                            &params![&agent, &segment, &cert, not_after, now],
                        )
                        .await
                        .map_err(unique_is_conflict)?;
                    if inserted != 1 {
                        return Err(StoreError::Conflict);
                    }
                }
                let event = AuditEvent::new(&Actor::System, "agent.enroll").details(
                    serde_json::json!({ "agent": agent, "segment": segment, "token": id, "cert_sha256": cert, "not_after": not_after }),
                );
                audit::append(tx, &event).await?;
                Ok(Some(AgentRecord {
                    name: agent,
                    segment,
                    cert_sha256: cert,
                    previous_cert_sha256: None,
                    not_after,
                    enrolled_at: now,
                    last_contact: None,
                    jobs_done: 0,
                    jobs_failed: 0,
                }))
            })
        })
        .await
    }

    /// Makes `new_sha256` the current certificate of agent `name` if `old_sha256` (the
    /// certificate the renewal request came with) is its current or previous one; false
    /// otherwise. `old_sha256` becomes the previous certificate, accepted until the agent
    /// first presents the new one ([`Store::retire_previous_agent_certificate`]): an agent
    /// that never got the answer renews again with it, and the certificate it missed
    /// stops working. Audited as `agent.renew`.
    pub async fn renew_agent_certificate(
        &self,
        name: &str,
        old_sha256: &str,
        new_sha256: &str,
        not_after: i64,
    ) -> Result<bool> {
        self.change_one_audited(
            "UPDATE agents SET previous_cert_sha256 = $4, cert_sha256 = $1, not_after = $2 WHERE name = $3 AND (cert_sha256 = $4 OR previous_cert_sha256 = $4)",
            params![new_sha256, not_after, name, old_sha256].into(),
            AuditEvent::new(&Actor::System, "agent.renew").details(
                serde_json::json!({ "agent": name, "cert_sha256": new_sha256, "not_after": not_after }),
            ),
        )
        .await
    }

    /// The agent whose current (or not yet retired previous) client certificate has
    /// SHA-256 `cert_sha256` (hex).
    pub async fn agent_by_certificate(&self, cert_sha256: &str) -> Result<Option<AgentRecord>> {
        let row = self
            .read_optional(
                "SELECT * FROM agents WHERE cert_sha256 = $1 OR previous_cert_sha256 = $1",
                &params![cert_sha256],
            )
            .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    /// Stops accepting agent `name`'s previous certificate once it presented `current`,
    /// its current one. Not audited: the renewal was.
    pub async fn retire_previous_agent_certificate(&self, name: &str, current: &str) -> Result<()> {
        let (name, current) = (name.to_owned(), current.to_owned());
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "UPDATE agents SET previous_cert_sha256 = NULL WHERE name = $1 AND cert_sha256 = $2",
                    &params![&name, &current],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// One agent by name.
    pub async fn agent(&self, name: &str) -> Result<Option<AgentRecord>> {
        let row = self
            .read_optional("SELECT * FROM agents WHERE name = $1", &params![name])
            .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    /// Every enrolled agent, by segment and name.
    pub async fn agents(&self) -> Result<Vec<AgentRecord>> {
        self.read_all("SELECT * FROM agents ORDER BY segment, name", &[])
            .await?
            .iter()
            .map(agent_from_row)
            .collect()
    }

    /// Removes agent `name` (its certificate stops working) and its unused tokens; false
    /// if unknown. Audited as `agent.remove`.
    pub async fn remove_agent(&self, name: &str) -> Result<bool> {
        let (name, by) = (name.to_owned(), self.operator.clone());
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "DELETE FROM agent_tokens WHERE agent = $1 AND used_at IS NULL",
                    &params![&name],
                )
                .await?;
                if tx
                    .execute("DELETE FROM agents WHERE name = $1", &params![&name])
                    .await?
                    != 1
                {
                    return Ok(false);
                }
                let event = AuditEvent::new(&by, "agent.remove")
                    .details(serde_json::json!({ "agent": name }));
                audit::append(tx, &event).await?;
                Ok(true)
            })
        })
        .await
    }

    /// Records contact with agent `name` at `now`, and adds to its job counts. Not
    /// audited (the hub calls it throttled).
    pub async fn record_agent_contact(
        &self,
        name: &str,
        now: i64,
        done: i64,
        failed: i64,
    ) -> Result<()> {
        let name = name.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "UPDATE agents SET last_contact = $1, jobs_done = jobs_done + $2, jobs_failed = jobs_failed + $3 WHERE name = $4",
                    &params![now, done, failed, &name],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// The agent CA, if one was created.
    pub async fn agent_ca(&self) -> Result<Option<AgentCaRecord>> {
        let row = self
            .read_optional(
                "SELECT certificate, private_key, kek_id FROM agent_ca WHERE id = 1",
                &[],
            )
            .await?;
        row.map(|r| {
            Ok(AgentCaRecord {
                certificate: r.blob("certificate")?,
                sealed_key: r.text("private_key")?,
                kek_id: r.text("kek_id")?,
            })
        })
        .transpose()
    }

    /// Stores the agent CA (its key sealed with the KEK, which must be attached) unless
    /// one exists, and returns the one stored: of two instances creating it at once, the
    /// first wins and both use it. Audited as `agent.ca_create` when stored.
    pub async fn create_agent_ca(
        &self,
        certificate: &[u8],
        private_key_der: &[u8],
        now: i64,
    ) -> Result<AgentCaRecord> {
        let kek = self.require_kek()?;
        let sealed = String::from_utf8(kek.seal(AGENT_CA_SEAL_ID, private_key_der)?)
            .map_err(|e| StoreError::Corrupt(format!("sealed key is not text: {e}")))?;
        let kek_id = kek.id().to_owned();
        let cert = certificate.to_vec();
        let sha = crate::encoding::hex(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, certificate).as_ref(),
        );
        self.write(move |tx| {
            Box::pin(async move {
                let stored = tx
                    .execute(
                        "INSERT INTO agent_ca (id, certificate, private_key, kek_id, created_at) VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                        &params![&cert, &sealed, &kek_id, now],
                    )
                    .await?;
                if stored == 1 {
                    let event = AuditEvent::new(&Actor::System, "agent.ca_create")
                        .details(serde_json::json!({ "sha256": sha, "kek_id": kek_id }));
                    audit::append(tx, &event).await?;
                }
                Ok(())
            })
        })
        .await?;
        self.agent_ca().await?.ok_or(StoreError::NotFound)
    }

    /// The agent CA's private key (PKCS#8 DER), opened with the key-encryption key.
    pub fn agent_ca_key(&self, ca: &AgentCaRecord) -> Result<Vec<u8>> {
        Ok(self.require_kek()?.open(
            AGENT_CA_SEAL_ID,
            Some(&ca.kek_id),
            ca.sealed_key.as_bytes(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::secrets::Kek;

    async fn store() -> Store {
        let kek = Kek::from_bytes(&[7u8; 32], "test").unwrap();
        crate::store::console::tests::test_store()
            .await
            .with_eab_kek(Arc::new(kek))
    }

    fn token<'a>(id: &'a str, agent: &'a str, replace: bool) -> NewAgentToken<'a> {
        NewAgentToken {
            id,
            agent,
            segment: "lab",
            secret_sha256: "aa",
            now: 100,
            expires_at: 200,
            replace,
        }
    }

    #[tokio::test]
    async fn tokens_enrol_once_and_agents_renew_and_go() {
        let store = store().await;
        store
            .create_agent_token(&token("t1", "a1", false))
            .await
            .unwrap();
        assert!(matches!(
            store.create_agent_token(&token("t1", "a2", false)).await,
            Err(StoreError::Conflict)
        ));
        assert!(store.agent_token("t1", "bb", 150).await.unwrap().is_none());
        assert!(store.agent_token("t1", "aa", 200).await.unwrap().is_none());
        let t = store.agent_token("t1", "aa", 150).await.unwrap().unwrap();
        assert_eq!((t.agent.as_str(), t.segment.as_str()), ("a1", "lab"));

        // Wrong secret, expired: nothing changes.
        assert!(store
            .redeem_agent_token("t1", "bb", "c1", 999, 150)
            .await
            .unwrap()
            .is_none());
        assert!(store
            .redeem_agent_token("t1", "aa", "c1", 999, 200)
            .await
            .unwrap()
            .is_none());
        assert!(store.agents().await.unwrap().is_empty());

        // Two redemptions at once: one wins.
        let (a, b) = tokio::join!(
            store.redeem_agent_token("t1", "aa", "c1", 999, 150),
            store.redeem_agent_token("t1", "aa", "c2", 999, 150)
        );
        let won: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
        assert_eq!(won.len(), 1, "{won:?}");
        let cert = won[0].cert_sha256.clone();
        let agent = store.agent_by_certificate(&cert).await.unwrap().unwrap();
        assert_eq!((agent.name.as_str(), agent.segment.as_str()), ("a1", "lab"));
        assert!(store.agent_token("t1", "aa", 150).await.unwrap().is_none());

        // Enrolled: a new token for the name needs replace.
        assert!(matches!(
            store.create_agent_token(&token("t2", "a1", false)).await,
            Err(StoreError::Conflict)
        ));
        // A token made without replace before the name was taken cannot take it over
        // either, and stays unused (the refused redemption rolled back).
        store
            .create_agent_token(&token("t9", "a9", false))
            .await
            .unwrap();
        store
            .create_agent_token(&token("t8", "a9", false))
            .await
            .unwrap();
        let first = store
            .redeem_agent_token("t9", "aa", "c9", 999, 150)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            store.redeem_agent_token("t8", "aa", "c8", 999, 150).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(
            store.agent("a9").await.unwrap().unwrap().cert_sha256,
            first.cert_sha256
        );
        assert!(store.agent_token("t8", "aa", 150).await.unwrap().is_some());
        assert!(store.remove_agent("a9").await.unwrap());
        store
            .create_agent_token(&token("t2", "a1", true))
            .await
            .unwrap();

        store.record_agent_contact("a1", 160, 2, 1).await.unwrap();
        let a1 = store.agent("a1").await.unwrap().unwrap();
        assert_eq!(
            (a1.last_contact, a1.jobs_done, a1.jobs_failed),
            (Some(160), 2, 1)
        );

        assert!(store
            .renew_agent_certificate("a1", &cert, "c3", 2000)
            .await
            .unwrap());
        // Until c3 is used, the old certificate still works and may renew again (the
        // agent never got c3): c3 is then dropped.
        assert!(store.agent_by_certificate(&cert).await.unwrap().is_some());
        assert!(store
            .renew_agent_certificate("a1", &cert, "c4", 2000)
            .await
            .unwrap());
        assert!(store.agent_by_certificate("c4").await.unwrap().is_some());
        assert!(store.agent_by_certificate("c3").await.unwrap().is_none());
        // Renewing from c4 makes c4 the previous one; the first use of c3 retires it.
        assert!(store
            .renew_agent_certificate("a1", "c4", "c3", 2000)
            .await
            .unwrap());
        store
            .retire_previous_agent_certificate("a1", "c3")
            .await
            .unwrap();
        for gone in [cert.as_str(), "c4"] {
            assert!(store.agent_by_certificate(gone).await.unwrap().is_none());
            assert!(!store
                .renew_agent_certificate("a1", gone, "c5", 2000)
                .await
                .unwrap());
        }
        assert_eq!(
            store
                .agent_by_certificate("c3")
                .await
                .unwrap()
                .unwrap()
                .not_after,
            2000
        );

        assert!(store.remove_agent("a1").await.unwrap());
        assert!(!store.remove_agent("a1").await.unwrap());
        assert!(store.agent_by_certificate("c3").await.unwrap().is_none());
        // Its unused token went with it.
        assert!(store.agent_token("t2", "aa", 150).await.unwrap().is_none());

        let actions: Vec<String> = store
            .audit_entries(0, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .filter(|a| a.starts_with("agent."))
            .collect();
        assert_eq!(
            actions,
            [
                "agent.token_create",
                "agent.enroll",
                "agent.token_create",
                "agent.token_create",
                // t9 enrols a9; t8's refused redemption left no entry.
                "agent.enroll",
                "agent.remove",
                "agent.token_create",
                // c3, c4 (c3 lost), c3 again; the refused renewals left no entry.
                "agent.renew",
                "agent.renew",
                "agent.renew",
                "agent.remove"
            ]
        );
    }

    #[tokio::test]
    async fn the_agent_ca_key_is_sealed() {
        let store = store().await;
        assert!(store.agent_ca().await.unwrap().is_none());
        let ca = store
            .create_agent_ca(b"cert", b"secret key bytes", 1)
            .await
            .unwrap();
        assert_eq!(ca.certificate, b"cert");
        assert!(!ca.sealed_key.contains("secret key"));
        assert_eq!(store.agent_ca_key(&ca).unwrap(), b"secret key bytes");
        // The first one stays.
        let again = store.create_agent_ca(b"other", b"k2", 2).await.unwrap();
        assert_eq!(again, ca);
        // Another KEK cannot open it.
        let other = store
            .clone()
            .with_eab_kek(Arc::new(Kek::from_bytes(&[8u8; 32], "other").unwrap()));
        assert!(other.agent_ca_key(&ca).is_err());
    }
}
