//! The dashboard (`/console/dashboard`): counts of certificates and orders, each linking
//! to the matching list; issuances, failed validations and revocations per UTC day over
//! the last 30 days as inline SVG bar charts drawn here (no script, no style attribute:
//! the console's CSP allows neither), with a table of the same numbers; failed
//! validations by problem type; each issuer's CRL and OCSP responder; and the last
//! periodic verification of the audit chain (`crate::audit_check`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use certwright_proto::ProblemType;
use maud::{html, Markup};

use super::views::layout;
use super::{Console, Page};
use crate::clock::rfc3339;
use crate::store::console::DashboardCounts;
use crate::store::dashboard::{
    AuditCheck, CrlFreshness, DayCounts, FailureCount, AT_RISK_EXAMINED, DAY,
};
use crate::store::operators::OperatorSession;

/// Days the charts cover (UTC days, today included).
pub(super) const CHART_DAYS: i64 = 30;
/// At-risk certificates counted at most (the figure then reads "25+"). Each costs the
/// renewal-health successor lookup (`Store::renewal_at_risk`): a few milliseconds on a
/// large account, so the dashboard counts few and links to the full list.
const AT_RISK_LIMIT: usize = 25;

/// The dashboard's routes.
pub(super) fn routes() -> Router<Console> {
    Router::new().route("/console/dashboard", get(dashboard))
}

/// An issuer's OCSP responder: responses are signed on demand, per request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OcspFreshness {
    issuer: String,
    /// notAfter of the delegated responder certificate.
    responder_not_after: i64,
    /// nextUpdate - thisUpdate of each response.
    validity_secs: i64,
}

/// Certificates expiring without a successor (the renewal-health rule).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct AtRisk {
    within_30d: usize,
    within_7d: usize,
    /// The figures are lower bounds (the limit was reached, or more candidates than the
    /// renewal-health walk examines).
    partial: bool,
}

/// Everything the dashboard shows, read at one instant.
#[derive(Debug, Clone, Default)]
struct Dashboard {
    now: i64,
    counts: DashboardCounts,
    at_risk: AtRisk,
    days: Vec<DayCounts>,
    failures_7d: Vec<FailureCount>,
    failures_30d: Vec<FailureCount>,
    crls: Vec<CrlFreshness>,
    /// None: OCSP is off (or this console has no CA to ask).
    ocsp: Option<Vec<OcspFreshness>>,
    audit: Option<AuditCheck>,
}

async fn dashboard(State(console): State<Console>, headers: HeaderMap) -> Page {
    let session = console.page_session(&headers).await?;
    let now = console.clock.now();
    let store = &console.store;
    let counts = store.dashboard_counts(now).await?;
    let risky = store
        .renewal_at_risk(now, now + 30 * DAY, AT_RISK_LIMIT)
        .await?;
    let at_risk = AtRisk {
        within_30d: risky.len(),
        within_7d: risky
            .iter()
            .filter(|c| c.not_after <= now + 7 * DAY)
            .count(),
        partial: risky.len() == AT_RISK_LIMIT
            || usize::try_from(counts.expiring_30d).unwrap_or(usize::MAX) > AT_RISK_EXAMINED,
    };
    let ocsp = console.ra.as_ref().and_then(|ra| {
        let ca = ra.ca();
        ca.ocsp_enabled().then(|| {
            ca.issuers()
                .iter()
                .filter_map(|i| {
                    i.ocsp().map(|r| OcspFreshness {
                        issuer: i.name().to_owned(),
                        responder_not_after: r.responder_not_after(),
                        validity_secs: r.validity_secs(),
                    })
                })
                .collect()
        })
    });
    let data = Dashboard {
        now,
        counts,
        at_risk,
        days: store.daily_counts(now, CHART_DAYS).await?,
        failures_7d: store.failures_by_type(now - 7 * DAY, now + 1).await?,
        failures_30d: store.failures_by_type(now - 30 * DAY, now + 1).await?,
        crls: store.crl_freshness().await?,
        ocsp,
        audit: store.last_audit_check().await?,
    };
    Ok(view(&session, &data).into_response())
}

