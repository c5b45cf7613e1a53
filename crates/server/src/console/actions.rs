//! Operator actions beyond one certificate: renew-early campaigns, revoking EAB keys,
//! deactivating accounts (admins only; every one audited with the operator's name), and
//! the account page they start from.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};

use super::views::{certificate_table, layout};
use super::{parse_form, Console, Page, Refusal};
use crate::clock::rfc3339;
use crate::store::campaigns::{Campaign, CampaignFilter, CampaignProgress};
use crate::store::operators::{OperatorRole, OperatorSession};
use crate::store::{AccountId, StoreError};
use certwright_proto::types::AccountStatus;

/// Campaigns listed.
const CAMPAIGNS_LISTED: i64 = 20;
/// Waiting certificates listed on a campaign's page.
const WAITING_LISTED: usize = 200;
/// Successor checks per campaign on the list (its page checks up to
/// `MAX_SUCCESSOR_CHECKS`).
const LIST_CHECKS: usize = 200;
/// Orders and certificates shown on an account's page.
const ACCOUNT_ROWS: usize = 20;

/// This module's routes.
pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/console/campaigns", get(campaigns).post(start_campaign))
        .route("/console/campaigns/{id}", get(campaign))
        .route("/console/eab/{kid}/revoke", post(revoke_eab_key))
        .route("/console/accounts/{id}", get(account))
        .route(
            "/console/accounts/{id}/deactivate",
            post(deactivate_account),
        )
}

fn redirect(to: String) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

fn is_admin(session: &OperatorSession) -> bool {
    session.role == OperatorRole::Admin
}

/// A number in a path, else 404.
fn id_in_path(text: &str) -> Result<i64, Refusal> {
    text.parse()
        .map_err(|_| Refusal::Store(StoreError::NotFound))
}

async fn campaigns(State(console): State<Console>, headers: HeaderMap) -> Page {
    let session = console.page_session(&headers).await?;
    let now = console.clock.now();
    let mut listed = Vec::new();
    for c in console.store.renew_campaigns(CAMPAIGNS_LISTED).await? {
        let progress = console
            .store
            .renew_campaign_progress(c.id, now, 0, LIST_CHECKS)
            .await?;
        listed.push((c, progress));
    }
    Ok(layout(
        "Renew-early campaigns",
        Some(&session),
        html! {
            p { "A campaign asks the holders of every valid certificate matching a filter to renew now: "
                "ARI (RFC 9773) then gives those certificates a renewal window in the past, and "
                "ARI-aware clients renew on their next check. Each campaign keeps the exact set it marked." }
            @if is_admin(&session) {
                form.search method="post" action="/console/campaigns" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    label { "Name suffix (.example.com)" input name="suffix"; }
                    label { "Profile" input name="profile"; }
                    label { "Issuer" input name="issuer"; }
                    label { "EAB label" input name="eab_label"; }
                    button type="submit" { "Start campaign" }
                }
                p.hint { "Every condition given must hold; at least one is needed. "
                    "The inventory's search with the same fields (and state valid) shows what a campaign would mark." }
            }
            @if listed.is_empty() { p { "No campaign yet." } }
            @else {
                div.scroll { table {
                    thead { tr { th { "#" } th { "Started" } th { "By" } th { "Filter" } th { "Marked" } th { "Replaced" } th { "Waiting" } } }
                    tbody {
                        @for (c, p) in &listed {
                            tr {
                                td { a href={ "/console/campaigns/" (c.id) } { (c.id) } }
                                td { (rfc3339(c.started_at)) }
                                td { (c.started_by) }
                                td { (c.filter.describe()) }
                                td { (c.marked) @if c.finished_at.is_none() { " (unfinished)" } }
                                td { (p.replaced) }
                                td { (p.waiting) @if p.unchecked > 0 { " (+" (p.unchecked) " not checked)" } }
                            }
                        }
                    }
                } }
            }
        },
    ))
}

