//! The troubleshooting page (`/console/validations`): "why did my validation fail",
//! answered from what the VA recorded — authorizations by name or by account, each
//! challenge with its problem, its client-facing record and what the VA saw.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::Value;

use super::{views, Console, Page};
use crate::clock::rfc3339;
use crate::store::operators::OperatorSession;
use crate::store::troubleshoot::{Evidence, Trace, TraceQuery, MAX_TRACES};
use crate::store::AccountId;

/// `GET /console/validations?name=…` or `?account=…`, paged with `before=`.
pub(super) async fn validations(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Page {
    let session = console.page_session(&headers).await?;
    let name = params
        .get("name")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty());
    let account = params
        .get("account")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty());
    let before = params.get("before").and_then(|b| b.parse().ok());
    let (query, error) = match (name, account) {
        (Some(n), _) if n.len() > 253 => (None, Some("That name is too long.")),
        (Some(n), _) => (Some(TraceQuery::Name(n.to_string())), None),
        (None, Some(a)) => match a.parse() {
            Ok(id) => (Some(TraceQuery::Account(AccountId(id))), None),
            Err(_) => (None, Some("An account is given by its number.")),
        },
        (None, None) => (None, None),
    };
    let traces = match &query {
        Some(q) => {
            console
                .store
                .validation_traces(q, before, MAX_TRACES)
                .await?
        }
        None => Vec::new(),
    };
    Ok(page(
        &session,
        name,
        account,
        error,
        query.is_some(),
        &traces,
    ))
}

fn page(
    session: &OperatorSession,
    name: Option<&str>,
    account: Option<&str>,
    error: Option<&str>,
    searched: bool,
    traces: &[Trace],
) -> Response {
    let next = (traces.len() == MAX_TRACES)
        .then(|| traces.last().map(|t| t.authz.id.0))
        .flatten();
    views::layout(
        "Validations",
        Some(session),
        html! {
            form.filters method="get" action="/console/validations" {
                label { "Name" input name="name" value=(name.unwrap_or("")) placeholder="www.example.com"; }
                label { "or account" input name="account" value=(account.unwrap_or("")) inputmode="numeric"; }
                button type="submit" { "Show" }
            }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            @if searched && traces.is_empty() && error.is_none() {
                p { "No authorizations found." }
            }
            @for t in traces { (trace(t)) }
            @if let Some(before) = next {
                p { a href={ "/console/validations?" (query_string(name, account)) "&before=" (before) } { "Older" } }
            }
        },
    )
    .into_response()
}

fn query_string(name: Option<&str>, account: Option<&str>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if let Some(n) = name {
        q.append_pair("name", n);
    }
    if let Some(a) = account {
        q.append_pair("account", a);
    }
    q.finish()
}

fn trace(t: &Trace) -> Markup {
    let a = &t.authz;
    html! {
        section.card.trace {
            h2 {
                (if a.wildcard { "*." } else { "" }) (a.identifier.value)
                " " span.status { (a.status.to_string()) }
            }
            p {
                "Authorization " (a.id.0) " of account "
                a href={ "/console/validations?account=" (a.account_id.0) } { (a.account_id.0) }
                "; expires " (rfc3339(a.expires))
                @if !t.orders.is_empty() {
                    "; orders " (t.orders.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(", "))
                }
            }
            @for c in &a.challenges {
                @let evidence = t.evidence.iter().find(|(id, _)| *id == c.id).and_then(|(_, e)| e.as_ref());
                div.challenge {
                    h3 { (c.kind.as_str()) " " span.status { (c.status.to_string()) } }
                    @if let Some(at) = c.validated { p { "Validated " (rfc3339(at)) } }
                    @if let Some(p) = &c.error {
                        p.error { strong { (p.kind.name()) } ": " (p.detail) }
                    }
                    @match evidence {
                        Some(e) => (evidence_view(e)),
                        None => p.muted { "Not attempted yet." },
                    }
                }
            }
        }
    }
}

fn evidence_view(e: &Evidence) -> Markup {
    let d = &e.details;
    let record = d.get("record").filter(|v| !v.is_null());
    let diagnostic = d.get("diagnostic").filter(|v| !v.is_null());
    let caa = record
        .and_then(|r| r.get("caa"))
        .and_then(|c| c.get("decision"));
    let agent = record.and_then(|r| r.get("agent")).and_then(Value::as_str);
    let perspective = record
        .and_then(|r| r.get("perspective"))
        .and_then(Value::as_str);
    html! {
        p { "Recorded " (rfc3339(e.at)) ": " strong { (d.get("outcome").and_then(Value::as_str).unwrap_or("?")) } }
        @if let Some(p) = perspective {
            p { "Validated by " (p) @if let Some(a) = agent { " (agent " (a) ")" } }
        }
        @if let Some(Value::String(c)) = caa { p { "CAA: " (c) } }
        @if let Some(r) = record {
            details open { summary { "What the client was shown (validation record)" } pre { (pretty(r)) } }
        }
        @if let Some(diag) = diagnostic {
            details { summary { "What the VA saw (operators only)" } pre { (pretty(diag)) } }
        }
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}
