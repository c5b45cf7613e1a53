//! The certificate inventory (`certwright-ca certs list`): every certificate the CA
//! issued, filtered in SQL.

use std::ops::ControlFlow;

use certwright_proto::types::Identifier;
use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::Row;

use super::certificate_names::NameLookup;
use super::engine::tx::{bind_sqlx, Param};
use super::{Result, Store, StoreError};

/// Which certificates to list; every filter set must hold.
#[derive(Debug, Clone, Default)]
pub struct CertificateFilter {
    /// A name the certificate covers: exact (`www.example.com`, `*.example.com`, an IP
    /// address), or a suffix when it starts with a dot (`.example.com`: every name under
    /// example.com). Looked up in the name index.
    pub name: Option<String>,
    /// Only certificates of this account id.
    pub account: Option<i64>,
    /// The EAB label of the requesting account.
    pub eab_label: Option<String>,
    /// Unexpired at `now` and expiring within this many seconds.
    pub expiring_within: Option<i64>,
    /// Only revoked (true) or only unrevoked (false) certificates.
    pub revoked: Option<bool>,
    /// Only certificates this issuer signed (e.g. a retiring one's).
    pub issuer: Option<String>,
    /// "Now", for `expiring_within`.
    pub now: i64,
}

/// One certificate in the inventory.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateSummary {
    /// Serial number (hex).
    pub serial: String,
    /// The names it covers.
    pub names: Vec<String>,
    /// Start of validity (Unix seconds).
    pub not_before: i64,
    /// End of validity (Unix seconds).
    pub not_after: i64,
    /// The account it was issued to.
    pub account_id: i64,
    /// The EAB label of that account.
    pub eab_label: Option<String>,
    /// The certificate profile it was issued with.
    pub profile: Option<String>,
    /// When it was revoked (Unix seconds).
    pub revoked_at: Option<i64>,
    /// The CRL reason code of the revocation.
    pub revocation_reason: Option<u8>,
    /// The issuer that signed it.
    pub issuer: String,
}

impl CertificateFilter {
    /// The name filter as a lookup in the name index (`certificate_names`).
    fn name_lookup(&self) -> Option<NameLookup> {
        self.name.as_deref().map(NameLookup::parse)
    }
}

impl Store {
    /// Hands each certificate matching `filter` to `each`, newest first, as the rows are
    /// read (memory stays flat however many match), until `each` breaks.
    pub async fn each_certificate(
        &self,
        filter: &CertificateFilter,
        mut each: impl FnMut(CertificateSummary) -> ControlFlow<()>,
    ) -> Result<()> {
        let mut sql = String::from(
            "SELECT c.serial, c.names, c.not_before, c.not_after, c.account_id, a.eab_label,
                    c.profile, c.revoked_at, c.revocation_reason, c.issuer
             FROM certificates c JOIN accounts a ON a.id = c.account_id WHERE 1 = 1",
        );
        // Arguments in placeholder order: `param` adds one and names its placeholder.
        let mut args: Vec<Param> = Vec::new();
        let mut param = |arg: Param| {
            args.push(arg);
            format!("${}", args.len())
        };
        // The certificates the name index holds for the name or under the suffix.
        match filter.name_lookup() {
            None => {}
            Some(NameLookup::Exact(kind, name)) => {
                let (k, n) = (param(Param::from(kind)), param(Param::from(name)));
                sql.push_str(&format!(
                    " AND c.serial IN (SELECT n.serial FROM certificate_names n WHERE n.kind = {k} AND n.name = {n})"
                ));
            }
            Some(NameLookup::Under { from, to }) => {
                let k = param(Param::from("dns"));
                let (f, t) = (param(Param::from(from)), param(Param::from(to)));
                sql.push_str(&format!(
                    " AND c.serial IN (SELECT n.serial FROM certificate_names n WHERE n.kind = {k} AND n.name >= {f} AND n.name < {t})"
                ));
            }
        }
        if let Some(account) = filter.account {
            let p = param(Param::from(account));
            sql.push_str(&format!(" AND c.account_id = {p}"));
        }
        if let Some(label) = &filter.eab_label {
            let p = param(Param::from(label));
            sql.push_str(&format!(" AND a.eab_label = {p}"));
        }
        if let Some(within) = filter.expiring_within {
            let from = param(Param::from(filter.now));
            let until = param(Param::from(filter.now.saturating_add(within)));
            sql.push_str(&format!(
                " AND c.not_after > {from} AND c.not_after <= {until}"
            ));
        }
        if let Some(issuer) = &filter.issuer {
            let p = param(Param::from(issuer));
            sql.push_str(&format!(" AND c.issuer = {p}"));
        }
        match filter.revoked {
            Some(true) => sql.push_str(" AND c.revoked_at IS NOT NULL"),
            Some(false) => sql.push_str(" AND c.revoked_at IS NULL"),
            None => {}
        }
        sql.push_str(" ORDER BY c.created_at DESC, c.serial");
        let mut rows = bind_sqlx(sqlx::query(&sql), &args).fetch(&self.reader);
        while let Some(row) = rows.try_next().await? {
            let ids: Vec<Identifier> = serde_json::from_str(&row.get::<String, _>(1))
                .map_err(|e| StoreError::Corrupt(format!("certificate names: {e}")))?;
            let names: Vec<String> = ids.into_iter().map(|i| i.value).collect();
            let flow = each(CertificateSummary {
                serial: row.get(0),
                names,
                not_before: row.get(2),
                not_after: row.get(3),
                account_id: row.get(4),
                eab_label: row.get(5),
                profile: row.get(6),
                revoked_at: row.get(7),
                revocation_reason: row.get::<Option<i64>, _>(8).map(|r| r as u8),
                issuer: row.get(9),
            });
            if flow.is_break() {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::console::tests::{account, issue, test_store};

    #[tokio::test]
    async fn the_name_filter_is_exact_or_a_suffix_through_the_name_index() {
        let s = test_store().await;
        let a = account(&s, &[]).await;
        issue(
            &s,
            a,
            &["www.example.com", "*.api.example.com"],
            "01",
            300,
            None,
        )
        .await;
        issue(&s, a, &["anexample.com", "10.0.0.1"], "02", 300, None).await;
        let serials = |name: &str| {
            let (s, name) = (s.clone(), name.to_owned());
            async move {
                let filter = CertificateFilter {
                    name: Some(name),
                    ..Default::default()
                };
                let mut out = Vec::new();
                s.each_certificate(&filter, |c| {
                    out.push(c.serial);
                    ControlFlow::Continue(())
                })
                .await
                .unwrap();
                out.sort();
                out
            }
        };
        assert_eq!(serials("www.example.com").await, ["01"]);
        assert_eq!(serials("*.api.example.com").await, ["01"]);
        assert_eq!(serials(".example.com").await, ["01"]);
        assert_eq!(serials(".api.example.com").await, ["01"]);
        assert_eq!(serials(".com").await, ["01", "02"]);
        assert_eq!(serials("10.0.0.1").await, ["02"]);
        assert!(serials("example.com").await.is_empty());
        assert!(serials(".ample.com").await.is_empty());
        assert!(serials(".other.com").await.is_empty());
    }
}
