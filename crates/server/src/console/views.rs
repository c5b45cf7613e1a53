//! The console's pages, rendered with `maud` (every interpolated value is HTML-escaped).

use std::collections::HashMap;

use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use crate::clock::rfc3339;
use crate::store::console::{InventoryItem, InventoryPage};
use crate::store::operators::OperatorSession;
use crate::store::webhooks::{DeliveryView, EndpointDeliveries, WebhookRoute};
use crate::store::{AccountRecord, CertificateRecord, EabKeyRecord, OrderRecord};

/// A whole page.
pub(super) fn layout(title: &str, session: Option<&OperatorSession>, body: Markup) -> Response {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · certwright console" }
                    link rel="stylesheet" href="/console/style.css";
                }
                body {
                    header {
                        strong { "certwright" }
                        @if let Some(s) = session {
                            nav {
                                a href="/console/dashboard" { "Dashboard" }
                                a href="/console/certificates" { "Inventory" }
                                a href="/console/renewal" { "Renewal health" }
                                a href="/console/validations" { "Validations" }
                                a href="/console/eab" { "EAB keys" }
                                a href="/console/campaigns" { "Campaigns" }
                                a href="/console/webhooks" { "Webhooks" }
                            }
                            form.signout method="post" action="/console/sign-out" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                a.who href="/console/account" { (s.operator) " (" (s.role.as_str()) ")" }
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                    main { h1 { (title) } (body) }
                }
            }
        }
        .into_string(),
    )
    .into_response()
}

/// `key=value`, form-encoded, for a link's query.
pub(super) fn query_pair(key: &str, value: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair(key, value)
        .finish()
}

pub(super) fn time(unix: i64) -> String {
    rfc3339(unix)
}

/// A page that only says something.
pub(super) fn message(title: &str, text: &str) -> Response {
    layout(title, None, html! { p { (text) } })
}