async fn start_campaign(State(console): State<Console>, headers: HeaderMap, body: Bytes) -> Page {
    let form = parse_form(&body);
    let (session, store) = console.admin_session(&headers, &form).await?;
    let field = |k: &str| form.get(k).map(String::as_str);
    let filter = CampaignFilter::new(
        field("issuer"),
        field("profile"),
        field("eab_label"),
        field("suffix"),
    )
    .ok_or(Refusal::Status(
        StatusCode::BAD_REQUEST,
        "Give at least one condition: a name suffix, a profile, an issuer or an EAB label.",
    ))?;
    let campaign = store
        .start_renew_campaign(&filter, console.clock.now())
        .await?;
    tracing::info!(campaign = campaign.id, operator = %session.operator, filter = %filter.describe(), marked = campaign.marked, "console: renew-early campaign");
    Ok(redirect(format!("/console/campaigns/{}", campaign.id)))
}

async fn campaign(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Page {
    let session = console.page_session(&headers).await?;
    let id = id_in_path(&id)?;
    let c = console.store.renew_campaign(id).await?;
    let progress = console
        .store
        .renew_campaign_progress(
            id,
            console.clock.now(),
            WAITING_LISTED,
            crate::store::campaigns::MAX_SUCCESSOR_CHECKS,
        )
        .await?;
    Ok(campaign_view(&session, &c, &progress))
}

fn campaign_view(session: &OperatorSession, c: &Campaign, p: &CampaignProgress) -> Response {
    let search: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            [
                ("name", c.filter.suffix()),
                ("profile", c.filter.profile()),
                ("issuer", c.filter.issuer()),
                ("eab_label", c.filter.eab_label()),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v))),
        )
        .finish();
    layout(
        &format!("Campaign {}", c.id),
        Some(session),
        html! {
            dl {
                dt { "Started" } dd { (rfc3339(c.started_at)) " by " (c.started_by) }
                dt { "Filter" } dd { (c.filter.describe()) " — "
                    a href={ "/console/certificates?" (search) } { "the same search in the inventory" } }
                dt { "Marked" } dd { (c.marked) " certificate(s)"
                    @if c.finished_at.is_none() { " so far (marking did not finish)" } }
            }
            p.progress {
                strong.replaced { (p.replaced) " of " (c.marked) " replaced" }
                ", " (p.waiting) " waiting"
                @if p.ended > 0 { ", " (p.ended) " revoked or expired without a successor" }
                @if p.unchecked > 0 { ", " (p.unchecked) " not checked for a later certificate this time" }
            }
            @if c.marked > 0 {
                progress max=(c.marked) value=(p.replaced) { (p.replaced) " of " (c.marked) }
            }
            p.hint { "Replaced: an order replaced it (ARI replaces), or its account has a later certificate for the same names." }
            h2 { "Waiting" }
            @if p.waiting_list.is_empty() { p { "None." } }
            @else {
                (certificate_table(&p.waiting_list))
                @if p.waiting as usize > p.waiting_list.len() { p { "The first " (p.waiting_list.len()) " by serial." } }
            }
        },
    )
}

/// The "Revoke" button of an EAB key's row (admins, unrevoked keys).
pub(super) fn eab_revoke_button(session: &OperatorSession, kid: &str) -> Markup {
    html! {
        @if is_admin(session) {
            form method="post" action={ "/console/eab/" (kid) "/revoke" } {
                input type="hidden" name="csrf" value=(session.csrf);
                button type="submit" { "Revoke" }
            }
        }
    }
}

async fn revoke_eab_key(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(kid): Path<String>,
    body: Bytes,
) -> Page {
    let (session, store) = console.admin_session(&headers, &parse_form(&body)).await?;
    if !store.revoke_eab_key(&kid, console.clock.now()).await? {
        return Err(Refusal::Status(
            StatusCode::NOT_FOUND,
            "No such EAB key, or it is already revoked.",
        ));
    }
    tracing::info!(%kid, operator = %session.operator, "console: EAB key revoked");
    Ok(redirect("/console/eab".to_owned()))
}

