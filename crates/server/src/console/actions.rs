//! Operator actions beyond one certificate: renew-early campaigns, revoking EAB keys,
//! deactivating accounts (admins only; every one audited with the operator's name).

use axum::Router;

use super::Console;

/// This module's routes.
pub(super) fn routes() -> Router<Console> {
    Router::new()
}
