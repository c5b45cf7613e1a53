//! Renew-early campaigns: the ARI "renew now" mark (`mark_renew_early`) put on every
//! unrevoked, unexpired certificate matching a filter (issuer, profile, EAB label, name
//! suffix), with the exact set it marked kept (migration 0014), so that its progress
//! counts those certificates and not whatever matches the filter later.
//!
//! The matching certificates are found with the inventory's search (`inventory_page`:
//! the expiry index walked from now, bounded pages) and marked one page at a time, each
//! page in one transaction of two set-based statements of at most [`MARK_BATCH`]
//! serials: no unbounded statement, no round trip per certificate, and the writer is
//! never held for long. The audit trail gets two entries per campaign, whatever its
//! size: `renew_campaign.start` (the operator and the filter, written with the campaign
//! row, before anything is marked) and `renew_campaign.finish` (the count); the
//! certificates themselves are in `renew_campaign_certificates`, not one entry each.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::audit::{self, AuditEvent};
use super::console::{item_from_row, CertificateState, InventoryItem, InventoryQuery};
use super::engine::columns::Columns;
use super::engine::tx::{params, Param};
use super::{Result, Store, StoreError};

/// Serials marked per statement (and per transaction).
pub const MARK_BATCH: usize = 200;
/// Waiting certificates checked for a later certificate of the same names, per progress
/// view (those replaced through ARI `replaces` are counted exactly, whatever their number).
pub const MAX_SUCCESSOR_CHECKS: usize = 2_000;

/// `$1` the campaign, `$2` … the serials (NULL for the unused ones): records which
/// certificates a campaign marks (those still unrevoked).
pub(super) static INSERT_MARKED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO renew_campaign_certificates (campaign_id, serial)
         SELECT $1, serial FROM certificates WHERE serial IN ({}) AND revoked_at IS NULL",
        placeholders(2)
    )
});

/// `$1` the campaign, `$2` … the serials: marks them (ARI window in the past).
pub(super) static MARK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE certificates SET renew_early = 1 WHERE serial IN (
         SELECT serial FROM renew_campaign_certificates WHERE campaign_id = $1 AND serial IN ({}))",
        placeholders(2)
    )
});

fn placeholders(first: usize) -> String {
    (first..first + MARK_BATCH)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which certificates a campaign asks to renew: every condition given must hold, and at
/// least one is given (`new`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignFilter {
    issuer: Option<String>,
    profile: Option<String>,
    eab_label: Option<String>,
    suffix: Option<String>,
}

impl CampaignFilter {
    /// A filter from what an operator typed (blank means no condition); `None` if no
    /// condition is left. A suffix matches every name under it, as the inventory's
    /// `.example.com` search does (`example.com`, `.example.com` and `*.example.com` are
    /// the same suffix).
    pub fn new(
        issuer: Option<&str>,
        profile: Option<&str>,
        eab_label: Option<&str>,
        suffix: Option<&str>,
    ) -> Option<Self> {
        let given = |v: Option<&str>| {
            v.map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let suffix = given(suffix).and_then(|s| {
            let bare = s
                .to_ascii_lowercase()
                .trim_start_matches("*.")
                .trim_start_matches('.')
                .trim_end_matches('.')
                .to_owned();
            (!bare.is_empty()).then(|| format!(".{bare}"))
        });
        let filter = Self {
            issuer: given(issuer),
            profile: given(profile),
            eab_label: given(eab_label),
            suffix,
        };
        let empty = filter.issuer.is_none()
            && filter.profile.is_none()
            && filter.eab_label.is_none()
            && filter.suffix.is_none();
        (!empty).then_some(filter)
    }

    /// The issuer condition.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The profile condition.
    pub fn profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }

    /// The EAB label condition.
    pub fn eab_label(&self) -> Option<&str> {
        self.eab_label.as_deref()
    }

    /// The name suffix condition (with its leading dot).
    pub fn suffix(&self) -> Option<&str> {
        self.suffix.as_deref()
    }

    /// The same search in the inventory (valid certificates at `now`), from `after`.
    pub fn inventory_query(&self, now: i64, after: Option<(i64, String)>) -> InventoryQuery {
        InventoryQuery {
            issuer: self.issuer.clone(),
            profile: self.profile.clone(),
            eab_label: self.eab_label.clone(),
            name: self.suffix.clone(),
            state: Some(CertificateState::Valid),
            after,
            limit: MARK_BATCH,
            now,
            ..Default::default()
        }
    }

