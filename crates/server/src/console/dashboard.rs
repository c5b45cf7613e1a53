//! The dashboard (`/console/dashboard`): counts of certificates and orders, each linking
//! to the matching list.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;

use super::views::layout;
use super::{Console, Page};
use crate::store::console::DashboardCounts;
use crate::store::operators::OperatorSession;

/// The dashboard's routes.
pub(super) fn routes() -> Router<Console> {
    Router::new().route("/console/dashboard", get(dashboard))
}

async fn dashboard(State(console): State<Console>, headers: HeaderMap) -> Page {
    let session = console.page_session(&headers).await?;
    let counts = console.store.dashboard_counts(console.clock.now()).await?;
    Ok(view(&session, &counts).into_response())
}

/// The dashboard.
fn view(session: &OperatorSession, c: &DashboardCounts) -> Response {
    let tile = |label: &str, value: i64, href: &str| {
        html! { a.tile href=(href) { span.n { (value) } span { (label) } } }
    };
    layout(
        "Dashboard",
        Some(session),
        html! {
            div.tiles {
                (tile("valid certificates", c.valid, "/console/certificates?state=valid"))
                (tile("expire within 7 days", c.expiring_7d, "/console/renewal?days=7"))
                (tile("expire within 30 days", c.expiring_30d, "/console/renewal?days=30"))
                (tile("revoked", c.revoked, "/console/certificates?state=revoked"))
                (tile("orders processing", c.orders_processing, "/console/dashboard"))
            }
        },
    )
}
