//! An operator's own account: one-time sign-in links and changing one's password.

use axum::Router;

use super::Console;

/// This module's routes.
pub(super) fn routes() -> Router<Console> {
    Router::new()
}
