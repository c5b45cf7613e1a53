//! Moving a CA's database between backends: every table as JSON lines, in an order that
//! satisfies foreign keys; import into an empty database in one transaction.
//!
//! EAB HMAC keys travel as stored: sealed with the key-encryption key, with its id. Export
//! refuses plaintext keys an older version left (`certwright-ca migrate` seals them);
//! import refuses keys sealed with another KEK than the target's, before writing anything.
//! The inventory's name index (`certificate_names`) is derived from the certificates: it
//! is not exported, and import rebuilds it.

use serde_json::{json, Map, Value};
use sqlx::Row;

use super::audit::{self, AuditEvent};
use super::certificate_names;
use super::{Backend, Result, Store, StoreError};
use crate::secrets::SecretsError;

#[derive(Clone, Copy)]
enum Col {
    Int,
    Text,
    Blob,
}

use Col::{Blob, Int, Text};

/// Tables and columns, parents before children.
const TABLES: &[(&str, &[(&str, Col)])] = &[
    (
        "accounts",
        &[
            ("id", Int),
            ("key_thumbprint", Text),
            ("jwk", Text),
            ("contact", Text),
            ("status", Text),
            ("tos_agreed", Int),
            ("created_at", Int),
            ("eab_kid", Text),
            ("eab_label", Text),
        ],
    ),
    (
        "orders",
        &[
            ("id", Int),
            ("account_id", Int),
            ("status", Text),
            ("identifiers", Text),
            ("expires", Int),
            ("not_before", Int),
            ("not_after", Int),
            ("error", Text),
            ("csr", Blob),
            ("certificate_serial", Text),
            ("created_at", Int),
            ("profile", Text),
            ("replaces", Text),
            ("lease_expires", Int),
        ],
    ),
    (
        "authorizations",
        &[
            ("id", Int),
            ("account_id", Int),
            ("identifier_type", Text),
            ("identifier_value", Text),
            ("wildcard", Int),
            ("status", Text),
            ("expires", Int),
            ("created_at", Int),
        ],
    ),
    (
        "order_authorizations",
        &[("order_id", Int), ("authorization_id", Int)],
    ),
    (
        "challenges",
        &[
            ("id", Int),
            ("authorization_id", Int),
            ("type", Text),
            ("token", Text),
            ("status", Text),
            ("validated", Int),
            ("error", Text),
            ("record", Text),
            ("lease_expires", Int),
            ("failed_at", Int),
            ("problem_type", Text),
        ],
    ),
    (
        "certificates",
        &[
            ("serial", Text),
            ("account_id", Int),
            ("order_id", Int),
            ("der", Blob),
            ("chain_pem", Text),
            ("names", Text),
            ("not_before", Int),
            ("not_after", Int),
            ("created_at", Int),
            ("revoked_at", Int),
            ("revocation_reason", Int),
            ("renew_early", Int),
            ("replaced_by_order", Int),
            ("profile", Text),
            ("issuer", Text),
        ],
    ),
    (
        "backend_jobs",
        &[
            ("order_id", Int),
            ("backend", Text),
            ("request_id", Text),
            ("attempts", Int),
            ("in_flight", Int),
            ("deadline", Int),
            ("state", Text),
            ("last_error", Text),
            ("created_at", Int),
        ],
    ),
    (
        "issuers",
        &[
            ("name", Text),
            ("status", Text),
            ("retire_by", Int),
            ("changed_at", Int),
        ],
    ),
    (
        "eab_keys",
        &[
            ("kid", Text),
            ("label", Text),
            ("hmac_key", Blob),
            ("kek_id", Text),
            ("created_at", Int),
            ("revoked_at", Int),
            ("account_id", Int),
        ],
    ),
    (
        "crl_state",
        &[
            ("issuer", Text),
            ("number", Int),
            ("der", Blob),
            ("this_update", Int),
            ("next_update", Int),
        ],
    ),
    (
        "operators",
        &[
            ("name", Text),
            ("role", Text),
            ("password_hash", Text),
            ("created_at", Int),
            ("disabled", Int),
        ],
    ),
    (
        "operator_sessions",
        &[
            ("token_hash", Text),
            ("operator", Text),
            ("csrf", Text),
            ("created_at", Int),
            ("expires_at", Int),
        ],
    ),
    (
        "operator_login_failures",
        &[("name", Text), ("address", Text), ("at", Int)],
    ),
    (
        "renew_campaigns",
        &[
            ("id", Int),
            ("started_by", Text),
            ("started_at", Int),
            ("filter", Text),
            ("marked", Int),
            ("finished_at", Int),
        ],
    ),
    (
        "renew_campaign_certificates",
        &[("campaign_id", Int), ("serial", Text)],
    ),
    (
        "audit_log",
        &[
            ("seq", Int),
            ("at", Int),
            ("actor", Text),
            ("action", Text),
            ("account_id", Int),
            ("order_id", Int),
            ("authz_id", Int),
            ("challenge_id", Int),
            ("serial", Text),
            ("details", Text),
            ("prev_hash", Text),
            ("hash", Text),
        ],
    ),
];

/// Tables whose `id` comes from a sequence (PostgreSQL needs it moved past imported ids).
const ID_TABLES: &[&str] = &[
    "accounts",
    "orders",
    "authorizations",
    "challenges",
    "renew_campaigns",
];

