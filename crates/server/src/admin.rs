//! The admin listener: `/metrics` (Prometheus text), `/healthz` and `/readyz`; its bearer
//! token ([`AdminToken`], `admin_token_file`) and the loopback rule for error detail.
//! The metrics themselves are `metrics`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::ca::CertificateAuthority;
use crate::metrics::ping_database;
use crate::store::Store;
use crate::wfe::AppState;

/// What the admin endpoints look at.
pub struct Admin {
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The store `/readyz` pings.
    pub store: Store,
    /// The CA: `/readyz` signs a probe with its issuer key.
    pub ca: Arc<CertificateAuthority>,
    /// The ACME front end (`/metrics` reports its nonce pool).
    pub acme: Arc<AppState>,
    /// When set, `/metrics` and `/readyz` need `Authorization: Bearer <token>`
    /// (`admin_token_file`); `/healthz` stays open for probes.
    pub token: Option<AdminToken>,
    /// When set (`admin_tls_cert`, `admin_tls_key`), the listener speaks HTTPS and the
    /// console's cookies are `Secure`.
    pub tls: Option<Arc<crate::app::admin_tls::AdminTls>>,
}

/// The admin listener's bearer token (never logged: `Debug` shows nothing of it).
#[derive(Clone)]
pub struct AdminToken(Arc<str>);

impl AdminToken {
    /// The shortest token accepted.
    pub const MIN_LEN: usize = 16;

    /// A token from the text of `admin_token_file` (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<Self, String> {
        let token = text.trim();
        if token.len() < Self::MIN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "the admin token must be at least {} printable characters without spaces",
                Self::MIN_LEN
            ));
        }
        Ok(Self(token.into()))
    }

    /// Whether `request` carries the token (compared in constant time).
    fn admits(&self, request: &Request) -> bool {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // The scheme name is case-insensitive (RFC 9110 §11.1).
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, token)| token);
        aws_lc_rs::constant_time::verify_slices_are_equal(
            presented.trim().as_bytes(),
            self.0.as_bytes(),
        )
        .is_ok()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(…)")
    }
}

/// The admin router: `/metrics` (Prometheus text), `/healthz` (the process answers) and
/// `/readyz` (the database answers and the CA key signs); and the operator console under
/// `/console/` (`console`), which has its own sign-in and so is outside the bearer token.
pub fn admin_router(admin: Arc<Admin>) -> Router {
    // `Secure` cookies when the listener speaks TLS.
    let console = crate::console::Console::new(
        admin.store.clone(),
        crate::clock::Clock::system(),
        admin.tls.is_some(),
    )
    .with_ra(admin.acme.ra.clone());
    Router::new()
        .route("/metrics", get(metrics_endpoint))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn_with_state(
            admin.clone(),
            require_admin_token,
        ))
        .merge(crate::console::router(console))
        .with_state(admin)
}

/// Refuses every admin request but `/healthz` without the configured bearer token.
async fn require_admin_token(
    State(admin): State<Arc<Admin>>,
    request: Request,
    next: Next,
) -> Response {
    match &admin.token {
        Some(token) if request.uri().path() != "/healthz" && !token.admits(&request) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required (admin_token_file)\n",
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

/// Whether the request came over loopback (the connection's peer address, when the
/// listener records it; anything else counts as remote).
fn from_loopback(request: &Request) -> bool {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|c| c.0.ip().to_canonical().is_loopback())
}

async fn metrics_endpoint(State(admin): State<Arc<Admin>>) -> Response {
    crate::metrics::nonce_pool_size(admin.acme.nonces.outstanding());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        admin.metrics.render(),
    )
        .into_response()
}

async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn readyz(State(admin): State<Arc<Admin>>, request: Request) -> Response {
    let database = ping_database(&admin.store).await;
    // Every active issuer's key must sign (a token unplugged or locked is not ready).
    let ca_key = admin
        .ca
        .issuers()
        .iter()
        .filter(|i| i.is_active())
        .try_for_each(|i| {
            i.issuer()
                .sign(b"certwright readiness probe")
                .map(|_| ())
                .map_err(|e| format!("issuer {}: {e}", i.name()))
        });
    let ready = database.is_ok() && ca_key.is_ok();
    // Error text (a database host name, a driver message) only for a local operator.
    let local = from_loopback(&request);
    let show = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_owned(),
        Err(e) if local => e.clone(),
        Err(_) => "unavailable".to_owned(),
    };
    if let Err(e) = &database {
        tracing::warn!(error = %e, "not ready: the database does not answer");
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({
            "ready": ready,
            "database": show(&database),
            "ca_key": show(&ca_key),
        })),
    )
        .into_response()
}

/// Serves the admin router on `listener` until `shutdown` resolves: HTTPS when
/// `admin.tls` is set (its certificate reloaded on SIGHUP), else plain HTTP.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    admin: Arc<Admin>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Some(tls) = &admin.tls {
        let config = tls.server_config().map_err(std::io::Error::other)?;
        tls.reload_on_sighup()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        crate::app::serve_router(
            "admin",
            listener,
            admin_router(admin),
            Some(acceptor),
            shutdown,
        )
        .await;
        return Ok(());
    }
    axum::serve(
        listener,
        admin_router(admin).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