/// The sign-in form.
pub(super) fn sign_in(csrf: &str, error: Option<&str>) -> Response {
    layout(
        "Sign in",
        None,
        html! {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.card method="post" action="/console/sign-in" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Name" input name="name" autocomplete="username" required; }
                label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub(super) fn certificate_table(items: &[InventoryItem]) -> Markup {
    html! {
        div.scroll {
            table {
                thead { tr { th { "Serial" } th { "Names" } th { "Expires" } th { "State" } th { "Account" } th { "EAB label" } th { "Profile" } th { "Issuer" } } }
                tbody {
                    @for i in items {
                        tr {
                            td { a.serial href={ "/console/certificates/" (i.serial) } { (i.serial) } }
                            td { (i.names.join(", ")) }
                            td { (time(i.not_after)) }
                            td { span class={ "state " (i.state.as_str()) } { (i.state.as_str()) } }
                            td { a href={ "/console/certificates?account=" (i.account_id) } { (i.account_id) } }
                            td { (i.eab_label.as_deref().unwrap_or("")) }
                            td { (i.profile.as_deref().unwrap_or("")) }
                            td { (i.issuer) }
                        }
                    }
                }
            }
        }
    }
}

/// The inventory: the search form, a page of results and the link to the next.
pub(super) fn inventory(
    session: &OperatorSession,
    params: &HashMap<String, String>,
    page: &InventoryPage,
) -> Response {
    let v = |k: &str| params.get(k).cloned().unwrap_or_default();
    // The same search, for the export and next-page links.
    let search: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            [
                "name",
                "serial",
                "account",
                "eab_label",
                "profile",
                "issuer",
                "state",
            ]
            .iter()
            .filter_map(|k| {
                params
                    .get(*k)
                    .filter(|v| !v.is_empty())
                    .map(|v| (*k, v.as_str()))
            }),
        )
        .finish();
    let state = v("state");
    layout(
        "Inventory",
        Some(session),
        html! {
            form.search method="get" action="/console/certificates" {
                label { "Name (exact, or .suffix)" input name="name" value=(v("name")); }
                label { "Serial" input name="serial" value=(v("serial")); }
                label { "Account" input name="account" inputmode="numeric" value=(v("account")); }
                label { "EAB label" input name="eab_label" value=(v("eab_label")); }
                label { "Profile" input name="profile" value=(v("profile")); }
                label { "Issuer" input name="issuer" value=(v("issuer")); }
                label { "State"
                    select name="state" {
                        @for (value, text) in [("", "any"), ("valid", "valid"), ("expired", "expired"), ("revoked", "revoked")] {
                            option value=(value) selected[state == value] { (text) }
                        }
                    }
                }
                button type="submit" { "Search" }
            }
            p.exports {
                "Export this search: "
                a href={ "/console/certificates?format=csv&" (search) } { "CSV" } " · "
                a href={ "/console/certificates?format=json&" (search) } { "JSON" }
            }
            @if page.items.is_empty() { p { "No certificate on this page matches." } }
            @else { (certificate_table(&page.items)) }
            @if let Some((at, serial)) = &page.next {
                p { a.next href={ "/console/certificates?" (search) "&after=" (at) ":" (serial) } { "Next page →" } }
            }
        },
    )
}

/// What a certificate's page shows.
pub(super) struct CertificatePage<'a> {
    pub(super) cert: &'a CertificateRecord,
    pub(super) order: &'a OrderRecord,
    pub(super) account: &'a AccountRecord,
    /// The certificates it replaced (ARI `replaces`), newest first.
    pub(super) predecessors: &'a [String],
    /// The certificate of the order that replaced it.
    pub(super) replaced_by: Option<&'a str>,
    /// Later certificates of the same account for the same names.
    pub(super) later: &'a [InventoryItem],
    pub(super) now: i64,
}

/// Decoded fields of a DER certificate: (field, value).
fn decoded(der: &[u8]) -> Vec<(&'static str, String)> {
    use x509_parser::prelude::*;
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return vec![("error", "the stored certificate does not parse".to_owned())];
    };
    let mut fields = vec![
        ("Subject", cert.subject().to_string()),
        ("Issuer", cert.issuer().to_string()),
        ("Serial", cert.raw_serial_as_string()),
        ("Not before", cert.validity().not_before.to_string()),
        ("Not after", cert.validity().not_after.to_string()),
        (
            "Signature algorithm",
            cert.signature_algorithm.algorithm.to_id_string(),
        ),
        (
            "Public key algorithm",
            cert.public_key().algorithm.algorithm.to_id_string(),
        ),
    ];
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        fields.push(("Subject alternative names", names.join(", ")));
    }
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        let mut uses = Vec::new();
        if eku.value.server_auth {
            uses.push("serverAuth");
        }
        if eku.value.client_auth {
            uses.push("clientAuth");
        }
        fields.push(("Extended key usage", uses.join(", ")));
    }
    fields
}