    /// `issuer=…, suffix=…`, for people.
    pub fn describe(&self) -> String {
        [
            ("issuer", &self.issuer),
            ("profile", &self.profile),
            ("EAB label", &self.eab_label),
            ("suffix", &self.suffix),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// A campaign as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Campaign {
    /// Its number.
    pub id: i64,
    /// The audit actor who started it (`operator:NAME`).
    pub started_by: String,
    /// When (Unix seconds).
    pub started_at: i64,
    /// What it matched.
    pub filter: CampaignFilter,
    /// How many certificates it marked.
    pub marked: i64,
    /// When marking ended (`None` while marking, or if the process stopped meanwhile).
    pub finished_at: Option<i64>,
}

impl Campaign {
    fn from_row(row: &impl Columns) -> Result<Self> {
        Ok(Self {
            id: row.int("id")?,
            started_by: row.text("started_by")?,
            started_at: row.int("started_at")?,
            filter: row.json("filter")?,
            marked: row.int("marked")?,
            finished_at: row.opt_int("finished_at")?,
        })
    }
}

/// How far a campaign got: each certificate it marked is replaced, waiting, or ended
/// (revoked or expired without a successor).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CampaignProgress {
    /// A successor exists: an order replaced it (ARI `replaces`), or its account has a
    /// later certificate for the same names (the renewal-health rule).
    pub replaced: i64,
    /// Still valid, no successor.
    pub waiting: i64,
    /// Revoked or expired without a successor.
    pub ended: i64,
    /// Not checked for a later certificate this time (beyond
    /// [`MAX_SUCCESSOR_CHECKS`]); neither replaced through ARI.
    pub unchecked: i64,
    /// The first waiting certificates (by serial), at most the limit asked for.
    pub waiting_list: Vec<InventoryItem>,
}

impl Store {
    /// Starts a campaign: marks every unrevoked, unexpired certificate matching `filter`
    /// for early renewal (ARI), audited as this store's operator. Returns it, finished.
    pub async fn start_renew_campaign(
        &self,
        filter: &CampaignFilter,
        now: i64,
    ) -> Result<Campaign> {
        let by = self.operator.clone();
        let text = serde_json::to_string(filter)
            .map_err(|e| StoreError::Corrupt(format!("campaign filter: {e}")))?;
        let details = serde_json::json!({ "filter": filter });
        let id = self
            .write(move |tx| {
                Box::pin(async move {
                    let row = tx
                        .fetch_one(
                            "INSERT INTO renew_campaigns (started_by, started_at, filter) VALUES ($1, $2, $3) RETURNING id",
                            &params![by.to_string(), now, text],
                        )
                        .await?;
                    let id = row.int("id")?;
                    let mut details = details;
                    details["campaign"] = id.into();
                    audit::append(
                        tx,
                        &AuditEvent::new(&by, "renew_campaign.start").details(details),
                    )
                    .await?;
                    Ok(id)
                })
            })
            .await?;

        let mut marked = 0i64;
        let mut query = filter.inventory_query(now, None);
        loop {
            let page = self.inventory_page(&query).await?;
            let serials: Vec<String> = page.items.into_iter().map(|i| i.serial).collect();
            for chunk in serials.chunks(MARK_BATCH) {
                marked += self.mark_for_campaign(id, chunk).await?;
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }

        let by = self.operator.clone();
        let details = serde_json::json!({ "campaign": id, "filter": filter, "marked": marked });
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "UPDATE renew_campaigns SET marked = $1, finished_at = $2 WHERE id = $3",
                    &params![marked, now, id],
                )
                .await?;
                audit::append(
                    tx,
                    &AuditEvent::new(&by, "renew_campaign.finish").details(details),
                )
                .await?;
                Ok(())
            })
        })
        .await?;
        self.renew_campaign(id).await
    }

    /// Records and marks up to [`MARK_BATCH`] certificates for campaign `id`, in one
    /// transaction; returns how many (revoked ones meanwhile are left out).
    async fn mark_for_campaign(&self, id: i64, serials: &[String]) -> Result<i64> {
        let mut params = Vec::with_capacity(MARK_BATCH + 1);
        params.push(Param::from(id));
        params.extend(serials.iter().map(Param::from));
        params.resize(MARK_BATCH + 1, Param::Text(None));
        self.write(move |tx| {
            Box::pin(async move {
                let recorded = tx.execute(&INSERT_MARKED, &params).await?;
                tx.execute(&MARK, &params).await?;
                Ok(recorded as i64)
            })
        })
        .await
    }

    /// One campaign.
    pub async fn renew_campaign(&self, id: i64) -> Result<Campaign> {
        let row = self
            .read_optional("SELECT * FROM renew_campaigns WHERE id = $1", &params![id])
            .await?
            .ok_or(StoreError::NotFound)?;
        Campaign::from_row(&row)
    }

    /// The latest campaigns, newest first.
    pub async fn renew_campaigns(&self, limit: i64) -> Result<Vec<Campaign>> {
        self.read_all(
            "SELECT * FROM renew_campaigns ORDER BY id DESC LIMIT $1",
            &params![limit],
        )
        .await?
        .iter()
        .map(Campaign::from_row)
        .collect()
    }

    /// How far campaign `id` got at `now`, listing at most `list` waiting certificates.
    /// ARI replacements are one count; the others are walked by serial (bounded pages)
    /// and checked for a later certificate of the same names, at most `checks` (up to
    /// [`MAX_SUCCESSOR_CHECKS`]) of them.
    pub async fn renew_campaign_progress(
        &self,
        id: i64,
        now: i64,
        list: usize,
        checks: usize,
    ) -> Result<CampaignProgress> {
        let checks = checks.min(MAX_SUCCESSOR_CHECKS);
        self.renew_campaign(id).await?;
        let mut progress = CampaignProgress {
            replaced: self
                .read_optional(
                    "SELECT COUNT(*) AS n FROM renew_campaign_certificates rc JOIN certificates c ON c.serial = rc.serial
                     WHERE rc.campaign_id = $1 AND c.replaced_by_order IS NOT NULL",
                    &params![id],
                )
                .await?
                .map_or(Ok(0), |r| r.int("n"))?,
            ..Default::default()
        };
        let mut after = String::new();
        let mut checked = 0;
        loop {
            let rows = self
                .read_all(
                    "SELECT c.*, a.eab_label FROM renew_campaign_certificates rc
                     JOIN certificates c ON c.serial = rc.serial JOIN accounts a ON a.id = c.account_id
                     WHERE rc.campaign_id = $1 AND rc.serial > $2 AND c.replaced_by_order IS NULL
                     ORDER BY rc.serial LIMIT $3",
                    &params![id, &after, MARK_BATCH as i64],
                )
                .await?;
            for row in &rows {
                let item = item_from_row(row, now)?;
                after.clone_from(&item.serial);
                if checked == checks {
                    progress.unchecked += 1;
                    continue;
                }
                checked += 1;
                let later = self
                    .later_certificates_for_names(
                        item.account_id,
                        &item.names,
                        item.not_after,
                        now,
                        1,
                    )
                    .await?;
                if !later.is_empty() {
                    progress.replaced += 1;
                } else if item.state != CertificateState::Valid {
                    progress.ended += 1;
                } else {
                    progress.waiting += 1;
                    if progress.waiting_list.len() < list {
                        progress.waiting_list.push(item);
                    }
                }
            }
            if rows.len() < MARK_BATCH {
                break;
            }
        }
        Ok(progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::audit::Actor;
    use crate::store::console::tests::{account, issue, test_store};

    fn suffix(s: &str) -> CampaignFilter {
        CampaignFilter::new(None, None, None, Some(s)).unwrap()
    }

    #[test]
    fn a_filter_needs_a_condition_and_suffixes_are_normalized() {
        assert_eq!(CampaignFilter::new(None, Some(" "), Some(""), None), None);
        for s in [
            "Example.COM",
            ".example.com",
            "*.example.com",
            "example.com.",
        ] {
            assert_eq!(suffix(s).suffix(), Some(".example.com"), "{s}");
        }
        assert_eq!(CampaignFilter::new(None, None, None, Some("*.")), None);
        assert_eq!(
            CampaignFilter::new(Some("int"), None, None, Some("x.test"))
                .unwrap()
                .describe(),
            "issuer int, suffix .x.test"
        );
    }

    #[tokio::test]
    async fn a_campaign_marks_exactly_the_matching_valid_certificates_and_tracks_them() {
        let s = test_store()
            .await
            .acting_as(Actor::Operator(Some("alice".into())));
        let (a, b) = (account(&s, &[]).await, account(&s, &[]).await);
        let day = 86_400;
        let now = 10 * day;
        // More than one batch under the suffix.
        let many = MARK_BATCH + 3;
        for i in 0..many {
            issue(
                &s,
                a,
                &[&format!("h{i}.corp.example")],
                &format!("1{i:04x}"),
                now + 30 * day,
                None,
            )
            .await;
        }
        issue(
            &s,
            b,
            &["other.example", "www.corp.example"],
            "2000",
            now + 40 * day,
            None,
        )
        .await;
        issue(&s, b, &["corp.example.net"], "2001", now + 40 * day, None).await; // not under it
        issue(&s, b, &["old.corp.example"], "2002", now - day, None).await; // expired
        issue(&s, b, &["gone.corp.example"], "2003", now + day, None).await;
        assert!(s
            .revoke_certificate("2003", 1, now, &Actor::System)
            .await
            .unwrap());

        let campaign = s
            .start_renew_campaign(&suffix(".corp.example"), now)
            .await
            .unwrap();
        assert_eq!(campaign.marked, many as i64 + 1);
        assert_eq!(campaign.started_by, "operator:alice");
        assert!(campaign.finished_at.is_some());
        for serial in ["10000", "2000"] {
            assert!(s.certificate(serial).await.unwrap().renew_early, "{serial}");
        }
        for serial in ["2001", "2002", "2003"] {
            assert!(
                !s.certificate(serial).await.unwrap().renew_early,
                "{serial}"
            );
        }
        assert_eq!(
            s.renew_campaigns(10).await.unwrap(),
            std::slice::from_ref(&campaign)
        );

        // Two audit entries, whatever the count.
        let entries: Vec<_> = s
            .audit_entries(0, 0, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| {
                e.action.starts_with("renew_campaign") || e.action == "certificate.renew_early"
            })
            .collect();
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert_eq!(entries[1].actor, "operator:alice");
        let details: serde_json::Value = serde_json::from_str(&entries[1].details).unwrap();
        assert_eq!(details["marked"], many as i64 + 1);
        assert_eq!(details["filter"]["suffix"], ".corp.example");
        assert_eq!(entries[1].action, "renew_campaign.finish");

        let p = s
            .renew_campaign_progress(campaign.id, now, 5, MAX_SUCCESSOR_CHECKS)
            .await
            .unwrap();
        assert_eq!((p.replaced, p.waiting, p.ended), (0, many as i64 + 1, 0));
        assert_eq!(p.waiting_list.len(), 5);

        // One replaced through ARI, one by a later certificate for the same names, one
        // revoked: progress counts exactly these.
        issue(
            &s,
            a,
            &["h0.corp.example"],
            "3000",
            now + 90 * day,
            Some("10000"),
        )
        .await;
        issue(
            &s,
            b,
            &["www.corp.example", "other.example"],
            "3001",
            now + 90 * day,
            None,
        )
        .await;
        assert!(s
            .revoke_certificate("10001", 1, now, &Actor::System)
            .await
            .unwrap());
        // A new certificate under the suffix is not the campaign's.
        issue(&s, a, &["new.corp.example"], "3002", now + 90 * day, None).await;
        let p = s
            .renew_campaign_progress(campaign.id, now, 500, MAX_SUCCESSOR_CHECKS)
            .await
            .unwrap();
        assert_eq!(
            (p.replaced, p.waiting, p.ended, p.unchecked),
            (2, many as i64 - 2, 1, 0)
        );
        assert!(p
            .waiting_list
            .iter()
            .all(|i| i.serial != "3002" && i.serial != "10000"));

        assert!(matches!(
            s.renew_campaign_progress(campaign.id + 1, now, 5, 10).await,
            Err(StoreError::NotFound)
        ));
    }

    #[tokio::test]
    async fn a_campaign_by_eab_label_profile_or_issuer_matching_nothing_marks_nothing() {
        let s = test_store().await;
        let a = account(&s, &[]).await;
        issue(&s, a, &["a.example"], "01", i64::MAX / 2, None).await;
        for filter in [
            CampaignFilter::new(Some("other"), None, None, None),
            CampaignFilter::new(None, Some("short"), None, None),
            CampaignFilter::new(None, None, Some("team"), None),
        ] {
            let c = s.start_renew_campaign(&filter.unwrap(), 1).await.unwrap();
            assert_eq!(c.marked, 0);
        }
        assert!(!s.certificate("01").await.unwrap().renew_early);
        let c = s
            .start_renew_campaign(
                &CampaignFilter::new(Some("intermediate"), None, None, None).unwrap(),
                1,
            )
            .await
            .unwrap();
        assert_eq!(c.marked, 1);
        assert!(s.certificate("01").await.unwrap().renew_early);

        // `export`/`import` carry campaigns and their certificates.
        let target = Store::open("sqlite::memory:").await.unwrap();
        target.import(&s.export().await.unwrap()).await.unwrap();
        assert_eq!(
            target.renew_campaigns(10).await.unwrap(),
            s.renew_campaigns(10).await.unwrap()
        );
        let p = target
            .renew_campaign_progress(c.id, 1, 10, 10)
            .await
            .unwrap();
        assert_eq!(p.waiting_list.len(), 1);
    }
}
