//! Renewal health (`/console/renewal`): certificates that expire without a successor,
//! as one list or grouped by account or EAB label (`?group=account|eab`) with each
//! account's contact and the last attempts for the names; and the ARI view
//! (`?view=ari`): certificates inside (or past) the renewal window the ARI endpoint
//! reports, not renewed yet.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};

use super::views::{certificate_table, layout, query_pair, time};
use super::{Console, Page, Refusal};
use crate::store::console::{InventoryItem, NameAttempt};
use crate::store::operators::OperatorSession;
use crate::store::{AccountId, AccountRecord, CertificateRecord};

/// At-risk certificates listed at most (soonest expiry first).
const AT_RISK_CAP: usize = 200;
/// Names per group whose last attempts are shown, and attempts per name.
const NAMES_PER_GROUP: usize = 3;
const ATTEMPTS_PER_NAME: usize = 3;
/// Certificates per page of the ARI view, and certificates examined for one page.
const ARI_PAGE: usize = 50;
const ARI_EXAMINE: usize = 1_000;

/// Renewal health's routes.
pub(super) fn routes() -> Router<Console> {
    Router::new().route("/console/renewal", get(renewal))
}

/// How the at-risk list is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grouping {
    None,
    Account,
    Eab,
}

/// A group's key: an account, or an EAB label (none: accounts without EAB).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum GroupKey {
    Account(i64),
    Eab(Option<String>),
}

/// The certificates of one group, their accounts and the last attempts for their names.
struct Group {
    key: GroupKey,
    items: Vec<InventoryItem>,
    accounts: Vec<AccountRecord>,
    attempts: Vec<(String, Vec<NameAttempt>)>,
}

fn bad(text: &'static str) -> Refusal {
    Refusal::Status(StatusCode::BAD_REQUEST, text)
}