/// One certificate: its fields, PEM, order, account and lineage.
pub(super) fn certificate(session: &OperatorSession, p: &CertificatePage<'_>) -> Response {
    let c = p.cert;
    let state = if c.revoked_at.is_some() {
        "revoked"
    } else if c.not_after <= p.now {
        "expired"
    } else {
        "valid"
    };
    let names: Vec<&str> = c.names.iter().map(|i| i.value.as_str()).collect();
    layout(
        &format!("Certificate {}", c.serial),
        Some(session),
        html! {
            dl {
                dt { "State" } dd { span class={ "state " (state) } { (state) }
                    @if let Some(at) = c.revoked_at { " at " (time(at)) " (reason " (c.revocation_reason.unwrap_or(0)) ")" } }
                dt { "Names" } dd { (names.join(", ")) }
                dt { "Valid" } dd { (time(c.not_before)) " – " (time(c.not_after)) }
                dt { "Issuer" } dd { (c.issuer) }
                dt { "Profile" } dd { (c.profile.as_deref().unwrap_or("default")) }
                dt { "Renew early (ARI)" } dd { (if c.renew_early { "asked" } else { "no" }) }
            }
            div.actions {
            @if session.role == crate::store::operators::OperatorRole::Admin && state == "valid" && !c.renew_early {
                form method="post" action={ "/console/certificates/" (c.serial) "/renew-early" } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    button type="submit" { "Ask the holder to renew now (ARI)" }
                }
            }
            @if session.role == crate::store::operators::OperatorRole::Admin && c.revoked_at.is_none() {
                form.revoke method="post" action={ "/console/certificates/" (c.serial) "/revoke" } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    label { "Reason"
                        select name="reason" {
                            @for (code, name) in super::revocation_reasons() { option value=(code) { (name) } }
                        }
                    }
                    button type="submit" { "Revoke" }
                }
            }
            }
            h2 { "Order and account" }
            dl {
                dt { "Order" } dd { (p.order.id.0) " (" (format!("{:?}", p.order.status).to_lowercase()) ")" }
                dt { "Its authorizations" } dd {
                    a href={ "/console/validations?account=" (p.account.id.0) } { "the account's recent orders" }
                    @for n in &names { " · " a href={ "/console/validations?" (query_pair("name", n)) } { (n) } }
                }
                dt { "Account" } dd { a href={ "/console/accounts/" (p.account.id.0) } { (p.account.id.0) }
                    " (" (format!("{:?}", p.account.status).to_lowercase()) ")" }
                dt { "Contact" } dd { (p.account.contact.join(", ")) }
                dt { "EAB label" } dd { (p.account.eab_label.as_deref().unwrap_or("")) }
            }
            h2 { "Renewal lineage" }
            dl {
                dt { "Replaces" } dd {
                    @if p.predecessors.is_empty() { "nothing" }
                    @for s in p.predecessors { a.serial href={ "/console/certificates/" (s) } { (s) } " " }
                }
                dt { "Replaced by" } dd {
                    @match p.replaced_by {
                        Some(s) => a.serial href={ "/console/certificates/" (s) } { (s) },
                        None => "no order replaced it",
                    }
                }
            }
            h3 { "Later certificates for the same names" }
            @if p.later.is_empty() { p { "None." } } @else { (certificate_table(p.later)) }
            h2 { "Decoded" }
            dl {
                @for (k, v) in decoded(&c.der) { dt { (k) } dd { (v) } }
            }
            h2 { "PEM (with chain)" }
            pre.pem { (c.chain_pem) }
        },
    )
}

/// The EAB keys (never their HMAC keys).
pub(super) fn eab_keys(session: &OperatorSession, keys: &[EabKeyRecord]) -> Response {
    eab_page(session, keys, html! {})
}

/// The EAB keys after creating one: its secret, shown this once.
pub(super) fn eab_keys_created(
    session: &OperatorSession,
    keys: &[EabKeyRecord],
    kid: &str,
    hmac_key: &str,
    label: &str,
) -> Response {
    eab_page(
        session,
        keys,
        html! {
            section.created {
                h2 { "New key " (label) }
                p { "The HMAC key is shown only now. Give both to the account holder:" }
                pre { "kid:      " (kid) "\nhmac_key: " (hmac_key) }
                pre { "certbot … --eab-kid " (kid) " --eab-hmac-key " (hmac_key) "\nlego --eab --kid " (kid) " --hmac " (hmac_key) " …" }
            }
        },
    )
}

fn eab_page(session: &OperatorSession, keys: &[EabKeyRecord], created: Markup) -> Response {
    let admin = session.role == crate::store::operators::OperatorRole::Admin;
    layout(
        "EAB keys",
        Some(session),
        html! {
            (created)
            @if admin {
                form.search method="post" action="/console/eab" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    label { "Label of a new key" input name="label" required maxlength="200"; }
                    button type="submit" { "Create key" }
                }
            }
            div.scroll { table {
                thead { tr { th { "Key id" } th { "Label" } th { "Created" } th { "State" } th {} } }
                tbody {
                    @for k in keys {
                        tr {
                            td { (k.kid) }
                            td { (k.label) }
                            td { (time(k.created_at)) }
                            td {
                                @match (k.revoked_at, k.account_id) {
                                    (Some(_), _) => "revoked",
                                    (None, Some(a)) => a href={ "/console/accounts/" (a.0) } { "bound to account " (a.0) },
                                    (None, None) => "unused",
                                }
                            }
                            td { @if k.revoked_at.is_none() { (super::actions::eab_revoke_button(session, &k.kid)) } }
                        }
                    }
                }
            } }
        },
    )
}