/// The day of `t` as `YYYY-MM-DD`.
fn date(t: i64) -> String {
    rfc3339(t).chars().take(10).collect()
}

/// One bar chart: a bar per day, its height proportional to the day's value (the
/// tallest bar is the largest value), each with a `<title>` for screen readers and
/// hover; `kind` picks the bar's colour class and `what` names the unit
/// ("certificates issued").
pub(super) fn bar_chart(kind: &str, what: &str, points: &[(i64, i64)]) -> Markup {
    const BAR: i64 = 14;
    const STEP: i64 = 20;
    const HEIGHT: i64 = 100;
    const TOP: i64 = 24;
    let width = STEP * points.len().max(1) as i64;
    let max = points.iter().map(|p| p.1).max().unwrap_or(0).max(0);
    let total: i64 = points.iter().map(|p| p.1.max(0)).sum();
    let first = points.first().map(|p| date(p.0)).unwrap_or_default();
    let last = points.last().map(|p| date(p.0)).unwrap_or_default();
    let summary = format!("{what} per day, {first} to {last}: {total} in all, at most {max} a day");
    html! {
        svg.chart viewBox=(format!("0 0 {width} {}", TOP + HEIGHT + 26)) role="img" {
            title { (summary) }
            text.axis x="0" y="18" { "max " (max) }
            line.base x1="0" y1=(TOP + HEIGHT) x2=(width) y2=(TOP + HEIGHT) {}
            @for (i, (day, value)) in points.iter().enumerate() {
                @let h = if max > 0 { (value.max(&0) * HEIGHT + max - 1) / max } else { 0 };
                rect class=(format!("bar {kind}")) x=(i as i64 * STEP + (STEP - BAR) / 2)
                    y=(TOP + HEIGHT - h) width=(BAR) height=(h) {
                    title { (date(*day)) ": " (value) " " (what) }
                }
            }
            text.axis x="0" y=(TOP + HEIGHT + 22) { (first) }
            text.axis.end x=(width) y=(TOP + HEIGHT + 22) { (last) }
        }
    }
}

/// A problem type's short name (`dns`, `unauthorized`, …), or "(none)".
fn problem_name(uri: &str) -> String {
    if uri.is_empty() {
        return "(none)".into();
    }
    ProblemType::from_uri(uri).name().to_owned()
}

/// How fresh a CRL is at `now`: stale past nextUpdate; "due" once three quarters of its
/// validity have passed (the CA publishes a new one at half).
fn crl_state(c: &CrlFreshness, now: i64) -> (&'static str, &'static str) {
    let validity = (c.next_update - c.this_update).max(1);
    if now >= c.next_update {
        ("revoked", "stale: past nextUpdate")
    } else if now >= c.this_update + validity * 3 / 4 {
        ("expired", "due: not refreshed at half its validity")
    } else {
        ("valid", "fresh")
    }
}

fn tile(label: &str, value: String, href: &str) -> Markup {
    html! { a.tile href=(href) { span.n { (value) } span { (label) } } }
}

