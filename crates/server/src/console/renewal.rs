//! Renewal health (`/console/renewal`): certificates that expire without a successor.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;

use super::views::{certificate_table, layout};
use super::{Console, Page};
use crate::store::console::InventoryItem;
use crate::store::operators::OperatorSession;

/// Renewal health's routes.
pub(super) fn routes() -> Router<Console> {
    Router::new().route("/console/renewal", get(renewal))
}

async fn renewal(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Page {
    let session = console.page_session(&headers).await?;
    let days: i64 = params
        .get("days")
        .and_then(|d| d.parse().ok())
        .unwrap_or(30)
        .clamp(1, 365);
    let now = console.clock.now();
    let at_risk = console
        .store
        .renewal_at_risk(now, now + days * 86_400, 200)
        .await?;
    Ok(view(&session, days, &at_risk).into_response())
}

/// Certificates expiring without a successor.
fn view(session: &OperatorSession, days: i64, at_risk: &[InventoryItem]) -> Response {
    layout(
        "Renewal health",
        Some(session),
        html! {
            form.search method="get" action="/console/renewal" {
                label { "Expiring within (days)" input name="days" inputmode="numeric" value=(days); }
                button type="submit" { "Show" }
            }
            p { (at_risk.len()) " unrevoked certificate(s) expire within " (days)
                " days with no successor (no order replaced them, and their account has no later certificate for the same names)." }
            @if !at_risk.is_empty() { (certificate_table(at_risk)) }
        },
    )
}