/// A CSV field: quoted, quotes doubled; a leading `=`, `+`, `-` or `@` is prefixed with
/// `'` so that a spreadsheet does not run it as a formula.
/// One table of webhook deliveries; admins get "Retry now" on failed ones.
fn deliveries_table(
    session: &OperatorSession,
    list: &[DeliveryView],
    retry: bool,
    now: i64,
) -> Markup {
    html! {
        div.scroll { table {
            thead { tr {
                th { "#" } th { "Event" } th { "Type" } th { "Created" } th { "Attempts" }
                th { "Last attempt" } th { "Outcome" } th { "Next / done" }
                @if retry { th {} }
            } }
            tbody {
                @for d in list {
                    tr {
                        td { (d.seq) }
                        td { code { (d.event_id) } }
                        td { (d.event_type) }
                        td { (time(d.created_at)) }
                        td { (d.attempts) }
                        td { (d.last_attempt_at.map(time).unwrap_or_default()) }
                        td { (d.last_status.as_deref().unwrap_or("")) }
                        td {
                            @if let Some(at) = d.delivered_at { "delivered " (time(at)) }
                            @else if let Some(at) = d.failed_at { "failed " (time(at)) }
                            @else if d.next_attempt_at > now { "next " (time(d.next_attempt_at)) }
                            @else { "due" }
                        }
                        @if retry {
                            td {
                                form method="post" action={ "/console/webhooks/deliveries/" (d.seq) "/retry" } {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    button type="submit" { "Retry now" }
                                }
                            }
                        }
                    }
                }
            }
        } }
    }
}

/// The webhook endpoints with their queued, failed and last delivered deliveries.
pub(super) fn webhooks(
    session: &OperatorSession,
    endpoints: &[(WebhookRoute, EndpointDeliveries)],
    now: i64,
) -> Response {
    let admin = session.role == crate::store::operators::OperatorRole::Admin;
    layout(
        "Webhooks",
        Some(session),
        html! {
            @if endpoints.is_empty() {
                p { "No webhook endpoint is configured ([webhooks.NAME] in the configuration file)." }
            }
            @for (route, d) in endpoints {
                section {
                    h2 { (route.name) }
                    p {
                        code { (route.url) } " — "
                        @if route.events.is_empty() { "every event" } @else { (route.events.join(", ")) }
                    }
                    h3 { "Failed (" (d.failed.len()) ")" }
                    @if d.failed.is_empty() { p { "None." } }
                    @else { (deliveries_table(session, &d.failed, admin, now)) }
                    h3 { "Queued (" (d.queued.len()) ")" }
                    @if d.queued.is_empty() { p { "None." } }
                    @else { (deliveries_table(session, &d.queued, false, now)) }
                    h3 { "Last delivered" }
                    @if d.delivered.is_empty() { p { "None yet." } }
                    @else { (deliveries_table(session, &d.delivered, false, now)) }
                }
            }
        },
    )
}

fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    format!("\"{}\"", value.replace('"', "\"\""))
}

/// The inventory as CSV.
pub(super) fn csv(items: &[InventoryItem]) -> String {
    let mut out = String::from(
        "serial,names,not_before,not_after,state,account_id,eab_label,profile,issuer\n",
    );
    for i in items {
        let row = [
            csv_field(&i.serial),
            csv_field(&i.names.join(" ")),
            csv_field(&rfc3339(i.not_before)),
            csv_field(&rfc3339(i.not_after)),
            csv_field(i.state.as_str()),
            i.account_id.to_string(),
            csv_field(i.eab_label.as_deref().unwrap_or("")),
            csv_field(i.profile.as_deref().unwrap_or("")),
            csv_field(&i.issuer),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field("=cmd()"), "\"'=cmd()\"");
    }

    #[test]
    fn html_is_escaped() {
        let html = html! { p { ("<script>alert(1)</script>") } }.into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }
}