/// The dashboard.
fn view(session: &OperatorSession, d: &Dashboard) -> Response {
    let c = &d.counts;
    let plus = |n: usize| format!("{n}{}", if d.at_risk.partial { "+" } else { "" });
    let series =
        |f: fn(&DayCounts) -> i64| d.days.iter().map(|x| (x.day, f(x))).collect::<Vec<_>>();
    let mut by_type: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for f in &d.failures_30d {
        by_type.entry(&f.problem_type).or_default().1 = f.count;
    }
    for f in &d.failures_7d {
        by_type.entry(&f.problem_type).or_default().0 = f.count;
    }
    let mut by_type: Vec<(&str, (i64, i64))> = by_type.into_iter().collect();
    by_type.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(b.0)));
    layout(
        "Dashboard",
        Some(session),
        html! {
            div.tiles {
                (tile("valid certificates", c.valid.to_string(), "/console/certificates?state=valid"))
                (tile("expire within 7 days", c.expiring_7d.to_string(), "/console/renewal?days=7"))
                (tile("expire within 30 days", c.expiring_30d.to_string(), "/console/renewal?days=30"))
                (tile("at risk within 7 days (no successor)", plus(d.at_risk.within_7d), "/console/renewal?days=7"))
                (tile("at risk within 30 days (no successor)", plus(d.at_risk.within_30d), "/console/renewal?days=30"))
                (tile("revoked", c.revoked.to_string(), "/console/certificates?state=revoked"))
                (tile("orders processing", c.orders_processing.to_string(), "/console/dashboard"))
            }
            @if d.at_risk.partial {
                p { "At-risk figures with a + are lower bounds: the dashboard counts "
                    (AT_RISK_LIMIT) " at most, and renewal health examines the "
                    (AT_RISK_EXAMINED) " soonest-expiring candidates; "
                    a href="/console/renewal" { "Renewal health" } " lists them." }
            }

            h2 { "Last " (CHART_DAYS) " days" }
            p { "Per UTC day, today last." }
            div.charts {
                figure { figcaption { "Certificates issued" } (bar_chart("issued", "certificates issued", &series(|x| x.issued))) }
                figure { figcaption { "Validations failed" } (bar_chart("failed", "validations failed", &series(|x| x.failed))) }
                figure { figcaption { "Certificates revoked" } (bar_chart("revoked", "certificates revoked", &series(|x| x.revoked))) }
            }
            details {
                summary { "The same as a table" }
                div.scroll { table {
                    thead { tr { th { "day (UTC)" } th { "issued" } th { "validations failed" } th { "revoked" } } }
                    tbody { @for x in d.days.iter().rev() {
                        tr { td { (date(x.day)) } td { (x.issued) } td { (x.failed) } td { (x.revoked) } }
                    } }
                } }
            }

            h2 { "Validation failures by problem type" }
            @if by_type.is_empty() {
                p { "No validation failed in the last 30 days." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "problem type" } th { "last 7 days" } th { "last 30 days" } } }
                    tbody { @for (uri, (week, month)) in &by_type {
                        tr { td.serial { (problem_name(uri)) } td { (week) } td { (month) } }
                    } }
                } }
                p { "To see why one name's validations failed, look it up on the "
                    a href="/console/validations" { "Validations" } " page." }
            }

            h2 { "Revocation information" }
            div.scroll { table {
                thead { tr { th { "issuer" } th { "CRL number" } th { "thisUpdate" } th { "nextUpdate" } th { "state" } } }
                tbody {
                    @for crl in &d.crls {
                        @let (class, text) = crl_state(crl, d.now);
                        tr {
                            td { (crl.issuer) } td { (crl.number) }
                            td { (rfc3339(crl.this_update)) } td { (rfc3339(crl.next_update)) }
                            td { span class=(format!("state {class}")) { (text) } }
                        }
                    }
                    @if d.crls.is_empty() { tr { td colspan="5" { "No CRL published yet." } } }
                }
            } }
            @match &d.ocsp {
                None => p { "OCSP is off." },
                Some(responders) => {
                    p { "OCSP responses are signed on demand, for each request, with the issuer's delegated responder certificate: they are as fresh as the request." }
                    div.scroll { table {
                        thead { tr { th { "issuer" } th { "responses valid for" } th { "responder certificate expires" } th { "state" } } }
                        tbody { @for r in responders {
                            @let left = r.responder_not_after - d.now;
                            tr {
                                td { (r.issuer) }
                                td { (r.validity_secs / 3600) " h" }
                                td { (rfc3339(r.responder_not_after)) }
                                td { @if left <= 0 { span.state.revoked { "expired" } }
                                     @else if left < 7 * DAY { span.state.expired { "expires within 7 days" } }
                                     @else { span.state.valid { "valid" } } }
                            }
                        } }
                    } }
                }
            }

            h2 { "Audit chain" }
            @match &d.audit {
                None => p { "No periodic verification has run yet (" code { "[audit] verify_interval_secs" } "; "
                    code { "certwright-ca audit verify" } " verifies by hand)." },
                Some(a) if a.intact => p.audit {
                    span.state.valid { "intact" } " — " (a.entries) " entries verified at " (rfc3339(a.checked_at)) "." },
                Some(a) => div.audit {
                    p { span.state.revoked { "BROKEN" } " at entry " (a.broken_seq.unwrap_or_default())
                        " — found at " (rfc3339(a.checked_at)) "." }
                    p.error { (a.reason.as_deref().unwrap_or("")) }
                    p { "Run " code { "certwright-ca audit verify" } " and compare with a trusted export (docs/audit.md)." }
                },
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The heights of the bars of a rendered chart, in order.
    fn heights(svg: &str) -> Vec<i64> {
        svg.split("<rect ")
            .skip(1)
            .map(|r| {
                let h = r.split("height=\"").nth(1).unwrap();
                h[..h.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn bars_are_proportional_to_their_values() {
        let points: Vec<(i64, i64)> = [0, 5, 10, 1, 3]
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * DAY, *v))
            .collect();
        let svg = bar_chart("issued", "certificates issued", &points).into_string();
        // The tallest bar is the chart's height (100); the others are in proportion,
        // rounded up so that a small non-zero value stays visible.
        assert_eq!(heights(&svg), [0, 50, 100, 10, 30]);
        assert!(
            svg.contains("<title>1970-01-02: 5 certificates issued</title>"),
            "{svg}"
        );
        assert!(svg.contains("19 in all, at most 10 a day"), "{svg}");
        assert_eq!(
            svg.matches("<title>").count(),
            6,
            "one per bar and the chart's"
        );
    }

    #[test]
    fn no_data_draws_empty_bars_and_no_division_by_zero() {
        let points: Vec<(i64, i64)> = (0..30).map(|i| (i * DAY, 0)).collect();
        let svg = bar_chart("failed", "validations failed", &points).into_string();
        assert_eq!(heights(&svg), vec![0; 30]);
        assert!(svg.contains("max 0"));
        assert!(bar_chart("x", "y", &[]).into_string().contains("<svg"));
    }

    #[test]
    fn labels_are_escaped_and_nothing_needs_inline_style_or_script() {
        let svg = bar_chart("a\"b", "<script>alert(1)</script>", &[(0, 1)]).into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
        assert!(!svg.contains("class=\"bar a\"b"), "{svg}");
        // The CSP (default-src 'self') refuses style attributes and inline scripts.
        for forbidden in [" style=", "<style", "<script", "javascript:", " on"] {
            assert!(!svg.contains(forbidden), "{forbidden} in {svg}");
        }
    }

    #[test]
    fn a_crl_is_fresh_then_due_then_stale() {
        let crl = CrlFreshness {
            issuer: "i".into(),
            number: 1,
            this_update: 0,
            next_update: 100,
        };
        assert_eq!(crl_state(&crl, 10).1, "fresh");
        assert!(crl_state(&crl, 80).1.starts_with("due"));
        assert!(crl_state(&crl, 100).1.starts_with("stale"));
    }

    #[test]
    fn problem_types_are_shown_by_their_short_name() {
        assert_eq!(problem_name(&ProblemType::Dns.uri()), "dns");
        assert_eq!(problem_name("urn:example:odd"), "urn:example:odd");
        assert_eq!(problem_name(""), "(none)");
    }
}