async fn account(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Page {
    let session = console.page_session(&headers).await?;
    let id = AccountId(id_in_path(&id)?);
    let store = &console.store;
    let account = store.account(id).await?;
    let orders = store.recent_account_orders(id, ACCOUNT_ROWS).await?;
    let now = console.clock.now();
    let certificates = store
        .inventory_page(&crate::store::console::InventoryQuery {
            account: Some(id.0),
            state: Some(crate::store::console::CertificateState::Valid),
            limit: ACCOUNT_ROWS,
            now,
            ..Default::default()
        })
        .await?;
    let status = format!("{:?}", account.status).to_lowercase();
    Ok(layout(
        &format!("Account {}", id.0),
        Some(&session),
        html! {
            dl {
                dt { "Status" } dd { span class={ "state " (status) } { (status) } }
                dt { "Contact" } dd { (account.contact.join(", ")) }
                dt { "EAB label" } dd { (account.eab_label.as_deref().unwrap_or("")) }
                dt { "EAB key id" } dd { (account.eab_kid.as_deref().unwrap_or("")) }
                dt { "Created" } dd { (rfc3339(account.created_at)) }
                dt { "Key thumbprint" } dd { code { (account.jwk.thumbprint()) } }
            }
            @if is_admin(&session) && account.status == AccountStatus::Valid {
                div.actions {
                    form.deactivate method="post" action={ "/console/accounts/" (id.0) "/deactivate" } {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button type="submit" { "Deactivate this account" }
                    }
                }
                p.hint { "A deactivated account can no longer order, finalize or revoke (RFC 8555 §7.3.6); "
                    "its pending authorizations are deactivated too. Its certificates stay valid. This cannot be undone." }
            }
            h2 { "Valid certificates (soonest expiry first)" }
            @if certificates.items.is_empty() { p { "None." } }
            @else { (certificate_table(&certificates.items)) }
            p {
                a href={ "/console/certificates?account=" (id.0) } { "All its certificates" } " · "
                a href={ "/console/validations?account=" (id.0) } { "Its validations" }
            }
            h2 { "Latest orders" }
            @if orders.is_empty() { p { "None." } }
            @else {
                div.scroll { table {
                    thead { tr { th { "Order" } th { "Status" } th { "Names" } th { "Profile" } th { "Certificate" } th { "Replaces (ARI)" } } }
                    tbody {
                        @for o in &orders {
                            tr {
                                td { (o.id.0) }
                                td { (format!("{:?}", o.status).to_lowercase()) }
                                td { (o.identifiers.iter().map(|i| i.value.as_str()).collect::<Vec<_>>().join(", ")) }
                                td { (o.profile.as_deref().unwrap_or("")) }
                                td { @if let Some(s) = &o.certificate_serial { a.serial href={ "/console/certificates/" (s) } { (s) } } }
                                td { (o.replaces.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                } }
            }
        },
    ))
}

async fn deactivate_account(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Page {
    let (session, store) = console.admin_session(&headers, &parse_form(&body)).await?;
    let id = AccountId(id_in_path(&id)?);
    if store.account(id).await?.status != AccountStatus::Valid {
        return Err(Refusal::Status(
            StatusCode::CONFLICT,
            "This account is not valid any more.",
        ));
    }
    store.deactivate_account_by_operator(id).await?;
    tracing::info!(account = id.0, operator = %session.operator, "console: account deactivated");
    Ok(redirect(format!("/console/accounts/{}", id.0)))
}

#[cfg(test)]
mod tests {
    use super::super::tests::Fixture;
    use crate::store::console::tests::{account, issue};
    use crate::store::operators::OperatorRole;
    use crate::store::Store;
    use axum::http::{header, StatusCode};
    use certwright_proto::types::AccountStatus;

    async fn audited(s: &Store, action: &str) -> Vec<String> {
        s.audit_entries(0, 0, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == action)
            .map(|e| e.actor)
            .collect()
    }

    /// (cookie, form) pairs that must be refused with 403: no session, a viewer, no CSRF
    /// token, a wrong one, another session's.
    async fn refused_posts(f: &Fixture) -> (Vec<(Option<String>, String)>, String, String) {
        let (viewer, viewer_csrf) = f.session("vera", OperatorRole::Viewer).await;
        let (admin, admin_csrf) = f.session("root", OperatorRole::Admin).await;
        let cases = vec![
            (None, "csrf=x".to_owned()),
            (Some(viewer.clone()), format!("csrf={viewer_csrf}")),
            (Some(admin.clone()), String::new()),
            (Some(admin.clone()), "csrf=wrong".to_owned()),
            (Some(admin.clone()), format!("csrf={viewer_csrf}")),
        ];
        (cases, admin, admin_csrf)
    }

    #[tokio::test]
    async fn campaigns_are_started_by_admins_with_a_filter_and_show_their_progress() {
        let f = Fixture::new().await;
        let a = account(&f.store, &[]).await;
        issue(&f.store, a, &["a.corp.example"], "0a", i64::MAX / 2, None).await;
        issue(&f.store, a, &["b.other.example"], "0b", i64::MAX / 2, None).await;
        let marked = |s: Store| async move {
            (
                s.certificate("0a").await.unwrap().renew_early,
                s.renew_campaigns(10).await.unwrap().len(),
            )
        };
        for page in ["/console/campaigns", "/console/campaigns/1"] {
            let (status, headers, _) = f.send("GET", page, None, None).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
            assert_eq!(headers[header::LOCATION], "/console/sign-in");
        }
        let (cases, admin, csrf) = refused_posts(&f).await;
        for (cookie, form) in &cases {
            let form = format!("{form}&suffix=.corp.example");
            let (status, _, _) = f
                .send("POST", "/console/campaigns", cookie.as_deref(), Some(&form))
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{cookie:?} {form}");
            assert_eq!(marked(f.store.clone()).await, (false, 0), "{form}");
        }
        // An empty filter (blank fields count as none) is refused.
        let empty = format!("csrf={csrf}&suffix=+&profile=&issuer=&eab_label=");
        let (status, _, body) = f
            .send("POST", "/console/campaigns", Some(&admin), Some(&empty))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(marked(f.store.clone()).await, (false, 0));
        assert!(audited(&f.store, "renew_campaign.start").await.is_empty());

        let (status, _, body) = f
            .send("GET", "/console/campaigns", Some(&admin), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("Start campaign"), "{body}");
        let form = format!("csrf={csrf}&suffix=corp.example");
        let (status, headers, _) = f
            .send("POST", "/console/campaigns", Some(&admin), Some(&form))
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let to = headers[header::LOCATION].to_str().unwrap().to_owned();
        assert_eq!(marked(f.store.clone()).await, (true, 1));
        assert!(!f.store.certificate("0b").await.unwrap().renew_early);
        assert_eq!(
            audited(&f.store, "renew_campaign.finish").await,
            ["operator:root"]
        );

        let (viewer, _) = f.session("vic", OperatorRole::Viewer).await;
        let (status, _, body) = f.send("GET", &to, Some(&viewer), None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("0 of 1 replaced"), "{body}");
        assert!(body.contains("0a") && !body.contains(">0b<"), "{body}");
        let (_, _, body) = f
            .send("GET", "/console/campaigns", Some(&viewer), None)
            .await;
        assert!(
            body.contains("suffix .corp.example") && !body.contains("Start campaign"),
            "{body}"
        );
        // Renewed through ARI: 1 of 1.
        issue(
            &f.store,
            a,
            &["a.corp.example"],
            "0c",
            i64::MAX / 2,
            Some("0a"),
        )
        .await;
        let (_, _, body) = f.send("GET", &to, Some(&viewer), None).await;
        assert!(body.contains("1 of 1 replaced"), "{body}");

        for unknown in ["/console/campaigns/99", "/console/campaigns/x"] {
            let (status, _, _) = f.send("GET", unknown, Some(&viewer), None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
        }
    }

    #[tokio::test]
    async fn only_an_admin_revokes_an_eab_key() {
        let f = Fixture::new().await;
        f.store
            .create_eab_key("kid-1", "team-a", &[1; 32], 1)
            .await
            .unwrap();
        let revoked = |s: Store| async move {
            s.eab_key("kid-1")
                .await
                .unwrap()
                .unwrap()
                .revoked_at
                .is_some()
        };
        let (cases, admin, csrf) = refused_posts(&f).await;
        for (cookie, form) in &cases {
            let (status, _, _) = f
                .send(
                    "POST",
                    "/console/eab/kid-1/revoke",
                    cookie.as_deref(),
                    Some(form),
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{cookie:?} {form}");
            assert!(!revoked(f.store.clone()).await);
        }
        let (_, _, body) = f.send("GET", "/console/eab", Some(&admin), None).await;
        assert!(body.contains("/console/eab/kid-1/revoke"), "{body}");
        let form = format!("csrf={csrf}");
        let (status, _, _) = f
            .send(
                "POST",
                "/console/eab/nope/revoke",
                Some(&admin),
                Some(&form),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(audited(&f.store, "eab.revoke").await.is_empty());
        let (status, headers, _) = f
            .send(
                "POST",
                "/console/eab/kid-1/revoke",
                Some(&admin),
                Some(&form),
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[header::LOCATION], "/console/eab");
        assert!(revoked(f.store.clone()).await);
        assert_eq!(audited(&f.store, "eab.revoke").await, ["operator:root"]);
        // Already revoked: 404, no second entry; the row shows no button any more.
        let (status, _, _) = f
            .send(
                "POST",
                "/console/eab/kid-1/revoke",
                Some(&admin),
                Some(&form),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(audited(&f.store, "eab.revoke").await.len(), 1);
        let (_, _, body) = f.send("GET", "/console/eab", Some(&admin), None).await;
        assert!(!body.contains("/console/eab/kid-1/revoke"), "{body}");
    }

    #[tokio::test]
    async fn only_an_admin_deactivates_an_account_from_its_page() {
        let f = Fixture::new().await;
        let script = "<script>alert(1)</script>";
        let a = account(&f.store, &[&format!("mailto:{script}@x.example")]).await;
        issue(&f.store, a, &["a.example"], "0a", i64::MAX / 2, None).await;
        let page = format!("/console/accounts/{}", a.0);
        let action = format!("{page}/deactivate");
        let status_of = |s: Store| async move { s.account(a).await.unwrap().status };
        let (status, headers, _) = f.send("GET", &page, None, None).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[header::LOCATION], "/console/sign-in");
        let (cases, admin, csrf) = refused_posts(&f).await;
        for (cookie, form) in &cases {
            let (status, _, _) = f.send("POST", &action, cookie.as_deref(), Some(form)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{cookie:?} {form}");
            assert_eq!(status_of(f.store.clone()).await, AccountStatus::Valid);
        }
        let (viewer, _) = f.session("vic", OperatorRole::Viewer).await;
        let (status, _, body) = f.send("GET", &page, Some(&viewer), None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("0a") && body.contains("a.example"), "{body}");
        assert!(
            !body.contains(script) && body.contains("&lt;script&gt;"),
            "{body}"
        );
        assert!(!body.contains("/deactivate"), "a viewer gets no button");
        let (_, _, body) = f.send("GET", &page, Some(&admin), None).await;
        assert!(body.contains(&action), "{body}");

        let form = format!("csrf={csrf}");
        for unknown in [
            "/console/accounts/999/deactivate",
            "/console/accounts/x/deactivate",
        ] {
            let (status, _, _) = f.send("POST", unknown, Some(&admin), Some(&form)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
        }
        let (status, _, _) = f
            .send("GET", "/console/accounts/999", Some(&admin), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(audited(&f.store, "account.deactivate").await.is_empty());

        let (status, headers, _) = f.send("POST", &action, Some(&admin), Some(&form)).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[header::LOCATION], page.as_str());
        assert_eq!(status_of(f.store.clone()).await, AccountStatus::Deactivated);
        assert_eq!(
            audited(&f.store, "account.deactivate").await,
            ["operator:root"]
        );
        // Again: refused, no second entry.
        let (status, _, _) = f.send("POST", &action, Some(&admin), Some(&form)).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(audited(&f.store, "account.deactivate").await.len(), 1);
        let (_, _, body) = f.send("GET", &page, Some(&admin), None).await;
        assert!(
            body.contains("deactivated") && !body.contains(&action),
            "{body}"
        );
    }
}
