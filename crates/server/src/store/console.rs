//! The reads of the operator console (`console`): the dashboard's counts, the inventory
//! paged by (not_after, serial) with a keyset (no OFFSET, no scan: the indexes of
//! migration 0010, and the name index of migration 0016), the later certificates of the
//! same names, renewal health and the recent attempts for a name.

use certwright_proto::types::Identifier;
use serde::Serialize;

use super::certificate_names::{self, NameLookup};
use super::engine::columns::Columns;
use super::engine::tx::{params, Param};
use super::statuses::{quoted, status_sql};
use super::{CertificateRecord, Result, Store, StoreError};
use crate::status::transitions::ORDER_BEGIN_FINALIZE;

status_sql! {
    /// Orders being finalized (the partial index `orders_by_status`).
    static ORDERS_PROCESSING = (
        "SELECT COUNT(*) AS n FROM orders WHERE status = {processing}",
        processing = quoted(ORDER_BEGIN_FINALIZE.to)
    );
}

/// The dashboard's counts at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DashboardCounts {
    /// Unexpired and unrevoked.
    pub valid: i64,
    /// Of those, expiring within 7 days.
    pub expiring_7d: i64,
    /// Of those, expiring within 30 days.
    pub expiring_30d: i64,
    /// Revoked (expired or not).
    pub revoked: i64,
    /// Orders being finalized.
    pub orders_processing: i64,
}

/// The state of a certificate at an instant, for the inventory's status filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CertificateState {
    /// Unexpired and unrevoked.
    Valid,
    /// Revoked.
    Revoked,
    /// Past its not_after, unrevoked.
    Expired,
}

impl CertificateState {
    /// The name used in URLs and exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }

    /// The state named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "valid" => Some(Self::Valid),
            "revoked" => Some(Self::Revoked),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// One inventory search. The anchor (`serial`, else `name`, else `account`, else
/// `issuer`, else none) picks the index walked; the other filters are checked on the rows
/// read.
#[derive(Debug, Clone, Default)]
pub struct InventoryQuery {
    /// Exactly this serial (lower-case hex).
    pub serial: Option<String>,
    /// Certificates of this account.
    pub account: Option<i64>,
    /// Certificates this issuer signed.
    pub issuer: Option<String>,
    /// A name the certificate covers: exact (`www.example.com`, the wildcard name
    /// `*.example.com`, an IP address), or every name under a suffix when it starts with
    /// a dot (`.example.com`). A lookup in the name index.
    pub name: Option<String>,
    /// The EAB label of the account.
    pub eab_label: Option<String>,
    /// The certificate profile.
    pub profile: Option<String>,
    /// Only certificates in this state at `now`.
    pub state: Option<CertificateState>,
    /// Start after this (not_after, serial): the previous page's `next`.
    pub after: Option<(i64, String)>,
    /// Certificates per page.
    pub limit: usize,
    /// "Now", for the state.
    pub now: i64,
}

/// One certificate of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InventoryItem {
    /// Serial (hex).
    pub serial: String,
    /// The names it covers.
    pub names: Vec<String>,
    /// Start of validity (Unix seconds).
    pub not_before: i64,
    /// End of validity (Unix seconds).
    pub not_after: i64,
    /// The account it was issued to.
    pub account_id: i64,
    /// That account's EAB label.
    pub eab_label: Option<String>,
    /// The profile it was issued with.
    pub profile: Option<String>,
    /// The issuer that signed it.
    pub issuer: String,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
    /// The order that replaced it (ARI), if any.
    pub replaced_by_order: Option<i64>,
    /// Its state at the query's `now`.
    pub state: CertificateState,
}

/// A page of the inventory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InventoryPage {
    /// The certificates, by (not_after, serial).
    pub items: Vec<InventoryItem>,
    /// Where the next page starts, if the index may hold more.
    pub next: Option<(i64, String)>,
}

/// Rows read per statement while filling a page.
const BATCH: i64 = 200;
/// Rows examined at most for one page (filters checked on rows stop there, and the page
/// says where to go on from).
pub(super) const MAX_EXAMINED: usize = 5_000;

fn names_of(row: &impl Columns) -> Result<Vec<String>> {
    let ids: Vec<Identifier> = serde_json::from_str(&row.text("names")?)
        .map_err(|e| StoreError::Corrupt(format!("certificate names: {e}")))?;
    Ok(ids.into_iter().map(|i| i.value).collect())
}