impl Store {
    /// Every row of every table as `{"table": …, "row": {…}}` JSON lines (blobs base64url).
    pub async fn export(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for (table, cols) in TABLES {
            let names: Vec<&str> = cols.iter().map(|c| c.0).collect();
            let sql = format!("SELECT {} FROM {table}", names.join(", "));
            for row in sqlx::query(&sql).fetch_all(&self.reader).await? {
                if *table == "eab_keys" && row.get::<Option<String>, _>("kek_id").is_none() {
                    // The export file alone must not reveal an HMAC key.
                    return Err(SecretsError::Plaintext {
                        kid: row.get::<String, _>("kid"),
                    }
                    .into());
                }
                let mut obj = Map::new();
                for (i, (name, col)) in cols.iter().enumerate() {
                    let v = match col {
                        Int => row.get::<Option<i64>, _>(i).map(Value::from),
                        Text => row.get::<Option<String>, _>(i).map(Value::from),
                        Blob => row
                            .get::<Option<Vec<u8>>, _>(i)
                            .map(|b| Value::from(certwright_proto::b64::encode(b))),
                    };
                    obj.insert((*name).to_owned(), v.unwrap_or(Value::Null));
                }
                out.push(json!({"table": table, "row": obj}));
            }
        }
        // The audit chain's head (one row that always exists; import overwrites it).
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.reader)
            .await?;
        out.push(json!({"table": "audit_head", "row": {
            "seq": head.get::<i64, _>(0),
            "hash": head.get::<String, _>(1),
        }}));
        Ok(out)
    }

    /// Every sealed EAB key of an export must be sealed with this store's key-encryption
    /// key, or the imported CA could never use it. Keys without a KEK id (an export of an
    /// older version) are plaintext: `seal_legacy_eab_keys` seals them after the import.
    fn check_imported_eab_keys(&self, lines: &[Value]) -> Result<()> {
        let sealed: Vec<(&str, &str)> = lines
            .iter()
            .filter(|l| l["table"] == "eab_keys")
            .filter_map(|l| Some((l["row"]["kid"].as_str()?, l["row"]["kek_id"].as_str()?)))
            .collect();
        if sealed.is_empty() {
            return Ok(());
        }
        let kek = self.require_kek()?;
        let foreign: Vec<(&str, &str)> = sealed
            .into_iter()
            .filter(|(_, id)| *id != kek.id())
            .collect();
        let Some((_, sealed_with)) = foreign.first() else {
            return Ok(());
        };
        let foreign: Vec<&str> = foreign.iter().map(|(kid, _)| *kid).collect();
        Err(StoreError::Schema(format!(
            "the export holds {} EAB key(s) ({}) encrypted with key-encryption key id {sealed_with}, \
             but the KEK here ({}) has id {}: give this CA the source CA's KEK (copy its {} or set \
             {}) and import again; nothing was imported",
            foreign.len(),
            foreign.join(", "),
            kek.source(),
            kek.id(),
            crate::secrets::KEK_FILE,
            crate::secrets::KEK_ENV,
        )))
    }

    /// Imports an export into this (empty) database, in one transaction.
    pub async fn import(&self, lines: &[Value]) -> Result<usize> {
        for (table, _) in TABLES {
            let n: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&self.reader)
                .await?
                .get(0);
            if n > 0 {
                return Err(StoreError::Schema(format!(
                    "the target database is not empty ({table} has {n} rows); import needs a fresh one"
                )));
            }
        }
        self.check_imported_eab_keys(lines)?;
        let mut tx = self.writer.begin().await?;
        let mut count = 0;
        for (table, cols) in TABLES {
            let names: Vec<&str> = cols.iter().map(|c| c.0).collect();
            let params: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                names.join(", "),
                params.join(", ")
            );
            for line in lines.iter().filter(|l| l["table"] == *table) {
                let row = &line["row"];
                let mut q = sqlx::query(&sql);
                for (name, col) in cols.iter() {
                    let v = &row[*name];
                    q = match col {
                        Int => q.bind(v.as_i64()),
                        Text => q.bind(v.as_str().map(str::to_owned)),
                        Blob => q.bind(match v.as_str() {
                            Some(s) => Some(certwright_proto::b64::decode(s).map_err(|_| {
                                StoreError::Corrupt(format!("{table}.{name} is not base64url"))
                            })?),
                            None => None,
                        }),
                    };
                }
                q.execute(&mut *tx).await?;
                count += 1;
            }
        }
        // The name index is derived from the certificates: rebuilt, not carried.
        for line in lines.iter().filter(|l| l["table"] == "certificates") {
            let row = &line["row"];
            let (Some(serial), Some(not_after), Some(names)) = (
                row["serial"].as_str(),
                row["not_after"].as_i64(),
                row["names"].as_str(),
            ) else {
                return Err(StoreError::Corrupt(
                    "bad certificates line in the export".into(),
                ));
            };
            let names: Vec<certwright_proto::types::Identifier> = serde_json::from_str(names)
                .map_err(|e| StoreError::Corrupt(format!("certificate names: {e}")))?;
            certificate_names::insert_in(&mut *tx, serial, not_after, &names).await?;
        }
        if let Some(head) = lines.iter().find(|l| l["table"] == "audit_head") {
            let (seq, hash) = (head["row"]["seq"].as_i64(), head["row"]["hash"].as_str());
            let (Some(seq), Some(hash)) = (seq, hash) else {
                return Err(StoreError::Corrupt(
                    "bad audit_head line in the export".into(),
                ));
            };
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(seq)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
            count += 1;
        }
        let event = AuditEvent::new(&self.operator, "admin.import")
            .details(json!({ "rows": count, "backend": format!("{:?}", self.backend) }));
        audit::append(&mut *tx, &event).await?;
        if self.backend == Backend::Postgres {
            for table in ID_TABLES {
                sqlx::query(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                ))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(count)
    }
}