async fn renewal(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Page {
    let session = console.page_session(&headers).await?;
    let field = |k: &str| params.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let now = console.clock.now();
    match field("view") {
        None | Some("expiring") => {}
        Some("ari") => {
            let after = match field("after") {
                None => None,
                Some(a) => {
                    let (at, serial) = a.split_once(':').ok_or(bad("bad page cursor"))?;
                    Some((
                        at.parse().map_err(|_| bad("bad page cursor"))?,
                        serial.to_owned(),
                    ))
                }
            };
            return ari(&console, &session, now, after).await;
        }
        Some(_) => return Err(bad("view is expiring or ari.")),
    }
    let grouping = match field("group") {
        None | Some("none") => Grouping::None,
        Some("account") => Grouping::Account,
        Some("eab") => Grouping::Eab,
        Some(_) => return Err(bad("group is account or eab.")),
    };
    let days: i64 = match field("days") {
        None => 30,
        Some(d) => d
            .parse::<i64>()
            .map_err(|_| bad("days is a number"))?
            .clamp(1, 365),
    };
    let at_risk = console
        .store
        .renewal_at_risk(now, now + days * 86_400, AT_RISK_CAP)
        .await?;
    let groups = match grouping {
        Grouping::None => Vec::new(),
        _ => groups(&console, grouping, &at_risk).await?,
    };
    Ok(view(&session, days, grouping, &at_risk, &groups).into_response())
}

/// The at-risk certificates grouped, with each group's accounts (read once each) and
/// the last attempts for its first names.
async fn groups(
    console: &Console,
    grouping: Grouping,
    at_risk: &[InventoryItem],
) -> Result<Vec<Group>, Refusal> {
    let mut by_key: BTreeMap<GroupKey, Vec<InventoryItem>> = BTreeMap::new();
    for item in at_risk {
        let key = match grouping {
            Grouping::Eab => GroupKey::Eab(item.eab_label.clone()),
            _ => GroupKey::Account(item.account_id),
        };
        by_key.entry(key).or_default().push(item.clone());
    }
    let mut accounts: HashMap<i64, AccountRecord> = HashMap::new();
    let mut out = Vec::with_capacity(by_key.len());
    for (key, items) in by_key {
        let ids: BTreeSet<i64> = items.iter().map(|i| i.account_id).collect();
        let mut these = Vec::with_capacity(ids.len());
        for id in ids {
            let record = match accounts.entry(id) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => new.insert(console.store.account(AccountId(id)).await?),
            };
            these.push(record.clone());
        }
        let mut names: Vec<String> = Vec::new();
        for name in items.iter().flat_map(|i| &i.names) {
            if names.len() == NAMES_PER_GROUP {
                break;
            }
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let mut attempts = Vec::with_capacity(names.len());
        for name in names {
            let last = console
                .store
                .recent_attempts_for_name(&name, ATTEMPTS_PER_NAME)
                .await?;
            attempts.push((name, last));
        }
        out.push(Group {
            key,
            items,
            accounts: these,
            attempts,
        });
    }
    Ok(out)
}

/// The window the ARI endpoint reports for `cert`: the RA's; a console without an RA
/// (the router tests) uses the CA's own rule without retirement or backends.
async fn ari_window(console: &Console, cert: &CertificateRecord) -> (i64, i64) {
    match &console.ra {
        Some(ra) => ra.renewal_window(cert).await,
        None => crate::ra::lifecycle::own_window(cert, console.clock.now(), None),
    }
}

/// The ARI view: a page of certificates whose window has started, not renewed.
async fn ari(
    console: &Console,
    session: &OperatorSession,
    now: i64,
    after: Option<(i64, String)>,
) -> Page {
    let page = console
        .store
        .unrenewed_certificates(now, after, ARI_EXAMINE)
        .await?;
    let mut next = page.next.clone();
    let mut shown = Vec::new();
    for u in page.items {
        let window = ari_window(console, &u.record).await;
        if window.0 <= now {
            shown.push((u.item, window));
            if shown.len() == ARI_PAGE {
                let last = &shown[ARI_PAGE - 1].0;
                next = Some((last.not_after, last.serial.clone()));
                break;
            }
        }
    }
    Ok(ari_view(session, now, &shown, next.as_ref()).into_response())
}

fn tabs(current: &str) -> Markup {
    html! {
        p.tabs {
            @for (href, label) in [
                ("/console/renewal", "Expiring without successor"),
                ("/console/renewal?group=account", "By account"),
                ("/console/renewal?group=eab", "By EAB label"),
                ("/console/renewal?view=ari", "ARI: inside the window, not renewed"),
            ] {
                @if href == current { strong { (label) } } @else { a href=(href) { (label) } }
                " "
            }
        }
    }
}

/// Certificates expiring without a successor, as one list or in groups.
fn view(
    session: &OperatorSession,
    days: i64,
    grouping: Grouping,
    at_risk: &[InventoryItem],
    groups: &[Group],
) -> Response {
    let (current, group_value) = match grouping {
        Grouping::None => ("/console/renewal", ""),
        Grouping::Account => ("/console/renewal?group=account", "account"),
        Grouping::Eab => ("/console/renewal?group=eab", "eab"),
    };
    layout(
        "Renewal health",
        Some(session),
        html! {
            (tabs(current))
            form.search method="get" action="/console/renewal" {
                label { "Expiring within (days)" input name="days" inputmode="numeric" value=(days); }
                @if !group_value.is_empty() { input type="hidden" name="group" value=(group_value); }
                button type="submit" { "Show" }
            }
            p { (at_risk.len()) " unrevoked certificate(s) expire within " (days)
                " days with no successor (no order replaced them, and their account has no later certificate for the same names)." }
            @if at_risk.len() == AT_RISK_CAP {
                p.note { "Showing the first " (AT_RISK_CAP) " (soonest expiry); renew or narrow the days to see more." }
            }
            @if grouping == Grouping::None {
                @if !at_risk.is_empty() { (certificate_table(at_risk)) }
            } @else {
                @for g in groups { (group_section(g)) }
            }
        },
    )
}

fn group_section(g: &Group) -> Markup {
    html! {
        section.group {
            h2 {
                @match &g.key {
                    GroupKey::Account(id) => { "Account " (id) }
                    GroupKey::Eab(Some(label)) => { "EAB label " (label) }
                    GroupKey::Eab(None) => { "No EAB label" }
                }
                " · " (g.items.len()) " certificate(s)"
            }
            ul {
                @for a in &g.accounts {
                    li {
                        a href={ "/console/accounts/" (a.id.0) } { "Account " (a.id.0) }
                        " · contact: "
                        @if a.contact.is_empty() { "none" } @else { (a.contact.join(", ")) }
                        " · " a href={ "/console/validations?account=" (a.id.0) } { "its validations" }
                    }
                }
            }
            (certificate_table(&g.items))
            h3 { "Last orders and validations for these names" }
            @for (name, attempts) in &g.attempts {
                p { a href={ "/console/validations?" (query_pair("name", name)) } { (name) } }
                @if attempts.is_empty() { p { "No authorizations for this name." } } @else {
                    div.scroll { table {
                        thead { tr { th { "Authorization" } th { "Status" } th { "Account" } th { "Created" } th { "Order" } } }
                        tbody { @for t in attempts {
                            tr {
                                td { (t.authorization_id) @if t.wildcard { " (wildcard)" } }
                                td { span class={ "state " (t.status) } { (t.status) } }
                                td { (t.account_id) }
                                td { (time(t.created_at)) }
                                td { @match &t.order { Some((id, status)) => { (id) " (" (status) ")" }, None => "" } }
                            }
                        } }
                    } }
                }
            }
        }
    }
}

/// Certificates inside (or past) their ARI window, not renewed.
fn ari_view(
    session: &OperatorSession,
    now: i64,
    shown: &[(InventoryItem, (i64, i64))],
    next: Option<&(i64, String)>,
) -> Response {
    layout(
        "Renewal health",
        Some(session),
        html! {
            (tabs("/console/renewal?view=ari"))
            p { "Unrevoked certificates whose ARI renewal window (as the ARI endpoint reports it) has started, with no successor yet, soonest expiry first. Each page examines at most "
                (ARI_EXAMINE) " certificates." }
            @if shown.is_empty() { p { "None on this page." } } @else {
                div.scroll { table {
                    thead { tr { th { "Serial" } th { "Names" } th { "Expires" } th { "Window" } th { "Account" } th { "EAB label" } } }
                    tbody { @for (i, (start, end)) in shown {
                        tr {
                            td { a.serial href={ "/console/certificates/" (i.serial) } { (i.serial) } }
                            td { (i.names.join(", ")) }
                            td { (time(i.not_after)) }
                            td { (time(*start)) " – " (time(*end))
                                @if *end <= now { " (ended)" } @else { " (inside)" } }
                            td { a href={ "/console/accounts/" (i.account_id) } { (i.account_id) } }
                            td { (i.eab_label.as_deref().unwrap_or("")) }
                        }
                    } }
                } }
            }
            @if let Some((at, serial)) = next {
                p { a.next href={ "/console/renewal?view=ari&after=" (at) ":" (serial) } { "Next page →" } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use axum::http::{header, StatusCode};

    use super::super::tests::Fixture;
    use crate::clock::Clock;
    use crate::store::console::tests::{account, issue_valid};
    use crate::store::operators::OperatorRole;

    const DAY: i64 = 86_400;

    #[tokio::test]
    async fn renewal_pages_refuse_without_a_session_and_bad_parameters() {
        let f = Fixture::new().await;
        let a = account(&f.store, &[]).await;
        let now = Clock::system().now();
        issue_valid(
            &f.store,
            a,
            &["a.example"],
            "0a",
            (now - DAY, now + DAY),
            None,
        )
        .await;
        let before = f.store.snapshot().await.unwrap();
        for page in [
            "/console/renewal",
            "/console/renewal?group=account",
            "/console/renewal?group=eab",
            "/console/renewal?view=ari",
            "/console/renewal?group=nonsense",
        ] {
            let (status, headers, _) = f.send("GET", page, None, None).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
            assert_eq!(headers[header::LOCATION], "/console/sign-in", "{page}");
        }
        let (cookie, _) = f.session("vera", OperatorRole::Viewer).await;
        for page in [
            "/console/renewal?group=nonsense",
            "/console/renewal?group=%3Cscript%3E",
            "/console/renewal?view=calendar",
            "/console/renewal?days=many",
            "/console/renewal?view=ari&after=nocolon",
            "/console/renewal?view=ari&after=x:0a",
        ] {
            let (status, _, body) = f.send("GET", page, Some(&cookie), None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{page}: {body}");
            assert!(!body.contains("<script>"), "{body}");
        }
        // Pages only read.
        assert_eq!(f.store.snapshot().await.unwrap(), before);
    }

    #[tokio::test]
    async fn at_risk_certificates_group_by_account_and_eab_label_escaped() {
        let f = Fixture::new().await;
        let script = "<script>alert(1)</script>";
        f.store
            .create_eab_key("kid1", &format!("{script}team"), &[1; 32], 1)
            .await
            .unwrap();
        let jwk = certwright_proto::AccountKey::generate(certwright_proto::KeyType::EcP256)
            .unwrap()
            .jwk();
        let contact = format!("mailto:{script}@x.example");
        let with_eab = f
            .store
            .create_account_with_eab(&jwk, &[contact], true, 1, "kid1")
            .await
            .unwrap()
            .id;
        let plain = account(&f.store, &["mailto:ops@plain.example"]).await;
        let now = Clock::system().now();
        let soon = (now - 60 * DAY, now + 5 * DAY);
        issue_valid(&f.store, with_eab, &["a.example"], "0a", soon, None).await;
        issue_valid(&f.store, with_eab, &["b.example"], "0b", soon, None).await;
        issue_valid(&f.store, plain, &["c.example"], "0c", soon, None).await;
        // Renewed: not at risk.
        issue_valid(&f.store, plain, &["d.example"], "0d", soon, None).await;
        issue_valid(
            &f.store,
            plain,
            &["d.example"],
            "0e",
            (now, now + 90 * DAY),
            None,
        )
        .await;
        let (cookie, _) = f.session("vera", OperatorRole::Viewer).await;

        let (status, _, body) = f
            .send("GET", "/console/renewal?group=account", Some(&cookie), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(!body.contains("<script>"), "raw HTML: {body}");
        for want in [
            format!("Account {}", with_eab.0),
            format!("Account {}", plain.0),
            format!("href=\"/console/accounts/{}\"", with_eab.0),
            format!("href=\"/console/validations?account={}\"", plain.0),
            "mailto:&lt;script&gt;alert(1)&lt;/script&gt;@x.example".to_owned(),
            "mailto:ops@plain.example".to_owned(),
            "href=\"/console/validations?name=a.example\"".to_owned(),
            "0a".to_owned(),
            "0c".to_owned(),
        ] {
            assert!(body.contains(&want), "no {want}: {body}");
        }
        assert!(!body.contains(">0d<") && !body.contains(">0e<"), "{body}");
        // The account's own authorization for the name is listed, with its order.
        assert!(body.contains("(valid)"), "{body}");

        let (status, _, body) = f
            .send(
                "GET",
                "/console/renewal?group=eab&days=10",
                Some(&cookie),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(!body.contains("<script>"), "raw HTML: {body}");
        assert!(
            body.contains("EAB label &lt;script&gt;alert(1)&lt;/script&gt;team · 2 certificate(s)"),
            "{body}"
        );
        assert!(body.contains("No EAB label · 1 certificate(s)"), "{body}");
        // Days still apply: nothing expires within one day.
        let (_, _, body) = f
            .send(
                "GET",
                "/console/renewal?group=eab&days=1",
                Some(&cookie),
                None,
            )
            .await;
        assert!(body.contains("0 unrevoked certificate(s)"), "{body}");
        assert!(!body.contains("No EAB label"), "{body}");
    }

    #[tokio::test]
    async fn the_ari_view_lists_certificates_inside_their_window_not_renewed() {
        let f = Fixture::new().await;
        let a = account(&f.store, &[]).await;
        let now = Clock::system().now();
        // 90 days, a third left: its window (default_window) is open now.
        let inside = (now - 60 * DAY, now + 30 * DAY);
        issue_valid(&f.store, a, &["in.example"], "01", inside, None).await;
        // Its window opens in about 50 days.
        issue_valid(
            &f.store,
            a,
            &["later.example"],
            "02",
            (now - 10 * DAY, now + 80 * DAY),
            None,
        )
        .await;
        // Inside, but renewed by a certificate whose window is far.
        issue_valid(&f.store, a, &["done.example"], "03", inside, None).await;
        issue_valid(
            &f.store,
            a,
            &["done.example"],
            "04",
            (now, now + 90 * DAY),
            None,
        )
        .await;
        // An operator asked for renewal: the window is in the past.
        issue_valid(
            &f.store,
            a,
            &["asked.example"],
            "05",
            (now, now + 90 * DAY),
            None,
        )
        .await;
        assert!(f.store.mark_renew_early("05").await.unwrap());
        let (cookie, _) = f.session("vera", OperatorRole::Viewer).await;
        let (status, _, body) = f
            .send("GET", "/console/renewal?view=ari", Some(&cookie), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let shown = |serial: &str| body.contains(&format!("/console/certificates/{serial}\""));
        assert!(shown("01") && shown("05"), "{body}");
        assert!(!shown("02") && !shown("03") && !shown("04"), "{body}");
        assert!(
            body.contains("(inside)") && body.contains("(ended)"),
            "{body}"
        );
        assert!(!body.contains("Next page"), "{body}");
    }
}