pub(super) fn item_from_row(row: &impl Columns, now: i64) -> Result<InventoryItem> {
    let not_after = row.int("not_after")?;
    let revoked_at = row.opt_int("revoked_at")?;
    let state = if revoked_at.is_some() {
        CertificateState::Revoked
    } else if not_after <= now {
        CertificateState::Expired
    } else {
        CertificateState::Valid
    };
    Ok(InventoryItem {
        serial: row.text("serial")?,
        names: names_of(row)?,
        not_before: row.int("not_before")?,
        not_after,
        account_id: row.int("account_id")?,
        eab_label: row.opt_text("eab_label")?,
        profile: row.opt_text("profile")?,
        issuer: row.text("issuer")?,
        revoked_at,
        replaced_by_order: row.opt_int("replaced_by_order")?,
        state,
    })
}

/// Whether one of `names` is what `lookup` finds in the name index.
fn names_match(lookup: &NameLookup, names: &[String]) -> bool {
    names.iter().any(|n| {
        let (kind, key) = certificate_names::key_of_value(n);
        match lookup {
            NameLookup::Exact(k, name) => *k == kind && *name == key,
            NameLookup::Under { from, to } => kind == "dns" && key >= *from && key < *to,
        }
    })
}

impl InventoryQuery {
    /// Whether `item` passes the filters that are not the anchor.
    fn keeps(&self, item: &InventoryItem) -> bool {
        let name_ok = self
            .name
            .as_deref()
            .is_none_or(|n| names_match(&NameLookup::parse(n), &item.names));
        name_ok
            && self.account.is_none_or(|a| a == item.account_id)
            && self.issuer.as_ref().is_none_or(|i| *i == item.issuer)
            && self.serial.as_ref().is_none_or(|s| *s == item.serial)
            && self
                .eab_label
                .as_ref()
                .is_none_or(|l| item.eab_label.as_ref() == Some(l))
            && self
                .profile
                .as_ref()
                .is_none_or(|p| item.profile.as_ref() == Some(p))
            && self.state.is_none_or(|s| s == item.state)
    }
}

/// One authorization for a name, with the order that holds it (renewal health's "last
/// orders and failures").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameAttempt {
    /// The authorization.
    pub authorization_id: i64,
    /// The identifier it was for (without `*.`).
    pub name: String,
    /// A wildcard authorization.
    pub wildcard: bool,
    /// The account that asked.
    pub account_id: i64,
    /// The authorization's status (`invalid`: its validation failed).
    pub status: String,
    /// When it was created (Unix seconds).
    pub created_at: i64,
    /// The newest order that holds it, and that order's status.
    pub order: Option<(i64, String)>,
}

/// A certificate that expires with no successor yet, with its record (for its ARI
/// window).
#[derive(Debug, Clone)]
pub struct Unrenewed {
    /// The certificate (DER and all).
    pub record: CertificateRecord,
    /// The certificate as the inventory shows it.
    pub item: InventoryItem,
}

/// A page of [`Store::unrenewed_certificates`].
#[derive(Debug, Clone, Default)]
pub struct UnrenewedPage {
    /// The certificates without a successor, soonest expiry first.
    pub items: Vec<Unrenewed>,
    /// Where to go on from when the walk stopped at its bound.
    pub next: Option<(i64, String)>,
}

impl Store {
    /// The dashboard's counts at `now`. Each is a range of a covering index, never a
    /// read of the rows: unrevoked certificates expiring in a range are those of the
    /// expiry index less the revoked ones (the partial index
    /// `certificates_revoked_by_expiry`, migration 0015).
    pub async fn dashboard_counts(&self, now: i64) -> Result<DashboardCounts> {
        let count = |row: Option<super::engine::tx::Row>| -> Result<i64> {
            row.map_or(Ok(0), |r| r.int("n"))
        };
        let until = |days: i64| now.saturating_add(days * 86_400);
        let unrevoked = |from: i64, to: i64| async move {
            let all = count(
                self.read_optional(
                    "SELECT COUNT(*) AS n FROM certificates WHERE not_after > $1 AND not_after <= $2",
                    &params![from, to],
                )
                .await?,
            )?;
            let revoked = count(
                self.read_optional(
                    "SELECT COUNT(*) AS n FROM certificates
                     WHERE revoked_at IS NOT NULL AND not_after > $1 AND not_after <= $2",
                    &params![from, to],
                )
                .await?,
            )?;
            Result::Ok(all - revoked)
        };
        Ok(DashboardCounts {
            valid: unrevoked(now, i64::MAX).await?,
            expiring_7d: unrevoked(now, until(7)).await?,
            expiring_30d: unrevoked(now, until(30)).await?,
            revoked: count(
                self.read_optional(
                    "SELECT COUNT(*) AS n FROM certificates WHERE revoked_at IS NOT NULL",
                    &[],
                )
                .await?,
            )?,
            orders_processing: count(self.read_optional(&ORDERS_PROCESSING, &[]).await?)?,
        })
    }

    /// One page of the inventory, by (not_after, serial) from `query.after`.
    pub async fn inventory_page(&self, query: &InventoryQuery) -> Result<InventoryPage> {
        let limit = query.limit.clamp(1, 1000);
        if let Some(serial) = &query.serial {
            let rows = self
                .read_all(
                    "SELECT c.*, a.eab_label FROM certificates c JOIN accounts a ON a.id = c.account_id WHERE c.serial = $1",
                    &params![serial.to_ascii_lowercase()],
                )
                .await?;
            let mut items = Vec::new();
            for row in &rows {
                let item = item_from_row(row, query.now)?;
                if query.keeps(&item) {
                    items.push(item);
                }
            }
            return Ok(InventoryPage { items, next: None });
        }
        // Valid certificates all expire after now: start there.
        let (mut after_at, mut after_serial) =
            query.after.clone().unwrap_or((i64::MIN, String::new()));
        if query.state == Some(CertificateState::Valid) && after_at < query.now {
            (after_at, after_serial) = (query.now, String::new());
        }
        let mut page = InventoryPage::default();
        let mut examined = 0;
        loop {
            let lookup = query.name.as_deref().map(NameLookup::parse);
            let rows = match (lookup, query.account, &query.issuer) {
                (Some(NameLookup::Exact(kind, name)), _, _) => {
                    self.read_all(
                        "SELECT c.*, a.eab_label FROM certificate_names n
                         JOIN certificates c ON c.serial = n.serial JOIN accounts a ON a.id = c.account_id
                         WHERE n.kind = $1 AND n.name = $2 AND (n.not_after, n.serial) > ($3, $4)
                         ORDER BY n.not_after, n.serial LIMIT $5",
                        &[Param::from(kind), Param::from(name), Param::from(after_at), Param::from(&after_serial), Param::from(BATCH)],
                    )
                    .await?
                }
                // A certificate with several names under the suffix is one row (DISTINCT).
                (Some(NameLookup::Under { from, to }), _, _) => {
                    self.read_all(
                        "SELECT c.*, a.eab_label FROM (SELECT DISTINCT n.not_after, n.serial FROM certificate_names n
                         WHERE n.kind = $1 AND n.name >= $2 AND n.name < $3 AND (n.not_after, n.serial) > ($4, $5)
                         ORDER BY n.not_after, n.serial LIMIT $6) m
                         JOIN certificates c ON c.serial = m.serial JOIN accounts a ON a.id = c.account_id
                         ORDER BY m.not_after, m.serial",
                        &[Param::from("dns"), Param::from(from), Param::from(to), Param::from(after_at), Param::from(&after_serial), Param::from(BATCH)],
                    )
                    .await?
                }
                (None, Some(account), _) => {
                    self.read_all(
                        "SELECT c.*, a.eab_label FROM certificates c JOIN accounts a ON a.id = c.account_id
                         WHERE c.account_id = $1 AND (c.not_after, c.serial) > ($2, $3)
                         ORDER BY c.not_after, c.serial LIMIT $4",
                        &[Param::from(account), Param::from(after_at), Param::from(&after_serial), Param::from(BATCH)],
                    )
                    .await?
                }
                (None, None, Some(issuer)) => {
                    self.read_all(
                        "SELECT c.*, a.eab_label FROM certificates c JOIN accounts a ON a.id = c.account_id
                         WHERE c.issuer = $1 AND (c.not_after, c.serial) > ($2, $3)
                         ORDER BY c.not_after, c.serial LIMIT $4",
                        &[Param::from(issuer), Param::from(after_at), Param::from(&after_serial), Param::from(BATCH)],
                    )
                    .await?
                }
                (None, None, None) => {
                    self.read_all(
                        "SELECT c.*, a.eab_label FROM certificates c JOIN accounts a ON a.id = c.account_id
                         WHERE (c.not_after, c.serial) > ($1, $2)
                         ORDER BY c.not_after, c.serial LIMIT $3",
                        &params![after_at, &after_serial, BATCH],
                    )
                    .await?
                }
            };
            let full_batch = rows.len() as i64 == BATCH;
            for row in &rows {
                let item = item_from_row(row, query.now)?;
                examined += 1;
                (after_at, after_serial) = (item.not_after, item.serial.clone());
                // Expired certificates all come before valid ones: none after this one.
                if query.state == Some(CertificateState::Expired) && item.not_after > query.now {
                    return Ok(page);
                }
                if query.keeps(&item) {
                    page.items.push(item);
                    if page.items.len() == limit {
                        page.next = Some((after_at, after_serial));
                        return Ok(page);
                    }
                }
                if examined >= MAX_EXAMINED {
                    page.next = Some((after_at, after_serial));
                    return Ok(page);
                }
            }
            if !full_batch {
                return Ok(page);
            }
        }
    }

    /// Certificates of `account` expiring after `not_after` that name exactly `names`
    /// (in any order): the later certificates of the same names, at most `limit`. The
    /// first name's entries in the name index are read (at most 5,000).
    pub async fn later_certificates_for_names(
        &self,
        account: i64,
        names: &[String],
        not_after: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<InventoryItem>> {
        let Some(first) = names.first() else {
            return Ok(Vec::new());
        };
        let normal = |names: &[String]| {
            let mut keys: Vec<_> = names
                .iter()
                .map(|n| certificate_names::key_of_value(n))
                .collect();
            keys.sort();
            keys.dedup();
            keys
        };
        let wanted = normal(names);
        let (kind, key) = certificate_names::key_of_value(first);
        let rows = self
            .read_all(
                "SELECT c.*, a.eab_label FROM certificate_names n
                 JOIN certificates c ON c.serial = n.serial JOIN accounts a ON a.id = c.account_id
                 WHERE n.kind = $1 AND n.name = $2 AND n.not_after > $3 AND c.account_id = $4
                 ORDER BY n.not_after, n.serial LIMIT $5",
                &params![kind, key, not_after, account, MAX_EXAMINED as i64],
            )
            .await?;
        let mut out = Vec::new();
        for row in &rows {
            let item = item_from_row(row, now)?;
            if normal(&item.names) == wanted {
                out.push(item);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Whether `item` has a later certificate of its account for the same names.
    async fn renewed(&self, item: &InventoryItem, now: i64) -> Result<bool> {
        let later = self
            .later_certificates_for_names(item.account_id, &item.names, item.not_after, now, 1)
            .await?;
        Ok(!later.is_empty())
    }

    /// Unrevoked certificates expiring within (now, until] that have no successor: no
    /// order replaced them (ARI `replaces`) and their account has no later certificate
    /// for the same names. At most `limit`, soonest first.
    pub async fn renewal_at_risk(
        &self,
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<InventoryItem>> {
        let rows = self
            .read_all(
                "SELECT c.*, a.eab_label FROM certificates c JOIN accounts a ON a.id = c.account_id
                 WHERE c.not_after > $1 AND c.not_after <= $2 AND c.revoked_at IS NULL
                 AND c.replaced_by_order IS NULL ORDER BY c.not_after, c.serial LIMIT $3",
                &params![now, until, MAX_EXAMINED as i64],
            )
            .await?;
        let mut out = Vec::new();
        for row in &rows {
            let item = item_from_row(row, now)?;
            if !self.renewed(&item, now).await? {
                out.push(item);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Unexpired, unrevoked certificates with no successor (the renewal-health rule),
    /// by (not_after, serial) after `after` (default: from `now`), examining at most
    /// `examine` certificates; `next` says where to go on from when it stopped there.
    /// The ARI view checks each one's window.
    pub async fn unrenewed_certificates(
        &self,
        now: i64,
        after: Option<(i64, String)>,
        examine: usize,
    ) -> Result<UnrenewedPage> {
        let examine = examine.clamp(1, MAX_EXAMINED);
        let (after_at, after_serial) = match after {
            Some((at, serial)) if at >= now => (at, serial),
            _ => (now, String::new()),
        };
        let rows = self
            .read_all(
                "SELECT c.*, a.eab_label FROM certificates c JOIN accounts a ON a.id = c.account_id
                 WHERE (c.not_after, c.serial) > ($1, $2) AND c.revoked_at IS NULL
                 AND c.replaced_by_order IS NULL ORDER BY c.not_after, c.serial LIMIT $3",
                &params![after_at, &after_serial, examine as i64],
            )
            .await?;
        let mut page = UnrenewedPage::default();
        if rows.len() == examine {
            let last = rows.last().expect("examine >= 1");
            page.next = Some((last.int("not_after")?, last.text("serial")?));
        }
        for row in &rows {
            let item = item_from_row(row, now)?;
            if !self.renewed(&item, now).await? {
                let record = CertificateRecord::from_row(row)?;
                page.items.push(Unrenewed { record, item });
            }
        }
        Ok(page)
    }

    /// The latest `limit` (at most 20) authorizations for `name` (a DNS name or address;
    /// a leading `*.` is dropped), of every account, newest first, each with the newest
    /// order that holds it: the last orders and failed validations for a name.
    pub async fn recent_attempts_for_name(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<NameAttempt>> {
        let name = name.trim().trim_start_matches("*.").to_ascii_lowercase();
        let rows = self
            .read_all(
                "SELECT z.id, z.identifier_value, z.wildcard, z.account_id, z.status, z.created_at,
                        (SELECT MAX(l.order_id) FROM order_authorizations l WHERE l.authorization_id = z.id) AS order_id
                 FROM authorizations z WHERE z.identifier_value = $1 ORDER BY z.id DESC LIMIT $2",
                &params![name, limit.clamp(1, 20) as i64],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let order = match row.opt_int("order_id")? {
                Some(id) => self
                    .read_optional("SELECT status FROM orders WHERE id = $1", &params![id])
                    .await?
                    .map(|o| o.text("status").map(|s| (id, s)))
                    .transpose()?,
                None => None,
            };
            out.push(NameAttempt {
                authorization_id: row.int("id")?,
                name: row.text("identifier_value")?,
                wildcard: row.flag("wildcard")?,
                account_id: row.int("account_id")?,
                status: row.text("status")?,
                created_at: row.int("created_at")?,
                order,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::{AccountId, NewAuthorization, NewCertificate, NewOrderRecord};
    use certwright_proto::types::ChallengeType;
    use certwright_proto::{AccountKey, KeyType};

    /// A challenge of a new order of `account` for DNS name `name`, with `token`, whose
    /// validation has started (never expiring, so tests may finish it at any time).
    pub(crate) async fn started_challenge(
        s: &Store,
        account: AccountId,
        name: &str,
        token: &str,
    ) -> crate::store::ChallengeId {
        let order = s
            .create_order(&NewOrderRecord {
                account_id: account,
                identifiers: vec![Identifier::dns(name)],
                expires: 1 << 40,
                not_before: None,
                not_after: None,
                authorizations: vec![NewAuthorization::Create {
                    identifier: Identifier::dns(name),
                    wildcard: false,
                    expires: 1 << 40,
                    challenges: vec![(ChallengeType::Http01, token.to_owned())],
                }],
                now: 1,
                profile: None,
                replaces: None,
            })
            .await
            .unwrap();
        let authz = s.authorization(order.authorization_ids[0]).await.unwrap();
        let challenge = authz.challenges[0].id;
        assert!(s.start_validation(challenge, 1 << 40).await.unwrap());
        challenge
    }

    /// Stores a certificate `serial` for `names` expiring at `not_after`, issued to
    /// `account` through an order (that `replaces` another serial, if given).
    pub(crate) async fn issue(
        s: &Store,
        account: AccountId,
        names: &[&str],
        serial: &str,
        not_after: i64,
        replaces: Option<&str>,
    ) {
        issue_valid(s, account, names, serial, (1, not_after), replaces).await
    }

    /// [`issue`] with its validity (not_before, not_after).
    pub(crate) async fn issue_valid(
        s: &Store,
        account: AccountId,
        names: &[&str],
        serial: &str,
        (not_before, not_after): (i64, i64),
        replaces: Option<&str>,
    ) {
        // An address is an IP identifier, anything else a DNS name.
        let ids: Vec<Identifier> = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(_) => Identifier::ip(*n),
                Err(_) => Identifier::dns(*n),
            })
            .collect();
        let order = s
            .create_order(&NewOrderRecord {
                account_id: account,
                identifiers: ids.clone(),
                expires: 100,
                not_before: None,
                not_after: None,
                authorizations: vec![NewAuthorization::Create {
                    identifier: ids[0].clone(),
                    wildcard: false,
                    expires: 100,
                    challenges: vec![(ChallengeType::Http01, format!("tok{serial}"))],
                }],
                now: 1,
                profile: None,
                replaces: replaces.map(|r| (format!("aki.{r}"), r.to_owned())),
            })
            .await
            .unwrap();
        assert!(s.begin_finalize(order.id, &[0x30, 0], 50).await.unwrap());
        s.complete_order(
            order.id,
            &NewCertificate {
                serial: serial.into(),
                account_id: account,
                der: vec![0x30, 0x00],
                chain_pem: "-----BEGIN CERTIFICATE-----\n".into(),
                names: ids,
                not_before,
                not_after,
                created_at: 2,
                profile: None,
                key_type: "ECDSA P-256".into(),
                issuer: "intermediate".into(),
            },
        )
        .await
        .unwrap();
    }

    /// An empty store: in-memory SQLite, or a fresh PostgreSQL database when the suite
    /// runs on it (`CERTWRIGHT_TEST_BACKEND=postgres`, as `scripts/test` does).
    pub(crate) async fn test_store() -> Store {
        match postgres_store().await {
            Some(store) => store,
            None => Store::open("sqlite::memory:").await.unwrap(),
        }
    }

    /// A store on a fresh PostgreSQL database when the suite runs on PostgreSQL
    /// (`CERTWRIGHT_TEST_BACKEND=postgres`, as `scripts/test` does), for tests of what
    /// only PostgreSQL runs; `None` otherwise.
    pub(crate) async fn postgres_store() -> Option<Store> {
        if std::env::var("CERTWRIGHT_TEST_BACKEND").as_deref() != Ok("postgres") {
            return None;
        }
        let url = certwright_testkit::peers::postgres::create_database().await;
        Some(Store::open(&url).await.unwrap())
    }

    pub(crate) async fn account(s: &Store, contact: &[&str]) -> AccountId {
        let jwk = AccountKey::generate(KeyType::EcP256).unwrap().jwk();
        let contact: Vec<String> = contact.iter().map(|c| (*c).to_owned()).collect();
        s.create_account(&jwk, &contact, true, 1).await.unwrap().id
    }

    #[tokio::test]
    async fn the_inventory_pages_by_expiry_with_a_keyset() {
        let s = test_store().await;
        let (a, b) = (account(&s, &[]).await, account(&s, &[]).await);
        // Two with the same expiry: the serial breaks the tie.
        issue(&s, a, &["x.example"], "05", 500, None).await;
        issue(&s, b, &["y.example"], "04", 500, None).await;
        issue(&s, a, &["z.test"], "01", 300, None).await;
        issue(&s, b, &["w.example"], "09", 100, None).await;
        let mut q = InventoryQuery {
            limit: 2,
            now: 200,
            ..Default::default()
        };
        let serials =
            |p: &InventoryPage| p.items.iter().map(|i| i.serial.clone()).collect::<Vec<_>>();
        let p1 = s.inventory_page(&q).await.unwrap();
        assert_eq!(serials(&p1), ["09", "01"]);
        assert_eq!(p1.items[0].state, CertificateState::Expired);
        q.after = p1.next.clone();
        let p2 = s.inventory_page(&q).await.unwrap();
        assert_eq!(serials(&p2), ["04", "05"]);
        q.after = p2.next.clone();
        assert!(s.inventory_page(&q).await.unwrap().items.is_empty());

        let search = |f: fn(&mut InventoryQuery)| {
            let mut q = InventoryQuery {
                limit: 10,
                now: 200,
                ..Default::default()
            };
            f(&mut q);
            q
        };
        let p = s
            .inventory_page(&search(|q| q.account = Some(1)))
            .await
            .unwrap();
        assert_eq!(serials(&p), ["01", "05"]);
        let p = s
            .inventory_page(&search(|q| q.name = Some(".example".into())))
            .await
            .unwrap();
        assert_eq!(serials(&p), ["09", "04", "05"]);
        let p = s
            .inventory_page(&search(|q| q.name = Some("z.test".into())))
            .await
            .unwrap();
        assert_eq!(serials(&p), ["01"]);
        let p = s
            .inventory_page(&search(|q| q.state = Some(CertificateState::Valid)))
            .await
            .unwrap();
        assert_eq!(serials(&p), ["01", "04", "05"]);
        let p = s
            .inventory_page(&search(|q| q.state = Some(CertificateState::Expired)))
            .await
            .unwrap();
        assert_eq!(serials(&p), ["09"]);
        let p = s
            .inventory_page(&search(|q| q.serial = Some("04".into())))
            .await
            .unwrap();
        assert_eq!(serials(&p), ["04"]);
        let p = s
            .inventory_page(&search(|q| q.issuer = Some("other".into())))
            .await
            .unwrap();
        assert!(p.items.is_empty());

        let counts = s.dashboard_counts(200).await.unwrap();
        assert_eq!(
            (counts.valid, counts.revoked, counts.orders_processing),
            (3, 0, 0)
        );
    }

    #[tokio::test]
    async fn at_risk_certificates_have_no_successor() {
        let s = test_store().await;
        let a = account(&s, &[]).await;
        let day = 86_400;
        // Renewed by a later certificate for the same names (in another order).
        issue(&s, a, &["a.example", "b.example"], "01", 10 * day, None).await;
        issue(&s, a, &["b.example", "a.example"], "02", 90 * day, None).await;
        // Renewed through ARI `replaces`.
        issue(&s, a, &["c.example"], "03", 10 * day, None).await;
        issue(
            &s,
            a,
            &["c.example", "d.example"],
            "04",
            90 * day,
            Some("03"),
        )
        .await;
        // Not renewed: only a certificate for a subset of its names came later.
        issue(&s, a, &["e.example", "f.example"], "05", 12 * day, None).await;
        issue(&s, a, &["e.example"], "06", 90 * day, None).await;
        let risky: Vec<String> = s
            .renewal_at_risk(0, 30 * day, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.serial)
            .collect();
        assert_eq!(risky, ["05"]);
        let later = s
            .later_certificates_for_names(
                a.0,
                &["a.example".into(), "b.example".into()],
                10 * day,
                0,
                5,
            )
            .await
            .unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].serial, "02");
    }

    fn serials_of(page: &InventoryPage) -> Vec<String> {
        page.items.iter().map(|i| i.serial.clone()).collect()
    }

    /// The serials an inventory search for `name` finds, pages of `limit` followed to
    /// the end.
    async fn by_name(s: &Store, name: &str, limit: usize) -> Vec<String> {
        let mut q = InventoryQuery {
            name: Some(name.into()),
            limit,
            now: 0,
            ..Default::default()
        };
        let mut out = Vec::new();
        for _ in 0..20 {
            let page = s.inventory_page(&q).await.unwrap();
            out.extend(serials_of(&page));
            match page.next {
                Some(next) => q.after = Some(next),
                None => return out,
            }
        }
        panic!("no end to the pages of {name}");
    }

    #[tokio::test]
    async fn name_searches_are_lookups_in_the_name_index() {
        let s = test_store().await;
        let (a, b) = (account(&s, &[]).await, account(&s, &[]).await);
        issue(&s, a, &["www.example.com", "example.com"], "01", 300, None).await;
        issue(&s, b, &["*.example.com"], "02", 200, None).await;
        issue(
            &s,
            a,
            &["a.b.example.com", "c.example.com"],
            "03",
            100,
            None,
        )
        .await;
        issue(
            &s,
            b,
            &["example.com.evil", "anexample.com"],
            "04",
            400,
            None,
        )
        .await;
        issue(&s, a, &["10.0.0.1", "2001:db8::1"], "05", 500, None).await;
        issue(&s, b, &["WWW.Example.COM"], "06", 300, None).await;

        assert_eq!(by_name(&s, "www.example.com", 10).await, ["01", "06"]);
        assert_eq!(by_name(&s, "WWW.EXAMPLE.com", 10).await, ["01", "06"]);
        assert_eq!(by_name(&s, "example.com", 10).await, ["01"]);
        // The wildcard is a name of its own, not a pattern.
        assert_eq!(by_name(&s, "*.example.com", 10).await, ["02"]);
        assert!(by_name(&s, "x.example.com", 10).await.is_empty());
        // Every name under the suffix, once per certificate, by expiry; not example.com
        // itself (01 is there for www), not a partial label, not a longer TLD.
        assert_eq!(
            by_name(&s, ".example.com", 10).await,
            ["03", "02", "01", "06"]
        );
        assert_eq!(
            by_name(&s, ".example.com", 1).await,
            ["03", "02", "01", "06"]
        );
        assert!(by_name(&s, ".ample.com", 10).await.is_empty());
        assert_eq!(by_name(&s, ".b.example.com", 10).await, ["03"]);
        assert_eq!(
            by_name(&s, ".com", 10).await,
            ["03", "02", "01", "06", "04"]
        );
        assert_eq!(by_name(&s, ".evil", 10).await, ["04"]);
        // Addresses: exact, in any spelling of the same address.
        assert_eq!(by_name(&s, "10.0.0.1", 10).await, ["05"]);
        assert_eq!(by_name(&s, "2001:DB8:0::1", 10).await, ["05"]);
        assert!(by_name(&s, "10.0.0.2", 10).await.is_empty());
        // The other filters still apply to what the index finds.
        let q = InventoryQuery {
            name: Some(".example.com".into()),
            account: Some(b.0),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(
            serials_of(&s.inventory_page(&q).await.unwrap()),
            ["02", "06"]
        );
        let q = InventoryQuery {
            name: Some(".example.com".into()),
            state: Some(CertificateState::Valid),
            now: 250,
            limit: 10,
            ..Default::default()
        };
        assert_eq!(
            serials_of(&s.inventory_page(&q).await.unwrap()),
            ["01", "06"]
        );
        let q = InventoryQuery {
            name: Some("www.example.com".into()),
            serial: Some("06".into()),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(serials_of(&s.inventory_page(&q).await.unwrap()), ["06"]);
    }

    #[tokio::test]
    async fn the_name_index_is_rebuilt_on_import() {
        let s = test_store().await;
        let a = account(&s, &[]).await;
        issue(&s, a, &["www.example.com", "10.0.0.1"], "01", 300, None).await;
        issue(&s, a, &["*.example.com"], "02", 200, None).await;
        let lines = s.export().await.unwrap();
        assert!(
            lines.iter().all(|l| l["table"] != "certificate_names"),
            "the derived index is not exported"
        );
        let target = test_store().await;
        target.import(&lines).await.unwrap();
        assert_eq!(by_name(&target, "www.example.com", 10).await, ["01"]);
        assert_eq!(by_name(&target, "10.0.0.1", 10).await, ["01"]);
        assert_eq!(by_name(&target, ".example.com", 10).await, ["02", "01"]);
        assert_eq!(
            s.snapshot().await.unwrap(),
            target.snapshot().await.unwrap()
        );
    }

    #[tokio::test]
    async fn unrenewed_certificates_page_from_now_without_successors() {
        let s = test_store().await;
        let a = account(&s, &[]).await;
        issue(&s, a, &["gone.example"], "00", 50, None).await;
        issue(&s, a, &["a.example"], "01", 200, None).await;
        issue(&s, a, &["a.example"], "02", 900, None).await;
        issue(&s, a, &["b.example"], "03", 300, None).await;
        issue(&s, a, &["c.example"], "04", 400, None).await;
        issue(&s, a, &["c.example", "d.example"], "05", 900, Some("04")).await;
        let serials = |p: &UnrenewedPage| {
            p.items
                .iter()
                .map(|u| u.item.serial.clone())
                .collect::<Vec<_>>()
        };
        // 00 expired, 01 renewed by 02, 04 replaced through ARI.
        let page = s.unrenewed_certificates(100, None, 10).await.unwrap();
        assert_eq!(serials(&page), ["03", "02", "05"]);
        assert!(page.next.is_none());
        assert_eq!(page.items[0].record.not_after, 300);
        // Bounded: two examined (01 and 03), then where to go on from.
        let page = s.unrenewed_certificates(100, None, 2).await.unwrap();
        assert_eq!(serials(&page), ["03"]);
        let next = page.next.clone().unwrap();
        assert_eq!(next, (300, "03".to_owned()));
        let page = s.unrenewed_certificates(100, Some(next), 2).await.unwrap();
        assert_eq!(serials(&page), ["02", "05"]);
    }

    #[tokio::test]
    async fn recent_attempts_for_a_name_show_orders_and_failures() {
        let s = test_store().await;
        let (a, b) = (account(&s, &[]).await, account(&s, &[]).await);
        issue(&s, a, &["www.example.com"], "01", 300, None).await;
        // A failed validation of another account for the same name.
        let challenge = started_challenge(&s, b, "www.example.com", "tokfail").await;
        let problem =
            certwright_proto::Problem::new(certwright_proto::ProblemType::Connection, "refused");
        assert!(s
            .finish_validation(
                challenge,
                Some(&problem),
                &serde_json::json!({}),
                &serde_json::json!({}),
                6
            )
            .await
            .unwrap());

        let attempts = s
            .recent_attempts_for_name("*.WWW.example.com", 5)
            .await
            .unwrap();
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].account_id, b.0);
        assert_eq!(attempts[0].status, "invalid");
        // b's one order holds the failed authorization.
        let b_orders = s.account_order_ids(b, 0, 10).await.unwrap();
        assert_eq!(b_orders.len(), 1);
        assert_eq!(attempts[0].order.as_ref().unwrap().0, b_orders[0].0);
        assert_eq!(attempts[1].account_id, a.0);
        assert_eq!(attempts[1].order.as_ref().unwrap().1, "valid");
        assert_eq!(
            s.recent_attempts_for_name("www.example.com", 1)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(s
            .recent_attempts_for_name("other.example", 5)
            .await
            .unwrap()
            .is_empty());
    }
}
